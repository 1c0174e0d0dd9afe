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
(one stall-free pass). ``--waves`` also writes each simulator's waveform and prints its
path (docs: README, "Waveforms"). The per-layer table compares the cycles with the ideal
(golden.work_counts) and with the core built without skipping (closed form,
CoreParams.skip_disabled_cycles).

The steps are functions over a :class:`Case` (the network and its inputs): ``make_case``
(``trained_case`` or ``random_case``), ``build_core``, ``run_golden``, ``simulate`` (per
simulator), ``layer_table`` and ``run`` (all of them, printing as it goes).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import golden
from hw.build import build
from hw.params import CoreParams
from model_export import NetworkExport, load_export, save_export
from model_export.random_net import random_export, random_inputs
from project_config import Config, UserError, cli_main, load_config
from project_config.cli import SAMPLES_MAX, add_config, bounded_int, parser, seed
from project_config.files import atomic_write, save_npy, write_json_report
from project_config.schema import SIMULATORS
from sim.calibrate import add_runtime_pruning, calibrated_export, spike_rates
from sim.runner import build_simulator, output_to, preloaded_sha256, run_case, waves_format

SPIKE_RATE = 0.15        # random networks: every layer's target rate (sim.calibrate)


@dataclass
class Case:
    """A network and the inputs to co-simulate: what every later step of the flow reads."""
    cfg: Config
    export_dir: Path
    net: NetworkExport
    inputs: np.ndarray                      # [B, T, C, H, W] integers
    labels: np.ndarray | None = None        # their test labels (a trained network)
    agreement: dict | None = None           # golden vs PyTorch on the test split
    model: object | None = None             # the trained PyTorch model, eval mode
    model_cfg: Config | None = None         # the config it was trained with
    model_inputs: np.ndarray | None = None  # the co-simulated samples as the model takes them


def trained_case(cfg: Config, samples: int, retrain: bool = False, log=print) -> Case:
    """The trained network (checkpoint, training it if needed; export; agreement report,
    sim.agreement.trained_network) and its first ``samples`` test inputs."""
    # torch (train, model_export.from_torch) only for a trained network: a random one
    # (--random-weights, sim.network: random) runs where torch is not installed.
    from sim.agreement import trained_network
    t = trained_network(cfg, Path(cfg.train["out_dir"]), retrain=retrain, log=log)
    n = min(samples, len(t.x_test))
    x = t.x_test[:n]
    if x.ndim == 5:                            # event data: one frame per step already
        inputs = x.astype(np.int64)
    else:                                      # static images, repeated over T
        inputs = np.broadcast_to(x[:, None].astype(np.int64),
                                 (n, cfg.timesteps) + x.shape[1:]).copy()
    return Case(cfg, t.export_dir, t.net, inputs, t.y_test[:n], t.agreement,
                model=t.model, model_cfg=t.cfg, model_inputs=x)


def random_case(cfg: Config, samples: int, seed: int = 7, log=print) -> Case:
    """A random network calibrated to :data:`SPIKE_RATE` (runtime pruning set from its own
    membranes where the config prunes) and ``samples`` random inputs."""
    export_dir = Path(cfg.train["out_dir"]) / "export_random"
    inputs = random_inputs(random_export(cfg, seed=seed), samples, seed=seed + 1)
    net = calibrated_export(cfg, inputs, seed, rate=SPIKE_RATE)
    save_export(add_runtime_pruning(cfg, net, inputs, seed), export_dir)
    net = load_export(export_dir)
    pruning = (" and runtime pruning set from its membranes"
               if any(l.spatial_pruning or l.gated for l in net.layers) else "")
    log(f"[1-3/5] random network (seed {seed}, thresholds calibrated to "
        f"{SPIKE_RATE:.0%} spikes per layer{pruning}) exported to {export_dir}")
    return Case(cfg, export_dir, net, inputs)


def make_case(cfg: Config, samples: int, seed: int = 7, retrain: bool = False,
              random_weights: bool = False, log=print) -> Case:
    """:func:`random_case` if asked or if the config says ``sim.network: random``, else
    :func:`trained_case`."""
    if random_weights or cfg.sim["network"] == "random":
        return random_case(cfg, samples, seed, log=log)
    return trained_case(cfg, samples, retrain=retrain, log=log)


@dataclass
class Core:
    """The generated core of a case."""
    hw_dir: Path
    preload: bool
    verilog_bytes: int
    build_s: float


