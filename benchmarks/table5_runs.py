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

import numpy as np

from benchmarks.runner import (guarded, job_config, reusable_result, store_result,
                               train_run)
from golden.model import dense_counts, operation_counts
from benchmarks.table5_plan import AGREEMENT_TARGET, memory_report, pruning_is_on
from model_export.format import load_export, save_export
from model_export.from_torch import export_model
from project_config import UserError
from sim.agreement import measure
from train.data import load_dataset, to_time_major
from train.neuron import QLIF
from train.trainer import load_checkpoint

JOB_KEYS = ("rung", "seed", "label", "out_dir", "settings")   # copied into every result
# What a stored result was measured with: a result of an older version is measured again
# from its (complete) checkpoint, without training. 2: the operation count of
# docs/INTEGER_SPEC.md section 9 (``ops``) beside the earlier one (``ops_output_only``).
MEASURE_VERSION = 2


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
    sums = {k: [0.0] * L for k in ("ops", "spatial", "channel", "rate", "new_ops")}
    sums["fc_ops"] = 0.0
    has = {"spatial": [False] * L, "channel": [False] * L}
    n = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = to_time_major(x[i:i + batch], T)
            B = xb.shape[1]
            _, records = model(xb, record=True)
            if len(records) != L:
                raise RuntimeError(f"model returned {len(records)} layer records, config has {L}")
            open_in = np.full(T * B, layers[0].in_channels) if L else None
            for l, (rec, spec) in enumerate(zip(records, layers)):
                H, W, C = spec.out_height, spec.out_width, spec.out_channels
                p_mask, c_mask = _masks(model, l, rec, spec, T, B)
                sums["new_ops"][l] += float(operation_counts(spec, p_mask, c_mask,
                                                             open_in)["ops"].sum())
                open_in = c_mask.sum(axis=1)
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
            fc = cfg.layers[-1]
            sums["fc_ops"] += float(operation_counts(
                fc, np.ones((T * B, 1), bool), np.ones((T * B, fc.out_channels), bool),
                open_in)["ops"].sum())
            n += B
    return sums, has, n


def _masks(model, l, rec, spec, T, B):
    """(computed positions bool [T*B, H*W], computed channels bool [T*B, C]) of layer
    ``l``: the records' runtime masks, else the static masks."""
    n, hw = T * B, spec.out_height * spec.out_width
    sp, ch = rec.get("spatial_keep"), rec.get("channel_keep")
    block = model.blocks[l]
    pos = (sp.reshape(n, hw).numpy() > 0.5 if sp is not None else
           np.broadcast_to(block.position_mask.reshape(1, hw).numpy() > 0.5, (n, hw)))
    chan = (ch.reshape(n, -1).numpy() > 0.5 if ch is not None else
            np.broadcast_to(block.channel_mask.reshape(1, -1).numpy() > 0.5,
                            (n, spec.out_channels)))
    return pos, chan


def measure_activity(model, cfg, x, batch=256) -> dict:
    """Operations per inference, with the measured masks, by two counts:

    - ``ops`` / ``dense_ops`` / ``ops_fraction``: the operation count of docs/INTEGER_SPEC.md
      section 9 (``golden.operation_counts``): every in-map tap of a computed (position,
      channel) from a computed input channel (the previous layer's open channels), every
      layer and the classifier; against the same count with everything computed;
    - ``ops_output_only`` / ``dense_ops_padded``: the earlier count, per spiking layer and
      step ``k*k*C_in * active output channels * active positions`` (padding taps and
      closed input channels included), against ``k*k*C_in*C_out*H*W``.

    Masks: the records' ``channel_keep`` [T, B, C_out] and ``spatial_keep`` [T, B, H, W]
    (the static masks where a record has none), summed over steps, averaged over samples.
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
        per_layer.append({"layer": l, "ops_output_only": sums["ops"][l] / n,
                          "dense_ops_padded": dense, "ops": sums["new_ops"][l] / n,
                          "dense_ops": dense_counts(spec, T)["dense_ops"],
                          "spatial_keep": sums["spatial"][l] / (n * T),
                          "channel_keep": sums["channel"][l] / (n * T),
                          "spatial_measured": has["spatial"][l],
                          "channel_measured": has["channel"][l],
                          "spike_rate": sums["rate"][l] / n})
    fc_ops, fc_dense = sums["fc_ops"] / n, dense_counts(cfg.layers[-1], T)["dense_ops"]
    total = sum(p["ops"] for p in per_layer) + fc_ops
    dense = sum(p["dense_ops"] for p in per_layer) + fc_dense
    old = sum(p["ops_output_only"] for p in per_layer)
    old_dense = sum(p["dense_ops_padded"] for p in per_layer)
    return {"ops": total, "dense_ops": dense, "ops_fraction": total / dense,
            "classifier_ops": fc_ops, "classifier_dense_ops": fc_dense,
            "ops_output_only": old, "dense_ops_padded": old_dense,
            "ops_output_only_fraction": old / old_dense,
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
    if prev is not None and prev.get("measure_version") == MEASURE_VERSION:
        prev["trained"] = "reused (complete checkpoint and result)"
        return {k: v for k, v in prev.items() if k not in JOB_KEYS + ("elapsed_s",)}
    if prev is not None:
        trained = "reused (complete checkpoint), measured again"
    else:
        trained = train_run(job_config(settings["config_text"], job["where"]), settings, out,
                            job["rung"], device=job.get("device", "cpu"),
                            amp=job.get("amp", False))
    return dict(trained=trained, measure_version=MEASURE_VERSION,
                **measure_run(out, settings["max_test"]))


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
