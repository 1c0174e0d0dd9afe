"""Spatial-channel pruning from the membrane prior: forward = the integer rule, STE backward,
and the exported integers reproduce the PyTorch forward in golden."""
import math

import numpy as np
import pytest
import torch

import golden
from model_export.from_torch import export_model
from project_config import config_from_dict
from train.model import SpikingConvNet
from train.neuron import qlif_forward
from train.pruning import ChannelGate, SpatialPruning


def test_spatial_keep_is_the_integer_rule_without_gradient():
    sp = SpatialPruning(channels=3, ratio=0.35)
    sp.theta_running.fill_(-1.2)                       # rounds to theta = -1
    assert sp.theta == -1
    q = torch.tensor([[[[-1.0, 0.0]], [[-1.0, 1.0]], [[1.0, -1.0]]]], requires_grad=True)
    keep = sp.keep(1, q)                              # e = (-1, 0)
    assert keep.tolist() == [[[1.0, 1.0]]]
    q2 = torch.tensor([[[[-1.0]], [[-1.0]], [[0.0]]]], requires_grad=True)   # e = -2 < -1
    keep2 = sp.keep(1, q2)
    assert keep2.item() == 0.0
    assert not keep2.requires_grad    # a straight-through gradient here destabilised training


def test_spatial_threshold_tracks_the_quantile_and_stays_in_range():
    sp = SpatialPruning(channels=4, ratio=0.5, momentum=1.0)
    sp.train()
    q = torch.zeros(8, 4, 2, 2)
    q[:, :, 0, 0] = -1                                # e = -4 at 1/4 of the positions
    q[:, :2, 0, 1] = -1                               # e = -2 at 1/4
    with torch.enable_grad():
        sp.keep(1, q)
    sp.update()
    assert sp.theta == -1                             # median of {-4, -2, 0, 0} is -1
    sp.theta_running.fill_(3.0)
    assert sp.theta == 0                              # never positive
    sp.theta_running.fill_(-9.0)
    assert sp.theta == -4                             # never below -C


def test_channel_gate_threshold_is_the_sigmoid_rule():
    torch.manual_seed(0)
    gate = ChannelGate(in_channels=3, out_channels=5, prior_positions=16, threshold=0.47)
    with torch.no_grad():
        gate.bias.copy_(torch.tensor([-2.0, -0.3, 0.0, 0.7, 4.0]))
    sign, alpha_log2 = gate.codes()
    theta = gate.thresholds()
    logit_g = math.log(0.47 / 0.53)
    for o in range(5):
        for z in range(-48, 49):
            opens = 1 / (1 + math.exp(-(2.0 ** alpha_log2 * z / 16 + float(gate.bias[o].detach())))) > 0.47
            assert opens == (z >= int(theta[o])), (o, z)
    assert set(sign.flatten().tolist()) <= {-1, 0, 1}
    assert logit_g < 0


def test_channel_gate_forward_and_gradients():
    torch.manual_seed(1)
    gate = ChannelGate(in_channels=4, out_channels=6, prior_positions=9)
    prior = torch.randint(-1, 2, (3, 2, 4, 3, 3)).float().requires_grad_()
    open_ = gate(prior)
    sign, _ = gate.codes()
    z = prior.detach().sum(dim=(-2, -1)) @ sign.float().t()
    assert torch.equal(open_.detach(), (z >= gate.thresholds()).float())
    (open_.sum() + gate.last_probability.mean()).backward()
    assert gate.bias.grad.abs().sum() > 0 and gate.weight.grad.abs().sum() > 0
    # The prior is the gate's input only: the network does not learn through the gate.
    assert prior.grad is None or float(prior.grad.abs().sum()) == 0.0


