"""``python -m train.nir_import model.nir --config NAME.yaml [--out DIR] [--epochs N] [--ignore-metadata] [--eval-samples N]``

A spiking network from another framework (snnTorch, Norse, Sinabs, Lava-DL: anything that
writes NIR, https://neuroir.org) as this project's model: the graph is checked against
what the core runs, mapped onto the config's ``SpikingConvNet`` (the config gives the
geometry, the graph the parameters), quantized (PoT weights, the config's membrane), and
optionally fine-tuned with quantization in the loop (``--epochs N``: QAT from the mapped
weights, ``train.init_from``). It writes ``<out>/model.pt``, a checkpoint like
``python -m train``'s, and ``<out>/nir_import.json`` (the accuracy each quantization step
costs). The integer export is then ``python -m model_export --checkpoint <out>/model.pt``.

What maps (anything else is one error line naming the node, exit code 2): a chain
``Input -> (Conv2d -> LIF [-> AvgPool2d | SumPool2d])+ -> Flatten -> Affine | Linear
-> Output`` with

- Conv2d: stride 1, dilation 1, groups 1, the config layer's channels, kernel and padding;
- LIF: leak ``1 - dt/tau = 1/2`` (dt from the graph's ``dt`` metadata, else snnTorch's
  1e-4 s), ``v_leak = 0``, reset to 0, one threshold and one input gain ``r dt / tau``
  per channel (per-channel values fold into the channel's scale, docs/INTEGER_SPEC.md
  section 4; per-position values do not);
- pooling with kernel = stride = the config's pool and no padding.

Branches, recurrence, delays, nested graphs, other neuron models (IF: no leak; CubaLIF:
a synaptic filter) and a neuron after the classifier (the core's classifier outputs
currents) are refused. A graph written by ``python -m model_export.nir`` carries the exact
checkpoint in its metadata, which is used unless ``--ignore-metadata``.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

try:
    import nir
except ImportError:      # the optional extra .[nir]; the CLI says so in one line
    nir = None
import numpy as np
import torch

from project_config import UserError, cli_main, config_from_dict, load_config
from project_config.cli import nonnegative_int, parser, positive_int
from project_config.files import atomic_write, check_output_dir
from project_config.schema import deep_merge, load_raw_config

from .data import load_dataset, to_time_major
from .model import build_model
from .trainer import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, evaluate, train

SNNTORCH_DT = 1e-4
LEAK = 0.5
NEURON_REASONS = {
    "IF": "an IF neuron has no leak; the core's membrane leaks by 1/2 per step",
    "LI": "an LI neuron does not spike",
    "CubaLIF": "a current-based LIF filters its input current; the core has no synaptic filter",
    "CubaLI": "a current-based LI neuron does not spike",
    "I": "an integrator does not spike",
    "Delay": "delays are not supported (the core's synapses have none)",
    "NIRGraph": "nested graphs are not supported (the core runs one flat chain)",
}


def read_graph(path) -> nir.NIRGraph:
    """The NIR graph in ``path``; UserError naming the file if it cannot be read."""
    if not Path(path).is_file():
        raise UserError(f"{path}: NIR file not found")
    try:
        # nir's type inference stops at the first shape mismatch with a generic message;
        # map_graph checks every node against the config and names the node instead.
        return nir.read(str(path), type_check=False)
    except Exception as e:      # h5py and nir raise many types for a damaged or foreign file
        raise UserError(f"{path}: not a readable NIR file ({type(e).__name__})") from None


def graph_chain(graph, where) -> list:
    """The graph's nodes from input to output as ``[(name, node)]``, Input and Output left
    out; UserError naming the node where the graph is not a single chain."""
    succ, pred = defaultdict(list), defaultdict(list)
    for a, b in graph.edges:
        succ[a].append(b)
        pred[b].append(a)
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if len(inputs) != 1:
        raise UserError(f"{where}: the graph has {len(inputs)} Input nodes (the core takes one)")
    _refuse_cycles(succ, where)
    order, cur = [], inputs[0]
    while succ[cur]:
        if len(succ[cur]) > 1:
            raise UserError(f"{where}: node {cur!r}: branches to {sorted(succ[cur])} "
                            "(the core runs a chain, one layer after another)")
        cur = succ[cur][0]
        if len(pred[cur]) > 1:
            raise UserError(f"{where}: node {cur!r}: merges {sorted(pred[cur])} "
                            "(the core runs a chain, one layer after another)")
        order.append(cur)
    if not order or not isinstance(graph.nodes[order[-1]], nir.Output):
        raise UserError(f"{where}: node {cur!r}: the chain from the input ends without an Output")
    unreached = sorted(set(graph.nodes) - set(order) - set(inputs))
    if unreached:
        raise UserError(f"{where}: node {unreached[0]!r}: not on the chain from the input")
    return [(n, graph.nodes[n]) for n in order[:-1]]


def _refuse_cycles(succ, where):
    state = {}

    def visit(n, path):
        state[n] = 1
        for m in succ[n]:
            if state.get(m) == 1:
                loop = path[path.index(m):] + [m] if m in path else [n, m]
                raise UserError(f"{where}: node {m!r}: recurrence ({' -> '.join(loop)}); the "
                                "core has no recurrent connections")
            if m not in state:
                visit(m, path + [m])
        state[n] = 2

    for n in list(succ):
        if n not in state:
            visit(n, [n])


def _per_channel(value, shape, what, name, where) -> np.ndarray:
    """``value`` broadcast to ``shape`` [C, H, W] and reduced to one value per channel;
    a value that varies within a channel is an error (the core has one per channel)."""
    try:
        v = np.broadcast_to(np.asarray(value, np.float64), shape)
    except ValueError:
        raise UserError(f"{where}: node {name!r}: {what} of shape {list(np.shape(value))} does "
                        f"not fit the layer's {list(shape)} neurons") from None
    per = v.reshape(shape[0], -1)
    bad = np.nonzero(per.min(1) != per.max(1))[0]
    if len(bad):
        raise UserError(f"{where}: node {name!r}: {what} varies over the positions of channel "
                        f"{int(bad[0])} (per-position values: the core has one per channel)")
    return per[:, 0]


def neuron_params(node, name, shape, dt, where):
    """(input gain, threshold) per channel of a LIF node the core can run (module doc)."""
    kind = type(node).__name__
    if not isinstance(node, nir.LIF):
        reason = NEURON_REASONS.get(kind, "not a node type the core runs")
        raise UserError(f"{where}: node {name!r} ({kind}): {reason}")
    tau = _per_channel(node.tau, shape, "tau", name, where)
    leak = 1.0 - dt / tau
    if not np.allclose(leak, LEAK, rtol=0, atol=1e-6):      # float32 tau
        raise UserError(f"{where}: node {name!r}: leak 1 - dt/tau = {float(leak[0]):.6g} at dt "
                        f"{dt:g} s (the core's is {LEAK}: tau = {2 * dt:g} s)")
    if np.any(np.asarray(node.v_leak) != 0):
        raise UserError(f"{where}: node {name!r}: v_leak must be 0 (the core leaks toward 0)")
    if node.v_reset is not None and np.any(np.asarray(node.v_reset) != 0):
        raise UserError(f"{where}: node {name!r}: v_reset must be 0 (the core resets to 0)")
    gain = _per_channel(np.asarray(node.r, np.float64) * dt / np.asarray(node.tau, np.float64),
                        shape, "r dt / tau", name, where)
    thr = _per_channel(node.v_threshold, shape, "v_threshold", name, where)
    if np.any(thr <= 0) or np.any(gain <= 0):
        raise UserError(f"{where}: node {name!r}: thresholds and input gains must be positive "
                        f"(got v_threshold {float(thr.min()):g}, gain {float(gain.min()):g})")
    return gain, thr


def _pair(v):
    a = np.atleast_1d(np.asarray(v)).astype(np.int64).tolist()
    return tuple(a * 2 if len(a) == 1 else a)


def _check_conv(node, name, spec, where):
    if isinstance(node.padding, str):
        raise UserError(f"{where}: node {name!r}: padding {node.padding!r}: give it in pixels")
    for what, got, want in (("stride", _pair(node.stride), (1, 1)),
                            ("dilation", _pair(node.dilation), (1, 1)),
                            ("groups", int(node.groups), 1),
                            ("padding", _pair(node.padding), (spec.padding, spec.padding)),
                            ("weight shape", tuple(node.weight.shape),
                             (spec.out_channels, spec.in_channels, *spec.kernel))):
        if got != want:
            extra = " (the core computes stride 1 only)" if what == "stride" else ""
            ints = lambda v: [int(a) for a in np.atleast_1d(v)]
            raise UserError(f"{where}: node {name!r}: {what} {ints(got)} where "
                            f"model.layers[{spec.index}] needs {ints(want)}{extra}")


def map_graph(graph, cfg, where) -> dict:
    """The float parameters of ``cfg``'s SpikingConvNet from a NIR chain: per spiking
    layer ``(weight, bias)`` with input gains and per-channel thresholds folded in (scaled
    to ``vth``), ``vth``, and the classifier's ``(weight, bias)``; errors name the node."""
    chain = graph_chain(graph, where)
    dt = float(graph.metadata.get("dt", SNNTORCH_DT)) if graph.metadata else SNNTORCH_DT
    for name, node in chain:
        reason = NEURON_REASONS.get(type(node).__name__)
        if reason and not isinstance(node, nir.LIF):
            raise UserError(f"{where}: node {name!r} ({type(node).__name__}): {reason}")
    layers, i, carry = [], 0, 1.0        # carry: the factor of a SumPool for the next layer
    specs = cfg.spiking_layers
    while i < len(chain) and isinstance(chain[i][1], nir.Conv2d):
        if len(layers) == len(specs):
            raise UserError(f"{where}: node {chain[i][0]!r}: the config has {len(specs)} "
                            "spiking layers, the graph more")
        spec = specs[len(layers)]
        (cname, conv) = chain[i]
        _check_conv(conv, cname, spec, where)
        if i + 1 >= len(chain):
            raise UserError(f"{where}: node {cname!r}: no neuron after it")
        nname, neuron = chain[i + 1]
        shape = (spec.out_channels, spec.out_height, spec.out_width)
        gain, thr = neuron_params(neuron, nname, shape, dt, where)
        vth = float(thr[0]) if np.all(thr == thr[0]) else 1.0
        k = gain * vth / thr              # the channel's current in units of the layer's vth
        w = np.asarray(conv.weight, np.float64) * carry * k[:, None, None, None]
        b = (np.asarray(conv.bias, np.float64) if conv.bias is not None else 0.0) * k
        i += 2
        carry = 1.0
        if i < len(chain) and isinstance(chain[i][1], (nir.AvgPool2d, nir.SumPool2d)):
            pname, pool = chain[i]
            p = int(spec.pool)
            if (_pair(pool.kernel_size) != (p, p) or _pair(pool.stride) != (p, p)
                    or _pair(pool.padding) != (0, 0)):
                raise UserError(f"{where}: node {pname!r}: pooling kernel "
                                f"{list(_pair(pool.kernel_size))}, stride {list(_pair(pool.stride))},"
                                f" padding {list(_pair(pool.padding))} where model.layers"
                                f"[{spec.index}] pools {p}x{p} (stride {p}, no padding)")
            carry = float(p * p) if isinstance(pool, nir.SumPool2d) else 1.0
            i += 1
        elif spec.pool > 1:
            raise UserError(f"{where}: node {nname!r}: model.layers[{spec.index}] pools "
                            f"{spec.pool}x{spec.pool}, the graph does not pool after it")
        layers.append((w, b, vth))
    if len(layers) != len(specs):
        at = chain[i][0] if i < len(chain) else "output"
        raise UserError(f"{where}: node {at!r}: the graph has {len(layers)} conv layers, the "
                        f"config {len(specs)}")
    return {"layers": layers, "classifier": _classifier(chain[i:], cfg, carry, where)}