def build_core(case: Case, params: CoreParams, out: Path, preload: bool, log=print) -> Core:
    """hw.build of the case's config (lint included), preloading its export if ``preload``."""
    params.check_export(case.net, where=str(case.export_dir))
    t0 = time.time()
    hw_dir = build(case.cfg, out, export=case.export_dir if preload else None)
    t_hw = time.time() - t0
    vsize = (hw_dir / "snn_core.v").stat().st_size
    log(f"[4/5] generated {hw_dir / 'snn_core.v'} ({vsize / 1e6:.2f} MB, lint clean"
        + (", parameters preloaded from memory images" if preload else "") + f"), {t_hw:.1f} s")
    return Core(hw_dir, preload, vsize, t_hw)


def run_golden(case: Case, log=print) -> tuple[golden.GoldenResult, list, dict]:
    """Golden's run of the case: (result, spike rates per layer, runtime pruning fractions)."""
    ref = golden.run(case.net, case.inputs)
    rates = spike_rates(case.net, ref)
    log("      golden spike rates per layer (unmasked neurons): "
        + " ".join(f"{r:.3f}" for r in rates))
    pruned = {}
    if any(l.spatial_pruning or l.gated for l in case.net.layers):
        pruned = {"positions_computed": [float(p.mean()) for p in ref.positions],
                  "channels_open": [float(c.mean()) for c in ref.channels]}
        log("      runtime pruning (golden), computed fraction per layer: positions "
            + " ".join(f"{v:.2f}" for v in pruned["positions_computed"]) + "; channels "
            + " ".join(f"{v:.2f}" for v in pruned["channels_open"]))
    return ref, rates, pruned


def simulate(simulator: str, case: Case, core: Core, work: Path, records: str,
             golden_predictions: np.ndarray, verbose: bool = False, waves: bool = False) -> dict:
    """Compile the core for ``simulator`` and run the case with the config's random stalls
    (Verilator: also stall-free, for the core's own cycles per layer). Returns the summary
    entry; the simulator's output goes to ``work/sim_<simulator>/simulator.log`` unless
    ``verbose``. ``waves``: trace the (first) run into ``entry["waves"]`` (FST; VCD on a
    Verilator without lz4), built in ``work/sim_<simulator>_waves``."""
    cfg = case.cfg
    t0 = time.time()
    sim_dir = work / (f"sim_{simulator}_waves" if waves else f"sim_{simulator}")
    sim_dir.mkdir(parents=True, exist_ok=True)
    log = sim_dir / "simulator.log"
    log.unlink(missing_ok=True)
    stall = cfg.sim["stall_probability"]
    common = dict(config=cfg, jobs=[{"export": case.export_dir, "inputs": case.inputs}],
                  seed=cfg.sim["seed"], records=records, preloaded=preloaded_sha256(core.hw_dir))
    with output_to(None if verbose else log):
        runner = build_simulator(simulator, core.hw_dir, sim_dir, waves=waves)
        t_compile = time.time() - t0
        tag = "stalls" if stall else "no_stalls"
        trace = sim_dir / f"waves_{tag}.{waves_format(simulator)}" if waves else None
        r = run_case(runner, simulator, sim_dir, stall_probability=stall, tag=tag,
                     waves=trace, **common)
    entry = {"samples": r["samples"], "mismatches": r["mismatches"],
             "perf_mismatches": r["perf_mismatches"],
             "cycles_with_stalls": float(np.mean(r["cycles"])),
             "stall_probability": stall,
             "rtl_predictions_equal_golden": bool(np.array_equal(r["predictions"],
                                                                 golden_predictions)),
             "testbench_failed": r["testbench_failed"], "details": r["details"][:3],
             "compile_s": round(t_compile, 1),
             **({"waves": str(trace)} if waves else {})}
    if simulator == "verilator":
        r0 = r
        if stall:
            # Stall-free pass: the core's own cycle count, not the testbench's idle cycles.
            with output_to(None if verbose else log):
                r0 = run_case(runner, simulator, sim_dir, stall_probability=0.0,
                              tag="no_stalls", **common)
            entry["mismatches"] += r0["mismatches"]
            entry["perf_mismatches"] += r0["perf_mismatches"]
            entry["testbench_failed"] |= r0["testbench_failed"]
        entry["cycles_per_inference"] = float(np.mean(r0["cycles"]))
        entry["layer_cycles"] = [c / len(case.inputs) for c in r0["jobs"][0]["layer_cycles"]]
    entry["wall_s"] = round(time.time() - t0, 1)
    entry["run_s"] = round(entry["wall_s"] - t_compile, 1)
    return entry


