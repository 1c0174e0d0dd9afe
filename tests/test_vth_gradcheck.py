"""benchmarks.vth_gradcheck: the threshold's autograd gradient against finite differences."""
import torch
from torch import nn

from benchmarks import vth_gradcheck
from cli_harness import assert_refused, run_main
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
