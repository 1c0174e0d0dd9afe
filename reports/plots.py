"""Plots of the efficiency report (``python -m reports.efficiency``): where one network's
dense work goes, its cycles against the ideal and the core without skipping, and its
energy per layer, as PNG files written atomically."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

from project_config.files import atomic_write
from .render import NJ, layer_name

matplotlib.use("Agg")                  # files only, no display (before pyplot is imported)
import matplotlib.pyplot as plt        # noqa: E402  (after the backend is chosen)


def plot(result: dict, figures: Path) -> list:
    """PNG plots of one network's result; returns the paths written."""
    name, n = result["name"], result["samples"]
    b = result["counts"]["golden"]
    labels = [layer_name(r) for r in b]
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
    """``fig`` as a PNG at ``path``, atomically."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
