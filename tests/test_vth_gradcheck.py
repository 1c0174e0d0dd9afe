"""benchmarks.vth_gradcheck: the threshold's autograd gradient against finite differences."""
import torch
from torch import nn

from benchmarks import vth_gradcheck
from cli_harness import assert_refused, run_main
from project_config import config_from_dict
from train.model import SpikingConvNet
from train.neuron import QLIF


class _OneLayer(nn.Module):
    """One QLIF layer (a fixed-threshold buffer, as a Quant-SNN holds it) on given currents."""

    def __init__(self):
        super().__init__()
        self.neuron = QLIF(learnable_vth=False)

    def forward(self, x):
        return self.neuron(x)[0]


def test_gradcheck_counts_sign_agreement_per_rule():
    # Three neurons that should stay silent just above the threshold, six that should fire
    # just below it: the loss rises with vth, which only the rules that count both sides see.
    x = torch.tensor([[1.02] * 3 + [0.98] * 6])
    c = torch.tensor([1.0] * 3 + [-1.0] * 6)
    model = _OneLayer()
    result = vth_gradcheck.gradcheck(model, [lambda: (model(x) * c).sum()], [1.0], 0.03)
    assert isinstance(model.neuron.vth, nn.Parameter)          # the buffer became learnable
    assert result["n_cases"] == 1 and result["n_clear"] == 1
    case = result["cases"][0]
    assert case["fd"] > 0 and case["fd_2h"] > 0
    assert result["rules"]["output"]["agreement_clear"] == 1.0
    assert result["rules"]["surrogate"]["agreement"] == 1.0
    assert result["rules"]["fired"]["agreement_clear"] == 0.0
    assert result["rules"]["fired"]["per_layer_clear"] == [0.0]
    assert float(model.neuron.vth.detach()) == 1.0                      # restored after the differences


def test_gradcheck_cli_refuses_a_missing_checkpoint(tmp_path):
    out = tmp_path / "gc.json"
    assert_refused(run_main(vth_gradcheck.main, [tmp_path / "none.pt", "--out", out]),
                   "checkpoint not found")
    assert not out.exists()


def _pruned_model():
    cfg = config_from_dict({
        "model": {"input": {"channels": 2, "height": 8, "width": 8, "bits": 2, "scale": 0.5},
                  "timesteps": 6, "classes": 4,
                  "layers": [{"channels": 6, "kernel": 3, "padding": 1, "pool": 2},
                             {"channels": 8, "kernel": 3, "padding": 1, "pool": 2}]},
        "quant": {"membrane": "ternary", "weight_bits": 4},
        "pruning": {"spatial_ratio": 0.35, "channel_gate_threshold": 0.47,
                    "spatial_first_layer": True},
        "hardware": {"lanes": 4}})
    torch.manual_seed(3)
    model = SpikingConvNet(cfg)
    with torch.no_grad():
        for b in model.blocks:
            b.bn.running_mean.uniform_(-0.2, 0.2)
            b.spatial.theta_running.fill_(-1.0)
        model.blocks[1].gate.bias.copy_(torch.linspace(-3, 3, 8))
    return model.eval()


def _masks(model, x):
    with torch.no_grad():
        _, records = model(x, record=True)
    return [(r["spatial_keep"].clone(), r["channel_keep"].clone()) for r in records]


def test_mask_replay_holds_the_masks_of_the_recorded_point():
    model = _pruned_model()
    x = (torch.rand(6, 16, 2, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.4).float() * 2

    def set_vth(v):
        with torch.no_grad():
            for b in model.blocks:
                b.neuron.vth.fill_(v)

    set_vth(0.6)
    low = _masks(model, x)
    set_vth(1.4)
    high = _masks(model, x)
    assert any(not torch.equal(a[k], b[k]) for a, b in zip(low, high) for k in (0, 1))
    replay = vth_gradcheck.MaskReplay(model)
    set_vth(0.6)
    replay.record(lambda: model(x))
    set_vth(1.4)
    for a, b in zip(_masks(model, x), low):          # the masks of vth 0.6, replayed
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    replay.release()
    for a, b in zip(_masks(model, x), high):         # computed again once released
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
