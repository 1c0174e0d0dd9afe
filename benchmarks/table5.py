"""The paper's Table 5 ladder and Figure 4 membrane-precision sweep on the offline event digits.

``python -m benchmarks.table5 [--epochs N] [--seeds 3] [--sweep-seeds 1] [--out runs/table5]
[--workers 2] [--quick]``

Trains, from ``configs/event_digits.yaml`` with per-run overrides:

- the ladder of Table 5 (``--seeds`` seeds each): FP SNN (float membrane, full-precision
  weights), Quant-SNN (ternary membrane, 4-bit PoT weights), SpQuant-SNN (Quant-SNN with
  spatial-channel pruning) and SpQuant-SNN with the learnable threshold (the first three
  with a fixed threshold);
- the membrane-precision sweep of Figure 4 (``--sweep-seeds`` seeds each): Quant-SNN with
  an int2, int3, int4 or float membrane (the ternary point is the Quant-SNN rung).

Every run trains on one thread in its own process (``--workers`` at a time) and writes into
``<out>/<rung>/seed<k>/``: ``model.pt``, ``metrics.json``, ``train.log``, ``export/`` (integer
rungs) and ``result.json`` (what is measured below). A run whose checkpoint is complete and
was trained with the same settings is not trained again; one that was interrupted resumes.

Measured per run: test accuracy (after the trainer's BN recalibration); total memory by the
paper's formula ``M = w_bits * N_w + u_bits * N_u + s_bits * N_s``; synaptic operations by
the paper's formula (per spiking layer and step, ``k * k * C_in * active output channels *
active positions``), with the active fractions measured on the test set; and, for every run
that exports, the fraction of test samples on which the golden integer model predicts the
same class as PyTorch. Writes ``<out>/table5.md``, ``<out>/table5.json`` and
``<out>/figure4_membrane_precision.png``.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import yaml

from project_config import UserError, cli_main, config_from_dict
from project_config.files import atomic_write
from project_config.schema import deep_merge, load_raw_config

BASE_CONFIG = "event_digits.yaml"
# Measured on one core (CPU time per epoch of the 1347-sample training split): FP about
# 2.5 s, Quant-SNN 4 s, float-membrane Quant-SNN 3 s, int2 4.5 s, int4 and SpQuant-SNN 6 s;
# about 15 s per run for data, BN recalibration, evaluation and the golden agreement. The
# default 16 runs (3 seeds per rung, 1 per sweep point) x 15 epochs: about 1400 CPU-s.
DEFAULT_EPOCHS = 15
DEFAULT_GATE_PENALTY = 0.5
QUICK = {"epochs": 1, "max_train": 128, "max_test": 64}
MB = 1e6                      # bytes per MB, as the paper counts (VGG-9 membranes: 3.68 MB)
FULL_PRECISION_BITS = 32
TERNARY_STORED_BITS = 2       # {-1, 0, +1} in 2 bits, as the hardware stores it
TERNARY_PAPER_BITS = math.log2(3)   # the paper's "1.58-bit" membrane

# The paper's targets (Table 5 and the abstract), in accuracy points (percent).
QUANT_MAX_DROP = 1.0
SPQUANT_MAX_DROP = 2.0
SPQUANT_MIN_OPS_REDUCTION = 4.0
LVTH_MIN_RECOVERY = 0.5
AGREEMENT_TARGET = 0.995

LADDER = ("fp", "quant", "spquant", "spquant_lvth")
SWEEP = ("ternary", "int2", "int3", "int4", "float")     # ternary = the "quant" rung
LABELS = {
    "fp": "FP SNN",
    "quant": "Quant-SNN",
    "spquant": "SpQuant-SNN",
    "spquant_lvth": "SpQuant-SNN + learnable threshold",
    "sweep_int2": "Quant-SNN, int2 membrane",
    "sweep_int3": "Quant-SNN, int3 membrane",
    "sweep_int4": "Quant-SNN, int4 membrane",
    "sweep_float": "Quant-SNN, float membrane",
}


# --- configs ------------------------------------------------------------------------------

def build_config(base_raw: dict, overrides: dict, where: str):
    """(validated Config, its YAML text) for ``base_raw`` with ``overrides``.

    The text is what the checkpoint embeds, so every run can be reloaded on its own.
    """
    raw = deep_merge(base_raw, overrides)
    text = yaml.safe_dump(raw, sort_keys=False)
    return config_from_dict(yaml.safe_load(text), where=where), text


def pruning_overrides(on: bool, gate_penalty: float) -> dict:
    """The pruning section of a rung: the paper's 35% spatial and 0.47 gate when on."""
    return {"spatial_ratio": 0.35 if on else 0.0, "channel_gate_threshold": 0.47 if on else 0.0,
            "gate_penalty": float(gate_penalty) if on else 0.0}