def _classifier(rest, cfg, carry, where):
    names = [n for n, _ in rest]
    if rest and isinstance(rest[0][1], nir.Flatten):
        rest = rest[1:]
    if not rest or not isinstance(rest[0][1], (nir.Affine, nir.Linear)):
        at = names[0] if names else "output"
        kind = type(rest[0][1]).__name__ if rest else "Output"
        raise UserError(f"{where}: node {at!r} ({kind}): expected Flatten then Affine or Linear "
                        "(the classifier)")
    name, fc = rest[0]
    if len(rest) > 1:
        extra, node = rest[1]
        raise UserError(f"{where}: node {extra!r} ({type(node).__name__}): after the classifier "
                        "(the core's classifier outputs currents, summed over time)")
    spec = cfg.layers[-1]
    want = (spec.out_channels, spec.in_channels * spec.in_height * spec.in_width)
    if tuple(fc.weight.shape) != want:
        raise UserError(f"{where}: node {name!r}: weight shape {list(fc.weight.shape)} where the "
                        f"config's classifier is {list(want)}")
    bias = np.asarray(fc.bias, np.float64) if isinstance(fc, nir.Affine) else np.zeros(want[0])
    return np.asarray(fc.weight, np.float64) * carry, bias


@torch.no_grad()
def build_from_graph(graph, cfg, where, use_metadata=True):
    """``cfg``'s model with the graph's parameters (float; PoT and membrane quantization
    apply in its forward, as in training). From the exact checkpoint in the metadata of
    a graph written by model_export.nir, unless ``use_metadata`` is False."""
    model = build_model(cfg)
    params = map_graph(graph, cfg, where)      # checks the graph even when metadata is used
    state = ((graph.metadata or {}).get("spquant") or {}).get("state_dict")
    if use_metadata and state:
        own = model.state_dict()
        bad = [k for k, v in state.items()
               if k not in own or own[k].numel() != np.size(v)]
        if bad:
            raise UserError(f"{where}: metadata state {bad[0]!r} does not fit the config's model "
                            "(use --ignore-metadata, or the config the graph was exported from)")
        # HDF5 stores a 0-d array as [1]: shapes come back from the model's own.
        model.load_state_dict({k: torch.as_tensor(np.asarray(v)).reshape(own[k].shape)
                               for k, v in state.items()}, strict=False)
        model.eval()
        return model
    s_in = float(cfg.model["input"]["scale"])
    for idx, (block, (w, b, vth)) in enumerate(zip(model.blocks, params["layers"])):
        g = np.abs(w).reshape(len(w), -1).max(1)
        g = np.where(g > 0, g, 1.0)           # the channel's scale: its weights span +-1
        block.conv.weight.copy_(torch.as_tensor(w / g[:, None, None, None]))
        block.conv.bias.zero_()
        bn = block.bn
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
        bn.weight.copy_(torch.as_tensor(g * math.sqrt(1.0 + bn.eps) / (s_in if idx == 0 else 1.0)))
        bn.bias.copy_(torch.as_tensor(b))
        block.neuron.vth.fill_(vth)
    w, b = params["classifier"]
    model.classifier.weight.copy_(torch.as_tensor(w))
    model.classifier.bias.copy_(torch.as_tensor(b))
    model.eval()
    return model


