"""``python -m efficiency.report --config slice_digits.yaml`` (``make report``)

Measured efficiency of one network on the generated core, written into docs/RESULTS.md:

1. the network (the trained model: training it if there is no checkpoint, as ``make sim``
   does; or the calibrated random network of a config with ``sim.network: random``),
   its integer export and golden's inference of ``--samples`` test inputs;
2. the core with that export, co-simulated on Verilator (no stalls) over the same inputs:
   every layer's spikes or signatures compared with golden (a mismatch stops the report),
   the cycles per layer and the core's own work counters per layer and step;
3. the same counts from the PyTorch model's spikes and masks (``train.work_counts``):
   model, golden and RTL must agree on every layer (the report says where they do not);
4. where the dense work goes: skipped at pruned or masked positions, at closed channels,
   at zero inputs, or done (``efficiency.breakdown``); the paper's operation count;
   lane-cycles used and idle, by cause;
5. energy by the paper's Eq. 31 (``efficiency.energy``) driven by the RTL counters,
   against the same network run densely in FP32, and golden's count with runtime pruning
   off;
6. memory: the paper's formula from the export beside the core's SRAM bits;
7. synthesis: Yosys cells and flip-flops per unit (``hw.synth``) and, with
   ``nextpnr-ice40`` installed, iCE40 place and route of a 2-lane copy of the core.

It writes ``docs/results/<name>.json`` (every number), PNG plots under ``docs/figures/``
and the section of docs/RESULTS.md between the markers
``<!-- BEGIN GENERATED <name> -->`` and ``<!-- END GENERATED <name> -->`` (appended if
absent). It also re-renders, from their stored results (``docs/results/table5.json``,
``docs/results/weight_pruning_study.json``; ``--studies`` names the folder), the tables
and plots of ``benchmarks.table5`` and ``benchmarks.weight_pruning_study``, and of any
other network whose ``docs/results/<name>.json`` exists, so one command rewrites every
generated table and plot. Exits 1 if the RTL differs from golden or the counts disagree.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from project_config import UserError, cli_main, load_config
from project_config.files import atomic_write, write_json_report

DOCS = Path("docs")
NJ = 1e3                       # pJ per nJ
PAPER = {                      # the paper's VGG-9 / DVS-CIFAR10 claims (text, section 5)
    "memory_reduction": 13.0,
    "ops_reduction": 5.0,      # "up to 5x FLOPs reduction" on DVS-CIFAR10 (">4.7x" overall)
    "accuracy_drop_points": 1.14,
}
STUDIES = {"table5": "runs/table5/table5.json",              # stored benchmark results
           "weight_pruning_study": "runs/weight_pruning_study/results.json"}
ICE40_LANES = 2                # the iCE40 copy of a core: the HX8K holds 2 lanes of the slice


# --- measuring ----------------------------------------------------------------------------

def _case(cfg, samples: int, seed: int, retrain: bool):
    """(export dir, export, inputs, labels, agreement, model inputs or None)."""
    from sim.flow import random_case, trained_case
    run_dir = Path(cfg.train["out_dir"])
    args = SimpleNamespace(samples=samples, seed=seed, retrain=retrain)
    if cfg.sim["network"] == "random":
        return random_case(cfg, args, run_dir) + (None,)
    export_dir, net, inputs, labels, agreement = trained_case(cfg, args, run_dir)
    from train.data import load_dataset
    x_test = load_dataset(cfg)[2][:len(inputs)]
    return export_dir, net, inputs, labels, agreement, x_test


def _model_rows(cfg, x_test, lanes: int):
    """Counts from the PyTorch model's own spikes and masks (None for a random network)."""
    if x_test is None:
        return None
    from train.trainer import load_checkpoint
    from train.work_counts import model_counts
    model, cfg_ckpt = load_checkpoint(Path(cfg.train["out_dir"]) / "model.pt")
    return model_counts(model, cfg_ckpt, x_test, lanes)