def rung_overrides(gate_penalty: float) -> dict:
    """Overrides of every rung (ladder and sweep) on top of the base config."""
    quant = {"membrane": "ternary", "weight_bits": 4, "learnable_vth": False}
    off, on = pruning_overrides(False, gate_penalty), pruning_overrides(True, gate_penalty)
    rungs = {
        "fp": {"quant": {"membrane": "float", "weight_bits": None, "learnable_vth": False},
               "pruning": off},
        "quant": {"quant": quant, "pruning": off},
        "spquant": {"quant": quant, "pruning": on},
        "spquant_lvth": {"quant": dict(quant, learnable_vth=True), "pruning": on},
    }
    for mode in SWEEP[1:]:
        rungs[f"sweep_{mode}"] = {"quant": dict(quant, membrane=mode), "pruning": off}
    return rungs


def pruning_is_on(cfg) -> bool:
    p = cfg.pruning
    return p.get("spatial_ratio", 0.0) > 0.0 or p.get("channel_gate_threshold", 0.0) > 0.0


def sweep_rung(mode: str) -> str:
    return "quant" if mode == "ternary" else f"sweep_{mode}"


def plan_runs(args, base_raw, base_path) -> list:
    """One job (a plain, picklable dict) per (rung, seed), ladder first."""
    overrides = rung_overrides(args.gate_penalty)
    seeds = {r: args.seeds for r in LADDER}
    for mode in SWEEP:
        r = sweep_rung(mode)
        seeds[r] = max(seeds.get(r, 0), args.sweep_seeds)
    only = set(args.only) if args.only else None
    jobs = []
    for rung, n in seeds.items():
        if only is not None and rung not in only:
            continue
        cfg, text = build_config(base_raw, overrides[rung], where=f"{base_path} [table5 {rung}]")
        for seed in range(n):
            settings = {"config_text": text, "epochs": args.epochs, "seed": seed,
                        "max_train": args.max_train, "max_test": args.max_test}
            jobs.append({"rung": rung, "seed": seed, "label": LABELS[rung],
                         "out_dir": str(Path(args.out) / rung / f"seed{seed}"),
                         "where": f"{base_path} [table5 {rung}]", "settings": settings,
                         "pruning_on": pruning_is_on(cfg)})
    return jobs


# --- what a run measures ------------------------------------------------------------------

def membrane_bits(mode: str, ternary_bits: float = TERNARY_STORED_BITS) -> float:
    from train.neuron import MULTIBIT_MODES
    if mode == "float":
        return FULL_PRECISION_BITS
    if mode == "ternary":
        return ternary_bits
    if mode == "binary":
        return 1
    return MULTIBIT_MODES[mode]


def memory_report(cfg) -> dict:
    """Total memory by the paper's formula, M = w_bits N_w + u_bits N_u + s_bits N_s.

    N_w: the weights of every conv layer and of the classifier (biases and batch-norm fold
    into the integer thresholds and are not counted); N_u = N_s: the spiking neurons,
    sum over spiking layers of C_out * H_out * W_out (one membrane and one 1-bit spike each).
    """
    w_bits = cfg.quant["weight_bits"] or FULL_PRECISION_BITS
    mode = cfg.quant["membrane"]
    n_w = sum(l.out_channels * l.in_channels * l.kernel[0] * l.kernel[1] for l in cfg.layers)
    n_u = sum(l.out_channels * l.out_height * l.out_width for l in cfg.spiking_layers)
    n_s = n_u

    def total(u_bits):
        return w_bits * n_w + u_bits * n_u + 1 * n_s

    bits = total(membrane_bits(mode))
    out = {"weight_bits": w_bits, "membrane_bits": membrane_bits(mode), "spike_bits": 1,
           "n_weights": n_w, "n_membranes": n_u, "n_spikes": n_s,
           "weight_mb": w_bits * n_w / 8 / MB, "membrane_mb": membrane_bits(mode) * n_u / 8 / MB,
           "spike_mb": n_s / 8 / MB, "total_bits": bits, "total_mb": bits / 8 / MB}
    if mode == "ternary":
        out["total_mb_paper_1p58"] = total(TERNARY_PAPER_BITS) / 8 / MB
    return out


