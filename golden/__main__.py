"""``python -m golden --export DIR [--inputs X.npy | --random N] [--seed S]``

Runs the bit-exact integer model on an export and prints per-layer spike rates, the
membrane level histogram and the predictions. Inputs: an .npy of integers shaped
[B, C, H, W] or [B, T, C, H, W], or N random inputs.
"""
from pathlib import Path

import numpy as np

from model_export import load_export
from model_export.random_net import random_inputs
from project_config import UserError, cli_main
from project_config.cli import SAMPLES_MAX, add_export, bounded_int, parser, seed

from .model import run


def main(argv=None):
    ap = parser("python -m golden", __doc__)
    add_export(ap, required=True, help="export directory (manifest.json + export.npz)")
    ap.add_argument("--inputs", help=".npy of integer inputs")
    ap.add_argument("--random", type=bounded_int(1, SAMPLES_MAX), default=8,
                    help="random inputs when --inputs is absent")
    ap.add_argument("--seed", type=seed, default=0)
    args = ap.parse_args(argv)
    net = load_export(args.export)
    if args.inputs:
        path = Path(args.inputs)
        try:
            x = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:    # EOFError: an empty or cut file
            raise UserError(f"{path}: cannot read inputs ({type(e).__name__}: {e})") from None
    else:
        x = random_inputs(net, args.random, args.seed)
    try:
        r = run(net, x)
    except ValueError as e:
        raise UserError(f"{args.inputs or 'inputs'}: {e}") from None
    for i, (s, m) in enumerate(zip(r.spikes, r.membranes)):
        hist = ", ".join(f"{v:+d}: {float((m == v).mean()):.3f}" for v in
                         ((-1, 0, 1) if net.membrane == "ternary" else (0, 1)))
        print(f"layer {i}: spike rate {float(s.mean()):.4f}; membrane levels {hist}")
    print(f"predictions: {r.predictions.tolist()}")
    return 0


def cli():
    """Console-script entry point (pyproject [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
