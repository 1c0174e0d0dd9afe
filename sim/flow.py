"""The whole path, end to end: ``python -m sim.flow --config slice_digits.yaml``

train (unless a checkpoint exists) -> export -> golden vs PyTorch -> hw.build ->
co-simulation on each simulator, comparing every layer's spikes and membranes at every
step, the classifier currents and the logits with the golden model. Prints samples run,
mismatches (must be 0), cycles per inference and golden vs PyTorch accuracy; exits 1 on
any mismatch. ``--random-weights`` runs an untrained random network on random inputs
(no torch needed), for configs without a dataset.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from project_config import UserError, cli_main, load_config
from project_config.schema import SIMULATORS


def _trained_case(cfg, args, run_dir: Path):
    """Checkpoint (training if needed), export, agreement report, test inputs."""
    from model_export.agreement import format_report, measure
    from model_export.format import save_export, load_export
    from model_export.from_torch import export_model
    from train.data import load_dataset
    from train.trainer import checkpoint_complete, load_checkpoint, train

    ckpt = run_dir / "model.pt"
    if args.retrain or not ckpt.exists():
        print(f"[1/5] training {cfg.name} -> {ckpt}")
        train(cfg, Path(cfg.path).read_text(), out_dir=str(run_dir), progress=True, threads=1)
    elif not checkpoint_complete(ckpt):
        print(f"[1/5] resuming the interrupted training in {ckpt}")
        train(cfg, Path(cfg.path).read_text(), out_dir=str(run_dir), progress=True, resume=True,
              threads=1)
    else:
        print(f"[1/5] using checkpoint {ckpt} (--retrain to train again)")
    model, cfg_ckpt = load_checkpoint(ckpt)
    export_dir = run_dir / "export"
    save_export(export_model(model, cfg_ckpt), export_dir)
    net = load_export(export_dir)
    print(f"[2/5] exported {export_dir}")
    _, _, x_test, y_test = load_dataset(cfg_ckpt)
    agreement = measure(model, cfg_ckpt, net, x_test, y_test)
    print("[3/5] " + format_report(agreement))
    n = min(args.samples, len(x_test))
    if x_test.ndim == 5:                       # event data: one frame per step already
        inputs = x_test[:n].astype(np.int64)
    else:                                      # static images, repeated over T
        inputs = np.broadcast_to(x_test[:n, None].astype(np.int64),
                                 (n, cfg.timesteps) + x_test.shape[1:]).copy()
    return export_dir, net, inputs, y_test[:n], agreement


def _random_case(cfg, args, run_dir: Path):
    from model_export.format import save_export, load_export
    from model_export.random_net import random_export, random_inputs
    export_dir = run_dir / "export_random"
    save_export(random_export(cfg, seed=args.seed), export_dir)
    net = load_export(export_dir)
    print(f"[1-3/5] random network (seed {args.seed}) exported to {export_dir}")
    return export_dir, net, random_inputs(net, args.samples, seed=args.seed + 1), None, None


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m sim.flow", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="config YAML (cwd, then configs/)")
    ap.add_argument("--samples", type=int, help="test samples to co-simulate (default sim.samples)")
    ap.add_argument("--simulators", help="comma list of icarus, verilator (default sim.simulators)")
    ap.add_argument("--retrain", action="store_true", help="train even if a checkpoint exists")
    ap.add_argument("--random-weights", action="store_true",
                    help="untrained random network and inputs instead of the trained model")
    ap.add_argument("--seed", type=int, default=7, help="seed for --random-weights")
    ap.add_argument("--verbose", action="store_true", help="show simulator output (else in simulator.log)")
    args = ap.parse_args(argv)

    cfg = load_config(args.config)
    args.samples = args.samples or cfg.sim["samples"]
    if args.samples < 1:
        raise UserError(f"--samples: {args.samples} must be >= 1")
    sims = args.simulators.split(",") if args.simulators else cfg.sim["simulators"]
    for s in sims:
        if s not in SIMULATORS:
            raise UserError(f"--simulators: {s!r} is not one of {list(SIMULATORS)}")
    run_dir = Path(cfg.train["out_dir"])
    work = Path("build") / cfg.name

    from hw.params import CoreParams
    params = CoreParams(cfg)        # a config without a hardware form stops here, in one line

    make_case = _random_case if args.random_weights else _trained_case
    export_dir, net, inputs, labels, agreement = make_case(cfg, args, run_dir)

    from hw.build import build
    from sim.runner import build_simulator, output_to, run_case
    import golden

    params.check_export(net, where=str(export_dir))
    hw_dir = build(args.config, work / "hw")
    print(f"[4/5] generated {hw_dir / 'snn_core.v'} (lint clean)")
    ref = golden.run(net, inputs)

    summary = {"config": cfg.path, "samples": int(len(inputs)), "simulators": {},
               "agreement": agreement}
    total_mismatches = 0
    for sim in sims:
        t0 = time.time()
        sim_dir = work / f"sim_{sim}"
        sim_dir.mkdir(parents=True, exist_ok=True)
        log = sim_dir / "simulator.log"
        log.unlink(missing_ok=True)
        stall = cfg.sim["stall_probability"]
        with output_to(None if args.verbose else log):
            runner = build_simulator(sim, hw_dir, sim_dir)
            r = run_case(runner, sim, sim_dir, config=args.config,
                         jobs=[{"export": export_dir, "inputs": inputs}],
                         stall_probability=stall, seed=cfg.sim["seed"], tag="stalls")
        entry = {"samples": r["samples"], "mismatches": r["mismatches"],
                 "cycles_with_stalls": float(np.mean(r["cycles"])),
                 "stall_probability": stall,
                 "rtl_predictions_equal_golden": bool(np.array_equal(r["predictions"],
                                                                     ref.predictions)),
                 "testbench_failed": r["testbench_failed"], "details": r["details"][:3]}
        if sim == "verilator":
            # Stall-free pass: the core's own cycle count, not the testbench's idle cycles.
            with output_to(None if args.verbose else log):
                r0 = run_case(runner, sim, sim_dir, config=args.config,
                              jobs=[{"export": export_dir, "inputs": inputs}],
                              stall_probability=0.0, seed=cfg.sim["seed"], tag="no_stalls")
            entry["mismatches"] += r0["mismatches"]
            entry["cycles_per_inference"] = float(np.mean(r0["cycles"]))
            entry["layer_cycles"] = [c / len(inputs) for c in r0["jobs"][0]["layer_cycles"]]
        entry["wall_s"] = round(time.time() - t0, 1)
        summary["simulators"][sim] = entry
        total_mismatches += entry["mismatches"] + int(entry["testbench_failed"])
        cyc = (f"{entry['cycles_per_inference']:.0f} cycles/inference, "
               if "cycles_per_inference" in entry else "")
        print(f"[5/5] {sim}: {entry['samples']} samples, {entry['mismatches']} mismatches, "
              f"{cyc}{entry['cycles_with_stalls']:.0f} cycles/inference with "
              f"{stall:.0%} random stalls, {entry['wall_s']} s")
        for d in entry["details"]:
            print(f"      sample {d['sample']}: {d['problems'][:3]}")
        if entry["mismatches"] or entry["testbench_failed"]:
            print(f"      simulator log: {log}")

    work_rows = golden.work_counts(net, inputs, params.lanes)
    measured = summary["simulators"].get("verilator", {}).get("layer_cycles")
    if measured:
        print("per layer, per inference (verilator, no stalls; ideal = nonzero inputs issued "
              "+ neuron-unit cycles):")
        print(f"  {'layer':>5} {'cycles':>9} {'ideal':>9} {'ratio':>6} {'synaptic ops':>13}")
        for row, cyc in zip(work_rows, measured):
            ideal = row["ideal_cycles"] / len(inputs)
            print(f"  {row['layer']:>5} {cyc:>9.0f} {ideal:>9.0f} {cyc / max(ideal, 1):>6.2f} "
                  f"{row['synaptic_ops'] / len(inputs):>13.0f}")
    summary["work_per_inference"] = [{k: (v / len(inputs) if k != "layer" else v)
                                      for k, v in row.items()} for row in work_rows]
    (work / "sim_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("-" * 72)
    print(f"samples run: {len(inputs)} per simulator ({', '.join(sims)})")
    print(f"mismatches:  {total_mismatches}")
    cycles = [e["cycles_per_inference"] for e in summary["simulators"].values()
              if "cycles_per_inference" in e]
    if cycles:
        print(f"cycles per inference: {cycles[0]:.0f}")
    if agreement:
        print(f"accuracy: golden {agreement['golden_accuracy']:.4f}, PyTorch "
              f"{agreement['torch_accuracy']:.4f} on {agreement['samples']} test samples; "
              f"identical predictions {agreement['prediction_agreement'] * 100:.2f}%")
    if labels is not None:
        same = all(e["rtl_predictions_equal_golden"] for e in summary["simulators"].values())
        print(f"co-simulated samples: RTL predictions {'equal' if same else 'DIFFER FROM'} "
              f"golden; accuracy {float((ref.predictions == labels).mean()):.4f} on these {len(labels)}")
    print(f"summary: {work / 'sim_summary.json'}")
    return 1 if total_mismatches else 0


if __name__ == "__main__":
    cli_main(main)