def measure_activity(model, cfg, x, batch=256) -> dict:
    """Synaptic operations per inference by the paper's formula, with measured masks.

    Per spiking layer and step: ``k*k*C_in * active output channels * active positions``,
    from the records' ``channel_keep`` [T, B, C_out] and ``spatial_keep`` [T, B, H, W]
    (all active where a record has none), summed over steps and averaged over samples.
    ``dense`` is the same count with every channel and position active (the unpruned net).
    """
    import torch
    from train.data import to_time_major
    T = cfg.timesteps
    layers = cfg.spiking_layers
    L = len(layers)
    ops = [0.0] * L
    spatial = [0.0] * L
    channel = [0.0] * L
    rate = [0.0] * L
    has_spatial = [False] * L
    has_channel = [False] * L
    n = 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = to_time_major(x[i:i + batch], T)
            B = xb.shape[1]
            _, records = model(xb, record=True)
            if len(records) != L:
                raise RuntimeError(f"model returned {len(records)} layer records, config has {L}")
            for l, (rec, spec) in enumerate(zip(records, layers)):
                H, W, C = spec.out_height, spec.out_width, spec.out_channels
                sp, ch = rec.get("spatial_keep"), rec.get("channel_keep")
                if sp is not None:
                    if tuple(sp.shape) != (T, B, H, W):
                        raise RuntimeError(f"layer {l}: spatial_keep is {list(sp.shape)}, "
                                           f"expected {[T, B, H, W]}")
                    pos = sp.float().sum(dim=(-2, -1))               # [T, B]
                    has_spatial[l] = True
                else:
                    pos = torch.full((T, B), float(H * W))
                if ch is not None:
                    if tuple(ch.shape) != (T, B, C):
                        raise RuntimeError(f"layer {l}: channel_keep is {list(ch.shape)}, "
                                           f"expected {[T, B, C]}")
                    chan = ch.float().sum(dim=-1)                    # [T, B]
                    has_channel[l] = True
                else:
                    chan = torch.full((T, B), float(C))
                fan_in = spec.kernel[0] * spec.kernel[1] * spec.in_channels
                ops[l] += float((fan_in * chan * pos).sum())
                spatial[l] += float(pos.sum()) / (H * W)
                channel[l] += float(chan.sum()) / C
                rate[l] += float(rec["spikes"].float().mean()) * B
            n += B
    model.train(was_training)
    n = max(n, 1)
    per_layer = []
    for l, spec in enumerate(layers):
        fan_in = spec.kernel[0] * spec.kernel[1] * spec.in_channels
        dense = fan_in * spec.out_channels * spec.out_height * spec.out_width * T
        per_layer.append({"layer": l, "ops": ops[l] / n, "dense_ops": dense,
                          "spatial_keep": spatial[l] / (n * T),
                          "channel_keep": channel[l] / (n * T),
                          "spatial_measured": has_spatial[l], "channel_measured": has_channel[l],
                          "spike_rate": rate[l] / n})
    total, dense = sum(p["ops"] for p in per_layer), sum(p["dense_ops"] for p in per_layer)
    return {"ops": total, "dense_ops": dense, "ops_fraction": total / dense,
            "masks_measured": any(has_spatial) or any(has_channel), "layers": per_layer}


def measure_agreement(model, cfg, x, y, export_dir: Path) -> dict:
    """Export to integers, then golden vs PyTorch (model_export.agreement.measure)."""
    from model_export.agreement import measure
    from model_export.format import load_export, save_export
    from model_export.from_torch import export_model
    try:
        net = export_model(model, cfg)
    except UserError as e:
        return {"status": "n/a", "reason": f"not exportable: {e}"}
    save_export(net, export_dir)
    r = measure(model, cfg, load_export(export_dir), x, y)
    r["status"] = "ok"
    r["met"] = r["prediction_agreement"] >= AGREEMENT_TARGET
    return r


# --- one run (in a worker process) --------------------------------------------------------