def _cosimulate(config: str, cfg, export_dir: Path, inputs, work: Path) -> dict:
    """Build (preloading the export if the config says so) and run Verilator, no stalls;
    the simulator's output goes to ``<work>/sim_verilator/simulator.log``."""
    from sim.runner import cosimulate, output_to
    log = work / "sim_verilator" / "simulator.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    t0 = time.time()
    with output_to(log):
        r = cosimulate(config, export_dir, inputs, "verilator", work, stall_probability=0.0,
                       seed=cfg.sim["seed"], tag="report", preload=cfg.sim["preload"],
                       records=cfg.sim["records"], max_cycles=50_000_000)
    r["wall_s"] = time.time() - t0
    r["log"] = str(log)
    return r


def _strip_pruning(net):
    """The same export with runtime pruning off (static masks kept)."""
    import dataclasses
    layers = [dataclasses.replace(l, spatial_threshold=None, gate_weights=None,
                                  gate_thresholds=None) for l in net.layers]
    return dataclasses.replace(net, layers=layers)


def energy_section(breakdown: list, rtl: list, samples: int, lanes: int, acc_widths: list,
                   unpruned: list | None) -> dict:
    """Eq. 31 energies per inference (pJ): the core's, from its counters (spiking layers;
    the classifier, which has no counters, from golden); variants; the FP32 dense MAC
    reference; and golden's count of the export with runtime pruning off."""
    from efficiency.energy import dense_mac_energy, snn_energy
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


def _synthesis(config: str, cfg, raw: dict, work: Path, ice40: bool) -> dict:
    from hw.synth import synthesize
    out = {"generic": synthesize(config, out=str(work / "synth"))}
    if not ice40:
        out["ice40"] = {"skipped": "--no-ice40"}
        return out
    if shutil.which("nextpnr-ice40") is None:
        out["ice40"] = {"skipped": "nextpnr-ice40 is not installed (apt-get install nextpnr-ice40)"}
        return out
    import yaml
    from project_config.schema import deep_merge
    small = deep_merge(raw, {"hardware": {"lanes": ICE40_LANES}})
    small["model"]["name"] = f"{cfg.name}_{ICE40_LANES}lanes"
    path = work / f"{cfg.name}_{ICE40_LANES}lanes.yaml"
    path.write_text(yaml.safe_dump(small, sort_keys=False))
    rep = synthesize(str(path.resolve()), out=str(work / "synth_ice40"), ice40=True)
    out["ice40"] = {"lanes": ICE40_LANES, **rep["ice40"],
                    "generic_cells": rep["totals"]["cells"],
                    "generic_flip_flops": rep["totals"]["flip_flops"]}
    return out


