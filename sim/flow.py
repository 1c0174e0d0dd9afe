"""The whole path, end to end: ``python -m sim.flow --config slice_digits.yaml``

train (unless a checkpoint exists) -> export -> golden vs PyTorch -> hw.build ->
co-simulation on each simulator, comparing every layer's spikes and membranes at every
step, the classifier currents and the logits with the golden model. Prints samples run,
mismatches (must be 0), cycles per inference and golden vs PyTorch accuracy; exits 1 on
any mismatch. ``--random-weights`` (or ``sim.network: random``) runs an untrained random
network on random inputs (no torch needed), its thresholds calibrated so that every layer
spikes at a realistic rate (sim.calibrate).

Large networks (configs/vgg9.yaml) set ``sim.preload`` (parameters from memory images
instead of the param stream), ``sim.records: signature`` (one CRC-32 and spike count per
layer and step instead of a record per position and group) and ``stall_probability: 0``
(one stall-free pass). The per-layer table compares the cycles with the ideal
(golden.work_counts) and with the core built without skipping (closed form,
CoreParams.skip_disabled_cycles).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from project_config import UserError, cli_main, load_config
from project_config.schema import SIMULATORS


def trained_case(cfg, args, run_dir: Path):
    """Checkpoint (training if needed), export, agreement report, test inputs."""
    from model_export.agreement import format_report, measure
    from model_export.format import save_export, load_export
    from model_export.from_torch import export_model
    from train.data import load_dataset
    from train.trainer import (checkpoint_complete, checkpoint_config_matches, load_checkpoint,
                               train)

    ckpt = run_dir / "model.pt"
    config_text = Path(cfg.path).read_text()
    if args.retrain or not ckpt.exists():
        print(f"[1/5] training {cfg.name} -> {ckpt}")
        train(cfg, config_text, out_dir=str(run_dir), progress=True, threads=1)
    elif not checkpoint_config_matches(ckpt, config_text):
        print(f"[1/5] {cfg.path} has changed since {ckpt} was trained: training again")
        train(cfg, config_text, out_dir=str(run_dir), progress=True, threads=1)
    elif not checkpoint_complete(ckpt):
        print(f"[1/5] resuming the interrupted training in {ckpt}")
        train(cfg, config_text, out_dir=str(run_dir), progress=True, resume=True,
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


SPIKE_RATE = 0.15        # random networks: every layer's target rate (sim.calibrate)


def random_case(cfg, args, run_dir: Path):
    from model_export.format import save_export, load_export
    from model_export.random_net import random_export, random_inputs
    from sim.calibrate import add_runtime_pruning, calibrated_export
    export_dir = run_dir / "export_random"
    inputs = random_inputs(random_export(cfg, seed=args.seed), args.samples, seed=args.seed + 1)
    net = calibrated_export(cfg, inputs, args.seed, rate=SPIKE_RATE)
    save_export(add_runtime_pruning(cfg, net, inputs, args.seed), export_dir)
    net = load_export(export_dir)
    pruning = (" and runtime pruning set from its membranes"
               if any(l.spatial_pruning or l.gated for l in net.layers) else "")
    print(f"[1-3/5] random network (seed {args.seed}, thresholds calibrated to "
          f"{SPIKE_RATE:.0%} spikes per layer{pruning}) exported to {export_dir}")
    return export_dir, net, inputs, None, None


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
    ap.add_argument("--records", choices=("full", "signature"),
                    help="record mode (default sim.records)")
    ap.add_argument("--preload", action=argparse.BooleanOptionalAction, default=None,
                    help="parameters from memory images, not the param stream (default sim.preload)")
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

    t_start = time.time()
    make_case = random_case if (args.random_weights or cfg.sim["network"] == "random") else trained_case
    export_dir, net, inputs, labels, agreement = make_case(cfg, args, run_dir)

    from hw.build import build
    from sim.calibrate import spike_rates
    from sim.runner import build_simulator, output_to, preloaded_sha256, run_case
    import golden

    records = args.records or cfg.sim["records"]
    preload = cfg.sim["preload"] if args.preload is None else args.preload
    params.check_export(net, where=str(export_dir))
    t0 = time.time()
    hw_dir = build(args.config, work / "hw", export=export_dir if preload else None)
    t_hw = time.time() - t0
    vsize = (hw_dir / "snn_core.v").stat().st_size
    print(f"[4/5] generated {hw_dir / 'snn_core.v'} ({vsize / 1e6:.2f} MB, lint clean"
          + (", parameters preloaded from memory images" if preload else "") + f"), {t_hw:.1f} s")
    ref = golden.run(net, inputs)
    rates = spike_rates(net, ref)
    print("      golden spike rates per layer (unmasked neurons): "
          + " ".join(f"{r:.3f}" for r in rates))
    pruned = {}
    if any(l.spatial_pruning or l.gated for l in net.layers):
        pruned = {"positions_computed": [float(p.mean()) for p in ref.positions],
                  "channels_open": [float(c.mean()) for c in ref.channels]}
        print("      runtime pruning (golden), computed fraction per layer: positions "
              + " ".join(f"{v:.2f}" for v in pruned["positions_computed"]) + "; channels "
              + " ".join(f"{v:.2f}" for v in pruned["channels_open"]))

    summary = {"config": cfg.path, "samples": int(len(inputs)), "simulators": {},
               "agreement": agreement, "records": records, "preload": preload,
               "spike_rates": rates, "runtime_pruning": pruned, "verilog_bytes": vsize, "hw_build_s": round(t_hw, 1)}
    total_mismatches = 0
    for sim in sims:
        t0 = time.time()
        sim_dir = work / f"sim_{sim}"
        sim_dir.mkdir(parents=True, exist_ok=True)
        log = sim_dir / "simulator.log"
        log.unlink(missing_ok=True)
        stall = cfg.sim["stall_probability"]
        common = dict(config=args.config, jobs=[{"export": export_dir, "inputs": inputs}],
                      seed=cfg.sim["seed"], records=records, preloaded=preloaded_sha256(hw_dir))
        with output_to(None if args.verbose else log):
            runner = build_simulator(sim, hw_dir, sim_dir)
            t_compile = time.time() - t0
            r = run_case(runner, sim, sim_dir, stall_probability=stall,
                         tag="stalls" if stall else "no_stalls", **common)
        entry = {"samples": r["samples"], "mismatches": r["mismatches"],
                 "cycles_with_stalls": float(np.mean(r["cycles"])),
                 "stall_probability": stall,
                 "rtl_predictions_equal_golden": bool(np.array_equal(r["predictions"],
                                                                     ref.predictions)),
                 "testbench_failed": r["testbench_failed"], "details": r["details"][:3],
                 "compile_s": round(t_compile, 1)}
        if sim == "verilator":
            r0 = r
            if stall:
                # Stall-free pass: the core's own cycle count, not the testbench's idle cycles.
                with output_to(None if args.verbose else log):
                    r0 = run_case(runner, sim, sim_dir, stall_probability=0.0, tag="no_stalls",
                                  **common)
                entry["mismatches"] += r0["mismatches"]
                entry["testbench_failed"] |= r0["testbench_failed"]
            entry["cycles_per_inference"] = float(np.mean(r0["cycles"]))
            entry["layer_cycles"] = [c / len(inputs) for c in r0["jobs"][0]["layer_cycles"]]
        entry["wall_s"] = round(time.time() - t0, 1)
        entry["run_s"] = round(entry["wall_s"] - t_compile, 1)
        summary["simulators"][sim] = entry
        total_mismatches += entry["mismatches"] + int(entry["testbench_failed"])
        cyc = (f"{entry['cycles_per_inference']:.0f} cycles/inference, "
               if "cycles_per_inference" in entry else "")
        stalls = (f"{entry['cycles_with_stalls']:.0f} cycles/inference with {stall:.0%} random "
                  "stalls, " if stall else "")
        print(f"[5/5] {sim}: {entry['samples']} samples, {entry['mismatches']} mismatches "
              f"({records} records), {cyc}{stalls}{entry['wall_s']} s "
              f"(compile {entry['compile_s']} s, run {entry['run_s']} s)")
        for d in entry["details"]:
            print(f"      sample {d['sample']}: {d['problems'][:3]}")
        if entry["mismatches"] or entry["testbench_failed"]:
            print(f"      simulator log: {log}")

    work_rows = golden.work_counts(net, inputs, params.lanes)
    dense = params.skip_disabled_cycles()["layers"]
    measured = summary["simulators"].get("verilator", {}).get("layer_cycles")
    if measured:
        print("per layer, per inference (verilator, no stalls; ideal = nonzero inputs issued "
              "+ neuron-unit cycles; no skipping = the core built with skipping off, closed form):")
        print(f"  {'layer':>5} {'cycles':>10} {'synaptic ops':>13} {'ideal':>10} {'ratio':>6} "
              f"{'no skipping':>12} {'ratio':>6}")
        rows = [(row["layer"], cyc, row["synaptic_ops"] / len(inputs),
                 row["ideal_cycles"] / len(inputs), d)
                for row, cyc, d in zip(work_rows, measured, dense)]
        rows.append(("total",) + tuple(sum(r[i] for r in rows) for i in range(1, 5)))
        for name, cyc, ops, ideal, d in rows:
            print(f"  {name:>5} {cyc:>10.0f} {ops:>13.0f} {ideal:>10.0f} {cyc / max(ideal, 1):>6.2f} "
                  f"{d:>12.0f} {d / max(cyc, 1):>6.2f}")
        summary["skip_disabled_layer_cycles"] = dense
    summary["work_per_inference"] = [{k: (v / len(inputs) if k != "layer" else v)
                                      for k, v in row.items()} for row in work_rows]
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
    wall = time.time() - t_start
    summary["wall_s"] = round(wall, 1)
    (work / "sim_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wall time: {wall:.0f} s (hardware build {t_hw:.0f} s; "
          + ", ".join(f"{s} compile {e['compile_s']:.0f} s, run {e['run_s']:.0f} s"
                      for s, e in summary["simulators"].items()) + ")")
    print(f"summary: {work / 'sim_summary.json'}")
    return 1 if total_mismatches else 0


if __name__ == "__main__":
    cli_main(main)
