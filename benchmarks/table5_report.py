"""Table 5's summary and output: accuracy over seeds, memory, operations and golden agreement
per rung (:func:`summarize`), the paper's targets (:func:`evaluate_targets`), the Figure 4
sweep points, the text table, the markdown (:func:`format_markdown`) and the Figure 4 plot
(:func:`plot_sweep`), from the runs' results alone (as ``table5.json`` stores them).
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from matplotlib.figure import Figure

from benchmarks.table5_plan import (AGREEMENT_TARGET, BASE_CONFIG, LABELS, LADDER,
                                    LVTH_MIN_RECOVERY, QUANT_MAX_DROP, SPQUANT_MAX_DROP,
                                    SPQUANT_MIN_OPS_REDUCTION, SWEEP, sweep_rung)
from hw.memory_report import TERNARY_INFO_BITS as TERNARY_PAPER_BITS   # the paper's 1.58 bits
from project_config.files import atomic_write


# Two-sided 95% Student t quantiles by degrees of freedom (1..30); 1.96 beyond.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
PAPER_LVTH_GAIN = 1.58      # points, the paper's gain of the learnable threshold


def paired_gain(summary: dict, a: str = "spquant_lvth", b: str = "spquant") -> dict | None:
    """Accuracy of rung ``a`` minus rung ``b`` over the seeds both have (paired: the two
    rungs of one seed start from the same Quant-SNN checkpoint): mean, std, n and the 95%
    confidence interval of the mean (Student t); None with fewer than 2 pairs."""
    sa, sb = summary.get(a, {}), summary.get(b, {})
    if "accuracies" not in sa or "accuracies" not in sb:
        return None
    acc_a, acc_b = dict(zip(sa["seeds"], sa["accuracies"])), dict(zip(sb["seeds"], sb["accuracies"]))
    seeds = sorted(set(acc_a) & set(acc_b))
    if len(seeds) < 2:
        return None
    d = [acc_a[k] - acc_b[k] for k in seeds]
    mean, std = statistics.fmean(d), statistics.stdev(d)
    t = _T95[len(d) - 2] if len(d) - 1 <= len(_T95) else 1.96
    half = t * std / math.sqrt(len(d))
    return {"mean": mean, "std": std, "n": len(d), "ci95": [mean - half, mean + half],
            "seeds": seeds, "differences": d}


def _mean_std(values):
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(results: list) -> dict:
    """Per rung: accuracy mean and std over seeds (percent), memory, ops, agreement."""
    by_rung = {}
    for r in results:
        by_rung.setdefault(r["rung"], []).append(r)
    out = {}
    for rung, runs in by_rung.items():
        ok = sorted((r for r in runs if r.get("ok")), key=lambda r: r["seed"])
        s = {"label": LABELS[rung], "runs": len(runs), "ok": len(ok),
             "failed": [f"seed{r['seed']}: {r.get('error')}" for r in runs if not r.get("ok")]}
        if ok:
            accs = [100.0 * r["accuracy"] for r in ok]
            s["accuracy_mean"], s["accuracy_std"] = _mean_std(accs)
            s["accuracies"] = accs
            s["seeds"] = [r["seed"] for r in ok]
            s["memory"] = ok[0]["memory"]
            act = [r["activity"] for r in ok]
            if all("ops_output_only" in a for a in act):
                s["ops"] = statistics.fmean(a["ops"] for a in act)
                s["dense_ops"] = act[0]["dense_ops"]
                s["ops_output_only"] = statistics.fmean(a["ops_output_only"] for a in act)
                s["dense_ops_padded"] = act[0]["dense_ops_padded"]
            else:       # stored before the operation count of INTEGER_SPEC section 9
                s["ops_output_only"] = statistics.fmean(a["ops"] for a in act)
                s["dense_ops_padded"] = act[0]["dense_ops"]
            s["membrane"] = ok[0]["membrane"]
            s["pruning_on"] = ok[0]["pruning_on"]
            s["masks_measured"] = all(r["activity"]["masks_measured"] for r in ok)
            s["spatial_keep"] = [statistics.fmean(r["activity"]["layers"][l]["spatial_keep"]
                                                  for r in ok)
                                 for l in range(len(ok[0]["activity"]["layers"]))]
            s["channel_keep"] = [statistics.fmean(r["activity"]["layers"][l]["channel_keep"]
                                                  for r in ok)
                                 for l in range(len(ok[0]["activity"]["layers"]))]
            ag = [r["agreement"] for r in ok]
            if all(a["status"] == "ok" for a in ag):
                vals = [a["prediction_agreement"] for a in ag]
                s["agreement"] = {"status": "ok", "min": min(vals), "mean": statistics.fmean(vals),
                                  "met": min(vals) >= AGREEMENT_TARGET}
            elif any(a["status"] == "ok" for a in ag):
                s["agreement"] = {"status": "partial",
                                  "reason": "; ".join(a.get("reason", "") for a in ag
                                                      if a["status"] != "ok")}
            else:
                s["agreement"] = {"status": "n/a", "reason": ag[0].get("reason", "")}
        out[rung] = s
    fp = out.get("fp")
    for s in out.values():
        if "memory" not in s:
            continue
        if "ops" in s:
            s["ops_reduction"] = s["dense_ops"] / s["ops"] if s["ops"] > 0 else math.inf
        s["ops_output_only_reduction"] = (s["dense_ops_padded"] / s["ops_output_only"]
                                          if s["ops_output_only"] > 0 else math.inf)
        if fp and "memory" in fp:
            s["memory_reduction"] = fp["memory"]["total_mb"] / s["memory"]["total_mb"]
    return out


def evaluate_targets(summary: dict) -> list:
    """The paper's targets, each met / not met / not evaluated (a rung missing)."""
    def acc(r):
        s = summary.get(r)
        return s.get("accuracy_mean") if s else None

    fp, q, sp, lv = (acc(r) for r in LADDER)
    targets = []

    def add(name, met, detail):
        targets.append({"target": name, "status": ("not evaluated" if met is None else
                                                   "met" if met else "not met"),
                        "detail": detail})

    if fp is None or q is None:
        add(f"Quant-SNN within {QUANT_MAX_DROP:g} point of FP", None, "a rung is missing")
    else:
        add(f"Quant-SNN within {QUANT_MAX_DROP:g} point of FP", fp - q <= QUANT_MAX_DROP,
            f"FP {fp:.2f}%, Quant-SNN {q:.2f}%: drop {fp - q:+.2f} points")
    name = (f"SpQuant-SNN within {SPQUANT_MAX_DROP:g} points of FP with >= "
            f"{SPQUANT_MIN_OPS_REDUCTION:g}x fewer ops")
    if fp is None or sp is None:
        add(name, None, "a rung is missing")
    else:
        s_sp = summary["spquant"]
        note = "" if s_sp["masks_measured"] else (
            " (no pruning masks in the model's records: all positions and channels counted)")
        _, red, old = op_counts(s_sp)
        how = "ops counted as docs/INTEGER_SPEC.md section 9"
        if red is None:
            red, how = old, "earlier k^2 C_in count"
        add(name, fp - sp <= SPQUANT_MAX_DROP and red >= SPQUANT_MIN_OPS_REDUCTION,
            f"FP {fp:.2f}%, SpQuant-SNN {sp:.2f}%: drop {fp - sp:+.2f} points; {red:.2f}x "
            f"fewer ops ({how}; the earlier k^2 C_in count: {old:.2f}x){note}")
    name = "learnable threshold recovers >= half of the pruning loss"
    if q is None or sp is None or lv is None:
        add(name, None, "a rung is missing")
    else:
        loss, gain = q - sp, lv - sp
        if loss <= 0:
            add(name, True, f"no pruning loss to recover (Quant-SNN {q:.2f}%, SpQuant-SNN "
                            f"{sp:.2f}%); learnable threshold {lv:.2f}%")
        else:
            add(name, gain >= LVTH_MIN_RECOVERY * loss,
                f"pruning loss {loss:.2f} points, recovered {gain:+.2f} "
                f"({100 * gain / loss:.0f}%)")
    name = ("learnable threshold: paired gain over >= 5 seeds with its 95% CI, "
            "significantly above 0")
    g = paired_gain(summary)
    if g is None:
        add(name, None, "fewer than 2 paired seeds")
    else:
        lo, hi = g["ci95"]
        add(name, lo > 0 if g["n"] >= 5 else False,
            f"gain {g['mean']:+.2f} ± {g['std']:.2f} points (n = {g['n']}), 95% CI "
            f"[{lo:+.2f}, {hi:+.2f}]; the paper reports +{PAPER_LVTH_GAIN}, which the CI "
            + ("includes" if lo <= PAPER_LVTH_GAIN <= hi else "excludes"))
    name = (f"integer rungs export and match golden (>= {100 * AGREEMENT_TARGET:g}% identical "
            "predictions)")
    vals, refused, missing = [], [], []
    for r in LADDER[1:]:
        a = summary.get(r, {}).get("agreement")
        if not a:
            missing.append(f"{r}: not run")
        elif a["status"] != "ok":
            refused.append(f"{r}: {a['reason']}")
        else:
            vals.append((r, a["min"]))
    detail = "; ".join([f"{r} min {100 * v:.2f}%" for r, v in vals] + refused + missing)
    if refused or any(v < AGREEMENT_TARGET for _, v in vals):
        add(name, False, detail)
    elif missing:
        add(name, None, detail)
    else:
        add(name, True, detail)
    return targets