def measure(config: str, samples: int | None = None, seed: int = 7, retrain: bool = False,
            synth: bool = True, ice40: bool = True, log=print) -> dict:
    """Every measurement of the report for one config; returns the JSON-able result."""
    import golden
    from hw.memory_report import memory_report
    from hw.params import CoreParams
    from project_config.schema import load_raw_config
    from efficiency.breakdown import count_differences, lane_use, skip_breakdown
    from sim.host import counter_totals

    t_start = time.time()
    cfg = load_config(config)
    _, raw = load_raw_config(config)
    params = CoreParams(cfg)
    lanes = params.lanes
    samples = samples or cfg.sim["samples"]
    if samples < 1:
        raise UserError(f"--samples: {samples} must be at least 1")
    work = Path("build") / f"report_{cfg.name}"
    work.mkdir(parents=True, exist_ok=True)

    export_dir, net, inputs, labels, agreement, x_test = _case(cfg, samples, seed, retrain)
    params.check_export(net, where=str(export_dir))
    n = len(inputs)
    res = golden.run(net, inputs)
    breakdown = skip_breakdown(net, res, lanes)
    log(f"[report] golden: {n} samples; co-simulating on Verilator")
    sim = _cosimulate(config, cfg, export_dir, inputs, work)
    if sim["mismatches"] or sim["testbench_failed"]:
        raise UserError(f"{config}: the RTL differs from golden ({sim['mismatches']} "
                        f"mismatches); see {sim['log']}")
    job = sim["jobs"][0]
    rtl = counter_totals(job["counters"], len(net.layers))
    layer_cycles = job["layer_cycles"]
    log(f"[report] RTL: 0 mismatches, {np.mean(sim['cycles']):.0f} cycles per inference, "
        f"{sim['wall_s']:.0f} s")
    model_rows = _model_rows(cfg, x_test, lanes)
    sources = {"golden": breakdown, "rtl": rtl}
    if model_rows is not None:
        sources = {"model": model_rows, **sources}
    differences = count_differences(sources)

    skip_off = params.skip_disabled_cycles()["layers"]
    cycles = []
    for l, b in enumerate(breakdown):
        events = (rtl[l] or b)["events"]
        syn = (rtl[l] or b)["synaptic_ops"]
        cycles.append({"layer": l, "cycles": layer_cycles[l],
                       "ideal": b["events"] + b["neuron_updates"],
                       "skip_off": skip_off[l] * n,
                       "lanes": lane_use(lanes, layer_cycles[l], events, syn)})
    unpruned = None
    if any(l.spatial_pruning or l.gated for l in net.layers):
        unpruned = skip_breakdown(net, golden.run(_strip_pruning(net), inputs), lanes)
    acc = [l.acc_width for l in net.layers]
    energy = energy_section(breakdown, rtl, n, lanes, acc, unpruned)
    memory = memory_report(config, str(export_dir))
    result = {
        "config": cfg.path, "name": cfg.name, "lanes": lanes, "samples": n,
        "timesteps": cfg.timesteps,
        "network": "random (calibrated)" if cfg.sim["network"] == "random" else "trained",
        "accuracy": agreement, "spike_rates": [float(s.mean()) for s in res.spikes],
        "positions_computed": [float(p.mean()) for p in res.positions],
        "channels_open": [float(c.mean()) for c in res.channels],
        "rtl": {"mismatches": sim["mismatches"], "records": cfg.sim["records"],
                "cycles_per_inference": float(np.mean(sim["cycles"])),
                "wall_s": round(sim["wall_s"], 1)},
        "counts": {"model": model_rows, "golden": breakdown, "rtl": rtl,
                   "differences": [list(d) for d in differences]},
        "pruning_off_golden": unpruned, "cycles": cycles, "energy": energy, "memory": memory,
    }
    if synth:
        log("[report] synthesis (yosys" + (", nextpnr-ice40" if ice40 else "") + ")")
        result["synthesis"] = _synthesis(config, cfg, raw, work, ice40)
    result["wall_s"] = round(time.time() - t_start, 1)
    return result


# --- writing ------------------------------------------------------------------------------

def _fmt(v) -> str:
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.1f}"
    return f"{int(v):,}"


