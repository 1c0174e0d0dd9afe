"""Bit-exact NumPy model of the hardware's integer arithmetic (docs/INTEGER_SPEC.md).

Vectorized over a batch; int64 throughout, so no intermediate can overflow for any
network whose accumulator width is below 63 bits.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from model_export.format import LayerExport, NetworkExport
from project_config.geometry import PACK_GROUPS


@dataclass
class GoldenResult:
    spikes: list          # per spiking layer: uint8 [B, T, C, H, W]
    membranes: list       # per spiking layer: int8  [B, T, C, H, W], q after the step
    currents: np.ndarray  # classifier I_int per step: int64 [B, T, classes]
    logits: np.ndarray    # int64 [B, classes]
    # Per spiking layer, what was computed at each step (static and runtime masks, section 5):
    positions: list = None   # bool [B, T, H, W]: visited and not pruned
    channels: list = None    # bool [B, T, C]: channel mask and gate open
    inputs: np.ndarray = None  # the inputs, time-major [B, T, C, H, W]
    # step_work's result per (lanes, pack_groups): a testbench asks once per sample compared.
    _work: dict = field(default_factory=dict, repr=False, compare=False)

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
    if bound < 2 ** 24:
        # Every product and partial sum is an integer below 2^24, exactly representable in
        # float32 whatever the summation order: float32 BLAS is exact (and twice as fast).
        cur = np.rint(cols.astype(np.float32) @ wmat.T.astype(np.float32)).astype(np.int64)
    elif bound < 2 ** 53:
        # Every partial sum is an integer below 2^53, so float64 (BLAS) is exact.
        cur = np.rint(cols.astype(np.float64) @ wmat.T.astype(np.float64)).astype(np.int64)
    else:
        cur = cols @ wmat.T
    return cur.reshape(B, H, W, -1).transpose(0, 3, 1, 2)


def spatial_keep(layer: LayerExport, q_prev: np.ndarray) -> np.ndarray:
    """Positions computed this step: position mask and membrane importance. bool [B, H, W]."""
    static = np.broadcast_to(layer.position_mask.astype(bool), (len(q_prev),) + layer.position_mask.shape)
    if not layer.spatial_pruning:
        return static
    importance = q_prev.sum(axis=1, dtype=np.int64)
    return static & (importance >= int(layer.spatial_threshold[0]))


def channel_open(layer: LayerExport, q_prior) -> np.ndarray:
    """Channels computed this step: channel mask and the gate on the previous layer's
    membranes ``q_prior`` [B, C_in, H', W'] after this step. bool [B, C_out]."""
    B = 1 if q_prior is None else len(q_prior)
    static = np.broadcast_to(layer.channel_mask.astype(bool), (B, layer.out_channels))
    if not layer.gated:
        return static
    prior = q_prior.sum(axis=(2, 3), dtype=np.int64)                   # [B, C_in]
    z = prior @ layer.gate_weights.astype(np.int64).T                    # [B, C_out]
    return static & (z >= layer.gate_thresholds[None, :])


def neuron_step(layer: LayerExport, membrane: str, current, q_prev, channels=None, positions=None):
    """Compare-only neuron: returns (spike uint8, q_new int8), masks applied.

    ``channels`` [B, C] and ``positions`` [B, H, W] are the computed channels and positions
    (default: the static masks); a position the static mask allows but ``positions``
    refuses is pruned: its membranes are reset to 0.
    """
    level = q_prev.astype(np.int64) + (1 if membrane == "ternary" else 0)
    thr = layer.thresholds                                    # [C, levels, 3]
    c_idx = np.arange(layer.out_channels)[None, :, None, None]
    F = thr[c_idx, level, 0]
    P = thr[c_idx, level, 1]
    N = thr[c_idx, level, 2]
    fire = current >= F
    minus = (current <= N) if membrane == "ternary" else False   # binary has no level -1
    q_new = np.where(fire, 0, np.where(current >= P, 1, np.where(minus, -1, 0)))
    static_pos = layer.position_mask.astype(bool)[None]
    if channels is None:
        channels = layer.channel_mask.astype(bool)[None]
    if positions is None:
        positions = static_pos
    active = channels[:, :, None, None] & positions[:, None, :, :]
    spike = np.where(active, fire, False).astype(np.uint8)
    q_new = np.where(active, q_new, q_prev)
    pruned = static_pos & ~positions
    q_new = np.where(pruned[:, None, :, :], 0, q_new).astype(np.int8)
    return spike, q_new


def sum_pool(spikes: np.ndarray, pool: int) -> np.ndarray:
    if pool == 1:
        return spikes.astype(np.int64)
    b, c, h, w = spikes.shape
    return spikes.reshape(b, c, h // pool, pool, w // pool, pool).sum(axis=(3, 5), dtype=np.int64)


def time_major_inputs(net: NetworkExport, inputs: np.ndarray) -> np.ndarray:
    """[B, C, H, W] (static, repeated over T) or [B, T, C, H, W] -> checked [B, T, C, H, W].

    ValueError unless the array holds integers (an integer or bool dtype, or floats that
    are all finite whole numbers: nothing is rounded; never complex, strings or objects),
    has at least one sample, the network's shape and values in 0 .. 2**input_bits - 1."""
    x_all = np.asarray(inputs)
    if x_all.dtype.kind not in "iubf":
        raise ValueError(f"inputs: dtype {x_all.dtype} is not an integer type (integers "
                         f"0..{(1 << net.input_bits) - 1} are expected; nothing is cast)")
    if x_all.dtype.kind == "f":
        whole = np.isfinite(x_all) & (x_all == np.round(x_all))
        if not whole.all():
            bad = x_all[~whole].flat[0].item()      # 0.5, not np.float64(0.5)
            raise ValueError(f"inputs: {bad!r} is not an integer (the values must be whole "
                             "numbers; nothing is rounded)")
    if x_all.ndim in (4, 5) and x_all.shape[0] == 0:
        raise ValueError("inputs: no samples (the batch dimension is 0)")
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
    """Run an inference. ``inputs``: [B, C, H, W] (static, repeated over T) or [B, T, C, H, W].

    Layer by layer: a layer's currents for all T steps are one matrix product, since its
    inputs at step t are the previous layer's spikes at step t, which do not depend on
    this layer; its runtime masks (section 5) depend on its own membranes at t - 1 and on
    the previous layer's at t, both known when its neuron steps run in order. Exactly
    :func:`run_stepwise` (the step-major order of the hardware), which tests check.
    """
    x_all = time_major_inputs(net, inputs)
    B, T = x_all.shape[:2]
    spiking, fc = net.spiking_layers, net.classifier
    spikes, membranes, positions, channels = [], [], [], []
    x = x_all.astype(np.int64).reshape((B * T,) + x_all.shape[2:])
    for i, layer in enumerate(spiking):
        cur = synaptic_current(layer, x).reshape((B, T, layer.out_channels, layer.out_height,
                                                  layer.out_width))
        q = np.zeros((B,) + cur.shape[2:], np.int8)
        s_all, q_all = np.zeros(cur.shape, np.uint8), np.zeros(cur.shape, np.int8)
        pos_all = np.zeros((B, T) + cur.shape[3:], bool)
        chan_all = np.zeros((B, T, layer.out_channels), bool)
        for t in range(T):
            pos = spatial_keep(layer, q)
            chan = np.broadcast_to(channel_open(layer, membranes[i - 1][:, t] if i else None),
                                   (B, layer.out_channels))
            s_all[:, t], q = neuron_step(layer, net.membrane, cur[:, t], q, chan, pos)
            q_all[:, t], pos_all[:, t], chan_all[:, t] = q, pos, chan
        spikes.append(s_all)
        membranes.append(q_all)
        positions.append(pos_all)
        channels.append(chan_all)
        x = sum_pool(s_all.reshape((B * T,) + s_all.shape[2:]), layer.pool)
    currents = synaptic_current(fc, x)[:, :, 0, 0].reshape(B, T, fc.out_channels)
    logits = currents.sum(axis=1) + T * fc.bias[None, :]
    return GoldenResult(spikes, membranes, currents, logits, positions, channels, x_all)