def print_simulator(simulator: str, entry: dict, records: str, log_path: Path, log=print):
    """The ``[5/5]`` line of one simulator (and the first mismatches, and where its log is)."""
    stall = entry["stall_probability"]
    cyc = (f"{entry['cycles_per_inference']:.0f} cycles/inference, "
           if "cycles_per_inference" in entry else "")
    stalls = (f"{entry['cycles_with_stalls']:.0f} cycles/inference with {stall:.0%} random "
              "stalls, " if stall else "")
    perf = ("hw.perf exact" if not entry["perf_mismatches"]
            else f"hw.perf DIFFERS in {entry['perf_mismatches']} values")
    log(f"[5/5] {simulator}: {entry['samples']} samples, {entry['mismatches']} mismatches "
        f"({records} records), {cyc}{stalls}{perf}, {entry['wall_s']} s "
        f"(compile {entry['compile_s']} s, run {entry['run_s']} s)")
    for d in entry["details"]:
        log(f"      sample {d['sample']}: {d['problems'][:3]}")
    if "waves" in entry:
        log(f"      waves: {entry['waves']}")
    if entry["mismatches"] or entry["perf_mismatches"] or entry["testbench_failed"]:
        log(f"      simulator log: {log_path}")


def layer_table(work_rows: list, measured: list, dense: list, samples: int,
                lanes: int) -> tuple[list[str], list]:
    """Per layer and inference: measured cycles, synaptic ops, the lane bound (synaptic ops /
    lanes: no lane-parallel core takes fewer cycles) and the lane utilization (ops / (lanes x
    cycles)), the ideal (events + neuron updates) and the cycles of the core with skipping
    off. Returns (lines to print, one summary row per layer and the total)."""
    lines = [f"per layer, per inference (verilator, no stalls, {lanes} lanes; lane bound = "
             "synaptic ops / lanes; utilization = synaptic ops / (lanes x cycles); ideal = "
             "nonzero inputs issued + neuron-unit cycles; no skipping = the core built with "
             "skipping off, closed form):",
             f"  {'layer':>5} {'cycles':>10} {'synaptic ops':>13} {'lane bound':>11} "
             f"{'util':>6} {'ideal':>10} {'ratio':>6} {'no skipping':>12} {'ratio':>6}"]
    rows = [(row["layer"], cyc, row["synaptic_ops"] / samples, row["ideal_cycles"] / samples, d)
            for row, cyc, d in zip(work_rows, measured, dense)]
    rows.append(("total",) + tuple(sum(r[i] for r in rows) for i in range(1, 5)))
    table = []
    for name, cyc, ops, ideal, d in rows:
        bound, util = ops / lanes, ops / (lanes * max(cyc, 1))
        table.append({"layer": name, "cycles": cyc, "synaptic_ops": ops, "lane_bound": bound,
                      "utilization": util, "ideal": ideal, "skip_disabled": d})
        lines.append(f"  {name:>5} {cyc:>10.0f} {ops:>13.0f} {bound:>11.0f} {util:>6.1%} "
                     f"{ideal:>10.0f} {cyc / max(ideal, 1):>6.2f} {d:>12.0f} "
                     f"{d / max(cyc, 1):>6.2f}")
    return lines, table


def print_totals(case: Case, summary: dict, sims: list, mismatches: int,
                 golden_predictions: np.ndarray, log=print):
    """The closing lines: samples, mismatches, cycles, accuracy."""
    log("-" * 72)
    log(f"samples run: {len(case.inputs)} per simulator ({', '.join(sims)})")
    log(f"mismatches:  {mismatches}")
    cycles = [e["cycles_per_inference"] for e in summary["simulators"].values()
              if "cycles_per_inference" in e]
    if cycles:
        log(f"cycles per inference: {cycles[0]:.0f}")
    agreement = case.agreement
    if agreement:
        log(f"accuracy: golden {agreement['golden_accuracy']:.4f}, PyTorch "
            f"{agreement['torch_accuracy']:.4f} on {agreement['samples']} test samples; "
            f"identical predictions {agreement['prediction_agreement'] * 100:.2f}%")
    if case.labels is not None:
        same = all(e["rtl_predictions_equal_golden"] for e in summary["simulators"].values())
        accuracy = float((golden_predictions == case.labels).mean())
        log(f"co-simulated samples: RTL predictions {'equal' if same else 'DIFFER FROM'} "
            f"golden; accuracy {accuracy:.4f} on these {len(case.labels)}")


