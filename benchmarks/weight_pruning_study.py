"""Unstructured weight pruning x PoT weight quantization on the offline event digits.

``python -m benchmarks.weight_pruning_study [--quick | --full] [--epochs N] [--out DIR]``

After Schaefer et al. (2023), "The Hardware Impact of Quantization and Pruning for Weights
in Spiking Neural Networks": on ``configs/event_digits.yaml`` (ternary membrane, no
runtime pruning), for PoT weight bits b in {2, 4, 8} and unstructured magnitude sparsity s
in {0, 0.5, 0.7, 0.8, 0.9}:

- **cumulative**: train b once dense, then prune by magnitude to 0.5, fine-tune, prune
  further to 0.7 (the earlier mask kept), fine-tune, ... ;
- **joint**: train from scratch with the target sparsity's mask set at initialization
  (by the initial weights' magnitudes) and held through training, quantized throughout
  (a subset of points by default, all with ``--full``).

Each point records test accuracy (PyTorch, after BN recalibration); weight memory three
ways (dense storage b x all weights; the paper-style sparse count b x nonzero codes,
which ignores the index cost; and a bitmap format, 1 bit per weight + b per nonzero);
and energy per inference by Equation 31 (``efficiency.energy``) from operation counts on
the test set. For 2- and 4-bit weights the counts are golden's (``golden.work_counts``
on the integer export, completed with weight-aware counts by ``efficiency.counts``).
8-bit PoT codes cannot be exported (K = 126 needs ~140-bit accumulators; the integer
datapath stops at 62), so 8-bit points use the same count definitions on the PyTorch
model's spikes (a float-side count); for 2 and 4 bits both are computed and compared.

Writes ``<out>/results.json``, ``<out>/weight_pruning_study.md``, ``<out>/accuracy_vs_energy.png``
and ``<out>/accuracy_vs_memory.png`` (Pareto fronts marked), and the integer export of
every 2- and 4-bit point under ``<out>/exports/``.
"""
# The pieces: benchmarks.weight_pruning_runs (one job, in a worker: training, pruning,
# measurements), benchmarks.weight_pruning_report (rows, Pareto fronts, markdown, plots) and
# benchmarks.runner (what the benchmarks share).
from __future__ import annotations

import sys
import time
from pathlib import Path

from benchmarks.runner import (BASE_CONFIG, add_common_options, apply_preset, benchmark_parser,
                               load_base_config, progress_line, read_result, run_all)
from benchmarks.weight_pruning_report import (findings, flat_points, format_markdown, pareto,
                                              plot, write_outputs, write_plots)
from benchmarks.weight_pruning_runs import (EXPORTABLE_BITS, energy_report, fit, measure_point,
                                            run_job, study_config, weight_memory)
from project_config import UserError, cli_main
from project_config.cli import (EPOCHS_MAX, bounded_float, bounded_int, comma_list, positive_int,
                                seed)
from train.data import load_dataset

BITS = (2, 4, 8)
SPARSITIES = (0.5, 0.7, 0.8, 0.9)                # pruned levels after the dense point
# Reduced default (about 10 minutes on 2 idle cores with 2 workers, see --help).
DEFAULT = {"epochs": 8, "finetune_epochs": 2, "joint": ((2, 0.8), (4, 0.8), (4, 0.9), (8, 0.8)),
           "count_samples": None, "sparsities": SPARSITIES}
FULL = {"epochs": 15, "finetune_epochs": 3,
        "joint": tuple((b, s) for b in BITS for s in SPARSITIES), "count_samples": None,
        "sparsities": SPARSITIES}
QUICK = {"epochs": 1, "finetune_epochs": 1, "joint": ((4, 0.9), (8, 0.9)),
         "sparsities": (0.5, 0.9), "max_train": 128, "max_test": 64, "count_samples": None}
PRESETS = {"quick": QUICK, "default": DEFAULT, "full": FULL}
FINETUNE_LR = 1e-3

