"""Markdown of the efficiency report (``python -m reports.efficiency``): one network's
section of docs/RESULTS.md from its stored result, the VGG-9 comparison with the paper, and
the generated blocks of RESULTS.md, replaced in place between their markers."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from project_config import UserError
from project_config.files import atomic_write

NJ = 1e3                       # pJ per nJ
PAPER = {                      # the paper's VGG-9 / DVS-CIFAR10 claims (text, section 5)
    "memory_reduction": 13.0,
    "ops_reduction": 5.0,      # "up to 5x FLOPs reduction" on DVS-CIFAR10 (">4.7x" overall)
    "accuracy_drop_points": 1.14,
}


def _fmt(v) -> str:
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.1f}"
    return f"{int(v):,}"


def _ratio(a, b) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def _table(header, rows) -> list:
    return (["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
            + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def layer_name(b) -> str:
    return "classifier" if b["kind"] == "fc" else f"{b['layer']}"


def _summary(result: dict) -> list:
    """The section's opening: the run, accuracy, runtime pruning."""
    name, n, lanes = result["name"], result["samples"], result["lanes"]
    L = []
    L += [f"**{name}**: `python -m reports.efficiency --config {Path(result['config']).name}` "
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
    return L


def _counts(result: dict) -> list:
    """Three-way agreement of the work counts: PyTorch model, golden, RTL counters."""
    n, b = result["samples"], result["counts"]["golden"]
    L = []
    L += ["**Counts: PyTorch model, golden, RTL counters** (events = nonzero inputs issued "
          "to a live group of lanes; synaptic ops = lane additions into computed neurons; "
          "updates = (position, live group) neuron-unit cycles):", ""]
    hdr = ["layer"]
    srcs = [s for s in ("model", "golden", "rtl") if result["counts"][s] is not None]
    for key in ("events", "synaptic_ops", "neuron_updates"):
        hdr += [f"{key} {s}" for s in srcs]
    rows = []
    for l, g in enumerate(b):
        row = [layer_name(g)]
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
          + ("" if result["counts"]["model"] is not None
             else " A random network has no PyTorch model."), ""]
    return L


def _operations(result: dict) -> list:
    """Dense work and where it goes (results stored before the input-channel count have
    no ``ops``: rendered with the earlier columns)."""
    n, b, rtl = result["samples"], result["counts"]["golden"], result["counts"]["rtl"]
    if not all("ops" in g for g in b):
        return _operations_v1(result)
    L = []
    L += ["**Synaptic operations**: the dense count (every in-map tap of every neuron; "
          "padding taps are not operations) split into what the core skips and what it "
          "does (`efficiency.breakdown`; the parts add up to the dense count). The "
          "operation count (`ops`, docs/INTEGER_SPEC.md section 9, the paper's way) counts "
          "every in-map input of a computed (position, channel) from a computed input "
          "channel, zero or not; `k^2 C_in` count is the earlier one (computed neurons x "
          "`k^2 C_in`, padding and closed input channels included) against the padded "
          "dense count:", ""]
    hdr = ["layer", "dense", "skipped: positions", "skipped: channels",
           "skipped: input channels", "skipped: zero inputs", "done (RTL)", "ops",
           "dense / ops", "k^2 C_in count", "padded dense / k^2 C_in count", "dense / done"]
    keys = ("dense_ops", "skipped_position_ops", "skipped_channel_ops",
            "skipped_input_channel_ops", "skipped_zero_input_ops")
    rows, tot = [], np.zeros(9)
    for l, g in enumerate(b):
        done = (rtl[l] or g)["synaptic_ops"]
        vals = np.array([g[k] for k in keys] + [done, g["ops"], g["ops_output_only"],
                                                 g["dense_ops_padded"]], float)
        tot += vals
        rows.append([layer_name(g)] + [_fmt(v / n) for v in vals[:7]]
                    + [_ratio(vals[0], vals[6]), _fmt(vals[7] / n), _ratio(vals[8], vals[7]),
                       _ratio(vals[0], vals[5])])
    rows.append(["**total**"] + [f"**{_fmt(v / n)}**" for v in tot[:7]]
                + [f"**{_ratio(tot[0], tot[6])}**", f"**{_fmt(tot[7] / n)}**",
                   f"**{_ratio(tot[8], tot[7])}**", f"**{_ratio(tot[0], tot[5])}**"])
    L += _table(hdr, rows) + [""]
    L += ["The operation count and the core's differ by the zero inputs: the count takes "
          "FLOPs of a dense convolution over the computed neurons and input channels, while "
          "the core issues only nonzero inputs (spikes), so its reduction is the larger one.",
          ""]
    return L


