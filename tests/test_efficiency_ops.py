"""The operation count the tables use (docs/INTEGER_SPEC.md section 9): an operation is
skipped when its output (position, channel) is not computed or its input channel was not
computed by the previous layer; padding taps are not operations. Golden, the weight-aware
recount and the PyTorch model must give the same numbers; loops check golden."""
import numpy as np
import pytest
import torch

import golden
from efficiency.breakdown import skip_breakdown
from efficiency.model_counts import model_counts
from model_export.from_torch import export_model
from model_export.random_net import random_export, random_inputs
from project_config import config_from_dict, load_config
from train import model as train_model


def _loop_ops(net, x, res):
    """Per layer: (ops, dense ops without padding taps), by loops over every tap."""
    B, T = res.inputs.shape[:2]
    out = []
    for i, layer in enumerate(net.layers):
        ops = dense = 0
        for b in range(B):
            for t in range(T):
                if i == 0:
                    open_in = np.ones(layer.in_channels, bool)
                else:
                    open_in = res.channels[i - 1][b, t]
                if layer.kind == "conv":
                    pos, chan = res.positions[i][b, t], res.channels[i][b, t]
                    kh, kw, pad = layer.kernel[0], layer.kernel[1], layer.padding
                else:
                    pos = np.ones((1, 1), bool)
                    chan = np.ones(layer.out_channels, bool)
                    kh, kw, pad = layer.in_height, layer.in_width, 0
                for y in range(pos.shape[0]):
                    for xx in range(pos.shape[1]):
                        taps = sum(1 for ky in range(kh) for kx in range(kw)
                                   if 0 <= y + ky - pad < layer.in_height
                                   and 0 <= xx + kx - pad < layer.in_width)
                        dense += taps * layer.in_channels * layer.out_channels
                        if pos[y, xx]:
                            ops += taps * int(open_in.sum()) * int(chan.sum())
        out.append((ops, dense))
    return out


@pytest.mark.parametrize("pruning", [False, True])
def test_golden_ops_against_loops(pruning):
    cfg = load_config("slice_digits.yaml")
    net = random_export(cfg, 11, pruning=pruning)
    x = random_inputs(net, 2, 12)
    rows = golden.work_counts(net, x, cfg.hardware["lanes"])
    res = golden.run(net, x)
    for row, (ops, dense) in zip(rows, _loop_ops(net, x, res)):
        assert row["ops"] == ops and row["dense_ops"] == dense, row["layer"]
        assert row["ops"] <= row["ops_output_only"]
        assert row["synaptic_ops"] <= row["ops"]
    # Padding taps are not operations: the 3x3 / pad 1 layers count fewer than k*k*C_in.
    assert rows[0]["dense_ops"] < rows[0]["dense_ops_padded"]
    if pruning:
        # Closed channels of layer 0 are skipped inputs of layer 1: the new count is lower.
        assert rows[1]["ops"] < rows[1]["ops_output_only"] * rows[1]["dense_ops"] \
            / rows[1]["dense_ops_padded"]


def test_breakdown_has_the_input_channel_part():
    cfg = load_config("slice_digits.yaml")
    net = random_export(cfg, 5, pruning=True)
    x = random_inputs(net, 3, 6)
    res = golden.run(net, x)
    rows = skip_breakdown(net, res, cfg.hardware["lanes"])
    for r in rows:
        parts = ("skipped_position_ops", "skipped_channel_ops", "skipped_input_channel_ops",
                 "skipped_zero_input_ops")
        assert all(r[k] >= 0 for k in parts)
        assert sum(r[k] for k in parts) + r["synaptic_ops"] == r["dense_ops"]
    assert rows[1]["skipped_input_channel_ops"] > 0


def test_valid_taps_same_in_train_and_golden():
    cfg = load_config("vgg9_events.yaml")
    for spec in cfg.spiking_layers:
        assert np.array_equal(train_model.valid_taps(spec).numpy().astype(np.int64),
                              golden.model.valid_taps(spec))


def test_model_counts_equal_golden_for_a_pruned_model():
    """The PyTorch side of the three-way check counts the new ops exactly as golden."""
    cfg = config_from_dict({
        "model": {"input": {"channels": 2, "height": 8, "width": 8, "bits": 2, "scale": 0.5},
                  "timesteps": 5, "classes": 4,
                  "layers": [{"channels": 6, "kernel": 3, "padding": 1, "pool": 2},
                             {"channels": 8, "kernel": 3, "padding": 1, "pool": 2},
                             {"channels": 8, "kernel": 3, "padding": 1, "pool": 1}]},
        "quant": {"membrane": "ternary", "weight_bits": 4},
        "pruning": {"spatial_ratio": 0.35, "channel_gate_threshold": 0.47},
        "hardware": {"lanes": 4}})
    torch.manual_seed(2)
    model = train_model.SpikingConvNet(cfg)
    with torch.no_grad():
        for b in model.blocks:
            b.bn.running_mean.uniform_(-0.2, 0.2)
            b.neuron.vth.fill_(0.6)
            if b.spatial is not None:
                b.spatial.theta_running.fill_(-1.0)
        for b in model.blocks[1:]:
            b.gate.bias.copy_(torch.linspace(-3, 3, b.gate.bias.numel()))
    model.eval()
    rng = np.random.default_rng(1)
    x = (rng.integers(0, 4, (12, 5, 2, 8, 8)) * (rng.random((12, 5, 2, 8, 8)) < 0.5)).astype(np.uint8)
    net = export_model(model, cfg)
    mine = model_counts(model, cfg, x, lanes=4)
    theirs = golden.work_counts(net, x, 4)
    for a, b in zip(mine, theirs):
        for key in ("ops", "ops_output_only", "dense_ops", "dense_ops_padded", "synaptic_ops"):
            assert a[key] == b[key], (b["layer"], key)
    assert theirs[2]["ops"] < theirs[2]["ops_output_only"]
