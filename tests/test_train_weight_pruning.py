"""Unstructured magnitude pruning of the PoT weights: exact smallest-magnitude masks, masks that
survive training, zero codes in the integer export, masks in the state_dict."""
import numpy as np
import pytest
import torch

import golden
from model_export.from_torch import export_model
from train.data import to_time_major
from train.loss import tet_loss
from train.model import SpikingConvNet
from train.quant import PoTConv2d, PoTLinear
from train.weight_pruning import (magnitude_masks, pot_layers, prune_by_magnitude,
                                  sparsity_report)


def _net(cfg, seed=0):
    torch.manual_seed(seed)
    return SpikingConvNet(cfg)


def _pruned(layer):
    return (layer.weight_mask == 0).flatten()


def test_layer_scope_prunes_exactly_the_smallest_fraction():
    torch.manual_seed(0)
    conv = PoTConv2d(3, 4, 3, weight_bits=4)
    w = conv.weight.detach().flatten().clone()
    n = w.numel()                                           # 108
    prune_by_magnitude(conv, 0.7, scope="layer")
    k = round(0.7 * n)
    assert int(_pruned(conv).sum()) == k
    smallest = set(torch.argsort(w.abs())[:k].tolist())
    assert set(torch.nonzero(_pruned(conv)).flatten().tolist()) == smallest
    # The stored weights are zeroed too, and the kept ones are untouched.
    kept = ~_pruned(conv)
    assert torch.equal(conv.weight.detach().flatten()[kept], w[kept])
    assert (conv.weight.detach().flatten()[~kept] == 0).all()


def test_global_scope_uses_one_threshold_over_all_layers(slice_cfg):
    net = _net(slice_cfg)
    layers = pot_layers(net)
    assert [type(m) for _, m in layers] == [PoTConv2d, PoTConv2d, PoTLinear]
    mags = torch.cat([m.weight.detach().abs().flatten() for _, m in layers])
    prune_by_magnitude(net, 0.8, scope="global")
    pruned = torch.cat([_pruned(m) for _, m in layers])
    assert int(pruned.sum()) == round(0.8 * mags.numel())
    assert mags[pruned].max() <= mags[~pruned].min()
    # Per-layer fractions differ (layers with smaller weights lose more); the report agrees.
    rep = sparsity_report(net)
    assert sum(r["pruned"] for r in rep) == int(pruned.sum())
    assert len({round(r["mask_sparsity"], 3) for r in rep}) > 1
    assert all(r["zero_codes"] >= r["pruned"] for r in rep)


def test_cumulative_pruning_only_adds_to_the_mask(slice_cfg):
    net = _net(slice_cfg)
    prune_by_magnitude(net, 0.5)
    first = [_pruned(m).clone() for _, m in pot_layers(net)]
    prune_by_magnitude(net, 0.7)
    for before, (_, m) in zip(first, pot_layers(net)):
        after = _pruned(m)
        assert (after | ~before).all()                      # every earlier pruned weight stays
        assert int(after.sum()) == round(0.7 * m.weight.numel())
    prune_by_magnitude(net, 0.3)                            # lower: nothing is revived
    for (_, m) in pot_layers(net):
        assert int(_pruned(m).sum()) == round(0.7 * m.weight.numel())
    with pytest.raises(ValueError, match="sparsity"):
        magnitude_masks(pot_layers(net), 1.0)


def test_masks_stay_applied_through_training_steps(slice_cfg):
    net = _net(slice_cfg)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 17, (16, 1, 8, 8), generator=g).to(torch.uint8)
    y = torch.randint(0, 10, (16,), generator=g)

    def step():
        loss = tet_loss(net(to_time_major(x, slice_cfg.timesteps)), y, 0.05, 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()                                    # Adam has momentum before the pruning
    prune_by_magnitude(net, 0.6)
    masks = [m.weight_mask.clone() for _, m in pot_layers(net)]
    for _ in range(3):
        step()
        for mask, (_, m) in zip(masks, pot_layers(net)):
            assert m.weight.grad is not None
            assert (m.weight.grad[mask == 0] == 0).all()    # no gradient reaches them
            assert torch.equal(m.weight_mask, mask)
            assert (m.quantized_weight()[mask == 0] == 0).all()
            sign, _, _ = m.pot_codes()
            assert (sign[mask == 0] == 0).all()
    # And the network still trains: the kept weights moved.
    assert any((m.weight.grad[mask == 1] != 0).any() for mask, (_, m) in zip(masks, pot_layers(net)))


def test_export_has_zero_codes_where_pruned_and_golden_agrees(slice_cfg):
    net = _net(slice_cfg, seed=2)
    prune_by_magnitude(net, 0.7, scope="global")
    # Settle BN statistics on some inputs so the export folds realistic thresholds.
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 17, (64, 1, 8, 8), generator=g).to(torch.uint8)
    net.train()
    with torch.no_grad():
        net(to_time_major(x, slice_cfg.timesteps))
    net.eval()
    exp = export_model(net, slice_cfg)
    for layer, (_, m) in zip(exp.layers, pot_layers(net)):
        pruned = (m.weight_mask == 0).numpy().reshape(layer.w_code.shape)
        e = layer.w_code.astype(np.int64) & ((1 << (layer.weight_bits - 1)) - 1)
        assert (e[pruned] == 0).all(), layer.index            # the zero code
        assert (layer.signed_weights()[pruned] == 0).all()
        assert (e == 0).mean() >= pruned.mean()
    # Golden computes what PyTorch computes with the pruned weights.
    with torch.no_grad():
        logits = net(to_time_major(x, slice_cfg.timesteps))
    res = golden.run(exp, x.numpy())
    agree = (res.predictions == net.predict(logits).numpy()).mean()
    assert agree >= 0.95


def test_mask_travels_with_the_state_dict(slice_cfg):
    net = _net(slice_cfg)
    dense_keys = set(net.state_dict())
    assert not any(k.endswith("weight_mask") for k in dense_keys)    # dense: unchanged format
    prune_by_magnitude(net, 0.5)
    sd = net.state_dict()
    assert {k for k in sd if k.endswith("weight_mask")} == {
        "blocks.0.conv.weight_mask", "blocks.1.conv.weight_mask", "classifier.weight_mask"}
    fresh = _net(slice_cfg, seed=9)
    fresh.load_state_dict(sd)                                  # a pruned checkpoint restores masks
    for (_, a), (_, b) in zip(pot_layers(net), pot_layers(fresh)):
        assert torch.equal(a.weight_mask, b.weight_mask)
    fresh.load_state_dict(_net(slice_cfg).state_dict())       # a dense one clears them
    assert all(m.weight_mask is None for _, m in pot_layers(fresh))
    with pytest.raises(ValueError, match="0 or 1"):
        net.blocks[0].conv.set_weight_mask(torch.full((8, 1, 3, 3), 0.5))
    with pytest.raises(ValueError, match="shape"):
        net.classifier.set_weight_mask(torch.ones(3))
