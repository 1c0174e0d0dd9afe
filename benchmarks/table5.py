"""The paper's Table 5 ladder and Figure 4 membrane-precision sweep on the offline event digits.

``python -m benchmarks.table5 [--epochs N] [--seeds 5] [--sweep-seeds 1] [--out runs/table5]
[--workers 2] [--quick] [--finetune-epochs N] [--target-kept F] [--device cuda --amp]``

Trains, from ``configs/event_digits.yaml`` with per-run overrides:

- the ladder of Table 5 (``--seeds`` seeds each): FP SNN (float membrane, full-precision
  weights), Quant-SNN (ternary membrane, 4-bit PoT weights), SpQuant-SNN (Quant-SNN with
  spatial-channel pruning, fine-tuned from the same seed's Quant-SNN checkpoint under an
  operations budget, ``--target-kept``, ramped over ``--budget-ramp-epochs``, then
  ``--recovery-epochs`` with the masks frozen) and SpQuant-SNN with the learnable
  threshold (the first three with a fixed threshold);
- the membrane-precision sweep of Figure 4 (``--sweep-seeds`` seeds each): Quant-SNN with
  an int2, int3, int4 or float membrane (the ternary point is the Quant-SNN rung).

Every run trains on one thread in its own process (``--workers`` at a time) and writes into
``<out>/<rung>/seed<k>/``: ``model.pt``, ``metrics.json``, ``train.log``, ``export/`` (integer
rungs) and ``result.json`` (what is measured below). A run whose checkpoint is complete and
was trained with the same settings is not trained again; one that was interrupted resumes.

Measured per run: test accuracy (after the trainer's BN recalibration); total memory by the
paper's formula ``M = w_bits * N_w + u_bits * N_u + s_bits * N_s``; operations by the count
of docs/INTEGER_SPEC.md section 9 (computed outputs from computed input channels, in-map
taps) and by the earlier ``k * k * C_in * active output channels * active positions``,
with the masks measured on the test set; and, for every run
that exports, the fraction of test samples on which the golden integer model predicts the
same class as PyTorch. Writes ``<out>/table5.md``, ``<out>/table5.json`` and
``<out>/figure4_membrane_precision.png``.
"""
# The pieces: benchmarks.table5_plan (rungs, memory, targets, the plan of runs),
# benchmarks.table5_runs (one run, in a worker), benchmarks.table5_report (summary,
# markdown, plot) and benchmarks.runner (what the benchmarks share).
from __future__ import annotations

import sys
import time
from pathlib import Path

from benchmarks.runner import (add_common_options, apply_preset, benchmark_parser,
                               build_config, load_base_config, progress_line, run_all, write_json)
from benchmarks.table5_plan import (AGREEMENT_TARGET, BASE_CONFIG, DEFAULT_EPOCHS,
                                    DEFAULT_FINETUNE, DEFAULT_GATE_PENALTY, LABELS, LADDER,
                                    PRESETS, QUICK, SWEEP, memory_report, plan_runs,
                                    rung_overrides)
from benchmarks.table5_report import (evaluate_targets, format_markdown, format_text_table,
                                      plot_sweep, summarize, sweep_points)
from benchmarks.table5_runs import measure_activity, measure_agreement, run_one
from hw.memory_report import TERNARY_STORED_BITS
from project_config import UserError, cli_main
from project_config.cli import EPOCHS_MAX, bounded_float, bounded_int, comma_list, probability
from project_config.files import atomic_write

MB = 1e6      # bytes per MB, as the paper counts (hw.memory_report.megabytes); in the meta
MAX_SEEDS = 100   # seeds per rung: each is a training run (5 take about 22 min)
MAX_WIDTH = 4096  # channels per layer (--widths)

# The pieces, importable from here as before the split (the report program renders stored
# results with format_markdown and plot_sweep).
__all__ = ["AGREEMENT_TARGET", "BASE_CONFIG", "LABELS", "LADDER", "SWEEP", "build_config",
           "evaluate_targets", "format_markdown", "format_text_table", "main",
           "measure_activity", "measure_agreement", "memory_report", "parse_args", "plan_runs",
           "plot_sweep", "rung_overrides", "run_one", "summarize", "sweep_points"]


def _progress(i, n, r):
    return progress_line(i, n, f"{r['rung']}/seed{r['seed']}", r, _describe)


def _describe(r):
    ag = r["agreement"]
    ag_s = (f", golden agreement {100 * ag['prediction_agreement']:.2f}%"
            if ag["status"] == "ok" else "")
    return (f"accuracy {100 * r['accuracy']:.2f}%, ops {r['activity']['ops_fraction']:.3f} of "
            f"dense{ag_s} ({r['trained']}, {r['elapsed_s']:.0f} s)")