# The pieces, importable from here as before the split (the report program renders stored
# results with flat_points, format_markdown and write_plots).
__all__ = ["BASE_CONFIG", "BITS", "EXPORTABLE_BITS", "SPARSITIES", "energy_report", "findings",
           "fit", "flat_points", "format_markdown", "main", "measure_point", "pareto",
           "parse_args", "plan_jobs", "plot", "report_only", "run_job", "study_config",
           "weight_memory", "write_outputs", "write_plots"]


def plan_jobs(args, base_raw, base_path) -> list:
    """One chain job per bit width (dense, then the cumulative levels) and one job per joint
    point, longest first."""
    jobs = []
    common = {"seed": args.seed, "max_train": args.max_train, "max_test": args.max_test,
              "count_samples": args.count_samples, "scope": args.scope, "out": args.out}
    for b in args.bits:
        _, text = study_config(base_raw, b, str(base_path))
        where = f"{base_path} [{b}-bit]"
        jobs.append(dict(common, name=f"{b}-bit cumulative", kind="chain", config_text=text,
                         where=where, epochs=args.epochs, finetune_epochs=args.finetune_epochs,
                         finetune_lr=args.finetune_lr, sparsities=list(args.sparsities)))
    for b, s in args.joint:
        if b not in args.bits:
            continue
        _, text = study_config(base_raw, b, str(base_path))
        jobs.append(dict(common, name=f"{b}-bit joint {s}", kind="joint", config_text=text,
                         where=f"{base_path} [{b}-bit]", epochs=args.epochs, sparsity=s))
    # Longest first, so two workers finish together.
    return sorted(jobs, key=lambda j: -(j["epochs"] + len(j.get("sparsities", ()))
                                       * j.get("finetune_epochs", 0)))



def _progress(i, n, r):
    return progress_line(i, n, r["job"], r, _describe)


def _describe(r):
    accs = ", ".join(f"s={p['target_sparsity']:.1f}: {100 * p['accuracy']:.1f}%"
                     for p in r["points"])
    return f"{accs} ({r['wall_s']:.0f} s)"


def _joint_list(text: str):
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            b, s = item.split(":")
            out.append((int(b), float(s)))
        except ValueError:
            raise UserError(f"--joint: {item!r} is not BITS:SPARSITY (e.g. 4:0.8)") from None
    return tuple(out)




def _parser():
    ap = benchmark_parser(
        "python -m benchmarks.weight_pruning_study", __doc__,
        f"Default (reduced): {DEFAULT['epochs']} dense epochs per bit width, "
        f"{DEFAULT['finetune_epochs']} fine-tune epochs per sparsity level, joint points "
        f"{', '.join(f'{b}:{s}' for b, s in DEFAULT['joint'])} (7 jobs, 2 workers). "
        f"--full: {FULL['epochs']} / {FULL['finetune_epochs']} epochs, joint at every "
        "bits x sparsity (15 jobs). Counts always on the whole test split. One epoch "
        "of the training split takes about 5 s on one idle core; see the markdown for "
        "the measured wall time.")
    add_common_options(ap, "weight_pruning_study",
                       quick_help="tiny smoke run (128 training, 64 test samples, 1 epoch, "
                                  "sparsities 0.5 and 0.9)",
                       workers_help="jobs in parallel, one thread each")
    ap.add_argument("--full", action="store_true", help="the whole grid with longer training")
    ap.add_argument("--epochs", type=bounded_int(1, EPOCHS_MAX), default=None,
                    help="dense and joint training epochs")
    ap.add_argument("--finetune-epochs", type=bounded_int(0, EPOCHS_MAX), default=None,
                    help="fine-tune epochs after each cumulative pruning level")
    # train.lr's range (project_config.schema)
    ap.add_argument("--finetune-lr", type=bounded_float(1e-9, 10.0), default=FINETUNE_LR,
                    help=f"fine-tune learning rate (default {FINETUNE_LR})")
    ap.add_argument("--bits", type=comma_list(int), default=BITS,
                    help="PoT weight bits, comma-separated (default 2,4,8)")
    ap.add_argument("--sparsities", type=comma_list(bounded_float(0.0, 1.0)), default=None,
                    help="cumulative levels (default 0.5,0.7,0.8,0.9)")
    ap.add_argument("--joint", type=_joint_list, default=None,
                    help="joint points as BITS:SPARSITY,... (default: a subset; all with --full)")
    ap.add_argument("--scope", choices=("layer", "global"), default="layer",
                    help="magnitude ranking per layer (same sparsity in every layer) or global")
    ap.add_argument("--count-samples", type=positive_int, default=None,
                    help="test samples for the operation counts (default: the whole test split)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the markdown and plots from <out>/results.json, no training")
    ap.add_argument("--seed", type=seed, default=0)
    return ap