def _ratio(a, b) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def _table(header, rows) -> list:
    return (["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
            + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def _layer_name(b) -> str:
    return "classifier" if b["kind"] == "fc" else f"{b['layer']}"


def plot(result: dict, figures: Path) -> list:
    """PNG plots of one network's result; returns the paths written ([] without matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    name, n = result["name"], result["samples"]
    b = result["counts"]["golden"]
    labels = [_layer_name(r) for r in b]
    x = np.arange(len(b))
    parts = [("done (RTL synaptic ops)", [((result["counts"]["rtl"][i] or r)["synaptic_ops"])
                                          for i, r in enumerate(b)], "tab:green"),
             ("skipped: zero inputs", [r["skipped_zero_input_ops"] for r in b], "tab:blue"),
             ("skipped: closed channels", [r["skipped_channel_ops"] for r in b], "tab:orange"),
             ("skipped: pruned/masked positions", [r["skipped_position_ops"] for r in b],
              "tab:red")]
    dense = np.array([r["dense_ops"] for r in b], float)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    bottom = np.zeros(len(b))
    for label, vals, color in parts:
        frac = np.array(vals, float) / dense
        axes[0].bar(x, frac, bottom=bottom, label=label, color=color)
        bottom += frac
    axes[0].set_xticks(x, labels)
    axes[0].set_xlabel("layer")
    axes[0].set_ylabel("fraction of the dense synaptic operations")
    axes[0].set_title(f"{name}: where the dense work goes")
    axes[0].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    c = result["cycles"]
    w = 0.27
    axes[1].bar(x - w, [r["ideal"] / n for r in c], w, label="ideal (events + updates)",
                color="tab:gray")
    axes[1].bar(x, [r["cycles"] / n for r in c], w, label="RTL cycles", color="tab:green")
    axes[1].bar(x + w, [r["skip_off"] / n for r in c], w, label="core with skipping off",
                color="tab:red")
    axes[1].set_yscale("log")
    axes[1].set_xticks(x, labels)
    axes[1].set_xlabel("layer")
    axes[1].set_ylabel("cycles per inference")
    axes[1].set_title("cycles: measured, ideal, skipping off")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    figures.mkdir(parents=True, exist_ok=True)
    work_png = figures / f"{name}_work_and_cycles.png"
    _save(fig, work_png)
    plt.close(fig)

    e = result["energy"]
    core = e["core_rtl"]["layers"]
    fp = e["fp32_dense_mac"]["layers"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(x - 0.2, [l["synaptic_pj"] / NJ for l in core], 0.4, label="core: synaptic adds",
           color="tab:green")
    ax.bar(x - 0.2, [l["membrane_pj"] / NJ for l in core], 0.4,
           bottom=[l["synaptic_pj"] / NJ for l in core], label="core: membrane updates",
           color="tab:olive")
    ax.bar(x + 0.2, [l["total_pj"] / NJ for l in fp], 0.4, label="FP32 dense MAC",
           color="tab:gray")
    ax.set_yscale("log")
    ax.set_xticks(x, labels)
    ax.set_xlabel("layer")
    ax.set_ylabel("nJ per inference (Eq. 31, 7 nm)")
    ax.set_title(f"{name}: energy from the RTL counters")
    ax.legend(fontsize=7)
    fig.tight_layout()
    energy_png = figures / f"{name}_energy.png"
    _save(fig, energy_png)
    plt.close(fig)
    return [work_png, energy_png]


def _save(fig, path: Path):
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def render(result: dict, figures_rel: str = "figures") -> str:
    """The markdown of one network's section."""
    name, n, lanes = result["name"], result["samples"], result["lanes"]
    b, rtl, model = result["counts"]["golden"], result["counts"]["rtl"], result["counts"]["model"]
    L = []
    L += [f"**{name}**: `python -m efficiency.report --config {Path(result['config']).name}` "
          f"({result['network']} network, {n} sample{'s' if n != 1 else ''}, T = {result['timesteps']}, "
          f"{lanes} lanes; "
          f"Verilator, no stalls, {result['rtl']['records']} records: "
          f"**{result['rtl']['mismatches']} mismatches** against golden; "
          f"{result['rtl']['cycles_per_inference']:,.0f} cycles per inference; "
          f"whole report {result['wall_s'] / 60:.1f} min). Figures are per inference"
          + (f" (sums over the {n} samples / {n})." if n != 1 else "."), ""]
    acc = result.get("accuracy")
    if acc:
        L += [f"Accuracy on {acc['samples']} test samples: PyTorch {acc['torch_accuracy']:.4f}, "
              f"golden {acc['golden_accuracy']:.4f}, identical predictions "
              f"{acc['prediction_agreement'] * 100:.2f}%.", ""]
    L += ["Runtime pruning (golden = RTL): computed positions "
          + ", ".join(f"{v:.2f}" for v in result["positions_computed"]) + "; open channels "
          + ", ".join(f"{v:.2f}" for v in result["channels_open"])
          + "; spike rates " + ", ".join(f"{v:.3f}" for v in result["spike_rates"])
          + " per spiking layer.", ""]

    # Three-way agreement.
    L += ["**Counts: PyTorch model, golden, RTL counters** (events = nonzero inputs issued "
          "to a live group of lanes; synaptic ops = lane additions into computed neurons; "
          "updates = (position, live group) neuron-unit cycles):", ""]
    hdr = ["layer"]
    srcs = [s for s in ("model", "golden", "rtl") if result["counts"][s] is not None]
    for key in ("events", "synaptic_ops", "neuron_updates"):
        hdr += [f"{key} {s}" for s in srcs]
    rows = []
    for l, g in enumerate(b):
        row = [_layer_name(g)]
        for key in ("events", "synaptic_ops", "neuron_updates"):
            for s in srcs:
                r = result["counts"][s][l]
                row.append(_fmt(r[key] / n) if r is not None else "none")
        rows.append(row)
    L += _table(hdr, rows) + [""]
    diffs = result["counts"]["differences"]
    L += [("**All sources agree** on every layer and count."
           if not diffs else f"**{len(diffs)} differences**: "
           + "; ".join(f"layer {d[0]} {d[1]}: {d[2]}" for d in diffs[:6])),
          "The classifier has no counters on chip (its currents and logits are compared "
          "with golden instead), so its RTL column is `none`."
          + ("" if model is not None else " A random network has no PyTorch model."), ""]

    # Dense work and where it goes.
    L += ["**Synaptic operations**: the dense count split into what the core skips and "
          "what it does (`efficiency.breakdown`; the parts add up to the dense count). "
          "The paper's count is `k^2 C_in x active channels x active positions`, every "
          "input counted, zero or not:", ""]
    hdr = ["layer", "dense", "skipped: positions", "skipped: channels", "skipped: zero inputs",
           "done (RTL)", "paper's count", "dense / paper", "dense / done"]
    rows, tot = [], np.zeros(6)
    for l, g in enumerate(b):
        done = (rtl[l] or g)["synaptic_ops"]
        vals = np.array([g["dense_ops"], g["skipped_position_ops"], g["skipped_channel_ops"],
                         g["skipped_zero_input_ops"], done, g["paper_ops"]], float)
        tot += vals
        rows.append([_layer_name(g)] + [_fmt(v / n) for v in vals]
                    + [_ratio(vals[0], vals[5]), _ratio(vals[0], vals[4])])
    rows.append(["**total**"] + [f"**{_fmt(v / n)}**" for v in tot]
                + [f"**{_ratio(tot[0], tot[5])}**", f"**{_ratio(tot[0], tot[4])}**"])
    L += _table(hdr, rows) + [""]
    L += ["The paper's count and the core's differ by the zero inputs: the paper counts "
          "FLOPs of a dense convolution over the active neurons, while the core issues only "
          "nonzero inputs (spikes), so its reduction is the larger one.", ""]

    # Cycles, issues, lanes.
    L += ["**Cycles and lanes** (skipping off: the same core built with `--no-skipping`, "
          "closed form; ideal: events + neuron updates; lane-cycles = lanes x cycles, split "
          "into lane additions, lanes idle while their group takes an input (closed, masked "
          "or padding channels) and lanes idle in cycles that issue no input: neuron "
          "updates, group set-up, pruning passes, frame load):", ""]
    hdr = ["layer", "cycles (RTL)", "ideal", "cycles / ideal", "skipping off",
           "skipping off / cycles", "input issues skipped: positions / groups / zero inputs",
           "lane use", "idle in issue", "idle, no issue"]
    rows = []
    tc = np.zeros(6)
    for c, g in zip(result["cycles"], b):
        lu = c["lanes"]
        tc += [c["cycles"], c["ideal"], c["skip_off"], lu["lane_cycles"], lu["idle_in_issue"],
               lu["idle_no_issue"]]
        rows.append([_layer_name(g), _fmt(c["cycles"] / n), _fmt(c["ideal"] / n),
                     f"{c['cycles'] / max(c['ideal'], 1):.2f}", _fmt(c["skip_off"] / n),
                     _ratio(c["skip_off"], c["cycles"]),
                     " / ".join(_fmt(g[k] / n) for k in ("skipped_position_issues",
                                                         "skipped_group_issues",
                                                         "skipped_zero_input_issues")),
                     f"{lu['utilization'] * 100:.1f}%",
                     f"{lu['idle_in_issue'] / max(lu['lane_cycles'], 1) * 100:.1f}%",
                     f"{lu['idle_no_issue'] / max(lu['lane_cycles'], 1) * 100:.1f}%"])
    done_total = sum((r or g)["synaptic_ops"] for r, g in zip(rtl, b))
    rows.append(["**total**", f"**{_fmt(tc[0] / n)}**", _fmt(tc[1] / n),
                 f"**{tc[0] / max(tc[1], 1):.2f}**", _fmt(tc[2] / n),
                 f"**{_ratio(tc[2], tc[0])}**", "",
                 f"{done_total / tc[3] * 100:.1f}%", f"{tc[4] / tc[3] * 100:.1f}%",
                 f"{tc[5] / tc[3] * 100:.1f}%"])
    L += _table(hdr, rows) + [""]

    # Energy.
    e = result["energy"]
    core, fp = e["core_rtl"], e["fp32_dense_mac"]
    L += ["**Energy per inference**, the paper's Eq. 31 (additions x E_add + "
          "multiplications x E_mult; BitNet's 7 nm table as quoted in `efficiency/energy.py`, "
          "INT8 add 0.007 pJ, FP32 add 0.38 pJ and multiply 1.31 pJ), driven by the RTL "
          "counters (" + e["counters"] + "):", ""]
    rows = [["core (RTL counters): synaptic adds", f"{core['synaptic_pj'] / NJ:.3f}", ""],
            ["core (RTL counters): membrane updates (2 adds per neuron-unit compare)",
             f"{core['membrane_pj'] / NJ:.3f}", ""],
            ["**core (RTL counters): total**", f"**{core['total_pj'] / NJ:.3f}**",
             f"**{fp['total_pj'] / core['total_pj']:.0f}x** below FP32"],
            ["same, adds scaled by accumulator width / 8",
             f"{e['core_rtl_width_scaled']['total_pj'] / NJ:.3f}", ""],
            ["total, membrane updates counted per computed neuron (golden)",
             f"{e['computed_neurons_golden']['total_pj'] / NJ:.3f}", ""],
            ["Spikformer-style (synaptic adds only, no membrane)",
             f"{core['synaptic_pj'] / NJ:.3f}", ""]]
    if "pruning_off_golden" in e:
        off = e["pruning_off_golden"]["total_pj"]
        rows.append(["same export, runtime pruning off (golden counts)", f"{off / NJ:.3f}",
                     f"pruning saves {(1 - core['total_pj'] / off) * 100:.0f}%"])
    rows.append(["FP32 dense multiply-accumulate, same network", f"{fp['total_pj'] / NJ:,.1f}",
                 ""])
    L += _table(["", "nJ", ""], rows) + [""]

    # Memory.
    mem = result["memory"]
    f = mem["total_memory_formula"]
    conf = f["configured"][0]
    full = f["full_precision"]
    core_bits = mem["core"].get("memory_bits", {})
    L += [f"**Memory**: the paper's formula `{f['formula']}` for this network "
          f"(N_w = {f['counts']['weights']:,}, N_u = N_s = {f['counts']['membrane_neurons']:,}): "
          f"{conf['name']}: {conf['total_bits']:,.0f} bits against {full['total_bits']:,.0f} at "
          f"full precision (32-bit weights and membrane), **{conf['reduction_vs_full_precision']:.2f}x** "
          f"smaller. The generated core's SRAMs (`hw.build` report.json) hold "
          f"{sum(core_bits.values()):,} bits: "
          + ", ".join(f"{k} {v:,}" for k, v in core_bits.items())
          + " (the core also keeps a membrane for every neuron and per-channel thresholds, "
            "and double-buffers the spike maps between layers, which the formula does not "
            "count).", ""]

    syn = result.get("synthesis")
    if syn:
        g = syn["generic"]
        t = g["totals"]
        L += [f"**Synthesis** (`hw.synth`, {g['tool']}, generic gates, SRAMs as black boxes): "
              f"{t['cells']:,} cells, {t['flip_flops']:,} flip-flops.", ""]
        rows = [[u["unit"], u["instances"], f"{u['cells']:,}", f"{u['flip_flops']:,}", u["role"]]
                for u in g["units"]]
        L += _table(["unit", "instances", "cells", "flip-flops", "role"], rows) + [""]
        ice = syn.get("ice40", {})
        if "skipped" in ice:
            L += [f"iCE40 place and route: not run ({ice['skipped']}).", ""]
        elif ice:
            L += [_ice40_line(ice), ""]
    L += [f"![{name} work and cycles]({figures_rel}/{name}_work_and_cycles.png)",
          f"![{name} energy]({figures_rel}/{name}_energy.png)", ""]
    return "\n".join(L)


def _ice40_line(ice: dict) -> str:
    head = (f"**iCE40** ({ice['device']}, yosys `synth_ice40` and nextpnr-ice40) of a "
            f"{ice['lanes']}-lane copy of this core: {ice['luts']:,} SB_LUT4, "
            f"{ice['block_rams']} SB_RAM40_4K")
    if not ice.get("fits"):
        return head + f"; place and route not done: {ice['blocked_by']}."
    util = ", ".join(f"{k} {u:,} / {a:,}" for k, (u, a) in ice["utilization"].items())
    return head + f"; placed and routed at **{ice['fmax_mhz']} MHz** achieved; {util}."


def paper_comparison(result: dict) -> str:
    """VGG-9: our measured reductions next to the paper's claims."""
    b, rtl = result["counts"]["golden"], result["counts"]["rtl"]
    dense = sum(g["dense_ops"] for g in b)
    paper_ops = sum(g["paper_ops"] for g in b)
    done = sum((r or g)["synaptic_ops"] for r, g in zip(rtl, b))
    f = result["memory"]["total_memory_formula"]
    target = f["paper_target"]
    e = result["energy"]
    rows = [["total memory vs FP32 (2-bit weights, ternary membrane)",
             f"{PAPER['memory_reduction']:.0f}x", f"{target['achieved']:.2f}x "
             f"({target['achieved_at_log2_3_membrane']:.2f}x at 1.58-bit membrane)"],
            ["total memory vs FP32, configured weight bits",
             "", f"{f['configured'][0]['reduction_vs_full_precision']:.2f}x"],
            ["operations vs unpruned (paper's count)", f"{PAPER['ops_reduction']:.1f}x "
             "(>4.7x)", f"{dense / paper_ops:.2f}x"],
            ["synaptic operations the core does vs dense", "", f"{dense / done:.1f}x"],
            ["cycles vs the same core with skipping off", "",
             f"{sum(c['skip_off'] for c in result['cycles']) / sum(c['cycles'] for c in result['cycles']):.2f}x"],
            ["energy per inference (Eq. 31, 7 nm)", "Table 10 (an image, not in our text)",
             f"{e['core_rtl']['total_pj'] / NJ:,.1f} nJ; FP32 dense "
             f"{e['fp32_dense_mac']['total_pj'] / NJ:,.0f} nJ "
             f"({e['fp32_dense_mac']['total_pj'] / e['core_rtl']['total_pj']:.0f}x)"],
            ["accuracy drop", f"{PAPER['accuracy_drop_points']} points (DVS-CIFAR10)",
             "not measured: random calibrated network (no GPU to train VGG-9)"]]
    return "\n".join(["**VGG-9 next to the paper** (SpQuant-SNN, VGG-9 on DVS-CIFAR10):", ""]
                     + _table(["measure", "paper", "measured here"], rows) + [""])


# --- the results file ---------------------------------------------------------------------

def begin_marker(name: str) -> str:
    return f"<!-- BEGIN GENERATED {name} (python -m efficiency.report; do not edit) -->"


def end_marker(name: str) -> str:
    return f"<!-- END GENERATED {name} -->"


def replace_block(text: str, name: str, body: str, where: str = "RESULTS.md") -> str:
    """``text`` with the generated block ``name`` replaced by ``body`` (appended at the end
    if the file has no such block)."""
    begin = f"<!-- BEGIN GENERATED {name} "
    end = end_marker(name)
    block = f"{begin_marker(name)}\n{body.rstrip()}\n{end}"
    i = text.find(begin)
    if i < 0:
        if end in text:
            raise UserError(f"{where}: '{end}' without its BEGIN marker")
        return text.rstrip() + "\n\n" + block + "\n"
    j = text.find(end, i)
    if j < 0:
        raise UserError(f"{where}: the generated block {name!r} has no '{end}' marker")
    return text[:i] + block + text[j + len(end):]


def _demote(md: str, levels: int = 1) -> str:
    return "\n".join(("#" * levels + line) if line.startswith("#") else line
                     for line in md.splitlines())


def study_blocks(studies: Path, figures: Path) -> dict:
    """{block name: markdown} of the stored benchmark results in ``studies``, re-rendered
    (tables by the benchmarks' own formatters; plots redrawn into ``figures``)."""
    out = {}
    t5 = studies / "table5.json"
    if t5.exists():
        from benchmarks.table5 import format_markdown, plot_sweep
        p = json.loads(t5.read_text())
        meta = dict(p["meta"])
        meta.setdefault("runs", len(p["runs"]))          # results written before these keys
        meta.setdefault("train_wall_s", sum(r.get("train_wall_s") or 0 for r in p["runs"]))
        md = format_markdown(p["summary"], p["targets"], meta)
        md = md.replace("](figure4_membrane_precision.png)",
                        f"]({figures.name}/figure4_membrane_precision.png)")
        plot_sweep(p["summary"], figures / "figure4_membrane_precision.png")
        out["table5"] = _demote(md)
    wp = studies / "weight_pruning_study.json"
    if wp.exists():
        from benchmarks.weight_pruning_study import flat_points, format_markdown, write_plots
        p = json.loads(wp.read_text())
        rows = flat_points(p["details"])
        md = format_markdown(rows, p["details"], p["meta"])
        pngs = write_plots(rows, figures)
        md += "\n\n" + "\n".join(f"![{png.stem.replace('_', ' ')}]({figures.name}/{png.name})"
                                  for png in pngs)
        out["weight_pruning_study"] = _demote(md, 2)
    return out


def write_results(results_md: Path, blocks: dict):
    text = results_md.read_text() if results_md.exists() else "# Results\n"
    for name, body in blocks.items():
        text = replace_block(text, name, body, where=str(results_md))
    atomic_write(results_md, text)


def network_block(result: dict, figures: Path) -> str:
    plot(result, figures)
    md = render(result, figures.name)
    if result["name"].startswith("vgg9") and not result["name"].startswith("vgg9_small"):
        md = paper_comparison(result) + "\n" + md
    return md


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m efficiency.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="slice_digits.yaml",
                    help="config YAML to measure (cwd, then configs/; default slice_digits.yaml)")
    ap.add_argument("--samples", type=int, help="samples to co-simulate (default sim.samples)")
    ap.add_argument("--seed", type=int, default=7, help="seed of a random network")
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
    if not docs.is_dir():
        raise UserError(f"--docs: {docs} is not a folder")
    results_dir, figures = docs / "results", docs / "figures"
    results_dir.mkdir(exist_ok=True)
    figures.mkdir(exist_ok=True)
    for name in STUDIES:
        src = getattr(args, name)
        if src:
            try:
                payload = json.loads(Path(src).read_text())
                payload["meta"]
            except (OSError, ValueError, KeyError) as e:
                raise UserError(f"--{name.replace('_', '-')}: {src}: not a benchmarks.{name} "
                                f"result ({type(e).__name__})") from None
            write_json_report(results_dir / f"{name}.json", payload)
    t0 = time.time()
    failed = False
    if not args.render_only:
        result = measure(args.config, args.samples, args.seed, args.retrain,
                         synth=not args.no_synth, ice40=not args.no_ice40)
        write_json_report(results_dir / f"{result['name']}.json", result)
        failed = bool(result["counts"]["differences"])
    blocks = {}
    for path in sorted(results_dir.glob("*.json")):
        if path.stem in STUDIES:
            continue
        try:
            stored = json.loads(path.read_text())
            blocks[f"network:{stored['name']}"] = network_block(stored, figures)
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{path}: not a report result ({type(e).__name__}: {e})") from None
    blocks.update(study_blocks(results_dir, figures))
    write_results(docs / "RESULTS.md", blocks)
    print(f"[report] wrote {docs / 'RESULTS.md'} ({', '.join(blocks)}), plots in {figures}, "
          f"{time.time() - t0:.0f} s")
    if failed:
        print("[report] the counts DISAGREE: see the section's differences", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    cli_main(main)