def run_stepwise(net: NetworkExport, inputs: np.ndarray) -> GoldenResult:
    """:func:`run` in the hardware's order: every layer at step 0, then at step 1, ... (the
    contract read literally, section 5: within step t the layers run in order)."""
    x_all = time_major_inputs(net, inputs)
    B, T = x_all.shape[:2]
    spiking, fc = net.spiking_layers, net.classifier
    q = [np.zeros((B, l.out_channels, l.out_height, l.out_width), np.int8) for l in spiking]
    spikes = [np.zeros((B, T) + qi.shape[1:], np.uint8) for qi in q]
    membranes = [np.zeros((B, T) + qi.shape[1:], np.int8) for qi in q]
    currents = np.zeros((B, T, fc.out_channels), np.int64)
    positions = [np.zeros((B, T, l.out_height, l.out_width), bool) for l in spiking]
    channels = [np.zeros((B, T, l.out_channels), bool) for l in spiking]
    for t in range(T):
        x = x_all[:, t].astype(np.int64)
        for i, layer in enumerate(spiking):
            pos = spatial_keep(layer, q[i])
            chan = np.broadcast_to(channel_open(layer, q[i - 1] if i else None), (B, layer.out_channels))
            cur = synaptic_current(layer, x)
            s, q[i] = neuron_step(layer, net.membrane, cur, q[i], chan, pos)
            spikes[i][:, t], membranes[i][:, t] = s, q[i]
            positions[i][:, t], channels[i][:, t] = pos, chan
            x = sum_pool(s, layer.pool)
        currents[:, t] = synaptic_current(fc, x)[:, :, 0, 0]
    logits = currents.sum(axis=1) + T * fc.bias[None, :]
    return GoldenResult(spikes, membranes, currents, logits, positions, channels, x_all)


