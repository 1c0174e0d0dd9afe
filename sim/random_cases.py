"""Random cases inside the integer contract, for differential testing of golden vs RTL.

A *shape* is a random network geometry and core (input size and bits, 1-3 conv layers with
kernel, padding and pooling, classes, T from 1 to 16, lanes, membrane mode, weight bits).
A *case* is one export for a shape plus its inputs, drawn with corner cases on purpose:
all-zero (both zero codes) or extreme weight codes, thresholds at and beyond the
accumulator range or calibrated to the case's inputs (so that cases spike), masks that gate
everything or nothing, silent or saturated inputs, runtime pruning that keeps all or prunes
most, gates open or closed. Everything is a deterministic function of its seed.
"""
from __future__ import annotations

import numpy as np

from model_export.format import NetworkExport
from model_export.random_net import random_export, random_inputs
import golden
from project_config import Config, config_from_dict
from sim.calibrate import calibrate_thresholds


def random_shape(seed: int) -> dict:
    """A raw config dict (validated by project_config) for a random small network."""
    rng = np.random.default_rng(seed)
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(2, 8)), int(rng.integers(2, 8))
    inp = {"channels": c, "height": h, "width": w, "bits": int(rng.integers(1, 7))}
    layers = []
    for _ in range(int(rng.integers(1, 4))):
        options = []
        for k in (1, 2, 3, 5):
            for p in range(0, k // 2 + 1):
                oh, ow = h + 2 * p - k + 1, w + 2 * p - k + 1
                if oh >= 1 and ow >= 1:
                    options.append((k, p, oh, ow))
        k, p, oh, ow = options[int(rng.integers(len(options)))]
        pool = 2 if (oh % 2 == 0 and ow % 2 == 0 and rng.random() < 0.5) else 1
        layers.append({"channels": int(rng.integers(1, 10)), "kernel": k, "padding": p,
                       "pool": pool})
        h, w = oh // pool, ow // pool
    shape = {
        "model": {"name": f"random{seed}",
                  "input": inp,
                  "timesteps": int(rng.integers(1, 17)), "layers": layers,
                  "classes": int(rng.integers(2, 8))},
        "quant": {"membrane": str(rng.choice(["ternary", "binary"])),
                  "weight_bits": int(rng.choice([2, 4]))},
        "hardware": {"lanes": int(rng.integers(1, 9))},
    }
    # A separate generator, so that adding this draw left every earlier shape as it was.
    if np.random.default_rng([seed, 1]).random() < 0.5:
        shape["pruning"] = {"spatial_ratio": 0.35, "channel_gate_threshold": 0.47}
    return shape


def shape_config(seed: int) -> Config:
    return config_from_dict(random_shape(seed), where=f"<random shape {seed}>")


# How often a corner that silences a layer by itself is drawn: a mask that gates nothing in
# the last spiking layer silences everything the classifier sees, while an earlier layer's
# silence is bridged by the calibration (channels that fire on their offset alone).
NONE_MASK = {"last": 0.02, "other": 0.12}
GATES_CLOSED = {"last": 0.04, "other": 0.2}
RAW_THRESHOLDS = {"last": 0.1, "other": 0.3}


def _mask_mode(rng, last: bool) -> str:
    p_none = NONE_MASK["last" if last else "other"]
    return str(rng.choice(["random", "all", "none"], p=[0.75 - p_none, 0.25, p_none]))


def random_case(cfg: Config, seed: int) -> tuple[NetworkExport, np.ndarray, str]:
    """(export, inputs [B, T, C, H, W], description of the corner cases drawn).

    Active by construction: the thresholds of every spiking layer are refolded from the
    currents the case's own inputs produce (:func:`sim.calibrate.calibrate_thresholds`, a
    spike rate drawn per layer), after the weight corners and the masks and before the
    threshold and pruning corners; random masks keep at least one channel and position.
    Corners that silence a layer are drawn rarely in the last spiking layer
    (:data:`NONE_MASK`, :data:`GATES_CLOSED`, :data:`RAW_THRESHOLDS`).
    """
    rng = np.random.default_rng(seed)
    prng = np.random.default_rng([seed, 2])     # runtime-pruning draws (shapes that have it)
    crng = np.random.default_rng([seed, 3])     # calibration draws
    pruning = cfg.pruning["spatial_ratio"] > 0 and prng.random() < 0.8
    net = random_export(cfg, seed, zero_fraction=float(rng.uniform(0, 0.9)),
                        mask_fraction=float(rng.uniform(0, 0.5)), pruning=pruning)
    notes = ["runtime pruning"] if pruning else []
    last = net.spiking_layers[-1].index
    raw_layers = []
    for layer in net.layers:
        bits, K = layer.weight_bits, layer.max_shift
        sign_bit = 1 << (bits - 1)
        mode = rng.choice(["random", "random", "random", "zero", "max", "max_negative",
                           "smallest"])
        if mode != "random":
            notes.append(f"L{layer.index} weights {mode}")
        if mode == "zero":
            # Both zero codes: +0 and the negative zero (sign bit set, e = 0).
            layer.w_code[...] = np.where(rng.random(layer.w_code.shape) < 0.5, 0, sign_bit)
        elif mode == "max":
            layer.w_code[...] = 1                        # +alpha: k = 0
        elif mode == "max_negative":
            layer.w_code[...] = sign_bit | 1
        elif mode == "smallest":
            layer.w_code[...] = np.where(rng.random(layer.w_code.shape) < 0.5, 0, sign_bit) | (K + 1)
        lo, hi = -(1 << (layer.acc_width - 1)), (1 << (layer.acc_width - 1)) - 1
        if layer.kind == "conv":
            if rng.random() < RAW_THRESHOLDS["last" if layer.index == last else "other"]:
                # Raw thresholds anywhere in the range, saturated values included.
                notes.append(f"L{layer.index} raw thresholds")
                raw_layers.append(layer.index)
                pick = rng.integers(0, 4, size=layer.thresholds.shape)
                raw = rng.integers(lo, hi + 1, size=layer.thresholds.shape)
                small = np.clip(rng.integers(-64, 65, size=layer.thresholds.shape), lo, hi)
                layer.thresholds[...] = np.select([pick == 0, pick == 1, pick == 2], [lo, hi, small], raw)
            for name in ("channel_mask", "position_mask"):
                m = _mask_mode(rng, layer.index == last)
                mask = getattr(layer, name)
                if m != "random":
                    notes.append(f"L{layer.index} {name} {m}")
                    mask[...] = 1 if m == "all" else 0
                elif not mask.any():
                    mask.flat[int(rng.integers(mask.size))] = 1   # "none" is its own corner
        else:
            if rng.random() < 0.3:
                notes.append("classifier bias at the range limits")
                layer.bias[...] = rng.choice([lo, hi, 0], size=layer.bias.shape)
    batch = int(rng.integers(1, 3))
    mode = rng.choice(["random", "random", "silent", "saturated", "dense"])
    x = random_inputs(net, batch, seed + 1, density=float(rng.uniform(0.05, 0.9)))
    if mode == "silent":
        x[...] = 0
    elif mode == "saturated":
        x[...] = (1 << net.input_bits) - 1
    elif mode == "dense":
        x = random_inputs(net, batch, seed + 1, density=1.0)
    if mode != "random":
        notes.append(f"inputs {mode}")
    calibrate_thresholds(net, x, crng, crng.uniform(0.05, 0.4, len(net.spiking_layers)),
                         keep={i for i, l in enumerate(net.spiking_layers)
                               if l.index in raw_layers}, ensure_activity=True)
    for layer in net.spiking_layers if pruning else []:
        # Thresholds that keep everything or prune as much as possible.
        mode = prng.choice(["random", "random", "keep_all", "prune_most"])
        if mode != "random":
            notes.append(f"L{layer.index} spatial {mode}")
            layer.spatial_threshold[0] = -layer.out_channels if mode == "keep_all" else 0
        if layer.gated:
            bound = layer.gate_bound(net.layers[layer.index - 1])
            p_closed = GATES_CLOSED["last" if layer.index == last else "other"]
            mode = prng.choice(["random", "open", "closed"], p=[0.75 - p_closed, 0.25, p_closed])
            if mode != "random":
                notes.append(f"L{layer.index} gates {mode}")
                layer.gate_thresholds[...] = -bound if mode == "open" else bound + 1
    return net, x, "; ".join(notes) or "plain"


def case_activity(net: NetworkExport, x: np.ndarray) -> list:
    """Golden's spike count per spiking layer over the case's samples and steps."""
    return [int(s.sum()) for s in golden.run(net, x).spikes]


def activity_summary(spikes: list) -> dict:
    """Activity a regression reached, from :func:`case_activity` per case: how many cases
    have no spike anywhere, and how many a silent last spiking layer (the classifier then
    sees nothing), with their fractions."""
    n = len(spikes)
    none = sum(1 for s in spikes if not any(s))
    silent_last = sum(1 for s in spikes if s and not s[-1])
    return {"cases": n, "no_spike": none, "silent_last_layer": silent_last,
            "no_spike_fraction": round(none / n, 4) if n else 0.0,
            "silent_last_layer_fraction": round(silent_last / n, 4) if n else 0.0}
