"""CLI: python -m train --config slice_digits.yaml [--epochs N] [--out DIR] [--seed S] [--threads N]
[--resume] [--device cpu|cuda] [--amp]. Under ``torchrun --nproc_per_node N -m train ...`` it trains
with DistributedDataParallel (gloo on CPU, nccl on CUDA); only rank 0 writes files."""
from __future__ import annotations

import os
from pathlib import Path

from project_config import UserError, cli_main, load_config
from project_config.cli import (EPOCHS_MAX, add_config, add_out, bounded_int, parser, seed,
                                torch_device)
from project_config.files import check_output_dir

from .trainer import train


def main(argv=None):
    ap = parser("python -m train", "Train a SpQuant spiking network from a config.")
    add_config(ap, help="config file (path or name in configs/)")
    ap.add_argument("--epochs", type=bounded_int(1, EPOCHS_MAX), default=None,
                    help="override train.epochs")
    add_out(ap, "output folder (default: train.out_dir)")
    ap.add_argument("--seed", type=seed, default=None, help="override train.seed")
    ap.add_argument("--threads", type=bounded_int(1, 1024), default=1,
                    help="torch CPU threads (default 1: fastest for small nets, robust to a busy machine)")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    ap.add_argument("--resume", action="store_true",
                    help="continue the run in the output folder (its model.pt) up to --epochs")
    ap.add_argument("--device", type=torch_device, default="cpu",
                    help="torch device: cpu (default), cuda or cuda:N")
    ap.add_argument("--amp", action="store_true",
                    help="mixed precision training (float16 on cuda; bfloat16 on cpu, a test only)")
    args = ap.parse_args(argv)

    cfg = load_config(args.config)
    try:
        text = Path(cfg.path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{cfg.path}: cannot read ({e})") from None
    # The output folder is checked before training, not found unusable after it.
    check_output_dir(args.out or cfg.train["out_dir"],
                     "--out" if args.out else f"{cfg.path}: train.out_dir")
    _, metrics = train(cfg, text, epochs=args.epochs, out_dir=args.out, seed=args.seed,
                       progress=not args.no_progress, threads=args.threads,
                       resume=args.resume, device=args.device, amp=args.amp)
    out = Path(args.out or cfg.train["out_dir"])
    if metrics["world_size"] > 1 and os.environ.get("RANK", "0") != "0":
        return 0      # rank 0 reports (and wrote the files)
    print(f"final test accuracy: {metrics['final_test_accuracy']:.4f} "
          f"({metrics['test_samples']} samples, {metrics['wall_time_s']:.1f} s)")
    print(f"wrote {out / 'model.pt'} and {out / 'metrics.json'}")
    return 0


def cli():
    """Console-script entry point (pyproject [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
