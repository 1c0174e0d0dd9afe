"""Trained PyTorch SpQuant model -> integer export (the only module here that needs torch)."""
from __future__ import annotations

import numpy as np
import torch

from project_config import Config, UserError
from .fold import fold_channel
from .format import LayerExport, NetworkExport, encode_weights


def _check_finite(model, cfg: Config):
    """Every floating parameter and buffer is finite: a NaN weight would otherwise become a
    zero code, a NaN threshold or statistic an arbitrary integer."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = t[~torch.isfinite(t)].flatten()[0].item()
            raise UserError(f"{cfg.path}: model parameter {name}: {bad} is not a finite number "
                            "(nothing to export)")


@torch.no_grad()
def export_model(model, cfg: Config) -> NetworkExport:
    """Fold a trained ``train.model.SpikingConvNet`` into integers (docs/INTEGER_SPEC.md)."""
    arch = cfg.model.get("arch", "convnet")
    if arch != "convnet":
        raise UserError(f"{cfg.path}: model.arch: {arch!r} has no integer export "
                        "(the contract covers 'convnet' chains)")
    membrane, bits = cfg.quant["membrane"], cfg.quant["weight_bits"]
    if membrane not in ("ternary", "binary"):
        raise UserError(f"{cfg.path}: quant.membrane: {membrane!r} has no integer form "
                        "(export needs 'ternary' or 'binary')")
    if bits is None:
        raise UserError(f"{cfg.path}: quant.weight_bits: null (full precision) cannot be exported")
    _check_finite(model, cfg)
    K = cfg.layers[0].max_shift
    layers = []
    scale_in = cfg.model["input"]["scale"]
    for block, spec in zip(model.blocks, cfg.spiking_layers):
        sign, k, a_log2 = block.conv.pot_codes()
        sign = sign.cpu().numpy().astype(np.int64)
        k = k.cpu().numpy().astype(np.int64)
        bn = block.bn
        f64 = lambda t: t.detach().cpu().double().numpy()
        inv_std = f64(bn.weight) / np.sqrt(f64(bn.running_var) + bn.eps)
        conv_bias = f64(block.conv.bias) if block.conv.bias is not None else 0.0
        A = inv_std * (2.0 ** (a_log2 - K)) * scale_in
        B = inv_std * (conv_bias - f64(bn.running_mean)) + f64(bn.bias)
        if not (np.isfinite(A).all() and np.isfinite(B).all()):
            raise UserError(f"{cfg.path}: model.layers[{spec.index}]: the folded scale or offset "
                            "is not finite (weights, batch-norm statistics or input scale out of range)")
        neg = A < 0
        sign[neg] = -sign[neg]           # the hardware then computes -I_int for these channels
        A = np.abs(A)
        vth = float(block.neuron.vth)
        thr = np.array([fold_channel(float(A[c]), float(B[c]), vth, membrane, spec.acc_width)
                        for c in range(spec.out_channels)], dtype=np.int64)
        layer = LayerExport(
            spec, encode_weights(sign, k, bits),
            (block.channel_mask.cpu().numpy() > 0.5).astype(np.uint8),
            (block.position_mask.cpu().numpy() > 0.5).astype(np.uint8),
            thresholds=thr)
        # Runtime pruning: the integers the PyTorch forward itself compares with.
        if getattr(block, "spatial", None) is not None:
            layer.spatial_threshold = np.array([block.spatial.theta], dtype=np.int64)
        if getattr(block, "gate", None) is not None:
            g_sign, _ = block.gate.codes()
            layer.gate_weights = g_sign.cpu().numpy().astype(np.int8)
            layer.gate_thresholds = block.gate.thresholds().cpu().numpy().astype(np.int64)
        layers.append(layer)
        scale_in = 1.0 / (block.pool * block.pool)
    spec = cfg.layers[-1]
    sign, k, _ = model.classifier.pot_codes()
    shape = (spec.out_channels, spec.in_channels) + tuple(spec.kernel)
    w_code = encode_weights(sign.cpu().numpy().reshape(shape), k.cpu().numpy().reshape(shape), bits)
    lim = (1 << (spec.acc_width - 1)) - 1
    bias = np.clip(model.classifier.bias_int().cpu().numpy().astype(np.int64), -lim - 1, lim)
    layers.append(LayerExport(spec, w_code, np.ones(spec.out_channels, np.uint8),
                              np.ones((1, 1), np.uint8), bias=bias))
    inp = cfg.model["input"]
    return NetworkExport(cfg.name, cfg.timesteps, membrane, inp["channels"], inp["height"],
                         inp["width"], inp["bits"], layers)