def sweep_points(summary: dict) -> list:
    pts = []
    for mode in SWEEP:
        s = summary.get(sweep_rung(mode))
        if not s or "accuracy_mean" not in s:
            continue
        pts.append({"membrane": mode, "rung": sweep_rung(mode),
                    "bits": s["memory"]["membrane_bits"],
                    "paper_bits": TERNARY_PAPER_BITS if mode == "ternary" else
                    s["memory"]["membrane_bits"],
                    "accuracy_mean": s["accuracy_mean"], "accuracy_std": s["accuracy_std"],
                    "seeds": len(s["accuracies"]), "memory_mb": s["memory"]["total_mb"],
                    "membrane_mb": s["memory"]["membrane_mb"]})
    return pts


# --- output -------------------------------------------------------------------------------

def _fmt_acc(s):
    if "accuracy_mean" not in s:
        return "failed"
    return f"{s['accuracy_mean']:.2f} ± {s['accuracy_std']:.2f} (n={len(s['accuracies'])})"


def _fmt_agreement(s):
    a = s.get("agreement")
    if not a:
        return "-"
    if a["status"] == "ok":
        return f"{100 * a['min']:.2f}% ({'met' if a['met'] else 'NOT met'})"
    return "n/a"


def _rows(summary):
    rows = []
    for rung in LADDER:
        s = summary.get(rung)
        if s is None:
            continue
        if "memory" not in s:
            rows.append([s["label"], "failed", "-", "-", "-", "-", "-", "-"])
            continue
        mem_red = s.get("memory_reduction")
        ops, red, old = op_counts(s)
        rows.append([s["label"], _fmt_acc(s), f"{s['memory']['total_mb']:.4f}",
                     "-" if mem_red is None else f"{mem_red:.2f}x",
                     "-" if ops is None else f"{ops / 1e6:.3f}",
                     "-" if red is None else f"{red:.2f}x", f"{old:.2f}x", _fmt_agreement(s)])
    return rows


