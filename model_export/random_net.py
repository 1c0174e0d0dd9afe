"""Random integer networks inside the contract, for differential tests (no torch).

Thresholds come from random float folding parameters through the real folding code, so
they are as consistent (F >= P, ...) as a trained model's; activity is tuned so that
neurons fire at useful rates rather than never or always.
"""
from __future__ import annotations

import numpy as np

from project_config import Config
from project_config.geometry import max_shift
from .fold import fold_channel
from .format import LayerExport, NetworkExport, encode_weights, decode_weights


def _random_codes(rng, shape, bits, zero_fraction):
    K = max_shift(bits)
    sign = rng.choice([-1, 1], size=shape)
    sign[rng.random(shape) < zero_fraction] = 0
    k = rng.integers(0, K + 1, size=shape)
    return sign, np.where(sign == 0, 0, k)


def random_export(cfg: Config, seed: int, zero_fraction=0.3, mask_fraction=0.15,
                  input_density=0.3, pruning=False, negative_fraction=0.25,
                  negative_zero=0.5) -> NetworkExport:
    """A random network for ``cfg``'s shape.

    Parameters
    ----------
    zero_fraction, mask_fraction : float
        Fraction of zero weights; of statically masked channels and positions.
    pruning : bool
        Add runtime spatial thresholds and channel gates (docs/INTEGER_SPEC.md section 5)
        set to prune a useful fraction, not none or all.
    negative_fraction : float
        Fraction of conv channels with a negative scale ``A_c < 0``: their weight signs
        are negated, as the exporter does (section 4, "Negative scale").
    negative_zero : float
        Fraction of zero weights written as the negative-zero code (sign bit set, e = 0;
        section 2), which must read as 0.
    """
    rng = np.random.default_rng(seed)
    # Draws added later come from their own stream, so every earlier draw is as it was.
    srng = np.random.default_rng([seed, 3])
    membrane, bits = cfg.quant["membrane"], cfg.quant["weight_bits"] or 4
    if membrane not in ("ternary", "binary"):
        membrane = "ternary"
    layers = []
    for spec in (geom.with_weight_bits(bits) for geom in cfg.layers):
        shape = (spec.out_channels, spec.in_channels) + tuple(spec.kernel)
        sign, k = _random_codes(rng, shape, bits, zero_fraction)
        if spec.kind == "conv":
            sign[srng.random(spec.out_channels) < negative_fraction] *= -1
        w_code = encode_weights(sign, k, bits)
        w_code[(sign == 0) & (srng.random(shape) < negative_zero)] |= 1 << (bits - 1)
        w = decode_weights(w_code, bits).reshape(spec.out_channels, -1)
        width = spec.acc_width
        # Spread of I_int when a fraction `input_density` of inputs are active at x_max/2.
        x_typ = max(1.0, spec.x_max / 2)
        sigma = np.sqrt(input_density * (w.astype(float) ** 2).sum(axis=1)) * x_typ + 1.0
        common = dict(geometry=spec, w_code=w_code)
        if spec.kind == "conv":
            thr = []
            for c in range(spec.out_channels):
                A = 0.0 if rng.random() < 0.03 else float(rng.uniform(0.5, 2.0) / sigma[c])
                B = float(rng.normal(0.2, 0.4))
                vth = float(rng.uniform(0.5, 1.5))
                thr.append(fold_channel(A, B, vth, membrane, width))
            cmask = (rng.random(spec.out_channels) >= mask_fraction).astype(np.uint8)
            pmask = (rng.random((spec.out_height, spec.out_width)) >= mask_fraction).astype(np.uint8)
            extra = _random_pruning(rng, spec, layers[-1] if layers else None) if pruning else {}
            layers.append(LayerExport(**common, channel_mask=cmask, position_mask=pmask,
                                      thresholds=np.array(thr, dtype=np.int64), **extra))
        else:
            lim = (1 << (width - 1)) - 1
            bias = rng.integers(-int(sigma.mean()), int(sigma.mean()) + 1, spec.out_channels)
            layers.append(LayerExport(**common, channel_mask=np.ones(spec.out_channels, np.uint8),
                                      position_mask=np.ones((1, 1), np.uint8),
                                      bias=np.clip(bias, -lim - 1, lim).astype(np.int64)))
    inp = cfg.model["input"]
    return NetworkExport(cfg.name, cfg.timesteps, membrane, inp["channels"], inp["height"],
                         inp["width"], inp["bits"], layers)


def _random_pruning(rng, spec, prev):
    """Spatial threshold in [-C/2, 0]; for layers after the first a sparse ternary gate whose
    thresholds sit near the middle of z's typical spread, so gates open and close."""
    extra = {"spatial_threshold": np.array([-int(rng.integers(0, spec.out_channels // 2 + 1))],
                                           dtype=np.int64)}
    if prev is not None:
        g = rng.choice([-1, 0, 1], size=(spec.out_channels, spec.in_channels), p=[0.3, 0.3, 0.4])
        # The prior P[c] is a sum of levels in -1..1 over the previous map; typical |P| is
        # a fraction of its positions.
        n = prev.out_height * prev.out_width
        typ = max(1, n // 4) * max(1, int(np.abs(g).sum(axis=1).mean()))
        bound = spec.in_channels * n
        thr = np.clip(rng.integers(-typ, typ // 2 + 1, spec.out_channels), -bound, bound + 1)
        extra.update(gate_weights=g.astype(np.int8), gate_thresholds=thr.astype(np.int64))
    return extra


def random_inputs(net: NetworkExport, batch: int, seed: int, density=0.3) -> np.ndarray:
    """Integer inputs [B, T, C, H, W]: a fraction ``density`` nonzero, uniform values."""
    rng = np.random.default_rng(seed)
    shape = (batch, net.timesteps, net.input_channels, net.input_height, net.input_width)
    vals = rng.integers(1, 1 << net.input_bits, size=shape)
    return np.where(rng.random(shape) < density, vals, 0).astype(np.int64)
