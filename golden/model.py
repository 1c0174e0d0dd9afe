"""Bit-exact NumPy model of the hardware's integer arithmetic (docs/INTEGER_SPEC.md).

Vectorized over a batch; int64 throughout, so no intermediate can overflow for any
network whose accumulator width is below 63 bits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model_export.format import LayerExport, NetworkExport


@dataclass
class GoldenResult:
    spikes: list          # per spiking layer: uint8 [B, T, C, H, W]
    membranes: list       # per spiking layer: int8  [B, T, C, H, W], q after the step
    currents: np.ndarray  # classifier I_int per step: int64 [B, T, classes]
    logits: np.ndarray    # int64 [B, classes]

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.logits, axis=1)   # numpy: ties to the lowest index


def synaptic_current(layer: LayerExport, x: np.ndarray) -> np.ndarray:
    """I_int for integer inputs x [B, C_in, H, W] -> int64 [B, C_out, H_out, W_out]."""
    w = layer.signed_weights()
    p = layer.padding
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(xp, layer.kernel, axis=(2, 3))
    # win: [B, C_in, H_out, W_out, kh, kw]; contract C_in, kh, kw against the weights.
    B, _, H, W = win.shape[:4]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(B * H * W, -1)
    wmat = w.reshape(w.shape[0], -1)
    bound = int(np.abs(x).max(initial=0)) * int(np.abs(wmat).sum(axis=1).max(initial=0))
    if bound < 2 ** 53:
        # Every partial sum is an integer below 2^53, so float64 (BLAS) is exact.
        cur = np.rint(cols.astype(np.float64) @ wmat.T.astype(np.float64)).astype(np.int64)
    else:
        cur = cols @ wmat.T
    return cur.reshape(B, H, W, -1).transpose(0, 3, 1, 2)


def neuron_step(layer: LayerExport, membrane: str, current, q_prev):
    """Compare-only neuron: returns (spike uint8, q_new int8), masks applied."""
    level = q_prev.astype(np.int64) + (1 if membrane == "ternary" else 0)
    thr = layer.thresholds                                    # [C, levels, 3]
    c_idx = np.arange(layer.out_channels)[None, :, None, None]
    F = thr[c_idx, level, 0]
    P = thr[c_idx, level, 1]
    N = thr[c_idx, level, 2]
    fire = current >= F
    minus = (current <= N) if membrane == "ternary" else False   # binary has no level -1
    q_new = np.where(fire, 0, np.where(current >= P, 1, np.where(minus, -1, 0)))
    active = (layer.channel_mask[:, None, None] & layer.position_mask[None, :, :]).astype(bool)
    spike = np.where(active, fire, False).astype(np.uint8)
    q_new = np.where(active, q_new, q_prev).astype(np.int8)
    return spike, q_new


def sum_pool(spikes: np.ndarray, pool: int) -> np.ndarray:
    if pool == 1:
        return spikes.astype(np.int64)
    b, c, h, w = spikes.shape
    return spikes.reshape(b, c, h // pool, pool, w // pool, pool).sum(axis=(3, 5), dtype=np.int64)


def time_major_inputs(net: NetworkExport, inputs: np.ndarray) -> np.ndarray:
    """[B, C, H, W] (static, repeated over T) or [B, T, C, H, W] -> checked [B, T, C, H, W]."""
    x_all = np.asarray(inputs)
    if x_all.ndim == 4:
        x_all = np.broadcast_to(x_all[:, None], (x_all.shape[0], net.timesteps) + x_all.shape[1:])
    expect = (net.timesteps, net.input_channels, net.input_height, net.input_width)
    if x_all.ndim != 5 or x_all.shape[1:] != expect:
        raise ValueError(f"inputs: expected [B, {', '.join(map(str, expect))}] or "
                         f"[B, {', '.join(map(str, expect[1:]))}], got {list(np.shape(inputs))}")
    if x_all.min(initial=0) < 0 or x_all.max(initial=0) >= (1 << net.input_bits):
        raise ValueError(f"inputs: values must lie in 0..{(1 << net.input_bits) - 1}")
    return x_all


def run(net: NetworkExport, inputs: np.ndarray) -> GoldenResult:
    """Run an inference. ``inputs``: [B, C, H, W] (static, repeated over T) or [B, T, C, H, W]."""
    x_all = time_major_inputs(net, inputs)
    B, T = x_all.shape[:2]
    spiking, fc = net.spiking_layers, net.classifier
    q = [np.zeros((B, l.out_channels, l.out_height, l.out_width), np.int8) for l in spiking]
    spikes = [np.zeros((B, T) + qi.shape[1:], np.uint8) for qi in q]
    membranes = [np.zeros((B, T) + qi.shape[1:], np.int8) for qi in q]
    currents = np.zeros((B, T, fc.out_channels), np.int64)
    for t in range(T):
        x = x_all[:, t].astype(np.int64)
        for i, layer in enumerate(spiking):
            cur = synaptic_current(layer, x)
            s, q[i] = neuron_step(layer, net.membrane, cur, q[i])
            spikes[i][:, t], membranes[i][:, t] = s, q[i]
            x = sum_pool(s, layer.pool)
        currents[:, t] = synaptic_current(fc, x)[:, :, 0, 0]
    logits = currents.sum(axis=1) + T * fc.bias[None, :]
    return GoldenResult(spikes, membranes, currents, logits)


def work_counts(net: NetworkExport, inputs: np.ndarray, lanes: int) -> list:
    """Per layer, summed over the batch and its steps: the work a core that skips zero
    inputs and masked channels and positions must do, with ``lanes`` output channels per
    group.

    - ``synaptic_ops``: shift-adds of a nonzero input into an unmasked output neuron;
    - ``events``: nonzero inputs issued, once per (unmasked position, live channel group)
      (one event feeds all lanes in one cycle);
    - ``neuron_updates``: (unmasked position, live group) pairs, one cycle of the neuron units;
    - ``ideal_cycles``: events + neuron updates.
    """
    res = run(net, inputs)
    x = time_major_inputs(net, inputs)
    x = x.reshape((-1,) + x.shape[2:])                    # [B*T, C, H, W]
    out = []
    for i, layer in enumerate(net.layers):
        if i > 0:
            s = res.spikes[i - 1]
            x = sum_pool(s.reshape((-1,) + s.shape[2:]), net.layers[i - 1].pool)
        p = layer.padding
        nz = np.pad((x != 0).astype(np.int64), ((0, 0), (0, 0), (p, p), (p, p)))
        win = np.lib.stride_tricks.sliding_window_view(nz, layer.kernel, axis=(2, 3))
        window = win.sum(axis=(1, 4, 5))                  # nonzero inputs per position
        pos = layer.position_mask.astype(bool)
        groups = -(-layer.out_channels // lanes)
        live = sum(bool(layer.channel_mask[g * lanes:(g + 1) * lanes].any()) for g in range(groups))
        inputs_seen = int(window[:, pos].sum())
        updates = int(pos.sum()) * live * window.shape[0]
        out.append({"layer": i, "synaptic_ops": inputs_seen * int(layer.channel_mask.sum()),
                    "events": inputs_seen * live, "neuron_updates": updates,
                    "ideal_cycles": inputs_seen * live + updates})
    return out
