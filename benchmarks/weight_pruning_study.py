"""Unstructured weight pruning x PoT weight quantization on the offline event digits.

``python -m benchmarks.weight_pruning_study [--quick | --full] [--epochs N] [--out DIR]``

After Schaefer et al. (2023), "The Hardware Impact of Quantization and Pruning for Weights
in Spiking Neural Networks": on ``configs/event_digits.yaml`` (ternary membrane, no
runtime pruning), for PoT weight bits b in {2, 4, 8} and unstructured magnitude sparsity s
in {0, 0.5, 0.7, 0.8, 0.9}:

- **cumulative**: train b once dense, then prune by magnitude to 0.5, fine-tune, prune
  further to 0.7 (the earlier mask kept), fine-tune, ... ;
- **joint**: train from scratch with the target sparsity's mask set at initialization
  (by the initial weights' magnitudes) and held through training, quantized throughout
  (a subset of points by default, all with ``--full``).

Each point records test accuracy (PyTorch, after BN recalibration); weight memory three
ways (dense storage b x all weights; the paper-style sparse count b x nonzero codes,
which ignores the index cost; and a bitmap format, 1 bit per weight + b per nonzero);
and energy per inference by Equation 31 (``efficiency.energy``) from operation counts on
the test set. For 2- and 4-bit weights the counts are golden's (``golden.work_counts``
on the integer export, completed with weight-aware counts by ``efficiency.counts``).
8-bit PoT codes cannot be exported (K = 126 needs ~140-bit accumulators; the integer
datapath stops at 62), so 8-bit points use the same count definitions on the PyTorch
model's spikes (a float-side count); for 2 and 4 bits both are computed and compared.

Writes ``<out>/results.json``, ``<out>/weight_pruning_study.md``, ``<out>/accuracy_vs_energy.png``
and ``<out>/accuracy_vs_memory.png`` (Pareto fronts marked), and the integer export of
every 2- and 4-bit point under ``<out>/exports/``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import yaml

from project_config import UserError, cli_main, config_from_dict
from project_config.files import atomic_write
from project_config.schema import deep_merge, load_raw_config
from efficiency.model_counts import model_counts

BASE_CONFIG = "event_digits.yaml"
BITS = (2, 4, 8)
SPARSITIES = (0.5, 0.7, 0.8, 0.9)                # pruned levels after the dense point
EXPORTABLE_BITS = (2, 4)
# Reduced default (about 10 minutes on 2 idle cores with 2 workers, see --help).
DEFAULT = {"epochs": 8, "finetune_epochs": 2, "joint": ((2, 0.8), (4, 0.8), (4, 0.9), (8, 0.8)),
           "count_samples": None}
FULL = {"epochs": 15, "finetune_epochs": 3,
        "joint": tuple((b, s) for b in BITS for s in SPARSITIES), "count_samples": None}
QUICK = {"epochs": 1, "finetune_epochs": 1, "joint": ((4, 0.9), (8, 0.9)),
         "sparsities": (0.5, 0.9), "max_train": 128, "max_test": 64, "count_samples": None}
FINETUNE_LR = 1e-3
NJ = 1e3                                          # pJ per nJ


# --- configs ------------------------------------------------------------------------------

def study_config(base_raw: dict, bits: int, where: str):
    """(Config, YAML text): the base with ``bits``-bit PoT weights, a ternary membrane and
    no runtime (membrane-prior) pruning, so weight pruning is the only sparsity added."""
    raw = deep_merge(base_raw, {"quant": {"membrane": "ternary", "weight_bits": int(bits)},
                                "pruning": {"spatial_ratio": 0.0, "channel_gate_threshold": 0.0}})
    text = yaml.safe_dump(raw, sort_keys=False)
    return config_from_dict(yaml.safe_load(text), where=f"{where} [{bits}-bit]"), text


# --- training -----------------------------------------------------------------------------

def fit(model, cfg, x_tr, y_tr, epochs: int, lr: float, seed: int):
    """Adam + cosine schedule + TET loss (as ``train.trainer``), then BN recalibration.
    Weight masks are buffers of the PoT layers, so they hold through every step."""
    import torch
    from train.data import to_time_major
    from train.loss import tet_loss
    from train.trainer import recalibrate_bn
    tc, T = cfg.train, cfg.timesteps
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    x_t, y_t = torch.as_tensor(x_tr), torch.as_tensor(y_tr)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x_t), generator=gen)
        for i in range(0, len(perm), tc["batch_size"]):
            idx = perm[i:i + tc["batch_size"]]
            loss = tet_loss(model(to_time_major(x_t[idx], T)), y_t[idx], tc["tet_lambda"],
                            tc["tet_target"])
            if not torch.isfinite(loss):
                raise RuntimeError(f"training diverged (loss {float(loss)})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    recalibrate_bn(model, x_tr, T)
    model.eval()
    return model


# --- measurements -------------------------------------------------------------------------

def weight_memory(report: list, bits: int) -> dict:
    """Weight memory in bits: dense storage, paper-style sparse (b x nonzero codes, no index
    cost) and a bitmap format (1 bit per weight + b per nonzero code)."""
    n = sum(r["weights"] for r in report)
    nnz = n - sum(r["zero_codes"] for r in report)
    return {"weights": n, "nonzero_weights": nnz, "dense_bits": bits * n,
            "sparse_bits": bits * nnz, "bitmap_bits": n + bits * nnz}


def energy_report(rows: list, samples: int) -> dict:
    """Equation 31 energies (nJ per inference) and the zero-weight-skip savings."""
    from efficiency import dense_mac_energy, snn_energy
    from efficiency.counts import weight_skip_savings
    core = snn_energy(rows, samples)                                  # zero weights cost an add
    skip = snn_energy(rows, samples, synaptic_key="weighted_ops")     # zero weights skipped
    wide = snn_energy(rows, samples, synaptic_key="weighted_ops", width_scaled=True)
    fp = dense_mac_energy(rows, samples)
    return {"core_nj": core["total_pj"] / NJ, "skip_nj": skip["total_pj"] / NJ,
            "skip_synaptic_only_nj": skip["synaptic_pj"] / NJ,
            "skip_membrane_nj": skip["membrane_pj"] / NJ,
            "skip_width_scaled_nj": wide["total_pj"] / NJ,
            "fp32_dense_mac_nj": fp["total_pj"] / NJ,
            "adds_core": core["adds_per_sample"], "adds_skip": skip["adds_per_sample"],
            "savings": weight_skip_savings(rows)}


def measure_point(model, cfg, data: dict, lanes: int, count_samples, export_dir: Path) -> dict:
    import golden
    from efficiency.counts import recount
    from train.trainer import evaluate
    from train.weight_pruning import sparsity_report
    bits = cfg.quant["weight_bits"]
    x_te, y_te = data["x_te"], data["y_te"]
    out = {"accuracy": evaluate(model, x_te, y_te, cfg.timesteps)}
    rep = sparsity_report(model)
    n = sum(r["weights"] for r in rep)
    out["mask_sparsity"] = sum(r["pruned"] for r in rep) / n
    out["code_sparsity"] = sum(r["zero_codes"] for r in rep) / n
    out["layers"] = rep
    out["memory"] = weight_memory(rep, bits)
    xc = x_te if count_samples is None else x_te[:count_samples]
    out["count_samples"] = len(xc)
    float_rows = model_counts(model, cfg, xc, lanes)
    if bits in EXPORTABLE_BITS:
        from model_export.format import save_export
        from model_export.from_torch import export_model
        net = export_model(model, cfg)
        save_export(net, export_dir)
        res = golden.run(net, xc)
        rows = golden.work_counts(net, xc, lanes)
        mine = recount(net, xc, lanes, result=res)
        rows = [dict(m, **g) for m, g in zip(mine, rows)]
        import torch
        from train.data import to_time_major
        with torch.no_grad():
            pred = model.predict(model(to_time_major(xc, cfg.timesteps))).numpy()
        out["golden_agreement"] = float((res.predictions == pred).mean())
        out["golden_accuracy"] = float((res.predictions == y_te[:len(xc)]).mean())
        out["counts_source"] = "golden"
        fl = energy_report(float_rows, len(xc))
        out["float_count_skip_nj"] = fl["skip_nj"]
    else:
        rows = float_rows
        out["counts_source"] = "float-side (8-bit PoT is not exportable)"
    out["energy"] = energy_report(rows, len(xc))
    out["counts"] = [{k: v for k, v in r.items()} for r in rows]
    return out


# --- jobs (each in its own process) -------------------------------------------------------

def _load_data(cfg, max_train, max_test):
    from train.data import load_dataset
    x_tr, y_tr, x_te, y_te = load_dataset(cfg)
    if max_train:
        x_tr, y_tr = x_tr[:max_train], y_tr[:max_train]
    if max_test:
        x_te, y_te = x_te[:max_test], y_te[:max_test]
    return {"x_tr": x_tr, "y_tr": y_tr, "x_te": x_te, "y_te": y_te}


def run_job(job: dict) -> dict:
    """One chain (dense + cumulative levels of one bit width) or one joint point; never raises."""
    t0 = time.time()
    try:
        points = _run_job(job)
        return {"job": job["name"], "ok": True, "points": points, "wall_s": time.time() - t0}
    except Exception as e:   # one failed job must not stop the others
        return {"job": job["name"], "ok": False, "points": [], "wall_s": time.time() - t0,
                "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=8)}


def _run_job(job):
    import torch
    torch.set_num_threads(1)
    from train.model import build_model
    from train.trainer import evaluate, recalibrate_bn
    from train.weight_pruning import prune_by_magnitude
    cfg = config_from_dict(yaml.safe_load(job["config_text"]), where=job["where"])
    data = _load_data(cfg, job["max_train"], job["max_test"])
    lanes, bits, out = cfg.hardware["lanes"], cfg.quant["weight_bits"], Path(job["out"])
    torch.manual_seed(job["seed"])
    model = build_model(cfg)
    points = []

    def record(mode, sparsity, t_start, **extra):
        p = {"bits": bits, "mode": mode, "target_sparsity": sparsity, **extra}
        tag = f"b{bits}_{mode}_s{int(round(100 * sparsity)):02d}"
        p.update(measure_point(model, cfg, data, lanes, job["count_samples"],
                               out / "exports" / tag))
        p["wall_s"] = time.time() - t_start
        points.append(p)

    t = time.time()
    if job["kind"] == "joint":
        prune_by_magnitude(model, job["sparsity"], job["scope"])    # at initialization
        fit(model, cfg, data["x_tr"], data["y_tr"], job["epochs"], cfg.train["lr"], job["seed"])
        record("joint", job["sparsity"], t, epochs=job["epochs"])
        return points
    fit(model, cfg, data["x_tr"], data["y_tr"], job["epochs"], cfg.train["lr"], job["seed"])
    record("dense", 0.0, t, epochs=job["epochs"])
    for k, s in enumerate(job["sparsities"]):
        t = time.time()
        prune_by_magnitude(model, s, job["scope"])
        recalibrate_bn(model, data["x_tr"], cfg.timesteps)
        before = evaluate(model, data["x_te"], data["y_te"], cfg.timesteps)
        fit(model, cfg, data["x_tr"], data["y_tr"], job["finetune_epochs"], job["finetune_lr"],
            job["seed"] + 1 + k)
        record("cumulative", s, t, epochs=job["finetune_epochs"], accuracy_before_finetune=before)
    return points


def plan_jobs(args, base_raw, base_path) -> list:
    jobs = []
    common = {"seed": args.seed, "max_train": args.max_train, "max_test": args.max_test,
              "count_samples": args.count_samples, "scope": args.scope, "out": args.out}
    for b in args.bits:
        _, text = study_config(base_raw, b, str(base_path))
        where = f"{base_path} [{b}-bit]"
        jobs.append(dict(common, name=f"{b}-bit cumulative", kind="chain", config_text=text,
                         where=where, epochs=args.epochs, finetune_epochs=args.finetune_epochs,
                         finetune_lr=args.finetune_lr, sparsities=list(args.sparsities)))
    for b, s in args.joint:
        if b not in args.bits:
            continue
        _, text = study_config(base_raw, b, str(base_path))
        jobs.append(dict(common, name=f"{b}-bit joint {s}", kind="joint", config_text=text,
                         where=f"{base_path} [{b}-bit]", epochs=args.epochs, sparsity=s))
    # Longest first, so two workers finish together.
    return sorted(jobs, key=lambda j: -(j["epochs"] + len(j.get("sparsities", ()))
                                       * j.get("finetune_epochs", 0)))


def run_all(jobs, workers, log=print):
    results = []
    if workers == 1:
        for job in jobs:
            results.append(run_job(job))
            log(_progress(results[-1], len(results), len(jobs)))
        return results
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(run_job, job) for job in jobs]
        for fut in as_completed(futures):
            results.append(fut.result())
            log(_progress(results[-1], len(results), len(jobs)))
    return results


def _progress(r, i, n):
    if not r["ok"]:
        return f"[{i}/{n}] {r['job']}: FAILED {r['error']}"
    accs = ", ".join(f"s={p['target_sparsity']:.1f}: {100 * p['accuracy']:.1f}%" for p in r["points"])
    return f"[{i}/{n}] {r['job']} ({r['wall_s']:.0f} s): {accs}"


# --- summary ------------------------------------------------------------------------------

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
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    colors = {2: "tab:blue", 4: "tab:orange", 8: "tab:green"}
    markers = {"dense": "o", "cumulative": "s", "joint": "^"}
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
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
    atomic_write(out / "results.json", json.dumps(payload, indent=1, default=str) + "\n")
    atomic_write(out / "weight_pruning_study.md", format_markdown(rows, points, meta))
    return [out / "weight_pruning_study.md", out / "results.json"] + write_plots(rows, out)


def write_plots(rows: list, folder: Path) -> list:
    """accuracy_vs_energy.png and accuracy_vs_memory.png (Pareto fronts marked) in
    ``folder``; returns the paths written (none without matplotlib or points)."""
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


# --- CLI ----------------------------------------------------------------------------------

def _joint_list(text: str):
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            b, s = item.split(":")
            out.append((int(b), float(s)))
        except ValueError:
            raise UserError(f"--joint: {item!r} is not BITS:SPARSITY (e.g. 4:0.8)") from None
    return tuple(out)


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.weight_pruning_study",
        description="Unstructured magnitude weight pruning x PoT weight bits on the event "
                    "digits (Schaefer et al. 2023): cumulative and joint pruning, accuracy, "
                    "weight memory and Eq. 31 energy, Pareto fronts.",
        epilog=f"Default (reduced): {DEFAULT['epochs']} dense epochs per bit width, "
               f"{DEFAULT['finetune_epochs']} fine-tune epochs per sparsity level, joint points "
               f"{', '.join(f'{b}:{s}' for b, s in DEFAULT['joint'])} (7 jobs, 2 workers). "
               f"--full: {FULL['epochs']} / {FULL['finetune_epochs']} epochs, joint at every "
               "bits x sparsity (15 jobs). Counts always on the whole test split. One epoch "
               "of the training split takes about 5 s on one idle core; see the markdown for "
               "the measured wall time.")
    ap.add_argument("--config", default=BASE_CONFIG, help=f"base config (default {BASE_CONFIG})")
    ap.add_argument("--out", default=None, help="output folder (default runs/weight_pruning_study; "
                                                "runs/weight_pruning_study_quick with --quick)")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (128 training, 64 test "
                    "samples, 1 epoch, sparsities 0.5 and 0.9)")
    ap.add_argument("--full", action="store_true", help="the whole grid with longer training")
    ap.add_argument("--epochs", type=int, default=None, help="dense and joint training epochs")
    ap.add_argument("--finetune-epochs", type=int, default=None,
                    help="fine-tune epochs after each cumulative pruning level")
    ap.add_argument("--finetune-lr", type=float, default=FINETUNE_LR,
                    help=f"fine-tune learning rate (default {FINETUNE_LR})")
    ap.add_argument("--bits", type=lambda s: tuple(int(v) for v in s.split(",") if v),
                    default=BITS, help="PoT weight bits, comma-separated (default 2,4,8)")
    ap.add_argument("--sparsities", type=lambda s: tuple(float(v) for v in s.split(",") if v),
                    default=None, help="cumulative levels (default 0.5,0.7,0.8,0.9)")
    ap.add_argument("--joint", type=_joint_list, default=None,
                    help="joint points as BITS:SPARSITY,... (default: a subset; all with --full)")
    ap.add_argument("--scope", choices=("layer", "global"), default="layer",
                    help="magnitude ranking per layer (same sparsity in every layer) or global")
    ap.add_argument("--count-samples", type=int, default=None,
                    help="test samples for the operation counts (default: the whole test split)")
    ap.add_argument("--workers", type=int, default=2, help="jobs in parallel, one thread each")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the markdown and plots from <out>/results.json, no training")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--max-test", type=int, default=None)
    args = ap.parse_args(argv)
    if args.quick and args.full:
        raise UserError("--quick and --full exclude each other")
    preset = QUICK if args.quick else FULL if args.full else DEFAULT
    args.epochs = preset["epochs"] if args.epochs is None else args.epochs
    if args.finetune_epochs is None:
        args.finetune_epochs = preset["finetune_epochs"]
    if args.sparsities is None:
        args.sparsities = preset.get("sparsities", SPARSITIES)
    if args.joint is None:
        args.joint = preset["joint"]
    if args.count_samples is None:
        args.count_samples = preset["count_samples"]
    if args.quick:
        args.max_train = args.max_train or QUICK["max_train"]
        args.max_test = args.max_test or QUICK["max_test"]
    if args.out is None:
        args.out = "runs/weight_pruning_study_quick" if args.quick else "runs/weight_pruning_study"
    for b in args.bits:
        if b not in BITS:
            raise UserError(f"--bits: {b} is not one of {list(BITS)}")
    for b, _ in args.joint:
        if b not in BITS:
            raise UserError(f"--joint: bits {b} is not one of {list(BITS)}")
    for s in list(args.sparsities) + [s for _, s in args.joint]:
        if not 0.0 < s < 1.0:
            raise UserError(f"sparsity {s} is not in (0, 1)")
    if list(args.sparsities) != sorted(set(args.sparsities)):
        raise UserError("--sparsities: must increase (cumulative pruning only adds)")
    for name in ("epochs", "workers"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name}: {getattr(args, name)} must be at least 1")
    if args.finetune_epochs < 0:
        raise UserError(f"--finetune-epochs: {args.finetune_epochs} must not be negative")
    for name in ("count_samples", "max_train", "max_test"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UserError(f"--{name.replace('_', '-')}: {v} must be at least 1")
    return args


def report_only(out: Path) -> int:
    """Rewrite the markdown and plots from an existing ``<out>/results.json``."""
    try:
        payload = json.loads((out / "results.json").read_text())
        meta, points = payload["meta"], payload["details"]
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{out / 'results.json'}: cannot read a study result "
                        f"({type(e).__name__})") from None
    wrote = write_outputs(out, flat_points(points), points, meta, payload.get("failures", ()))
    print(f"wrote {', '.join(map(str, wrote))}")
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.report_only:
        return report_only(Path(args.out))
    base_path, base_raw = load_raw_config(args.config)
    cfg, _ = study_config(base_raw, args.bits[0], str(base_path))
    jobs = plan_jobs(args, base_raw, base_path)
    out = Path(args.out)
    print(f"weight_pruning_study: {len(jobs)} jobs, {args.workers} workers -> {out}")
    t0 = time.time()
    results = run_all(jobs, min(args.workers, len(jobs)))
    wall = time.time() - t0
    points = [p for r in results for p in r["points"]]
    rows = flat_points(points)
    failed = [f"{r['job']}: {r['error']}" for r in results if not r["ok"]]
    from train.data import load_dataset
    n_test = len(load_dataset(cfg)[2]) if args.max_test is None else args.max_test
    meta = {"argv": " ".join(argv), "base_config": str(base_path), "epochs": args.epochs,
            "finetune_epochs": args.finetune_epochs, "finetune_lr": args.finetune_lr,
            "bits": list(args.bits), "sparsities": list(args.sparsities),
            "joint": [list(j) for j in args.joint], "scope": args.scope, "seed": args.seed,
            "quick": args.quick, "full": args.full, "workers": args.workers,
            "max_train": args.max_train, "max_test": args.max_test, "test_samples": n_test,
            "count_samples": args.count_samples or n_test, "lanes": cfg.hardware["lanes"],
            "wall_s": wall, "job_wall_s": {r["job"]: r["wall_s"] for r in results},
            "failed": failed, "energy_table": "BitNet Table 2, 7 nm (efficiency.energy)"}
    wrote = write_outputs(out, rows, points, meta, [r for r in results if not r["ok"]])
    print(f"wrote {', '.join(map(str, wrote))} ({wall / 60:.1f} min)")
    for f in failed:
        print(f"failed: {f}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    cli_main(main)