def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_one(job: dict) -> dict:
    """Train (or resume, or reuse) one run and measure it; never raises."""
    out = Path(job["out_dir"])
    t0 = time.time()
    result = {k: job[k] for k in ("rung", "seed", "label", "out_dir", "settings")}
    try:
        result.update(_run_one(job, out))
        result["ok"] = True
    except Exception as e:   # one failed run must not stop the others
        result.update(ok=False, error=f"{type(e).__name__}: {e}",
                      traceback=traceback.format_exc(limit=8))
    result["elapsed_s"] = time.time() - t0
    if result["ok"]:
        atomic_write(out / "result.json", json.dumps(result, indent=2) + "\n")
    return result


def _run_one(job, out: Path) -> dict:
    import torch
    torch.set_num_threads(1)
    from train.data import load_dataset
    from train.trainer import checkpoint_complete, load_checkpoint, train

    settings = job["settings"]
    ckpt, run_file, result_file = out / "model.pt", out / "run.json", out / "result.json"
    prev = _read_json(result_file)
    same = (_read_json(run_file) or {}).get("settings") == settings
    if same and prev and prev.get("ok") and ckpt.is_file() and checkpoint_complete(ckpt):
        prev["trained"] = "reused (complete checkpoint and result)"
        return {k: v for k, v in prev.items() if k not in ("rung", "seed", "label", "out_dir",
                                                           "settings", "elapsed_s")}
    raw = yaml.safe_load(settings["config_text"])
    cfg = config_from_dict(raw, where=job["where"])
    out.mkdir(parents=True, exist_ok=True)
    result_file.unlink(missing_ok=True)
    with open(out / "train.log", "a") as logf:
        def log(msg):
            logf.write(msg + "\n")
            logf.flush()

        kwargs = dict(epochs=settings["epochs"], out_dir=str(out), seed=settings["seed"],
                      max_train=settings["max_train"], max_test=settings["max_test"],
                      progress=False, log=log, threads=1)
        if same and ckpt.is_file() and checkpoint_complete(ckpt):
            trained = "skipped (complete checkpoint)"
        elif same and ckpt.is_file():
            log("resuming the interrupted run")
            try:
                train(cfg, settings["config_text"], resume=True, **kwargs)
                trained = "resumed"
            except UserError as e:
                log(f"cannot resume ({e}); training from scratch")
                train(cfg, settings["config_text"], **kwargs)
                trained = "trained"
        else:
            for stale in (ckpt, out / "metrics.json"):
                stale.unlink(missing_ok=True)
            atomic_write(run_file, json.dumps({"settings": settings}, indent=2) + "\n")
            log(f"training {job['rung']} seed {settings['seed']}")
            train(cfg, settings["config_text"], **kwargs)
            trained = "trained"

    model, cfg = load_checkpoint(ckpt)
    metrics = torch.load(ckpt, map_location="cpu", weights_only=True)["metrics"]
    _, _, x_te, y_te = load_dataset(cfg)
    if settings["max_test"] is not None:
        x_te, y_te = x_te[:settings["max_test"]], y_te[:settings["max_test"]]
    activity = measure_activity(model, cfg, x_te)
    return {
        "trained": trained,
        "accuracy": float(metrics["final_test_accuracy"]),
        "test_samples": int(metrics["test_samples"]),
        "train_samples": int(metrics["train_samples"]),
        "epochs_run": int(metrics["epochs_run"]),
        "train_wall_s": float(metrics["wall_time_s"]),
        "vth": [float(v) for v in model_vth(model)],
        "membrane": cfg.quant["membrane"],
        "weight_bits": cfg.quant["weight_bits"],
        "learnable_vth": cfg.quant["learnable_vth"],
        "pruning": dict(cfg.pruning),
        "pruning_on": pruning_is_on(cfg),
        "memory": memory_report(cfg),
        "activity": activity,
        "agreement": measure_agreement(model, cfg, x_te, y_te, out / "export"),
    }


def model_vth(model):
    from train.neuron import QLIF
    return [m.vth.detach() for m in model.modules() if isinstance(m, QLIF)]