@torch.no_grad()
def bn_to_data_statistics(model, x, T):
    """Give every batch norm the statistics of its input on ``x`` (the quantized model's
    conv outputs), with its scale and shift changed so that the eval-mode function stays
    the same. The mapped model's batch norms are plain per-channel scales (mean 0,
    variance 1), which training would replace by batch statistics at its first step;
    after this, batch statistics are close to the running ones and QAT starts from the
    imported network."""
    outs = {}
    hooks = [b.conv.register_forward_hook(lambda m, i, o, k=k: outs.setdefault(k, o))
             for k, b in enumerate(model.blocks)]
    try:
        model.eval()
        model(to_time_major(x, T))
    finally:
        for h in hooks:
            h.remove()
    for k, block in enumerate(model.blocks):
        y, bn = outs[k].double(), block.bn
        mean, var = y.mean((0, 2, 3)), y.var((0, 2, 3), unbiased=False)
        a = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        c = bn.bias.double() - a * bn.running_mean.double()
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_(a * torch.sqrt(var + bn.eps))
        bn.bias.copy_(c + a * mean)


def set_quantization(model, weight_bits, membrane):
    """Switch the model's PoT weights (None: float) and membrane mode in place."""
    for block in model.blocks:
        block.conv.weight_bits = weight_bits
        block.neuron.membrane = membrane
    model.classifier.weight_bits = weight_bits


