"""The weight-pruning study's output, from its stored points alone (``results.json``):
flat rows (:func:`flat_points`), Pareto fronts, the observations, the markdown
(:func:`format_markdown`) and the two accuracy-vs-cost plots (:func:`write_plots`)."""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from benchmarks.runner import write_json
from project_config.files import atomic_write


def pareto(points: list, cost: str) -> list:
    """Indices of the points no other point beats on both ``cost`` (lower) and accuracy."""
    front = []
    for i, p in enumerate(points):
        dominated = any(
            q[cost] <= p[cost] and q["accuracy"] >= p["accuracy"]
            and (q[cost] < p[cost] or q["accuracy"] > p["accuracy"])
            for j, q in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def flat_points(points: list) -> list:
    """One flat record per point for tables, fronts and plots."""
    out = []
    for p in points:
        e, m = p["energy"], p["memory"]
        out.append({"bits": p["bits"], "mode": p["mode"], "sparsity": p["target_sparsity"],
                    "accuracy": p["accuracy"], "mask_sparsity": p["mask_sparsity"],
                    "code_sparsity": p["code_sparsity"], "energy_nj": e["skip_nj"],
                    "energy_core_nj": e["core_nj"], "energy_wide_nj": e["skip_width_scaled_nj"],
                    "energy_synaptic_only_nj": e["skip_synaptic_only_nj"],
                    "memory_kbit": m["sparse_bits"] / 1e3, "memory_dense_kbit": m["dense_bits"] / 1e3,
                    "memory_bitmap_kbit": m["bitmap_bits"] / 1e3,
                    "events_saved": e["savings"]["events_saved"],
                    "cycles_saved": e["savings"]["cycles_saved"],
                    "adds_saved": e["savings"]["adds_saved"],
                    "source": "golden" if p["counts_source"] == "golden" else "float",
                    "agreement": p.get("golden_agreement"),
                    "before_ft": p.get("accuracy_before_finetune"),
                    "fp32_nj": e["fp32_dense_mac_nj"]})
    order = {"dense": 0, "cumulative": 1, "joint": 2}
    out.sort(key=lambda r: (r["bits"], order[r["mode"]], r["sparsity"]))
    return out


def plot(rows: list, panels: list, path: Path, note: str = "") -> bool:
    """Accuracy against each (cost key, axis label) of ``panels``, Pareto front marked."""
    colors = {2: "tab:blue", 4: "tab:orange", 8: "tab:green"}
    markers = {"dense": "o", "cumulative": "s", "joint": "^"}
    fig = Figure(figsize=(6.5 * len(panels), 4.8))    # no pyplot: no global backend or state
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (cost, xlabel) in zip(axes[0], panels):
        for r in rows:
            ax.scatter(r[cost], 100 * r["accuracy"], color=colors.get(r["bits"], "k"),
                       marker=markers[r["mode"]], s=40, zorder=3)
            ax.annotate(f"{r['sparsity']:.1f}", (r[cost], 100 * r["accuracy"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        front = sorted((rows[i] for i in pareto(rows, cost)), key=lambda r: r[cost])
        ax.plot([r[cost] for r in front], [100 * r["accuracy"] for r in front], "k--", lw=1,
                zorder=2, label="Pareto front")
        ax.scatter([r[cost] for r in front], [100 * r["accuracy"] for r in front], s=140,
                   facecolors="none", edgecolors="k", zorder=4)
        for b, c in colors.items():
            if any(r["bits"] == b for r in rows):
                ax.scatter([], [], color=c, marker="o", label=f"{b}-bit PoT")
        for mname, mk in markers.items():
            if any(r["mode"] == mname for r in rows):
                ax.scatter([], [], color="gray", marker=mk, label=mname)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("event digits, ternary membrane; point labels = weight sparsity" + note,
                 fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    return True


ISO_ACCURACY_POINTS = 1.0      # "iso-accuracy": within 1 point of the dense model


def findings(rows: list) -> list:
    """Mechanical observations: per bit width the sparsest cumulative point within
    ISO_ACCURACY_POINTS of dense, and joint vs cumulative at equal bits and sparsity."""
    out = []
    for b in sorted({r["bits"] for r in rows}):
        dense = next((r for r in rows if r["bits"] == b and r["mode"] == "dense"), None)
        if dense is None:
            continue
        iso = [r for r in rows if r["bits"] == b and r["mode"] == "cumulative"
               and 100 * (dense["accuracy"] - r["accuracy"]) <= ISO_ACCURACY_POINTS]
        best = max(iso, key=lambda r: r["sparsity"], default=None)
        line = (f"- {b}-bit: dense {100 * dense['accuracy']:.1f}% "
                f"({100 * dense['code_sparsity']:.0f}% of the codes already zero from "
                f"quantization alone")
        below = [r["sparsity"] for r in rows if r["bits"] == b and r["mode"] == "cumulative"
                 and r["sparsity"] <= dense["code_sparsity"]]
        if below:
            line += (f"; masks at s <= {max(below):.1f} prune little that the quantizer did "
                     "not already zero")
        line += "); "
        if best is None:
            line += "no cumulative level stays within 1 point of it."
        else:
            line += (f"cumulative pruning stays within {ISO_ACCURACY_POINTS:.0f} point up to "
                     f"s = {best['sparsity']:.1f} ({100 * best['accuracy']:.1f}%, E skip "
                     f"{best['energy_nj']:.2f} vs {dense['energy_nj']:.2f} nJ dense, memory "
                     f"{best['memory_kbit']:.1f} vs {dense['memory_kbit']:.1f} kbit).")
        for j in (r for r in rows if r["bits"] == b and r["mode"] == "joint"):
            c = next((r for r in rows if r["bits"] == b and r["mode"] == "cumulative"
                      and r["sparsity"] == j["sparsity"]), None)
            if c is not None:
                line += (f" Joint at s = {j['sparsity']:.1f}: {100 * j['accuracy']:.1f}% vs "
                         f"cumulative {100 * c['accuracy']:.1f}%.")
        out.append(line)
    return out


def format_markdown(rows: list, points: list, meta: dict) -> str:
    pct = lambda v: "" if v is None else f"{100 * v:.1f}"
    e_front, m_front = set(pareto(rows, "energy_nj")), set(pareto(rows, "memory_kbit"))
    fp32 = max((r["fp32_nj"] for r in rows), default=0.0)
    L = ["# Weight pruning x PoT quantization (event digits, ternary membrane)", "",
         f"Command: `python -m benchmarks.weight_pruning_study {meta['argv']}`; "
         f"wall time {meta['wall_s'] / 60:.1f} min with {meta['workers']} worker(s) "
         f"({'quick smoke run, not a result' if meta['quick'] else ('full grid' if meta['full'] else 'reduced default')}).",
         f"Dense training {meta['epochs']} epochs; cumulative pruning fine-tunes "
         f"{meta['finetune_epochs']} epoch(s) per level at lr {meta['finetune_lr']}; joint = "
         f"from scratch, {meta['epochs']} epochs, mask from the initial weights' magnitudes. "
         f"Magnitude scope: {meta['scope']}. Seed {meta['seed']}, one seed per point "
         f"(differences of about 1 point are within seed noise). Test samples: "
         f"{meta['test_samples']} for accuracy, {meta['count_samples']} for the counts. "
         f"The k-th cumulative level has been trained {meta['epochs']} + k x "
         f"{meta['finetune_epochs']} epochs in all, the dense point {meta['epochs']}: part of "
         "a cumulative point's gain over dense can be the extra training.", "",
         "Columns: `mask` = fraction pruned by the mask; `zero codes` = fraction of weights "
         "whose PoT code is zero (mask plus the quantizer's rounding to zero); memory = "
         "weight bits only (membranes and spikes do not change here): `paper` = b x nonzero "
         "codes (no index cost), `dense` = b x all weights (what the core's weight SRAM "
         "holds), `bitmap` = 1 bit per weight + b per nonzero code; energy per inference by "
         "Eq. 31 with BitNet's 7 nm INT8 add (0.007 pJ): `E skip` = zero weights skipped "
         "(nonzero input x nonzero weight adds + 2 adds per computed neuron update), "
         "`E core` = the core as built (every nonzero input is added in every computed "
         "lane, zero weight or not), `E wide` = E skip with each add scaled by accumulator "
         "width / 8, `syn only` = E skip without the membrane updates (Spikformer-style). "
         "`ev saved` = events the core would not issue if it skipped zero weights per "
         "group. `src` = golden (integer export) or float (PyTorch spikes; 8-bit). "
         "P = on the Pareto front (E: accuracy vs E skip, M: accuracy vs paper memory).", "",
         "| bits | mode | s | mask % | zero codes % | acc % | acc before FT % | paper kbit "
         "| dense kbit | bitmap kbit | E skip nJ | E core nJ | E wide nJ | syn only nJ "
         "| ev saved % | src | golden = torch % | P |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows):
        tag = ("E" if i in e_front else "") + ("M" if i in m_front else "")
        L.append(f"| {r['bits']} | {r['mode']} | {r['sparsity']:.1f} | {pct(r['mask_sparsity'])} "
                 f"| {pct(r['code_sparsity'])} | {pct(r['accuracy'])} | {pct(r['before_ft'])} "
                 f"| {r['memory_kbit']:.1f} | {r['memory_dense_kbit']:.1f} "
                 f"| {r['memory_bitmap_kbit']:.1f} | {r['energy_nj']:.2f} | {r['energy_core_nj']:.2f} "
                 f"| {r['energy_wide_nj']:.2f} | {r['energy_synaptic_only_nj']:.2f} "
                 f"| {pct(r['events_saved'])} | {r['source']} | {pct(r['agreement'])} | {tag} |")
    L += ["", "Observations (one seed each):", ""] + findings(rows)
    L += ["", f"Full-precision reference: the same network as dense FP32 multiply-accumulates "
          f"(every synapse every step, plus a float membrane update per neuron) costs "
          f"{fp32:.0f} nJ per inference by the same equation.", ""]
    checks = [p for p in points if p.get("float_count_skip_nj") is not None]
    if checks:
        dev = max(abs(p["float_count_skip_nj"] - p["energy"]["skip_nj"]) / p["energy"]["skip_nj"]
                  for p in checks)
        L += [f"Float-side vs golden counts (2- and 4-bit points, where both exist): E skip "
              f"differs by at most {100 * dev:.2f}%, so the 8-bit float-side numbers use the "
              "same yardstick.", ""]
    L += ["## Does the core skip zero weights?", "",
          "No. `hw/core.py` skips zero *inputs* (a find-first-set over each input word issues "
          "only nonzero channels), masked positions and all-masked channel groups. In the "
          "ACCUMULATE state one nonzero input is broadcast to all lanes of a group in one "
          "cycle, each lane with its own weight code; a zero code makes that lane add 0, but "
          "the cycle is spent for the group. So pruning weights changes neither the cycles "
          "nor the number of lane additions of the current core; it only shrinks memory if "
          "the weights are stored sparsely (the core's weight SRAM is dense: `dense kbit`).",
          "",
          "What skipping would save, from golden's counts: an event (nonzero input issued to "
          "a live group) could be dropped when every live lane of the group has a zero code "
          "for that tap. The fraction of such events (`ev saved`), and the fraction of adds "
          "that multiply a zero weight (`E core` vs `E skip`):", "",
          "| bits | mode | s | events saved % | ideal cycles saved % | lane adds saved % |",
          "|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['bits']} | {r['mode']} | {r['sparsity']:.1f} | {pct(r['events_saved'])} "
                 f"| {pct(r['cycles_saved'])} | {pct(r['adds_saved'])} |")
    L += ["", f"With {meta['lanes']} lanes per group, an event is skippable only if all "
          f"{meta['lanes']} live lanes hold a zero weight for that tap: with unstructured "
          "sparsity s that happens with probability about s^lanes, so the event (cycle) "
          "saving stays far below the add saving. Lane additions of zero weights could be "
          "clock-gated for energy (the `E skip` column) without saving cycles; saving cycles "
          "needs structured (per-group) sparsity or a weight-stationary schedule.", ""]
    if meta.get("failed"):
        L += ["## Failed jobs", ""] + [f"- {f}" for f in meta["failed"]] + [""]
    return "\n".join(L) + "\n"


def write_outputs(out: Path, rows: list, points: list, meta: dict, failures=()) -> list:
    """results.json, the markdown and the two plots; returns the paths written."""
    payload = {"meta": meta, "points": rows, "details": points,
               "pareto_energy": pareto(rows, "energy_nj"),
               "pareto_memory": pareto(rows, "memory_kbit"),
               "failures": list(failures)}
    write_json(out / "results.json", payload, indent=1)
    atomic_write(out / "weight_pruning_study.md", format_markdown(rows, points, meta))
    return [out / "weight_pruning_study.md", out / "results.json"] + write_plots(rows, out)


def write_plots(rows: list, folder: Path) -> list:
    """accuracy_vs_energy.png and accuracy_vs_memory.png (Pareto fronts marked) in
    ``folder``; returns the paths written (none without points)."""
    wrote = []
    fp32 = max((r["fp32_nj"] for r in rows), default=None)
    energy_panels = [("energy_nj", "nJ per inference, Eq. 31, 7 nm INT8 adds (the paper's "
                                   "way), zero weights skipped"),
                     ("energy_wide_nj", "nJ per inference, adds scaled by accumulator width / 8")]
    note = f"\nFP32 dense-MAC reference of the same net: {fp32:.0f} nJ (off scale)" if fp32 else ""
    if rows and plot(rows, energy_panels, folder / "accuracy_vs_energy.png", note):
        wrote.append(folder / "accuracy_vs_energy.png")
    memory_panels = [("memory_kbit", "weight memory, kbit: bits x nonzero codes (paper)"),
                     ("memory_bitmap_kbit", "weight memory, kbit: bitmap (1 bit/weight) + "
                                            "bits x nonzero codes")]
    if rows and plot(rows, memory_panels, folder / "accuracy_vs_memory.png"):
        wrote.append(folder / "accuracy_vs_memory.png")
    return wrote