def run(cfg: Config, sims: list, samples: int, seed: int = 7, retrain: bool = False,
        random_weights: bool = False, records: str | None = None, preload: bool | None = None,
        verbose: bool = False, waves: bool = False, log=print) -> int:
    """The whole flow for ``cfg`` on ``sims``; writes ``build/<name>/sim_summary.json``.
    ``records`` and ``preload`` default to the config's; ``waves``: also write each
    simulator's waveform (:func:`simulate`). Returns 1 on any mismatch, else 0."""
    work = Path("build") / cfg.name
    params = CoreParams(cfg)        # a config without a hardware form stops here, in one line
    t_start = time.time()
    case = make_case(cfg, samples, seed, retrain, random_weights, log=log)
    records = records or cfg.sim["records"]
    preload = cfg.sim["preload"] if preload is None else preload
    core = build_core(case, params, work / "hw", preload, log=log)
    ref, rates, pruned = run_golden(case, log=log)
    inputs_path = work / "sim_inputs.npy"
    atomic_write(inputs_path, lambda tmp: save_npy(tmp, case.inputs))
    summary = {"config": cfg.path, "samples": int(len(case.inputs)), "simulators": {},
               "export": str(case.export_dir), "inputs": str(inputs_path),
               "agreement": case.agreement, "records": records, "preload": preload,
               "spike_rates": rates, "runtime_pruning": pruned,
               "verilog_bytes": core.verilog_bytes, "hw_build_s": round(core.build_s, 1)}
    mismatches = 0
    for sim in sims:
        entry = simulate(sim, case, core, work, records, ref.predictions, verbose=verbose,
                         waves=waves)
        summary["simulators"][sim] = entry
        mismatches += (entry["mismatches"] + entry["perf_mismatches"]
                       + int(entry["testbench_failed"]))
        print_simulator(sim, entry, records, work / f"sim_{sim}" / "simulator.log", log=log)
    n = len(case.inputs)
    work_rows = golden.work_counts(case.net, case.inputs, params.lanes)
    dense = params.skip_disabled_cycles()["layers"]
    measured = summary["simulators"].get("verilator", {}).get("layer_cycles")
    if measured:
        lines, table = layer_table(work_rows, measured, dense, n, params.lanes)
        for line in lines:
            log(line)
        summary["skip_disabled_layer_cycles"] = dense
        summary["layers"] = table
    summary["work_per_inference"] = [{k: (v / n if k != "layer" else v) for k, v in row.items()}
                                     for row in work_rows]
    print_totals(case, summary, sims, mismatches, ref.predictions, log=log)
    wall = time.time() - t_start
    summary["wall_s"] = round(wall, 1)
    write_json_report(work / "sim_summary.json", summary)
    log(f"wall time: {wall:.0f} s (hardware build {core.build_s:.0f} s; "
        + ", ".join(f"{s} compile {e['compile_s']:.0f} s, run {e['run_s']:.0f} s"
                    for s, e in summary["simulators"].items()) + ")")
    log(f"summary: {work / 'sim_summary.json'}")
    return 1 if mismatches else 0


def simulators(names: str | None, cfg: Config) -> list:
    """``--simulators`` (a comma list) or the config's ``sim.simulators``, checked."""
    sims = names.split(",") if names else cfg.sim["simulators"]
    for s in sims:
        if s not in SIMULATORS:
            raise UserError(f"--simulators: {s!r} is not one of {list(SIMULATORS)}")
    return sims


def main(argv=None):
    ap = parser("python -m sim.flow", __doc__)
    add_config(ap)
    ap.add_argument("--samples", type=bounded_int(1, SAMPLES_MAX),
                    help="test samples to co-simulate (default sim.samples)")
    ap.add_argument("--simulators", help="comma list of icarus, verilator (default sim.simulators)")
    ap.add_argument("--retrain", action="store_true", help="train even if a checkpoint exists")
    ap.add_argument("--random-weights", action="store_true",
                    help="untrained random network and inputs instead of the trained model")
    ap.add_argument("--seed", type=seed, default=7, help="seed for --random-weights")
    ap.add_argument("--records", choices=("full", "signature"),
                    help="record mode (default sim.records)")
    ap.add_argument("--preload", action=argparse.BooleanOptionalAction, default=None,
                    help="parameters from memory images, not the param stream (default sim.preload)")
    ap.add_argument("--verbose", action="store_true", help="show simulator output (else in simulator.log)")
    ap.add_argument("--waves", action="store_true",
                    help="write each simulator's waveform (FST; VCD on a Verilator without lz4) "
                         "and print its path")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    return run(cfg, simulators(args.simulators, cfg), args.samples or cfg.sim["samples"],
               seed=args.seed, retrain=args.retrain, random_weights=args.random_weights,
               records=args.records, preload=args.preload, verbose=args.verbose,
               waves=args.waves)


def cli():
    """Console-script entry point (pyproject [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
