"""SpikingConvNet structure, masks, records, data loading."""
import math

import numpy as np
import pytest
import torch

from project_config import load_config, config_from_dict
from train.data import load_dataset, to_time_major
from train.model import SpikingConvNet
from train.neuron import qlif_forward



@pytest.fixture(scope="module")
def cfg():
    """The slice without runtime pruning: the plain block path (tests/test_train_pruning.py
    covers the pruned one)."""
    from project_config.schema import deep_merge, load_raw_config
    path, raw = load_raw_config("slice_digits.yaml")
    raw = deep_merge(raw, {"pruning": {"spatial_ratio": 0.0, "channel_gate_threshold": 0.0,
                                       "gate_penalty": 0.0}})
    return config_from_dict(raw, where=str(path))


def test_structure(cfg):
    m = SpikingConvNet(cfg)
    assert m.input_scale == cfg.model["input"]["scale"] and m.timesteps == cfg.timesteps
    assert len(m.blocks) == len(cfg.spiking_layers)
    for b, spec in zip(m.blocks, cfg.spiking_layers):
        assert b.conv.in_channels == spec.in_channels and b.conv.out_channels == spec.out_channels
        assert b.conv.weight_bits == cfg.quant["weight_bits"] and b.conv.bias is not None
        assert b.pool == spec.pool and b.neuron.membrane == cfg.quant["membrane"]
        assert b.channel_mask.shape == (spec.out_channels,)
        assert b.position_mask.shape == (spec.out_height, spec.out_width)
        assert "channel_mask" in dict(b.named_buffers())
    fc = cfg.layers[-1]
    assert m.classifier.in_features == fc.in_channels * fc.in_height * fc.in_width
    assert m.classifier.out_features == cfg.model["classes"]
    assert m.classifier.in_scale == 1.0 / cfg.spiking_layers[-1].pool ** 2


def test_forward_shapes_and_records(cfg):
    torch.manual_seed(0)
    m = SpikingConvNet(cfg).eval()
    x = to_time_major(np.random.default_rng(0).integers(0, 17, (3, 1, 8, 8)).astype(np.uint8),
                      cfg.timesteps)
    assert x.shape == (cfg.timesteps, 3, 1, 8, 8) and x.dtype == torch.float32
    logits, rec = m(x, record=True)
    assert logits.shape == (cfg.timesteps, 3, cfg.model["classes"])
    assert torch.equal(logits, m(x))
    for r, spec in zip(rec, cfg.spiking_layers):
        shape = (cfg.timesteps, 3, spec.out_channels, spec.out_height, spec.out_width)
        assert r["spikes"].shape == shape and r["membranes"].shape == shape
        assert set(r["spikes"].unique().tolist()) <= {0.0, 1.0}
        assert set(r["membranes"].unique().tolist()) <= {-1.0, 0.0, 1.0}
    # The first block's neuron sees conv+bn of x * input_scale.
    b0 = m.blocks[0]
    T = cfg.timesteps
    cur = b0.bn(b0.conv((x * m.input_scale).reshape(T * 3, 1, 8, 8))).reshape(T, 3, -1, 8, 8)
    s, q = qlif_forward(cur, b0.neuron.vth)
    assert torch.equal(s, rec[0]["spikes"]) and torch.equal(q, rec[0]["membranes"])
    assert m.predict(logits).shape == (3,)


def test_masks(cfg):
    torch.manual_seed(0)
    m = SpikingConvNet(cfg).eval()
    with torch.no_grad():
        for b in m.blocks:
            b.bn.bias.fill_(0.9)     # make neurons fire so the mask is visible
    x = to_time_major(np.full((2, 1, 8, 8), 16, np.uint8), cfg.timesteps)
    b = m.blocks[0]
    b.channel_mask[2] = 0
    b.position_mask[1, 3] = 0
    _, rec = m(x, record=True)
    s, q = rec[0]["spikes"], rec[0]["membranes"]
    assert (s[:, :, 2] == 0).all() and (q[:, :, 2] == 0).all()
    assert (s[..., 1, 3] == 0).all() and (q[..., 1, 3] == 0).all()
    assert s.sum() > 0


def test_float_and_binary_modes_build():
    raw = {"model": {"input": {"channels": 1, "height": 8, "width": 8, "bits": 5},
                     "timesteps": 2, "layers": [{"channels": 4, "pool": 1}], "classes": 3},
           "quant": {"membrane": "binary", "weight_bits": None}}
    c = config_from_dict(raw)
    m = SpikingConvNet(c)
    assert m.classifier.in_features == 4 * 8 * 8 and m.classifier.in_scale == 1.0
    out = m(torch.zeros(2, 5, 1, 8, 8))
    assert out.shape == (2, 5, 3)


def test_dataset_deterministic(cfg):
    a = load_dataset(cfg)
    b = load_dataset(cfg)
    for u, v in zip(a, b):
        assert np.array_equal(u, v)
    x_tr, y_tr, x_te, y_te = a
    assert x_tr.dtype == np.uint8 and x_tr.shape[1:] == (1, 8, 8)
    assert y_tr.dtype == np.int64 and int(x_tr.max()) == 16 and int(x_tr.min()) == 0
    assert len(x_te) == math.ceil(1797 * cfg.data["test_fraction"])
    assert len(x_tr) + len(x_te) == 1797
    # stratified: every class in both splits, in near-equal proportions
    assert np.bincount(y_te, minlength=10).min() >= 40