def parse_args(argv):
    ap = benchmark_parser(
        "python -m benchmarks.table5", __doc__,
        f"Default: 5 seeds per ladder rung, 1 per sweep point (24 runs) on event digits with "
        f"5 recordings per digit (6735 training, 2250 test samples): FP, Quant-SNN and the "
        f"sweep {DEFAULT_EPOCHS} epochs from scratch; the SpQuant rungs fine-tuned "
        f"{DEFAULT_FINETUNE['finetune_epochs']} epochs from the same seed's Quant-SNN "
        f"checkpoint (operations budget ramped, then {DEFAULT_FINETUNE['recovery_epochs']} recovery epochs with the "
        "masks frozen), "
        "after it. Resumes: finished runs with the same settings are reused, interrupted "
        "ones continue.")
    ap.add_argument("--epochs", type=bounded_int(1, EPOCHS_MAX), default=None,
                    help=f"training epochs per run (default {DEFAULT_EPOCHS}; 1 with --quick)")
    ap.add_argument("--seeds", type=bounded_int(1, MAX_SEEDS), default=None,
                    help="seeds per ladder rung (default 3; 1 with --quick)")
    ap.add_argument("--sweep-seeds", type=bounded_int(0, MAX_SEEDS), default=None,
                    help="seeds per membrane-sweep point (default 1)")
    add_common_options(ap, "table5",
                       quick_help=f"smoke run: {QUICK['epochs']} epoch, {QUICK['max_train']} "
                                  f"training and {QUICK['max_test']} test samples, 1 seed",
                       workers_help="trainings in parallel, one thread each (default 2)")
    ap.add_argument("--gate-penalty", type=bounded_float(0.0, 100.0), default=DEFAULT_GATE_PENALTY,
                    help="pruning.gate_penalty of the SpQuant rungs (loss weight of the "
                         f"operations budget; default {DEFAULT_GATE_PENALTY})")
    ap.add_argument("--recordings", type=bounded_int(1, 64), default=None,
                    help="event recordings per digit image (distinct saccades; default 5: "
                         "2250 test samples)")
    ap.add_argument("--finetune-epochs", type=bounded_int(1, EPOCHS_MAX), default=None,
                    help="epochs of the SpQuant rungs, fine-tuned from the same seed's "
                         f"Quant-SNN (default {DEFAULT_FINETUNE['finetune_epochs']})")
    ap.add_argument("--recovery-epochs", type=bounded_int(0, EPOCHS_MAX), default=None,
                    help="last fine-tuning epochs with the masks frozen and no penalty "
                         f"(default {DEFAULT_FINETUNE['recovery_epochs']})")
    ap.add_argument("--budget-ramp-epochs", type=bounded_int(0, EPOCHS_MAX), default=None,
                    help="epochs over which the kept-operations target ramps from 1 "
                         f"(default {DEFAULT_FINETUNE['budget_ramp_epochs']})")
    ap.add_argument("--target-kept", type=probability, default=None,
                    help="operations budget: kept fraction of the operations "
                         f"(docs/INTEGER_SPEC.md section 9; default "
                         f"{DEFAULT_FINETUNE['target_kept']})")
    ap.add_argument("--spatial-first-layer", action="store_true",
                    help="SpQuant rungs: prune layer 0's positions too "
                         "(pruning.spatial_first_layer; by default layer 0, the sensor's "
                         "input, is not pruned, and its operations are outside the budget's reach)")
    ap.add_argument("--widths", type=comma_list(bounded_int(1, MAX_WIDTH)), default=None,
                    help="output channels of the conv layers, comma-separated, one per layer "
                         "of the base config, in every rung (default: the config's)")
    ap.add_argument("--only", type=comma_list(str), default=None,
                    help="comma-separated rungs to run: " + ", ".join(LABELS))
    args = ap.parse_args(argv)
    apply_preset(args, PRESETS, "table5")
    for r in args.only or ():
        if r not in LABELS:
            raise UserError(f"--only: {r!r} is not one of {', '.join(LABELS)}")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    base_path, base_raw = load_base_config(args.config)
    jobs = [dict(j, device=args.device, amp=args.amp) for j in plan_runs(args, base_raw, base_path)]
    out = Path(args.out)
    print(f"table5: {len(jobs)} runs, {args.epochs} epochs each, {args.workers} workers -> {out}")
    t0 = time.time()
    # Two phases: the runs trained from scratch, then those fine-tuned from them.
    first = [j for j in jobs if not j.get("after")]
    then = [j for j in jobs if j.get("after")]
    done = run_all(first, run_one, args.workers, _progress)
    done += run_all(then, run_one, args.workers, _progress)
    order = {id(j): k for k, j in enumerate(jobs)}
    results = [r for _, r in sorted(zip([order[id(j)] for j in first + then], done),
                                    key=lambda p: p[0])]
    wall = time.time() - t0
    summary = summarize(results)
    targets = evaluate_targets(summary)
    meta = {"argv": " ".join(argv), "base_config": str(base_path), "epochs": args.epochs,
            "seeds": args.seeds, "sweep_seeds": args.sweep_seeds, "workers": args.workers,
            "quick": args.quick, "max_train": args.max_train, "max_test": args.max_test,
            "gate_penalty": args.gate_penalty, "finetune_epochs": args.finetune_epochs,
            "recovery_epochs": args.recovery_epochs, "target_kept": args.target_kept,
            "budget_ramp_epochs": args.budget_ramp_epochs, "recordings": args.recordings,
            "spatial_first_layer": args.spatial_first_layer,
            "widths": list(args.widths) if args.widths else None,
            "wall_s": wall, "runs": len(results),
            "train_wall_s": sum(r.get("train_wall_s") or 0 for r in results),
            "ternary_bits": TERNARY_STORED_BITS, "mb_bytes": MB,
            "agreement_target": AGREEMENT_TARGET}
    print()
    print(format_text_table(summary, targets))
    payload = {"meta": meta, "summary": summary, "targets": targets,
               "sweep": sweep_points(summary),
               "runs": [{k: v for k, v in r.items() if k != "settings"} for r in results]}
    write_json(out / "table5.json", payload)
    atomic_write(out / "table5.md", format_markdown(summary, targets, meta))
    wrote = [out / "table5.md", out / "table5.json"]
    if plot_sweep(summary, out / "figure4_membrane_precision.png"):
        wrote.append(out / "figure4_membrane_precision.png")
    print(f"\nwrote {', '.join(map(str, wrote))} ({wall / 60:.1f} min)")
    failed = [r for r in results if not r.get("ok")]
    for r in failed:
        print(f"failed: {r['rung']}/seed{r['seed']}: {r.get('error')}", file=sys.stderr)
    return 1 if failed else 0


def cli():
    """Console-script entry point (pyproject [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