def quantization_steps(model, cfg, x, y) -> list:
    """Accuracy of the float network, then with PoT weights, then with the quantized
    membrane as well: ``[(step, accuracy)]`` (the model is left fully quantized)."""
    bits, membrane = cfg.quant["weight_bits"], cfg.quant["membrane"]
    steps = [("float (as in the NIR graph)", None, "float"),
             (f"+ {bits}-bit PoT weights", bits, "float"),
             (f"+ {membrane} membrane", bits, membrane)]
    out = []
    for label, b, m in steps:
        set_quantization(model, b, m)
        out.append((label, evaluate(model, x, y, cfg.timesteps)))
    return out


def save_checkpoint(model, cfg, config_text, path, metrics):
    """``model`` as a train checkpoint at ``path`` (atomically), loadable by
    :func:`train.trainer.load_checkpoint` and the exporter."""
    ckpt = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "config": {"path": str(cfg.path), "text": config_text}, "overrides": {},
            "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "metrics": metrics, "complete": True}
    atomic_write(path, lambda p: torch.save(ckpt, p))


def require_nir():
    """UserError (one line, exit 2) when the optional ``nir`` package is missing."""
    if nir is None:
        raise UserError("NIR import needs the 'nir' package: pip install 'spquant-rtl[nir]'")