def test_runtime_mask_inactive_keeps_and_pruned_resets():
    x = torch.tensor([[0.9], [0.9], [3.0]]).expand(3, 2).clone()   # [T, 2 neurons]
    def runtime(t, q_prev):
        active = torch.tensor([1.0, 0.0 if t == 1 else 1.0])
        keep = torch.tensor([0.0 if t == 1 else 1.0, 1.0])
        return active, keep
    s, q = qlif_forward(x, 1.0, "ternary", runtime_mask=runtime)
    # neuron 0: q=1 after t0, pruned (reset to 0) at t1, then fires at t2
    assert q[:, 0].tolist() == [1.0, 0.0, 0.0] and s[:, 0].tolist() == [0.0, 0.0, 1.0]
    # neuron 1: q=1 after t0, inactive at t1 (keeps 1, no spike), fires at t2
    assert q[:, 1].tolist() == [1.0, 1.0, 0.0] and s[:, 1].tolist() == [0.0, 0.0, 1.0]


def _pruned_cfg(membrane="ternary"):
    return config_from_dict({
        "model": {"input": {"channels": 2, "height": 8, "width": 8, "bits": 2, "scale": 0.5},
                  "timesteps": 6, "classes": 4,
                  "layers": [{"channels": 6, "kernel": 3, "padding": 1, "pool": 2},
                             {"channels": 8, "kernel": 3, "padding": 1, "pool": 2}]},
        "quant": {"membrane": membrane, "weight_bits": 4},
        "pruning": {"spatial_ratio": 0.35, "channel_gate_threshold": 0.47,
                    "spatial_first_layer": True},
        "hardware": {"lanes": 4}})


@pytest.mark.parametrize("membrane", ["ternary", "binary"])
def test_pruned_model_exports_to_golden_bit_exact(membrane):
    torch.manual_seed(3)
    cfg = _pruned_cfg(membrane)
    model = SpikingConvNet(cfg)
    assert model.blocks[0].gate is None and model.blocks[1].gate is not None
    with torch.no_grad():
        for b in model.blocks:
            b.bn.running_mean.uniform_(-0.2, 0.2)
            b.neuron.vth.fill_(0.6)
            b.spatial.theta_running.fill_(-1.0)
        model.blocks[1].gate.bias.copy_(torch.linspace(-3, 3, 8))
    model.eval()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (16, 6, 2, 8, 8)) * (rng.random((16, 6, 2, 8, 8)) < 0.5)
    with torch.no_grad():
        logits, records = model(torch.as_tensor(x, dtype=torch.float32).transpose(0, 1),
                                record=True)
    net = export_model(model, cfg)
    assert net.layers[0].spatial_pruning and net.layers[1].gated
    ref = golden.run(net, x)
    for i, rec in enumerate(records):
        assert np.array_equal(rec["spikes"].numpy().transpose(1, 0, 2, 3, 4), ref.spikes[i])
        assert np.array_equal(rec["membranes"].numpy().transpose(1, 0, 2, 3, 4), ref.membranes[i])
        assert np.array_equal(rec["spatial_keep"].numpy().transpose(1, 0, 2, 3) > 0, ref.positions[i])
        assert np.array_equal(rec["channel_keep"].numpy().transpose(1, 0, 2) > 0, ref.channels[i])
    assert np.array_equal(logits.sum(0).argmax(-1).numpy(), ref.predictions)
    # Not degenerate: the gate closes some channel-steps and opens others.
    assert 0 < ref.channels[1].mean() < 1
    if membrane == "ternary":
        assert 0 < ref.positions[0].mean() < 1


def test_gate_penalty_closes_gates():
    torch.manual_seed(0)
    cfg = _pruned_cfg()
    model = SpikingConvNet(cfg)
    x = torch.randint(0, 4, (6, 8, 2, 8, 8)).float()
    model(x)
    before = float(model.pruning_loss().detach())
    opt = torch.optim.SGD(model.parameters(), lr=5.0)
    for _ in range(5):
        model(x)
        opt.zero_grad()
        model.pruning_loss().backward()
        opt.step()
    model(x)
    assert float(model.pruning_loss().detach()) < before - 0.05
    assert float(model.blocks[1].gate.bias.detach().mean()) < 0
