"""The learnable threshold's gradient against finite differences of the loss.

``python -m benchmarks.vth_gradcheck CHECKPOINT [--batches 8] [--batch-size 256]
[--vth 1.0,0.8,1.3,1.6] [--step 0.05] [--out runs/vth_gradcheck.json]``

From a trained checkpoint (a Quant-SNN of ``python -m benchmarks.table5``, say), in eval
mode (batch norm's running statistics, so the loss is a fixed function of the thresholds),
on fixed batches of the training split: for every threshold point (every layer's threshold
set to the value), batch and spiking layer, the central finite difference of the training
loss (TET, as the trainer computes it) in that layer's threshold,
``(L(vth + h) - L(vth - h)) / 2h``, against the autograd gradient under each threshold rule
of :data:`train.neuron.VTH_GRAD_RULES` (the forward pass is the same for every rule; only the
threshold's backward differs). A case counts as *clear* when the differences at ``h`` and
``2h`` have the same sign and are not zero. Prints, per rule, the fraction of cases (all and
clear) where the rule's sign agrees with the finite difference's, and writes every case.
A pruned checkpoint's masks are fixed at each point (recorded once, then replayed:
:class:`MaskReplay`), unless ``--live-masks``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

from project_config import UserError, cli_main
from project_config.cli import bounded_float, bounded_int, comma_list, parser
from project_config.files import atomic_write
from train.data import load_dataset, to_time_major
from train.loss import tet_loss
from train.neuron import QLIF, VTH_GRAD_RULES
from train.pruning import ChannelGate, SpatialPruning
from train.trainer import load_checkpoint


def learnable_thresholds(model) -> list:
    """The QLIF layers of ``model``, each threshold made a parameter (a Quant-SNN trained
    with a fixed threshold holds it as a buffer)."""
    layers = [m for m in model.modules() if isinstance(m, QLIF)]
    for m in layers:
        if not isinstance(m.vth, nn.Parameter):
            v = m.vth.detach().clone()
            del m._buffers["vth"]
            m.vth = nn.Parameter(v)
    return layers


def batch_loss(model, cfg, xb, yb) -> torch.Tensor:
    logits = model(xb)
    return tet_loss(logits, yb, cfg.train["tet_lambda"], cfg.train["tet_target"])


def autograd_gradients(loss, layers, rule) -> list:
    """d loss / d vth of every layer under threshold rule ``rule`` (``loss()``: the loss)."""
    for m in layers:
        m.vth_grad = rule
        m.vth.grad = None
    loss().backward()
    return [float(m.vth.grad) for m in layers]


@torch.no_grad()
def finite_difference(loss, layer, h) -> float:
    """Central difference of ``loss()`` in ``layer``'s threshold."""
    v = float(layer.vth)
    layer.vth.fill_(v + h)
    up = float(loss())
    layer.vth.fill_(v - h)
    down = float(loss())
    layer.vth.fill_(v)
    return (up - down) / (2 * h)


class MaskReplay:
    """Fixed pruning masks for a pruned model: :meth:`record` runs ``loss()`` once and keeps
    every spatial mask and channel gate it computed; until :meth:`release`, every forward
    pass replays them, so the finite differences see the thresholds' effect on the
    spikes, not a change of the masks (which the autograd gradient cannot see either)."""

    def __init__(self, model):
        self.spatial = [m for m in model.modules() if isinstance(m, SpatialPruning)]
        self.gates = [m for m in model.modules() if isinstance(m, ChannelGate)]
        self.saved = None

    def record(self, loss):
        self.release()
        self.saved = {}
        for m in self.spatial:
            log = self.saved[id(m)] = []
            m.keep = (lambda t, q, m=m, log=log:
                      log.append(type(m).keep(m, t, q)) or log[-1])
        for m in self.gates:
            log = self.saved[id(m)] = []
            m.forward = lambda prior, m=m, log=log: log.append(type(m).forward(m, prior)) or log[-1]
        with torch.no_grad():
            loss()
        for m in self.spatial:
            m.keep = lambda t, q, log=self.saved[id(m)]: log[t]
        for m in self.gates:
            m.forward = lambda prior, log=self.saved[id(m)]: log[0].detach()

    def release(self):
        for m in self.spatial + self.gates:
            m.__dict__.pop("keep", None)
            m.__dict__.pop("forward", None)
        self.saved = None


def _sign(v: float) -> int:
    return (v > 0) - (v < 0)


def _rate(flags):
    return sum(flags) / len(flags) if flags else None


