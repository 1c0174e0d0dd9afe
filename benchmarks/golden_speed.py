"""Golden against PyTorch's forward of the same network, side by side in one run.

    python -m benchmarks.golden_speed --config vgg9.yaml [--threads 2] [--repeat 2]
                                      [--check] [--json OUT]

A random export of the config's network (model_export.random_net) and one random input
sample [T, C, H, W]; PyTorch's float forward of a freshly built model of the same shape
(train.model.build_model, eval mode, no gradients) on that input, and golden.run on it,
each timed ``--repeat`` times (the best counts), both on ``--threads`` threads (torch and
the BLAS behind NumPy). Prints both times and golden / PyTorch (issue 15's target: at most
1.0 on VGG-9). ``--check`` also runs golden.run_stepwise (the hardware's step-major
order) and requires bit-identical results.
"""
from __future__ import annotations

import os
import time

import torch

import golden
from golden.model import run_stepwise
from model_export.random_net import random_export, random_inputs
from project_config import UserError, cli_main, load_config
from project_config.cli import add_config, add_json, bounded_int, parser
from project_config.files import write_json_report
from train.model import build_model


def _best(f, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(cfg, threads: int, repeat: int, check: bool) -> dict:
    """Seconds of PyTorch's forward and of golden.run on one sample of ``cfg``'s network."""
    torch.set_num_threads(threads)
    net = random_export(cfg, 1)
    x = random_inputs(net, 1, 2, density=0.3)
    model = build_model(cfg).eval()
    xt = torch.tensor(x.transpose(1, 0, 2, 3, 4), dtype=torch.float32)   # [T, B, C, H, W]
    with torch.no_grad():
        torch_s = _best(lambda: model(xt), repeat)
    golden_s = _best(lambda: golden.run(net, x), repeat)
    out = {"config": cfg.name, "timesteps": cfg.timesteps, "threads": threads,
           "repeat": repeat, "pytorch_forward_s": round(torch_s, 3),
           "golden_s": round(golden_s, 3), "golden_over_pytorch": round(golden_s / torch_s, 3)}
    if check:
        t0 = time.perf_counter()
        ref = run_stepwise(net, x)
        out["stepwise_s"] = round(time.perf_counter() - t0, 3)
        got = golden.run(net, x)
        same = all((a == b).all() for name in ("spikes", "membranes", "positions", "channels")
                   for a, b in zip(getattr(got, name), getattr(ref, name)))
        out["identical_to_stepwise"] = bool(same and (got.logits == ref.logits).all())
    return out


def main(argv=None):
    ap = parser("python -m benchmarks.golden_speed", __doc__)
    add_config(ap, default="vgg9.yaml")
    ap.add_argument("--threads", type=bounded_int(1, 256), default=2)
    ap.add_argument("--repeat", type=bounded_int(1, 100), default=2)
    ap.add_argument("--check", action="store_true",
                    help="also run golden.run_stepwise and require identical results")
    add_json(ap)
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    if cfg.model.get("arch", "convnet") != "convnet":
        raise UserError(f"{cfg.path}: model.arch: {cfg.model.get('arch')!r}: golden runs "
                        "the conv net (convnet) only")
    # NumPy's BLAS reads its thread count when it loads; set it for a fresh process.
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    r = measure(cfg, args.threads, args.repeat, args.check)
    if args.json:
        write_json_report(args.json, r)
    print(f"{r['config']}, 1 sample, T = {r['timesteps']}, {r['threads']} threads: PyTorch "
          f"forward {r['pytorch_forward_s']:.2f} s, golden {r['golden_s']:.2f} s, golden / "
          f"PyTorch {r['golden_over_pytorch']:.2f}"
          + (f"; step-major golden {r['stepwise_s']:.2f} s, identical: "
             f"{r['identical_to_stepwise']}" if args.check else ""))
    return 0 if r.get("identical_to_stepwise", True) else 1


def cli():
    """Console-script entry point."""
    cli_main(main)


if __name__ == "__main__":
    cli()
