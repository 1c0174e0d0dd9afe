"""One run of ``python -m benchmarks.table5`` (in a worker process) and what it measures.

A run trains one rung with one seed into ``<out>/<rung>/seed<k>/`` (resumable, see
:mod:`benchmarks.runner`), then measures on the test split: accuracy (the trainer's, after
BN recalibration), total memory by the paper's formula (``table5_plan.memory_report``),
synaptic operations with the measured pruning masks (:func:`measure_activity`) and, when
the rung exports, golden vs PyTorch (:func:`measure_agreement`).
"""
from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.runner import (guarded, job_config, reusable_result, store_result,
                               train_run)
from benchmarks.table5_plan import AGREEMENT_TARGET, memory_report, pruning_is_on
from model_export.format import load_export, save_export
from model_export.from_torch import export_model
from project_config import UserError
from sim.agreement import measure
from train.data import load_dataset, to_time_major
from train.neuron import QLIF
from train.trainer import load_checkpoint

JOB_KEYS = ("rung", "seed", "label", "out_dir", "settings")   # copied into every result


def _keep_counts(l, rec, spec, T, B):
    """(active positions [T, B] or None, active channels [T, B] or None) of layer ``l``'s
    record."""
    H, W, C = spec.out_height, spec.out_width, spec.out_channels
    sp, ch = rec.get("spatial_keep"), rec.get("channel_keep")
    pos = chan = None
    if sp is not None:
        if tuple(sp.shape) != (T, B, H, W):
            raise RuntimeError(f"layer {l}: spatial_keep is {list(sp.shape)}, "
                               f"expected {[T, B, H, W]}")
        pos = sp.float().sum(dim=(-2, -1))               # [T, B]
    if ch is not None:
        if tuple(ch.shape) != (T, B, C):
            raise RuntimeError(f"layer {l}: channel_keep is {list(ch.shape)}, "
                               f"expected {[T, B, C]}")
        chan = ch.float().sum(dim=-1)                    # [T, B]
    return pos, chan


def _activity_sums(model, cfg, x, batch):
    """Per spiking layer, summed over ``x``: ops, kept position and channel fractions (x T),
    spike rates (x samples), whether a mask was recorded; and the number of samples."""
    T, layers = cfg.timesteps, cfg.spiking_layers
    L = len(layers)
    sums = {k: [0.0] * L for k in ("ops", "spatial", "channel", "rate")}
    has = {"spatial": [False] * L, "channel": [False] * L}
    n = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = to_time_major(x[i:i + batch], T)
            B = xb.shape[1]
            _, records = model(xb, record=True)
            if len(records) != L:
                raise RuntimeError(f"model returned {len(records)} layer records, config has {L}")
            for l, (rec, spec) in enumerate(zip(records, layers)):
                H, W, C = spec.out_height, spec.out_width, spec.out_channels
                pos, chan = _keep_counts(l, rec, spec, T, B)
                has["spatial"][l] |= pos is not None
                has["channel"][l] |= chan is not None
                pos = torch.full((T, B), float(H * W)) if pos is None else pos
                chan = torch.full((T, B), float(C)) if chan is None else chan
                fan_in = spec.kernel[0] * spec.kernel[1] * spec.in_channels
                sums["ops"][l] += float((fan_in * chan * pos).sum())
                sums["spatial"][l] += float(pos.sum()) / (H * W)
                sums["channel"][l] += float(chan.sum()) / C
                sums["rate"][l] += float(rec["spikes"].float().mean()) * B
            n += B
    return sums, has, n


def measure_activity(model, cfg, x, batch=256) -> dict:
    """Synaptic operations per inference by the paper's formula, with measured masks.

    Per spiking layer and step: ``k*k*C_in * active output channels * active positions``,
    from the records' ``channel_keep`` [T, B, C_out] and ``spatial_keep`` [T, B, H, W]
    (all active where a record has none), summed over steps and averaged over samples.
    ``dense`` is the same count with every channel and position active (the unpruned net).
    """
    T = cfg.timesteps
    was_training = model.training
    model.eval()
    sums, has, n = _activity_sums(model, cfg, x, batch)
    model.train(was_training)
    n = max(n, 1)
    per_layer = []
    for l, spec in enumerate(cfg.spiking_layers):
        fan_in = spec.kernel[0] * spec.kernel[1] * spec.in_channels
        dense = fan_in * spec.out_channels * spec.out_height * spec.out_width * T
        per_layer.append({"layer": l, "ops": sums["ops"][l] / n, "dense_ops": dense,
                          "spatial_keep": sums["spatial"][l] / (n * T),
                          "channel_keep": sums["channel"][l] / (n * T),
                          "spatial_measured": has["spatial"][l],
                          "channel_measured": has["channel"][l],
                          "spike_rate": sums["rate"][l] / n})
    total, dense = sum(p["ops"] for p in per_layer), sum(p["dense_ops"] for p in per_layer)
    return {"ops": total, "dense_ops": dense, "ops_fraction": total / dense,
            "masks_measured": any(has["spatial"]) or any(has["channel"]), "layers": per_layer}


def measure_agreement(model, cfg, x, y, export_dir: Path) -> dict:
    """Export to integers, then golden vs PyTorch (``sim.agreement.measure``)."""
    try:
        net = export_model(model, cfg)
    except UserError as e:
        return {"status": "n/a", "reason": f"not exportable: {e}"}
    save_export(net, export_dir)
    r = measure(model, cfg, load_export(export_dir), x, y)
    r["status"] = "ok"
    r["met"] = r["prediction_agreement"] >= AGREEMENT_TARGET
    return r


def model_vth(model):
    return [m.vth.detach() for m in model.modules() if isinstance(m, QLIF)]


def run_one(job: dict) -> dict:
    """Train (or resume, or reuse) one run and measure it; never raises. A finished run's
    result is stored as ``<out_dir>/result.json``."""
    result = guarded(_run_one, job, {k: job[k] for k in JOB_KEYS})
    if result["ok"]:
        store_result(Path(job["out_dir"]), result)
    return result


def _run_one(job: dict) -> dict:
    torch.set_num_threads(1)
    out, settings = Path(job["out_dir"]), job["settings"]
    prev = reusable_result(out, settings)
    if prev is not None:
        prev["trained"] = "reused (complete checkpoint and result)"
        return {k: v for k, v in prev.items() if k not in JOB_KEYS + ("elapsed_s",)}
    trained = train_run(job_config(settings["config_text"], job["where"]), settings, out,
                        job["rung"])
    return dict(trained=trained, **measure_run(out, settings["max_test"]))


def measure_run(out: Path, max_test) -> dict:
    """What a trained run in ``out`` measures on (the first ``max_test`` of) the test split."""
    ckpt = out / "model.pt"
    model, cfg = load_checkpoint(ckpt)
    metrics = torch.load(ckpt, map_location="cpu", weights_only=True)["metrics"]
    _, _, x_te, y_te = load_dataset(cfg)
    if max_test is not None:
        x_te, y_te = x_te[:max_test], y_te[:max_test]
    activity = measure_activity(model, cfg, x_te)
    return {
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