def op_counts(s: dict):
    """(ops, reduction, reduction by the earlier k^2 C_in count) of a rung's summary; a
    summary stored before the count of INTEGER_SPEC section 9 has only the earlier count
    (then under ``ops`` and ``ops_reduction``): (None, None, that)."""
    if "ops_output_only_reduction" in s:
        return s.get("ops"), s.get("ops_reduction"), s["ops_output_only_reduction"]
    return None, None, s["ops_reduction"]


HEADER = ["Rung", "Test accuracy % (mean ± std)", "Memory MB", "Memory vs FP", "MOps / inference",
          "Ops vs FP", "Ops vs FP, k^2 C_in count", "Golden agreement"]


def format_text_table(summary, targets) -> str:
    rows = [HEADER] + _rows(summary)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    pts = sweep_points(summary)
    if pts:
        lines += ["", "membrane precision sweep (Quant-SNN, 4-bit PoT):"]
        for p in pts:
            lines.append(f"  {p['membrane']:8s} {p['bits']:>4g} bits  accuracy "
                         f"{p['accuracy_mean']:.2f} ± {p['accuracy_std']:.2f} (n={p['seeds']})  "
                         f"memory {p['memory_mb']:.4f} MB")
    lines += ["", "paper targets:"]
    for t in targets:
        lines.append(f"  [{t['status']}] {t['target']}: {t['detail']}")
    return "\n".join(lines)