def main(argv=None):
    ap = parser("python -m train.nir_import", __doc__.split("\n\n")[0])
    ap.add_argument("graph", help="the NIR file")
    ap.add_argument("--config", required=True, help="the model's geometry and quantization")
    ap.add_argument("--out", help="output folder (default: the config's train.out_dir)")
    ap.add_argument("--epochs", type=nonnegative_int, default=0,
                    help="fine-tune with quantization in the loop for this many epochs")
    ap.add_argument("--ignore-metadata", action="store_true",
                    help="map the NIR parameters even if the graph carries this project's checkpoint")
    ap.add_argument("--eval-samples", type=positive_int, default=None,
                    help="evaluate on the first N test samples only")
    args = ap.parse_args(argv)
    require_nir()
    path, raw = load_raw_config(args.config)
    cfg = load_config(args.config)
    if cfg.model.get("arch", "convnet") != "convnet":
        raise UserError(f"{path}: model.arch: NIR import builds 'convnet' chains")
    out = Path(args.out or cfg.train["out_dir"])
    check_output_dir(out, "--out")
    graph = read_graph(args.graph)
    model = build_from_graph(graph, cfg, args.graph, use_metadata=not args.ignore_metadata)
    x_tr, _, x, y = load_dataset(cfg)
    x, y = x[:args.eval_samples], y[:args.eval_samples]
    steps = quantization_steps(model, cfg, x, y)
    prev = None
    for label, acc in steps:
        cost = f" ({100 * (acc - prev):+.2f} points)" if prev is not None else ""
        print(f"accuracy {label}: {acc:.4f}{cost}")
        prev = acc
    text = path.read_text()
    report = {"graph": str(args.graph), "steps": [{"step": s, "accuracy": a} for s, a in steps],
              "metadata_used": bool(not args.ignore_metadata and
                                    ((graph.metadata or {}).get("spquant") or {}).get("state_dict"))}
    if args.epochs:
        bn_to_data_statistics(model, x_tr[:512], cfg.timesteps)
    save_checkpoint(model, cfg, text, out / "model.pt", {"test_accuracy": steps[-1][1]})
    if args.epochs:
        raw = deep_merge(raw, {"train": {"init_from": str(out / "model.pt"), "out_dir": str(out)}})
        text = json.dumps(raw)           # JSON is YAML: the checkpoint's config text
        ft_cfg = config_from_dict(raw, where=str(path))
        _, metrics = train(ft_cfg, text, epochs=args.epochs, out_dir=str(out), progress=False,
                           log=lambda *a, **k: None, threads=1)
        report["finetuned"] = {"epochs": args.epochs, "test_accuracy": metrics["final_test_accuracy"]}
        print(f"accuracy after {args.epochs} QAT epochs: {metrics['final_test_accuracy']:.4f}")
    atomic_write(out / "nir_import.json", json.dumps(report, indent=1) + "\n")
    print(f"checkpoint: {out / 'model.pt'}; integer export: "
          f"python -m model_export --checkpoint {out / 'model.pt'}")
    return 0


def cli():
    """Console-script entry point (pyproject [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