# --- summary ------------------------------------------------------------------------------

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
            s["ops"] = statistics.fmean(r["activity"]["ops"] for r in ok)
            s["dense_ops"] = ok[0]["activity"]["dense_ops"]
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
        s["ops_reduction"] = s["dense_ops"] / s["ops"] if s["ops"] > 0 else math.inf
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
        red = summary["spquant"]["ops_reduction"]
        note = "" if summary["spquant"]["masks_measured"] else (
            " (no pruning masks in the model's records: all positions and channels counted)")
        add(name, fp - sp <= SPQUANT_MAX_DROP and red >= SPQUANT_MIN_OPS_REDUCTION,
            f"FP {fp:.2f}%, SpQuant-SNN {sp:.2f}%: drop {fp - sp:+.2f} points; ops "
            f"{red:.2f}x fewer{note}")
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
            rows.append([s["label"], "failed", "-", "-", "-", "-", "-"])
            continue
        mem_red = s.get("memory_reduction")
        rows.append([s["label"], _fmt_acc(s), f"{s['memory']['total_mb']:.4f}",
                     "-" if mem_red is None else f"{mem_red:.2f}x",
                     f"{s['ops'] / 1e6:.3f}", f"{s['ops_reduction']:.2f}x", _fmt_agreement(s)])
    return rows


