"""The energy model (Equation 31 with BitNet's 7 nm energies) on hand-computed counts, and the
weight-aware work counts against golden.work_counts and a brute-force loop."""
import numpy as np
import pytest

import golden
from efficiency import ENERGY_PJ, dense_mac_energy, eq31_energy, layer_ops, snn_energy
from efficiency.counts import (export_counts, layer_counts, nonzero_codes, recount,
                               weight_skip_savings)
from model_export.random_net import random_export, random_inputs
from project_config import load_config

# Two layers summed over 2 samples: a spiking conv and the classifier.
ROWS = [
    {"layer": 0, "kind": "conv", "synaptic_ops": 100, "computed_neurons": 10,
     "neuron_updates": 5, "dense_ops": 400, "dense_neurons": 12, "acc_width": 16},
    {"layer": 1, "kind": "fc", "synaptic_ops": 20, "computed_neurons": 4,
     "neuron_updates": 4, "dense_ops": 40, "dense_neurons": 4, "acc_width": 8},
]


def test_the_7nm_table_is_bitnets():
    t = ENERGY_PJ["7nm"]
    assert (t["fp32"].add, t["fp32"].mult) == (0.38, 1.31)
    assert (t["fp16"].add, t["fp16"].mult) == (0.16, 0.34)
    assert (t["int8"].add, t["int8"].mult) == (0.007, 0.07)
    assert eq31_energy(10, 2, "fp32") == pytest.approx(10 * 0.38 + 2 * 1.31)


def test_spiking_energy_hand_computed():
    # adds: synaptic 100 + 20, membrane 10 * 2 (leak-integrate, compare) + 4 * 1 (logit)
    e = snn_energy(ROWS, samples=2)
    assert e["adds_per_sample"] == (120 + 24) / 2
    assert e["total_pj"] == pytest.approx(144 * 0.007 / 2)          # 0.504 pJ
    assert e["synaptic_pj"] == pytest.approx(120 * 0.007 / 2)       # Spikformer-style: 0.42
    assert e["membrane_pj"] == pytest.approx(24 * 0.007 / 2)
    assert e["mults_per_sample"] == 0
    assert e["layers"][0]["membrane_adds"] == 20 and e["layers"][1]["membrane_adds"] == 4
    # Width-scaled adds: 16-bit accumulator costs twice an INT8 add, 8-bit the same.
    w = snn_energy(ROWS, samples=2, width_scaled=True)
    # conv: (100 + 20) adds x 0.014; fc: (20 + 4) adds x 0.007; per sample: 0.924 pJ
    assert w["total_pj"] == pytest.approx((120 * 0.014 + 24 * 0.007) / 2)


def test_spiking_energy_without_computed_neurons_uses_lanes():
    rows = [{k: v for k, v in r.items() if k != "computed_neurons"} for r in ROWS]
    with pytest.raises(KeyError, match="computed_neurons"):
        snn_energy(rows)
    ops = layer_ops(rows[0], lanes=4)                 # 5 group updates x 4 lanes
    assert ops["neurons"] == 20 and ops["adds"] == 100 + 40


def test_full_precision_mac_energy_hand_computed():
    # conv: 400 MACs + 12 neurons x (1 mult + 2 adds); fc: 40 MACs + 4 x 1 add.
    adds, mults = 400 + 24 + 40 + 4, 400 + 12 + 40
    e = dense_mac_energy(ROWS, samples=1)
    assert (e["adds_per_sample"], e["mults_per_sample"]) == (adds, mults)
    assert e["total_pj"] == pytest.approx(adds * 0.38 + mults * 1.31)   # 769.96 pJ
    with pytest.raises(ValueError, match="precision"):
        dense_mac_energy(ROWS, precision="fp8")


