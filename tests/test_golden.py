"""Golden model: against an independent per-neuron, per-tap shift-add loop; worst cases."""
import numpy as np
import pytest

import golden
from model_export.format import decode_weights
from model_export.random_net import random_export, random_inputs
from project_config import config_from_dict


def _naive(net, x):
    """Straight from docs/INTEGER_SPEC.md: loops, shifts, explicit thresholds. One sample."""
    T = net.timesteps
    q = [np.zeros((l.out_channels, l.out_height, l.out_width), int) for l in net.spiking_layers]
    spikes = [np.zeros((T,) + qi.shape, int) for qi in q]
    mems = [np.zeros((T,) + qi.shape, int) for qi in q]
    logits = np.zeros(net.classifier.out_channels, int)
    for t in range(T):
        inp = x[t]
        for li, layer in enumerate(net.layers):
            K, bits = layer.max_shift, layer.weight_bits
            out = np.zeros((layer.out_channels, layer.out_height, layer.out_width), int)
            for c in range(layer.out_channels):
                for y in range(layer.out_height):
                    for xx in range(layer.out_width):
                        acc = 0
                        for ci in range(layer.in_channels):
                            for ky in range(layer.kernel[0]):
                                for kx in range(layer.kernel[1]):
                                    iy, ix = y + ky - layer.padding, xx + kx - layer.padding
                                    if not (0 <= iy < layer.in_height and 0 <= ix < layer.in_width):
                                        continue
                                    v = int(inp[ci, iy, ix])
                                    code = int(layer.w_code[c, ci, ky, kx])
                                    e, neg = code & ((1 << (bits - 1)) - 1), code >> (bits - 1)
                                    if v == 0 or e == 0:
                                        continue
                                    term = v << (K - (e - 1))
                                    acc += -term if neg else term
                        out[c, y, xx] = acc
            if layer.kind == "fc":
                logits += out[:, 0, 0] + layer.bias
                continue
            s = np.zeros_like(out)
            # Runtime masks (section 5): the layer's own previous membranes, and the previous
            # layer's membranes after this step.
            keep = layer.position_mask.astype(bool).copy()
            if layer.spatial_threshold is not None:
                for y in range(layer.out_height):
                    for xx in range(layer.out_width):
                        e = sum(int(q[li][c, y, xx]) for c in range(layer.out_channels))
                        keep[y, xx] &= e >= int(layer.spatial_threshold[0])
            gate = layer.channel_mask.astype(bool).copy()
            if layer.gate_weights is not None:
                prev_q = q[li - 1]
                for o in range(layer.out_channels):
                    z = 0
                    for ci in range(layer.in_channels):
                        z += int(layer.gate_weights[o, ci]) * int(prev_q[ci].sum())
                    gate[o] &= z >= int(layer.gate_thresholds[o])
            for c in range(layer.out_channels):
                for y in range(layer.out_height):
                    for xx in range(layer.out_width):
                        if not layer.position_mask[y, xx]:
                            continue
                        if not keep[y, xx]:
                            q[li][c, y, xx] = 0          # pruned: reset, no spike
                            continue
                        if not gate[c]:
                            continue
                        qp = q[li][c, y, xx]
                        F, P, N = layer.thresholds[c, qp + (1 if net.membrane == "ternary" else 0)]
                        I = out[c, y, xx]
                        if I >= F:
                            s[c, y, xx], q[li][c, y, xx] = 1, 0
                        elif I >= P:
                            q[li][c, y, xx] = 1
                        elif I <= N and net.membrane == "ternary":
                            q[li][c, y, xx] = -1
                        else:
                            q[li][c, y, xx] = 0
            spikes[li][t], mems[li][t] = s, q[li]
            p = layer.pool
            inp = s.reshape(s.shape[0], s.shape[1] // p, p, s.shape[2] // p, p).sum(axis=(2, 4))
    return spikes, mems, logits


def _tiny_cfg(membrane="ternary", bits=4, T=3):
    return config_from_dict({
        "model": {"input": {"channels": 2, "height": 6, "width": 6, "bits": 3},
                  "timesteps": T, "classes": 5,
                  "layers": [{"channels": 3, "kernel": 3, "padding": 1, "pool": 2},
                             {"channels": 4, "kernel": 3, "padding": 0, "pool": 1}]},
        "quant": {"membrane": membrane, "weight_bits": bits},
        "hardware": {"lanes": 2}})


@pytest.mark.parametrize("membrane, bits, pruning", [
    ("ternary", 4, False), ("binary", 4, False), ("ternary", 2, False),
    ("ternary", 4, True), ("binary", 2, True)])
def test_golden_equals_naive_loops(membrane, bits, pruning):
    cfg = _tiny_cfg(membrane, bits, T=5 if pruning else 3)
    pruned = closed = 0
    for seed in range(3):
        net = random_export(cfg, seed, pruning=pruning)
        x = random_inputs(net, 2, seed + 10, density=0.5)
        ref = golden.run(net, x)
        for b in range(2):
            spikes, mems, logits = _naive(net, x[b])
            for li in range(len(spikes)):
                assert np.array_equal(ref.spikes[li][b], spikes[li])
                assert np.array_equal(ref.membranes[li][b], mems[li])
            assert np.array_equal(ref.logits[b], logits)
        assert 0 < np.mean([s.mean() for s in ref.spikes]) < 1   # the case is not degenerate
        if pruning:
            # The runtime masks really prune: some visited positions and some channels are
            # refused at some step, and not all of them.
            pos_static = [l.position_mask.astype(bool) for l in net.spiking_layers]
            pruned += sum(int((pos_static[i][None, None] & ~ref.positions[i]).sum())
                          for i in range(len(pos_static)))
            closed += int((net.layers[1].channel_mask.astype(bool)[None, None]
                           & ~ref.channels[1]).sum())
    if pruning:
        # Binary membranes are never negative, so e >= 0 >= theta_s: nothing is pruned.
        assert (pruned > 0) == (membrane == "ternary") and closed > 0
        assert pruned < sum(int(l.position_mask.sum()) for l in net.spiking_layers) * 2 * 5


def test_static_and_time_major_inputs_agree(slice_cfg):
    net = random_export(slice_cfg, 4)
    x = random_inputs(net, 3, 1)[:, 0]
    a = golden.run(net, x)
    b = golden.run(net, np.repeat(x[:, None], net.timesteps, axis=1))
    assert np.array_equal(a.logits, b.logits)


def test_bad_input_shape_and_range(slice_cfg):
    net = random_export(slice_cfg, 4)
    with pytest.raises(ValueError, match="expected"):
        golden.run(net, np.zeros((1, 2, 8, 8), int))
    with pytest.raises(ValueError, match="values must lie"):
        golden.run(net, np.full((1, 1, 8, 8), 32))


@pytest.mark.parametrize("sign", [+1, -1])
def test_worst_case_current_reaches_the_bound_and_fits(slice_cfg, sign):
    """All inputs at x_max, every weight at +-alpha (k = 0): |I| = fan_in * x_max * 2^K < 2^(W-1)."""
    net = random_export(slice_cfg, 0)
    for layer in net.layers:
        layer.w_code[...] = 1 if sign > 0 else (1 | (1 << (layer.weight_bits - 1)))
        x = np.full((1, layer.in_channels, layer.in_height, layer.in_width), layer.x_max)
        cur = golden.synaptic_current(layer, x)
        bound = layer.accumulator_bound
        centre = cur[0, :, layer.out_height // 2, layer.out_width // 2]
        assert np.all(centre == sign * bound)           # a full window reaches the bound
        assert np.abs(cur).max() < (1 << (layer.acc_width - 1)) - 1
        assert np.abs(decode_weights(layer.w_code, layer.weight_bits)).max() \
            == 1 << layer.max_shift


def test_work_counts_against_loops():
    """Ideal-work counters: nonzero inputs per unmasked position and live group, by loops."""
    cfg = _tiny_cfg()
    net = random_export(cfg, 8, pruning=True)
    x = random_inputs(net, 2, 9, density=0.4)
    lanes = 2
    rows = golden.work_counts(net, x, lanes)
    ref = golden.run(net, x)
    for li, layer in enumerate(net.layers):
        events = updates = ops = 0
        for b in range(x.shape[0]):
            for t in range(net.timesteps):
                if li == 0:
                    inp = x[b, t]
                else:
                    prev = net.layers[li - 1]
                    inp = golden.sum_pool(ref.spikes[li - 1][b, t][None], prev.pool)[0]
                groups = -(-layer.out_channels // lanes)
                if layer.kind == "conv":
                    chan = ref.channels[li][b, t]
                    keep = ref.positions[li][b, t]
                else:
                    chan = layer.channel_mask.astype(bool)
                    keep = np.ones((1, 1), bool)
                live = sum(chan[g * lanes:(g + 1) * lanes].any() for g in range(groups))
                for y in range(layer.out_height):
                    for xx in range(layer.out_width):
                        if not keep[y, xx]:
                            continue
                        n = 0
                        for ky in range(layer.kernel[0]):
                            for kx in range(layer.kernel[1]):
                                iy, ix = y + ky - layer.padding, xx + kx - layer.padding
                                if 0 <= iy < layer.in_height and 0 <= ix < layer.in_width:
                                    n += int((inp[:, iy, ix] != 0).sum())
                        events += n * live
                        updates += live
                        ops += n * int(chan.sum())
        row = {k: rows[li][k] for k in ("layer", "synaptic_ops", "events", "neuron_updates",
                                         "ideal_cycles")}
        assert row == {"layer": li, "synaptic_ops": ops, "events": events,
                       "neuron_updates": updates, "ideal_cycles": events + updates}
        assert rows[li]["dense_ops_padded"] == (x.shape[0] * net.timesteps * layer.out_channels
                                         * layer.out_height * layer.out_width * layer.fan_in)
