"""The Table 5 ladder on the full-width VGG-9 (64 to 512 channels) on event digits.

``python -m benchmarks.vgg9_ladder [--config vgg9_events.yaml] [--only quant,spquant_lvth]
[--quant-epochs 5] [--out DIR] [--device cpu|cuda] [--amp]``

On a GPU, the full 2 x 48 x 48 VGG-9 (T = 10, 5 recordings per digit):
``python -m benchmarks.vgg9_ladder --config vgg9_events48.yaml --quant-epochs 30 --device
cuda --amp``, then ``python -m sim.flow --config vgg9_events48.yaml`` co-simulates it.

The base config (``configs/vgg9_events.yaml``) *is* the last rung, SpQuant-SNN with the
learnable threshold, fine-tuned from the Quant-SNN checkpoint (``train.init_from``) under
an operations budget, with a recovery phase; its run is stored in the config's
``train.out_dir`` with the config's text verbatim, so ``make sim CONFIG=vgg9_events``
co-simulates exactly that checkpoint. The other rungs are overrides of it:

- ``quant``: Quant-SNN (ternary membrane, 4-bit PoT weights, fixed threshold), from scratch,
  ``QUANT_EPOCHS`` epochs, no pruning;
- ``fp``: the same with a float membrane and full-precision weights;
- ``spquant``: the last rung with a fixed threshold.

Runs are stored and resumable as table5's are (``benchmarks.runner``; ``<out>/<rung>/seed0/``);
the order is quant, spquant_lvth, fp, spquant, so that a trained SpQuant VGG-9 exists first.
Writes ``<out>/vgg9_ladder.json`` (table5's result format: ``python -m reports.efficiency
--table5 ...`` renders it) and ``<out>/vgg9_ladder.md``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from benchmarks.runner import (add_device_options, benchmark_parser, load_base_config, progress_line,
                               run_all, write_json)
from benchmarks.table5_plan import LABELS, pruning_is_on
from benchmarks.table5_report import evaluate_targets, format_markdown, summarize
from benchmarks.table5_runs import run_one
from benchmarks.runner import build_config
from project_config import UserError, cli_main
from project_config.cli import EPOCHS_MAX, add_config, add_out, bounded_int, comma_list
from project_config.files import atomic_write
from project_config.schema import config_from_dict

BASE = "vgg9_events.yaml"
QUANT_EPOCHS = 5
ORDER = ("quant", "spquant_lvth", "fp", "spquant")
# Overrides of the base (the spquant_lvth rung) per rung; None = the base file verbatim.
_NO_PRUNING = {"spatial_ratio": 0.0, "channel_gate_threshold": 0.0, "gate_penalty": 0.0,
               "target_kept": 0.0, "budget_ramp_epochs": 0}
_FROM_SCRATCH = {"epochs": QUANT_EPOCHS, "lr": 0.002, "init_from": "", "recovery_epochs": 0}
RUNGS = {
    "quant": {"quant": {"learnable_vth": False}, "pruning": _NO_PRUNING, "train": _FROM_SCRATCH},
    "fp": {"quant": {"membrane": "float", "weight_bits": None, "learnable_vth": False},
           "pruning": _NO_PRUNING, "train": _FROM_SCRATCH},
    "spquant": {"quant": {"learnable_vth": False}},
    "spquant_lvth": None,
}


def plan(base_path: Path, base_raw: dict, out: Path, only=None,
         quant_epochs: int = QUANT_EPOCHS) -> list:
    """One job per rung (seed 0), in :data:`ORDER`; the rungs from scratch train
    ``quant_epochs`` epochs."""
    text = base_path.read_text()
    jobs = []
    for rung in ORDER:
        if only and rung not in only:
            continue
        where = f"{base_path} [vgg9_ladder {rung}]"
        if RUNGS[rung] is None:
            cfg, cfg_text = config_from_dict(base_raw, where=where), text
            run_dir = Path(cfg.train["out_dir"])
        else:
            run_dir = out / rung / "seed0"
            train = dict(RUNGS[rung].get("train", {}), out_dir=str(run_dir))
            if "epochs" in train:
                train["epochs"] = quant_epochs
            cfg, cfg_text = build_config(base_raw, dict(RUNGS[rung], train=train), where)
        settings = {"config_text": cfg_text, "epochs": cfg.train["epochs"], "seed": 0,
                    "max_train": None, "max_test": None}
        jobs.append({"rung": rung, "seed": 0, "label": LABELS[rung], "out_dir": str(run_dir),
                     "where": where, "settings": settings, "pruning_on": pruning_is_on(cfg)})
    return jobs


def _describe(r):
    return (f"accuracy {100 * r['accuracy']:.2f}%, ops {r['activity']['ops_fraction']:.3f} "
            f"of dense ({r['trained']}, {r['elapsed_s']:.0f} s)")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = benchmark_parser("python -m benchmarks.vgg9_ladder", __doc__,
                          "One seed per rung, one thread; about 2 min per epoch of the "
                          "1347-sample split on one core (3 s per batch of 32).")
    add_config(ap, default=BASE, help="base config (the spquant_lvth rung)")
    add_out(ap, "output folder (default: where the config's train.init_from points, "
                "<out>/quant/seed0/model.pt)")
    add_device_options(ap)
    ap.add_argument("--only", type=comma_list(str), default=None,
                    help="comma-separated rungs: " + ", ".join(ORDER))
    ap.add_argument("--quant-epochs", type=bounded_int(1, EPOCHS_MAX), default=QUANT_EPOCHS,
                    help=f"epochs of the rungs from scratch, FP and Quant-SNN (default "
                         f"{QUANT_EPOCHS}); the SpQuant rungs train the config's train.epochs")
    args = ap.parse_args(argv)
    for r in args.only or ():
        if r not in RUNGS:
            raise UserError(f"--only: {r!r} is not one of {', '.join(ORDER)}")
    base_path, base_raw = load_base_config(args.config)
    init = config_from_dict(base_raw, where=str(base_path)).train["init_from"]
    if not init and not args.out:
        raise UserError(f"{base_path}: train.init_from: empty; the last rung fine-tunes from "
                        "the ladder's Quant-SNN checkpoint (<out>/quant/seed0/model.pt)")
    out = Path(args.out) if args.out else Path(init).parent.parent.parent
    if init and Path(init) != out / "quant" / "seed0" / "model.pt":
        raise UserError(f"{base_path}: train.init_from: {init} is not the ladder's Quant-SNN "
                        f"checkpoint {out / 'quant' / 'seed0' / 'model.pt'} (--out {out})")
    jobs = [dict(j, device=args.device, amp=args.amp)
            for j in plan(base_path, base_raw, out, args.only, args.quant_epochs)]
    print(f"vgg9_ladder: {len(jobs)} runs -> {out}")
    t0 = time.time()
    results = run_all(jobs, run_one, 1, lambda i, n, r: progress_line(
        i, n, r["rung"], r, _describe))
    wall = time.time() - t0
    summary = summarize(results)
    targets = evaluate_targets(summary)
    meta = {"argv": " ".join(argv), "base_config": str(base_path), "epochs": None,
            "seeds": 1, "workers": 1, "wall_s": wall, "runs": len(results),
            "train_wall_s": sum(r.get("train_wall_s") or 0 for r in results),
            "network": "vgg9_events", "quick": False,
            "command": "python -m benchmarks.vgg9_ladder",
            "title": "Table 5 ladder on VGG-9 (64 to 512 channels), event digits 2x16x16, "
                     "T = 8 (1 seed per rung)"}
    payload = {"meta": meta, "summary": summary, "targets": targets, "sweep": [],
               "runs": [{k: v for k, v in r.items() if k != "settings"} for r in results]}
    write_json(out / "vgg9_ladder.json", payload)
    atomic_write(out / "vgg9_ladder.md", format_markdown(summary, targets, meta))
    print(f"wrote {out / 'vgg9_ladder.json'} ({wall / 60:.1f} min)")
    failed = [r for r in results if not r.get("ok")]
    for r in failed:
        print(f"failed: {r['rung']}: {r.get('error')}", file=sys.stderr)
    return 1 if failed else 0


def cli():
    """Console-script entry point."""
    cli_main(main)


if __name__ == "__main__":
    cli()