def test_layer_counts_hand_example():
    # One sample, 2 input channels at 1x2 positions, 1x1 kernel, 2 output channels.
    x = np.array([[[[1, 0]], [[1, 1]]]], bool)          # ci0: (1, 0), ci1: (1, 1)
    w = np.zeros((2, 2, 1, 1), bool)
    w[0, 0] = True                                      # only channel 0 <- ci0 is nonzero
    c = layer_counts(x, w, padding=0, lanes=2)
    # 3 nonzero inputs issued (2 at p0, 1 at p1) to one group of 2 lanes.
    assert (c["synaptic_ops"], c["events"], c["neuron_updates"]) == (6, 3, 2)
    assert c["computed_neurons"] == 4 and c["dense_ops"] == 8
    assert c["weighted_ops"] == 1                       # ci0 at p0 into channel 0
    assert c["useful_events"] == 1                      # only ci0's event meets a weight
    one = layer_counts(x, w, padding=0, lanes=1)        # two groups, one all-zero
    assert (one["events"], one["useful_events"], one["weighted_ops"]) == (6, 1, 1)
    masked = layer_counts(x, w, 0, 2, positions=np.array([[[False, True]]]),
                          channels=np.array([[True, False]]))
    assert (masked["synaptic_ops"], masked["events"], masked["weighted_ops"]) == (1, 1, 0)


def _brute_weighted_ops(net, inputs):
    """Nonzero input x nonzero weight into computed neurons, by explicit loops."""
    res = golden.run(net, inputs)
    x = np.broadcast_to(inputs[:, None], (len(inputs), net.timesteps) + inputs.shape[1:]) \
        if inputs.ndim == 4 else inputs
    total = []
    for i, layer in enumerate(net.layers):
        wnz = nonzero_codes(layer.w_code, layer.weight_bits)
        n = 0
        for b in range(len(inputs)):
            for t in range(net.timesteps):
                if i == 0:
                    xin = x[b, t]
                else:
                    s = res.spikes[i - 1][b, t].astype(np.int64)
                    pl = net.layers[i - 1].pool
                    c_, h_, w_ = s.shape
                    xin = s.reshape(c_, h_ // pl, pl, w_ // pl, pl).sum(axis=(2, 4))
                p = layer.padding
                xp = np.pad(xin != 0, ((0, 0), (p, p), (p, p)))
                for oy in range(layer.out_height):
                    for ox in range(layer.out_width):
                        if layer.kind == "conv" and not res.positions[i][b, t, oy, ox]:
                            continue
                        win = xp[:, oy:oy + layer.kernel[0], ox:ox + layer.kernel[1]]
                        for c in range(layer.out_channels):
                            if layer.kind == "conv" and not res.channels[i][b, t, c]:
                                continue
                            n += int((win & wnz[c]).sum())
        total.append(n)
    return total


@pytest.mark.parametrize("pruning", [False, True])
def test_recount_matches_golden_work_counts_and_a_loop(pruning):
    cfg = load_config("slice_digits.yaml")
    lanes = cfg.hardware["lanes"]
    net = random_export(cfg, 3, zero_fraction=0.5, pruning=pruning)
    x = random_inputs(net, 3, 5)
    mine, theirs = recount(net, x, lanes), golden.work_counts(net, x, lanes)
    for a, b in zip(mine, theirs):
        for key in ("synaptic_ops", "events", "neuron_updates", "ideal_cycles", "dense_ops",
                    "dense_ops_padded", "ops", "ops_output_only", "positions", "channels"):
            if key in b:
                assert a[key] == b[key], (a["layer"], key)
        assert a["weighted_ops"] <= a["synaptic_ops"]
        assert a["weighted_ops"] <= a["useful_events"] * lanes
        assert a["useful_events"] <= a["events"]
    assert [r["weighted_ops"] for r in mine] == _brute_weighted_ops(net, x)
    merged = export_counts(net, x, lanes)
    assert merged[0]["acc_width"] == net.layers[0].acc_width
    s = weight_skip_savings(merged)
    assert 0.0 <= s["events_saved"] <= 1.0 and 0.0 < s["adds_saved"] < 1.0


def test_energy_takes_golden_rows_as_they_are():
    cfg = load_config("slice_digits.yaml")
    lanes = cfg.hardware["lanes"]
    net = random_export(cfg, 4)
    x = random_inputs(net, 2, 6)
    rows = golden.work_counts(net, x, lanes)
    e = snn_energy(rows, samples=2, lanes=lanes)      # neuron_updates x lanes, no kind: conv
    adds = sum(r["synaptic_ops"] + 2 * r["neuron_updates"] * lanes for r in rows)
    assert e["total_pj"] == pytest.approx(adds * 0.007 / 2)
    full = export_counts(net, x, lanes)               # exact neurons, kinds, dense counts
    exact = snn_energy(full, samples=2)
    assert exact["total_pj"] <= e["total_pj"]
    assert dense_mac_energy(full, samples=2)["total_pj"] > 100 * exact["total_pj"]