def _operations_v1(result: dict) -> list:
    """The operations table of a result stored before the input-channel count."""
    n, b, rtl = result["samples"], result["counts"]["golden"], result["counts"]["rtl"]
    L = ["**Synaptic operations** (stored before the input-channel count: dense includes "
         "padding taps; the paper's count here is `k^2 C_in x active channels x active "
         "positions`):", ""]
    hdr = ["layer", "dense", "skipped: positions", "skipped: channels", "skipped: zero inputs",
           "done (RTL)", "paper's count", "dense / paper", "dense / done"]
    rows, tot = [], np.zeros(6)
    for l, g in enumerate(b):
        done = (rtl[l] or g)["synaptic_ops"]
        vals = np.array([g["dense_ops"], g["skipped_position_ops"], g["skipped_channel_ops"],
                         g["skipped_zero_input_ops"], done, g["paper_ops"]], float)
        tot += vals
        rows.append([layer_name(g)] + [_fmt(v / n) for v in vals]
                    + [_ratio(vals[0], vals[5]), _ratio(vals[0], vals[4])])
    rows.append(["**total**"] + [f"**{_fmt(v / n)}**" for v in tot]
                + [f"**{_ratio(tot[0], tot[5])}**", f"**{_ratio(tot[0], tot[4])}**"])
    return L + _table(hdr, rows) + [""]


def _cycles(result: dict) -> list:
    """Cycles, input issues and lanes."""
    n, b, rtl = result["samples"], result["counts"]["golden"], result["counts"]["rtl"]
    L = []
    L += ["**Cycles and lanes** (skipping off: the same core built with `--no-skipping`, "
          "closed form; lane bound: synaptic ops / lanes, the fewest cycles a lane-parallel "
          "core can take; ideal: events + neuron updates; lane utilization: synaptic ops / "
          "(lanes x cycles); lane-cycles = lanes x cycles, split "
          "into lane additions, lanes idle while their packed group takes an input (the lanes "
          "a packed group does not fill) and lanes idle in cycles that issue no input: "
          "neuron updates, window set-up, pruning passes, frame load):", ""]
    hdr = ["layer", "cycles (RTL)", "lane bound", "ideal", "cycles / ideal", "skipping off",
           "skipping off / cycles", "input issues skipped: positions / groups / zero inputs",
           "lane utilization", "idle in issue", "idle, no issue"]
    rows = []
    tc = np.zeros(7)
    for c, g in zip(result["cycles"], b):
        lu = c["lanes"]
        bound = lu["adds"] * c["cycles"] / max(lu["lane_cycles"], 1)    # synaptic ops / lanes
        tc += [c["cycles"], c["ideal"], c["skip_off"], lu["lane_cycles"], lu["idle_in_issue"],
               lu["idle_no_issue"], bound]
        rows.append([layer_name(g), _fmt(c["cycles"] / n), _fmt(round(bound / n)), _fmt(c["ideal"] / n),
                     f"{c['cycles'] / max(c['ideal'], 1):.2f}", _fmt(c["skip_off"] / n),
                     _ratio(c["skip_off"], c["cycles"]),
                     " / ".join(_fmt(g[k] / n) for k in ("skipped_position_issues",
                                                         "skipped_group_issues",
                                                         "skipped_zero_input_issues")),
                     f"{lu['utilization'] * 100:.1f}%",
                     f"{lu['idle_in_issue'] / max(lu['lane_cycles'], 1) * 100:.1f}%",
                     f"{lu['idle_no_issue'] / max(lu['lane_cycles'], 1) * 100:.1f}%"])
    done_total = sum((r or g)["synaptic_ops"] for r, g in zip(rtl, b))
    rows.append(["**total**", f"**{_fmt(tc[0] / n)}**", _fmt(round(tc[6] / n)), _fmt(tc[1] / n),
                 f"**{tc[0] / max(tc[1], 1):.2f}**", _fmt(tc[2] / n),
                 f"**{_ratio(tc[2], tc[0])}**", "",
                 f"{done_total / tc[3] * 100:.1f}%", f"{tc[4] / tc[3] * 100:.1f}%",
                 f"{tc[5] / tc[3] * 100:.1f}%"])
    L += _table(hdr, rows) + [""]
    return L


def _energy(result: dict) -> list:
    """Energy per inference by Eq. 31."""
    L = []
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
    return L


def _memory(result: dict) -> list:
    """Memory: the paper's formula beside the core's SRAM bits."""
    L = []
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
    return L


def _synthesis(result: dict) -> list:
    """Synthesis per unit, and iCE40."""
    L = []
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
    return L


def render(result: dict, figures_rel: str = "figures") -> str:
    """The markdown of one network's section."""
    name = result["name"]
    L = []
    for section in (_summary, _counts, _operations, _cycles, _energy, _memory, _synthesis):
        L += section(result)
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
    paper_ops = sum(g["ops"] if "ops" in g else g["paper_ops"] for g in b)
    old = (sum(g["dense_ops_padded"] for g in b) / sum(g["ops_output_only"] for g in b)
           if all("ops" in g for g in b) else None)
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
             "(>4.7x)", f"{dense / paper_ops:.2f}x"
             + (f" (earlier k^2 C_in count: {old:.2f}x)" if old else "")],
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
    return f"<!-- BEGIN GENERATED {name} (python -m reports.efficiency; do not edit) -->"


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


def demote(md: str, levels: int = 1) -> str:
    return "\n".join(("#" * levels + line) if line.startswith("#") else line
                     for line in md.splitlines())


def write_results(results_md: Path, blocks: dict):
    """Replace (or append) each generated block of ``results_md``, atomically."""
    text = results_md.read_text() if results_md.exists() else "# Results\n"
    for name, body in blocks.items():
        text = replace_block(text, name, body, where=str(results_md))
    atomic_write(results_md, text)