def valid_taps(layer) -> np.ndarray:
    """int64 [H_out, W_out]: per output position, the kernel taps inside the input map
    (padding taps excluded); the classifier's one position has ``H_in * W_in``."""
    if layer.kind != "conv":
        return np.array([[layer.in_height * layer.in_width]], np.int64)
    def axis(n_in, n_out, k, pad):
        start = np.arange(n_out) - pad
        return np.clip(start + k, 0, n_in) - np.clip(start, 0, n_in)
    kh, kw = layer.kernel
    return np.outer(axis(layer.in_height, layer.out_height, kh, layer.padding),
                    axis(layer.in_width, layer.out_width, kw, layer.padding)).astype(np.int64)


def operation_counts(layer, pos: np.ndarray, chan: np.ndarray, open_in: np.ndarray) -> dict:
    """The operation counts of one layer per sample-step (docs/INTEGER_SPEC.md, work counts),
    int64 [N] each, from its computed positions ``pos`` (bool [N, H_out * W_out]), computed
    output channels ``chan`` (bool [N, C_out]) and the number of its input channels that
    were computed (``open_in`` [N]: the previous layer's open channels; ``C_in`` for layer 0):

    - ``ops``: the operation count the tables use (the paper's way): every in-map tap of
      every computed (position, channel) from every computed input channel, zero or not;
    - ``ops_output_only``: the earlier count, ``k*k*C_in`` x computed (position, channel),
      which counts padding taps and every input channel.
    """
    taps = valid_taps(layer).reshape(-1)
    n_chan = chan.sum(axis=1).astype(np.int64)
    per_in = layer.fan_in // layer.in_channels           # taps per input channel (k*k)
    if layer.kind != "conv":
        per_in = layer.in_height * layer.in_width
    return {"ops": (pos * taps).sum(axis=1).astype(np.int64) * n_chan
                   * np.asarray(open_in, np.int64),
            "ops_output_only": pos.sum(axis=1).astype(np.int64) * n_chan
                               * layer.in_channels * per_in}


def dense_counts(layer, steps: int) -> dict:
    """``dense_ops``: the layer's synaptic operations with nothing skipped, padding taps
    excluded (every in-map tap, every channel); ``dense_ops_padded``: the same with the
    padding taps (``k*k*C_in`` per neuron), the earlier dense reference."""
    return {"dense_ops": steps * layer.in_channels * layer.out_channels
                         * int(valid_taps(layer).sum()),
            "dense_ops_padded": steps * layer.out_channels * layer.out_height
                                * layer.out_width * layer.fan_in}