HEADER = ["Rung", "Test accuracy % (mean ± std)", "Memory MB", "Memory vs FP", "MOps / inference",
          "Ops vs FP", "Golden agreement"]


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
    lines = [f"## Table 5 ladder on event digits ({meta['epochs']} epochs, "
             f"{meta['seeds']} seed(s) per rung)", ""]
    if meta["quick"]:
        lines += ["**Smoke run (`--quick`): tiny data and one epoch; the numbers mean nothing.**",
                  ""]
    train_s = meta.get("train_wall_s")
    trained = (f"; the {meta['runs']} trainings took {train_s / 60:.0f} min of one core in all"
               if train_s else "")
    lines += [f"`python -m benchmarks.table5 {meta['argv']}`; base config "
              f"`configs/{BASE_CONFIG}`, every run on one thread, {meta['workers']} at a time; "
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
                  "Ops: per spiking layer and step `k * k * C_in * active output channels * active "
                  "positions`, summed over layers and steps, averaged over the test set; the "
                  "reduction is against the same network with every channel and position active "
                  "(the FP rung's count).",
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
    pts = sweep_points(summary)
    if not pts:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = sorted(pts, key=lambda p: (p["paper_bits"], p["membrane"]))
    xs = list(range(len(pts)))
    names = [f"{p['membrane']}\n{p['bits']:g} b" + (" (1.58)" if p["membrane"] == "ternary" else "")
             for p in pts]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
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
    plt.close(fig)
    return True


# --- main ---------------------------------------------------------------------------------

def _progress(i, n, r):
    if r.get("ok"):
        ag = r["agreement"]
        ag_s = (f", golden agreement {100 * ag['prediction_agreement']:.2f}%"
                if ag["status"] == "ok" else "")
        return (f"[{i}/{n}] {r['rung']}/seed{r['seed']}: accuracy {100 * r['accuracy']:.2f}%, "
                f"ops {r['activity']['ops_fraction']:.3f} of dense{ag_s} ({r['trained']}, "
                f"{r['elapsed_s']:.0f} s)")
    return f"[{i}/{n}] {r['rung']}/seed{r['seed']}: FAILED {r.get('error')}"


def run_all(jobs, workers, log=print) -> list:
    results = []
    if workers == 1:
        for i, job in enumerate(jobs, 1):
            results.append(run_one(job))
            log(_progress(i, len(jobs), results[-1]))
        return results
    # spawn: each worker starts a fresh interpreter (no forked torch thread pools).
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    try:
        futures = [pool.submit(run_one, job) for job in jobs]
        for i, fut in enumerate(as_completed(futures), 1):
            results.append(fut.result())
            log(_progress(i, len(jobs), results[-1]))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    order = {(j["rung"], j["seed"]): k for k, j in enumerate(jobs)}
    return sorted(results, key=lambda r: order[(r["rung"], r["seed"])])


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.table5",
        description="Train the paper's Table 5 ladder (FP SNN, Quant-SNN, SpQuant-SNN, SpQuant-SNN "
                    "+ learnable threshold) and the Figure 4 membrane-precision sweep on the "
                    "offline event digits; report accuracy, memory, operations and golden "
                    "agreement.",
        epilog=f"Default: {DEFAULT_EPOCHS} epochs, 3 seeds per ladder rung, 1 per sweep point "
               "(16 runs): about 12 min with 2 workers on 2 idle cores (one epoch of the "
               "training split takes 2.5 to 6 s on one core), proportionally longer on busy "
               "ones. Resumes: finished runs with the same settings are reused, interrupted "
               "ones continue.")
    ap.add_argument("--epochs", type=int, default=None,
                    help=f"training epochs per run (default {DEFAULT_EPOCHS}; 1 with --quick)")
    ap.add_argument("--seeds", type=int, default=None,
                    help="seeds per ladder rung (default 3; 1 with --quick)")
    ap.add_argument("--sweep-seeds", type=int, default=None,
                    help="seeds per membrane-sweep point (default 1)")
    ap.add_argument("--out", default=None,
                    help="output folder (default runs/table5; runs/table5_quick with --quick)")
    ap.add_argument("--workers", type=int, default=2,
                    help="trainings in parallel, one thread each (default 2)")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: {QUICK['epochs']} epoch, {QUICK['max_train']} training and "
                         f"{QUICK['max_test']} test samples, 1 seed")
    ap.add_argument("--max-train", type=int, default=None,
                    help="use only this many training samples")
    ap.add_argument("--max-test", type=int, default=None, help="use only this many test samples")
    ap.add_argument("--gate-penalty", type=float, default=DEFAULT_GATE_PENALTY,
                    help="pruning.gate_penalty of the SpQuant rungs (loss weight of the channel "
                         f"gates' open rate; default {DEFAULT_GATE_PENALTY})")
    ap.add_argument("--config", default=BASE_CONFIG, help=f"base config (default {BASE_CONFIG})")
    ap.add_argument("--only", type=lambda s: [x for x in s.split(",") if x], default=None,
                    help="comma-separated rungs to run: " + ", ".join(LABELS))
    args = ap.parse_args(argv)
    q = args.quick
    if args.epochs is None:
        args.epochs = QUICK["epochs"] if q else DEFAULT_EPOCHS
    if args.seeds is None:
        args.seeds = 1 if q else 3
    if args.sweep_seeds is None:
        args.sweep_seeds = 1
    if args.out is None:
        args.out = "runs/table5_quick" if q else "runs/table5"
    if q:
        args.max_train = args.max_train or QUICK["max_train"]
        args.max_test = args.max_test or QUICK["max_test"]
    for name in ("epochs", "seeds", "workers"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name}: {getattr(args, name)} must be at least 1")
    if args.sweep_seeds < 0:
        raise UserError(f"--sweep-seeds: {args.sweep_seeds} must not be negative")
    for name in ("max_train", "max_test"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UserError(f"--{name.replace('_', '-')}: {v} must be at least 1")
    if args.gate_penalty < 0:
        raise UserError(f"--gate-penalty: {args.gate_penalty} must not be negative")
    for r in args.only or ():
        if r not in LABELS:
            raise UserError(f"--only: {r!r} is not one of {', '.join(LABELS)}")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    base_path, base_raw = load_raw_config(args.config)
    jobs = plan_runs(args, base_raw, base_path)
    out = Path(args.out)
    print(f"table5: {len(jobs)} runs, {args.epochs} epochs each, {args.workers} workers -> {out}")
    t0 = time.time()
    results = run_all(jobs, args.workers)
    wall = time.time() - t0
    summary = summarize(results)
    targets = evaluate_targets(summary)
    meta = {"argv": " ".join(argv), "base_config": str(base_path), "epochs": args.epochs,
            "seeds": args.seeds, "sweep_seeds": args.sweep_seeds, "workers": args.workers,
            "quick": args.quick, "max_train": args.max_train, "max_test": args.max_test,
            "gate_penalty": args.gate_penalty,
            "wall_s": wall, "runs": len(results),
            "train_wall_s": sum(r.get("train_wall_s") or 0 for r in results),
            "ternary_bits": TERNARY_STORED_BITS, "mb_bytes": MB,
            "agreement_target": AGREEMENT_TARGET}
    print()
    print(format_text_table(summary, targets))
    payload = {"meta": meta, "summary": summary, "targets": targets,
               "sweep": sweep_points(summary),
               "runs": [{k: v for k, v in r.items() if k != "settings"} for r in results]}
    atomic_write(out / "table5.json", json.dumps(payload, indent=2, default=str) + "\n")
    atomic_write(out / "table5.md", format_markdown(summary, targets, meta))
    wrote = [out / "table5.md", out / "table5.json"]
    if plot_sweep(summary, out / "figure4_membrane_precision.png"):
        wrote.append(out / "figure4_membrane_precision.png")
    print(f"\nwrote {', '.join(map(str, wrote))} ({wall / 60:.1f} min)")
    failed = [r for r in results if not r.get("ok")]
    for r in failed:
        print(f"failed: {r['rung']}/seed{r['seed']}: {r.get('error')}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    cli_main(main)