def format_markdown(summary, targets, meta) -> str:
    title = meta.get("title") or (f"Table 5 ladder on event digits ({meta['epochs']} epochs, "
                                  f"{meta['seeds']} seed(s) per rung)")
    lines = [f"## {title}", ""]
    if meta.get("quick"):
        lines += ["**Smoke run (`--quick`): tiny data and one epoch; the numbers mean nothing.**",
                  ""]
    train_s = meta.get("train_wall_s")
    trained = (f"; the {meta['runs']} trainings took {train_s / 60:.0f} min of one core in all"
               if train_s else "")
    command = meta.get("command", "python -m benchmarks.table5")
    base = Path(meta.get("base_config") or BASE_CONFIG).name
    lines += [f"`{command} {meta['argv']}`; base config "
              f"`configs/{base}`, every run on one thread, {meta['workers']} at a time; "
              f"this invocation {meta['wall_s'] / 60:.1f} min (finished runs are reused, not "
              f"retrained){trained}.", ""]
    lines.append("| " + " | ".join(HEADER) + " |")
    lines.append("|" + "|".join("---" for _ in HEADER) + "|")
    for r in _rows(summary):
        lines.append("| " + " | ".join(r) + " |")
    any_s = next((s for s in summary.values() if "memory" in s), None)
    if any_s:
        m = any_s["memory"]
        q = summary.get("quant", {}).get("memory", {})
        paper = (f" With the paper's 1.58-bit ternary membrane, Quant-SNN would be "
                 f"{q['total_mb_paper_1p58']:.4f} MB." if "total_mb_paper_1p58" in q else "")
        lines += ["",
                  f"Memory: `M = w_bits * N_w + u_bits * N_u + s_bits * N_s` with N_w = "
                  f"{m['n_weights']} weights (conv layers and classifier; biases and batch norm "
                  f"fold into the integer thresholds and are not counted), N_u = N_s = "
                  f"{m['n_membranes']} spiking neurons, 1-bit spikes; full precision is 32-bit "
                  f"weights and membranes; the ternary membrane counts 2 bits, as the hardware "
                  f"stores it.{paper} MB = 10^6 bytes.",
                  "",
                  "Ops (docs/INTEGER_SPEC.md section 9, the paper's way): per layer "
                  "(classifier included) and step, every in-map kernel tap of a computed "
                  "(position, channel) from an input channel the previous layer computed, "
                  "averaged over the test set, against the same count with everything "
                  "computed (padding taps are not operations). `k^2 C_in count`: the earlier "
                  "count, per spiking layer and step `k * k * C_in * active output channels * "
                  "active positions`, against `k * k * C_in * C_out * H * W`.",
                  ""]
        pr = [s for s in summary.values() if s.get("pruning_on") and "memory" in s]
        for s in pr:
            sk = ", ".join(f"{v:.2f}" for v in s["spatial_keep"])
            ck = ", ".join(f"{v:.2f}" for v in s["channel_keep"])
            lines.append(f"- {s['label']}: measured kept fraction per layer, positions "
                         f"[{sk}], channels [{ck}]"
                         + ("" if s["masks_measured"] else
                            " (the model recorded no masks: counted as all kept)"))
        if pr:
            lines.append("")
    na = [s for r, s in summary.items() if r in LADDER and s.get("agreement", {}).get("status")
          in ("n/a", "partial")]
    for s in na:
        lines.append(f"- {s['label']}: golden agreement n/a ({s['agreement']['reason']})")
    if na:
        lines.append("")
    lines += ["Targets (the paper's claims, on this small task):", ""]
    for t in targets:
        lines.append(f"- **{t['status']}**: {t['target']}. {t['detail']}.")
    pts = sweep_points(summary)
    if pts:
        lines += ["", "### Figure 4: membrane precision (Quant-SNN, 4-bit PoT weights)", "",
                  "| Membrane | Bits | Test accuracy % | Seeds | Memory MB | Membrane MB |",
                  "|---|---|---|---|---|---|"]
        for p in pts:
            bits = "2 (1.58 in the paper)" if p["membrane"] == "ternary" else f"{p['bits']:g}"
            lines.append(f"| {p['membrane']} | {bits} | {p['accuracy_mean']:.2f} ± "
                         f"{p['accuracy_std']:.2f} | {p['seeds']} | {p['memory_mb']:.4f} | "
                         f"{p['membrane_mb']:.4f} |")
        lines += ["", "![membrane precision vs accuracy](figure4_membrane_precision.png)"]
    failed = [f"{s['label']} {f}" for s in summary.values() for f in s["failed"]]
    if failed:
        lines += ["", "Failed runs:", ""] + [f"- {f}" for f in failed]
    return "\n".join(lines) + "\n"


