"""The random networks of the tests and of sim.regress, without a simulator: negative scales
and the negative-zero code are drawn, and the regression's cases are active."""
import numpy as np

import golden
from model_export.format import decode_weights
from model_export.random_net import random_export, random_inputs
from sim.random_cases import activity_summary, case_activity, random_case, shape_config


def test_negative_scales_negate_the_channel_signs(slice_cfg):
    """A channel with A_c < 0 is its weights' signs negated (docs/INTEGER_SPEC.md section 4);
    everything else about the network is the same draw."""
    pos = random_export(slice_cfg, 5, negative_fraction=0.0, negative_zero=0.0)
    neg = random_export(slice_cfg, 5, negative_fraction=1.0, negative_zero=0.0)
    for a, b in zip(pos.layers, neg.layers):
        wa, wb = decode_weights(a.w_code, a.weight_bits), decode_weights(b.w_code, b.weight_bits)
        assert (wb == (-wa if a.kind == "conv" else wa)).all()
        assert (wa != 0).any()
        if a.kind == "conv":
            assert (a.thresholds == b.thresholds).all()
    mixed = random_export(slice_cfg, 5, negative_zero=0.0)       # the default fraction
    flipped = [(decode_weights(m.w_code, m.weight_bits) == -decode_weights(p.w_code, p.weight_bits))
               .reshape(m.out_channels, -1).all(axis=1)
               for m, p in zip(mixed.layers, pos.layers) if m.kind == "conv"]
    flipped = np.concatenate(flipped)
    assert flipped.any() and not flipped.all()


def test_the_negative_zero_code_is_drawn_and_reads_as_zero(slice_cfg):
    net = random_export(slice_cfg, 6)
    x = random_inputs(net, 1, 7, density=0.5)
    plus = random_export(slice_cfg, 6, negative_zero=0.0)
    for layer, ref in zip(net.layers, plus.layers):
        sign_bit = 1 << (layer.weight_bits - 1)
        e = layer.w_code & (sign_bit - 1)
        assert ((e == 0) & (layer.w_code & sign_bit != 0)).any(), layer.index
        assert (decode_weights(layer.w_code, layer.weight_bits)
                == decode_weights(ref.w_code, ref.weight_bits)).all()
    a, b = golden.run(net, x), golden.run(plus, x)
    assert all((s == t).all() for s, t in zip(a.spikes, b.spikes))
    assert (a.logits == b.logits).all()


def test_regression_cases_are_active():
    """``sim.regress --cases 100`` (seed 1, the cases as it draws them): at most 5% spike
    nowhere, at most 10% have a silent last spiking layer (issue 15's targets)."""
    spikes = []
    for k in range(10):
        cfg = shape_config(1000 + k)
        spikes += [case_activity(*random_case(cfg, 1_000_000 + 10 * k + i)[:2])
                   for i in range(10)]
    got = activity_summary(spikes)
    assert got["cases"] == 100
    assert got["no_spike_fraction"] <= 0.05, got
    assert got["silent_last_layer_fraction"] <= 0.10, got


def test_activity_summary_counts():
    got = activity_summary([[0, 0], [3, 0], [0, 2], [5], [0]])
    assert (got["no_spike"], got["silent_last_layer"], got["cases"]) == (2, 3, 5)
    assert got["no_spike_fraction"] == 0.4 and got["silent_last_layer_fraction"] == 0.6