def gradcheck(model, losses, points, h, rules=VTH_GRAD_RULES, fixed_masks=True) -> dict:
    """Every case (point, batch, layer: the finite differences and each rule's gradient) and
    each rule's sign agreement with the finite difference at ``h`` (all cases, clear ones).

    ``losses``: one callable per batch, returning that batch's loss through ``model``;
    ``points``: thresholds, every spiking layer set to each in turn; ``fixed_masks``: a
    pruned model's masks are those of the point itself (:class:`MaskReplay`), else
    recomputed in every forward pass.
    """
    replay = MaskReplay(model) if fixed_masks else None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    layers = learnable_thresholds(model)
    for m in layers:
        m.vth.requires_grad_(True)
    cases = []
    for point in points:
        for m in layers:
            with torch.no_grad():
                m.vth.fill_(point)
        for b, loss in enumerate(losses):
            if replay is not None:
                replay.record(loss)
            try:
                grads = {r: autograd_gradients(loss, layers, r) for r in rules}
                fds = [[finite_difference(loss, m, s) for s in (h, 2 * h)] for m in layers]
            finally:
                if replay is not None:
                    replay.release()
            for l, (fd, fd2) in enumerate(fds):
                cases.append({"vth": point, "batch": b, "layer": l, "fd": fd, "fd_2h": fd2,
                              "clear": _sign(fd) != 0 and _sign(fd) == _sign(fd2),
                              "grad": {r: grads[r][l] for r in rules}})
    summary = {}
    clear = [c for c in cases if c["clear"]]
    for r in rules:
        summary[r] = {"agreement": _rate([_sign(c["grad"][r]) == _sign(c["fd"]) for c in cases]),
                      "agreement_clear": _rate([_sign(c["grad"][r]) == _sign(c["fd"])
                                                for c in clear]),
                      "per_layer_clear": [_rate([_sign(c["grad"][r]) == _sign(c["fd"])
                                                 for c in clear if c["layer"] == l])
                                          for l in range(len(layers))]}
    return {"cases": cases, "n_cases": len(cases), "n_clear": len(clear), "rules": summary}


def parse_args(argv):
    ap = parser("python -m benchmarks.vth_gradcheck", __doc__)
    ap.add_argument("checkpoint", type=Path, help="a model.pt written by the trainer")
    ap.add_argument("--batches", type=bounded_int(1, 64), default=8)
    ap.add_argument("--batch-size", type=bounded_int(1, 4096), default=256)
    ap.add_argument("--vth", type=comma_list(bounded_float(0.05, 20.0)),
                    default=[1.0, 0.8, 1.3, 1.6],
                    help="threshold points: every layer's threshold set to each in turn")
    ap.add_argument("--step", type=bounded_float(1e-4, 1.0), default=0.05,
                    help="finite-difference step h (clear cases also agree at 2h)")
    ap.add_argument("--live-masks", action="store_true",
                    help="pruned models: recompute the masks in every forward pass (default: "
                         "each point's own masks, replayed)")
    ap.add_argument("--out", type=Path, default=Path("runs/vth_gradcheck.json"))
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    torch.set_num_threads(1)
    model, cfg = load_checkpoint(args.checkpoint)
    if not any(isinstance(m, QLIF) for m in model.modules()):
        raise UserError(f"{args.checkpoint}: the model has no spiking layer with a threshold")
    x_tr, y_tr, _, _ = load_dataset(cfg)
    n = args.batch_size
    if len(x_tr) < n * args.batches:
        raise UserError(f"--batches: {args.batches} x {n} samples exceed the training split "
                        f"({len(x_tr)})")
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(x_tr), generator=gen)[: n * args.batches].numpy()
    xs = [to_time_major(x_tr[idx[i * n:(i + 1) * n]], cfg.timesteps)
          for i in range(args.batches)]
    ys = [torch.as_tensor(y_tr[idx[i * n:(i + 1) * n]]) for i in range(args.batches)]
    losses = [lambda xb=xb, yb=yb: batch_loss(model, cfg, xb, yb) for xb, yb in zip(xs, ys)]
    result = gradcheck(model, losses, args.vth, args.step, fixed_masks=not args.live_masks)
    result["meta"] = {"checkpoint": str(args.checkpoint), "batches": args.batches,
                      "batch_size": n, "vth": args.vth, "step": args.step,
                      "fixed_masks": not args.live_masks}
    atomic_write(args.out, lambda p: Path(p).write_text(json.dumps(result, indent=1) + "\n"))
    print(f"{result['n_cases']} cases ({len(args.vth)} threshold points x {args.batches} "
          f"batches x layers), {result['n_clear']} clear (h = {args.step} and 2h agree)")
    print("rule        sign agreement (all)  (clear)  per layer (clear)")
    def fmt(v):
        return "n/a" if v is None else f"{v:.3f}"
    for r, s in result["rules"].items():
        per = ", ".join(fmt(v) for v in s["per_layer_clear"])
        print(f"{r:<11} {fmt(s['agreement']):<21} {fmt(s['agreement_clear']):<8} [{per}]")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    cli_main(main)