def parse_args(argv):
    args = _parser().parse_args(argv)
    apply_preset(args, PRESETS, "weight_pruning_study")
    for b in args.bits:
        if b not in BITS:
            raise UserError(f"--bits: {b} is not one of {list(BITS)}")
    for b, _ in args.joint:
        if b not in BITS:
            raise UserError(f"--joint: bits {b} is not one of {list(BITS)}")
    for s in list(args.sparsities) + [s for _, s in args.joint]:
        if not 0.0 < s < 1.0:
            raise UserError(f"sparsity {s} is not in (0, 1)")
    if list(args.sparsities) != sorted(set(args.sparsities)):
        raise UserError("--sparsities: must increase (cumulative pruning only adds)")
    return args


def report_only(out: Path) -> int:
    """Rewrite the markdown and plots from an existing ``<out>/results.json``."""
    payload = read_result(out / "results.json", "a study result", keys=("meta", "details"))
    meta, points = payload["meta"], payload["details"]
    wrote = write_outputs(out, flat_points(points), points, meta, payload.get("failures", ()))
    print(f"wrote {', '.join(map(str, wrote))}")
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.report_only:
        return report_only(Path(args.out))
    base_path, base_raw = load_base_config(args.config)
    cfg, _ = study_config(base_raw, args.bits[0], str(base_path))
    jobs = plan_jobs(args, base_raw, base_path)
    out = Path(args.out)
    print(f"weight_pruning_study: {len(jobs)} jobs, {args.workers} workers -> {out}")
    t0 = time.time()
    results = run_all(jobs, run_job, args.workers, _progress)
    wall = time.time() - t0
    points = [p for r in results for p in r["points"]]
    rows = flat_points(points)
    failed = [f"{r['job']}: {r['error']}" for r in results if not r["ok"]]
    n_test = len(load_dataset(cfg)[2]) if args.max_test is None else args.max_test
    meta = {"argv": " ".join(argv), "base_config": str(base_path), "epochs": args.epochs,
            "finetune_epochs": args.finetune_epochs, "finetune_lr": args.finetune_lr,
            "bits": list(args.bits), "sparsities": list(args.sparsities),
            "joint": [list(j) for j in args.joint], "scope": args.scope, "seed": args.seed,
            "quick": args.quick, "full": args.full, "workers": args.workers,
            "max_train": args.max_train, "max_test": args.max_test, "test_samples": n_test,
            "count_samples": args.count_samples or n_test, "lanes": cfg.hardware["lanes"],
            "wall_s": wall, "job_wall_s": {r["job"]: r["wall_s"] for r in results},
            "failed": failed, "energy_table": "BitNet Table 2, 7 nm (efficiency.energy)"}
    wrote = write_outputs(out, rows, points, meta, [r for r in results if not r["ok"]])
    print(f"wrote {', '.join(map(str, wrote))} ({wall / 60:.1f} min)")
    for f in failed:
        print(f"failed: {f}", file=sys.stderr)
    return 1 if failed else 0


def cli():
    """Console-script entry point (pyproject [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