def plot_sweep(summary, path: Path) -> bool:
    """Figure 4 (accuracy and total memory per membrane precision) as a PNG at ``path``;
    False (nothing written) without sweep points."""
    pts = sweep_points(summary)
    if not pts:
        return False
    pts = sorted(pts, key=lambda p: (p["paper_bits"], p["membrane"]))
    xs = list(range(len(pts)))
    names = [f"{p['membrane']}\n{p['bits']:g} b" + (" (1.58)" if p["membrane"] == "ternary" else "")
             for p in pts]
    fig = Figure(figsize=(6.4, 4.4), dpi=120)    # no pyplot: no global backend or state
    ax = fig.subplots()
    ax2 = ax.twinx()
    ax2.bar(xs, [p["memory_mb"] for p in pts], width=0.5, color="0.85", label="total memory (MB)",
            zorder=0)
    ax2.set_ylabel("total memory (MB)")
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.errorbar(xs, [p["accuracy_mean"] for p in pts], yerr=[p["accuracy_std"] for p in pts],
                marker="o", color="tab:blue", capsize=4, label="test accuracy (%)")
    for x, p in zip(xs, pts):
        ax.annotate(f"{p['memory_mb']:.3g} MB", (x, p["accuracy_mean"]), textcoords="offset points",
                    xytext=(0, 9), ha="center", fontsize=8)
    ax.margins(x=0.1, y=0.25)
    ax.set_xticks(xs)
    ax.set_xticklabels(names)
    ax.set_xlabel("membrane precision")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Membrane precision vs accuracy (Quant-SNN, event digits)")
    ax.grid(axis="y", alpha=0.3)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2,
              fontsize=8, frameon=False)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png"))
    return True