def step_work(net: NetworkExport, res: GoldenResult, lanes: int,
              pack_groups: int = PACK_GROUPS) -> list:
    """Per layer, per sample and step: the work a core that skips zero inputs, masked and
    gated-off channels and masked and pruned positions must do, with ``lanes`` output
    channels per group, packing the computed channels of each window of ``pack_groups``
    consecutive groups into ceil(computed / lanes) packed groups (docs/INTEGER_SPEC.md
    section 9). A list (one per layer) of dicts of int64 arrays [B, T]:

    - ``events``: nonzero inputs issued, once per (computed position, packed group) (one
      event feeds all lanes in one cycle); the classifier's channels are all computed;
    - ``synaptic_ops``: shift-adds of a nonzero input into a computed output neuron;
    - ``packed_groups``: packed groups per computed position (the issues of an event);
    - ``neuron_updates``: (computed position, live group) pairs, one cycle of the neuron units;
    - ``positions`` / ``channels``: computed positions and channels;
    - ``ops`` / ``ops_output_only``: the operation counts of :func:`operation_counts` (not
      counted by the core: they include zero inputs).

    ``res`` must be ``net``'s result; the counts are computed once per lane count and kept
    with ``res``.
    """
    key = (lanes, pack_groups)
    if key not in res._work:
        res._work[key] = _step_work(net, res, lanes, pack_groups)
    return res._work[key]


def _step_work(net: NetworkExport, res: GoldenResult, lanes: int, pack_groups: int) -> list:
    x = res.inputs
    B, T = x.shape[:2]
    x = x.reshape((-1,) + x.shape[2:])                    # [B*T, C, H, W]
    out = []
    for i, layer in enumerate(net.layers):
        if i > 0:
            s = res.spikes[i - 1]
            x = sum_pool(s.reshape((-1,) + s.shape[2:]), net.layers[i - 1].pool)
        p = layer.padding
        nz = np.pad((x != 0).astype(np.int64), ((0, 0), (0, 0), (p, p), (p, p)))
        win = np.lib.stride_tricks.sliding_window_view(nz, layer.kernel, axis=(2, 3))
        window = win.sum(axis=(1, 4, 5))                  # nonzero inputs per position [BT, H, W]
        if layer.kind == "conv":
            pos = res.positions[i].reshape(B * T, -1)     # [BT, H*W]
            chan = res.channels[i].reshape(B * T, -1)     # [BT, C]
        else:
            pos = np.ones((B * T, 1), bool)
            chan = np.ones((B * T, layer.out_channels), bool)
        groups = -(-layer.out_channels // lanes)
        pad_c = groups * lanes - layer.out_channels
        live = np.pad(chan, ((0, 0), (0, pad_c))).reshape(B * T, groups, lanes).any(axis=2).sum(axis=1)
        windows = -(-groups // pack_groups)
        per_window = np.pad(chan, ((0, 0), (0, windows * pack_groups * lanes - layer.out_channels)))
        per_window = per_window.reshape(B * T, windows, pack_groups * lanes).sum(axis=2)
        packed = (-(-per_window // lanes)).sum(axis=1)
        seen = (window.reshape(B * T, -1) * pos).sum(axis=1)          # per (b, t)
        rows = {"events": seen * packed, "packed_groups": packed,
                "synaptic_ops": seen * chan.sum(axis=1),
                "neuron_updates": pos.sum(axis=1) * live,
                "positions": pos.sum(axis=1), "channels": chan.sum(axis=1)}
        open_in = (res.channels[i - 1].reshape(B * T, -1).sum(axis=1) if i > 0
                   else np.full(B * T, layer.in_channels))
        rows.update(operation_counts(layer, pos, chan, open_in))
        out.append({k: v.astype(np.int64).reshape(B, T) for k, v in rows.items()})
    return out


def work_counts(net: NetworkExport, inputs: np.ndarray, lanes: int) -> list:
    """Per layer, summed over the batch and its steps, the counts of :func:`step_work`, plus

    - ``ideal_cycles``: events + neuron updates;
    - ``dense_ops``: the synaptic operations of the same layer with no skipping at all
      (every in-map input, position and channel; padding taps are not operations), the
      reference of the ``ops`` count; ``dense_ops_padded``: with the padding taps, the
      reference of ``ops_output_only`` (:func:`dense_counts`).
    """
    res = run(net, inputs)
    B, T = res.inputs.shape[:2]
    out = []
    for i, (layer, work) in enumerate(zip(net.layers, step_work(net, res, lanes))):
        row = {"layer": i}
        row.update({k: int(v.sum()) for k, v in work.items()})
        row["ideal_cycles"] = row["events"] + row["neuron_updates"]
        row.update(dense_counts(layer, B * T))
        out.append(row)
    return out
