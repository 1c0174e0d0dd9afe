"""QLIF forward follows the integer-membrane rule exactly; surrogates match their formulas."""
import math

import numpy as np
import pytest
import torch

from train.neuron import QLIF, membrane_quant_grad, qlif_forward


# b-bit membranes (training only): levels LOWEST .. +1, written out by hand.
LOWEST = {"int2": -2, "int3": -6, "int4": -14}
MIDPOINTS = {
    "ternary": (-0.5, 0.5),
    "binary": (0.5,),
    "int2": (-1.5, -0.5, 0.5),
    "int3": (-5.5, -4.5, -3.5, -2.5, -1.5, -0.5, 0.5),
    "int4": tuple(k + 0.5 for k in range(-14, 1)),
}


def nearest_level(v, lowest):
    """Nearest of the integers lowest..1 to clamp(v, lowest, 1); a tie takes the lower one."""
    c = min(max(float(v), float(lowest)), 1.0)
    best = None
    for level in range(lowest, 2):          # ascending, so '<' keeps the lower on a tie
        if best is None or abs(c - level) < abs(c - best):
            best = level
    return float(best)


def reference(x, vth, membrane="ternary", mask=None):
    """Plain step-by-step rule in float32 (the dtype the model computes in)."""
    x = np.asarray(x, dtype=np.float32)
    vth = np.float32(vth)
    T, shape = x.shape[0], x.shape[1:]
    keep = np.ones(shape, bool) if mask is None else np.broadcast_to(np.asarray(mask) != 0, shape)
    q = np.zeros(shape, np.float32)
    spikes, mems = np.zeros_like(x), np.zeros_like(x)
    for t in range(T):
        for i in np.ndindex(shape):
            if not keep[i]:
                spikes[t][i], mems[t][i] = 0.0, q[i]
                continue
            u = np.float32(np.float32(0.5) * q[i] + x[t][i])
            s = u > vth
            if s:
                qn = 0.0
            elif membrane == "ternary":
                qn = 1.0 if u > 0.5 else (-1.0 if u <= -0.5 else 0.0)
            elif membrane == "binary":
                qn = 1.0 if u > 0.5 else 0.0
            elif membrane in LOWEST:
                qn = nearest_level(u, LOWEST[membrane])
            else:
                qn = u
            q[i] = qn
            spikes[t][i], mems[t][i] = float(s), qn
    return spikes, mems


def run(x, vth, membrane="ternary", mask=None):
    s, m = qlif_forward(torch.tensor(np.asarray(x, np.float32)), vth, membrane,
                        None if mask is None else torch.tensor(mask))
    return s.numpy(), m.numpy()


@pytest.mark.parametrize("membrane", ["ternary", "binary", "int2", "int3", "int4", "float"])
def test_random_against_reference(membrane):
    rng = np.random.default_rng(0)
    # Multiples of 0.25 hit every tie point (+-0.5, vth) often; continuous values elsewhere.
    ties = rng.integers(-8, 9, size=(6, 5, 40)) * 0.25
    cont = rng.normal(0, 1.2, size=(6, 5, 40))
    if membrane.startswith("int"):
        # Reach the deep negative levels (and below the lowest) too.
        ties = rng.integers(-64, 9, size=(6, 5, 40)) * 0.25
        cont = rng.normal(-3.0, 6.0, size=(6, 5, 40))
    for x in (ties, cont):
        for vth in (1.0, 0.75, 1.75):
            s, m = run(x, vth, membrane)
            rs, rm = reference(x, vth, membrane)
            np.testing.assert_array_equal(s, rs)
            np.testing.assert_array_equal(m, rm)


def test_ties_and_leak():
    # One neuron; u is exactly x when q_prev = 0.
    def step(xs, vth):
        s, m = run(np.array(xs, np.float32)[:, None], vth)
        return s[:, 0].tolist(), m[:, 0].tolist()

    assert step([0.5], 1.0) == ([0.0], [0.0])       # 0.5 -> 0 (tie goes down)
    assert step([-0.5], 1.0) == ([0.0], [-1.0])     # -0.5 -> -1
    assert step([1.5], 2.0) == ([0.0], [1.0])       # not firing: 1.5 -> +1 (no clamp issue)
    assert step([1.0], 1.0) == ([0.0], [1.0])       # u == vth does not fire
    assert step([1.0001], 1.0) == ([1.0], [0.0])    # fires, hard reset
    # leak halves the stored level: q=+1 then x=0.25 -> u=0.75 -> +1; x=0 -> u=0.5 -> 0
    assert step([0.75, 0.0, 0.0], 1.0) == ([0, 0, 0], [1.0, 0.0, 0.0])
    assert step([0.75, 0.25], 1.0) == ([0, 0], [1.0, 1.0])
    # q=-1 then x=0 -> u=-0.5 -> -1 again (stays); x=1.5 -> u=1.0 -> no spike at vth 1
    assert step([-1.0, 0.0, 1.5], 1.0) == ([0, 0, 0], [-1.0, -1.0, 1.0])
    # q=+1 then x=0.5 -> u=1.0 == vth: no spike, +1
    assert step([0.75, 0.5, 0.51], 1.0) == ([0, 0, 1], [1.0, 1.0, 0.0])


def test_binary_levels():
    s, m = run(np.array([[-3.0], [0.75], [0.0], [0.5]], np.float32), 1.0, "binary")
    assert m[:, 0].tolist() == [0.0, 1.0, 0.0, 0.0]   # -3 -> 0; 0.75 -> 1; u=0.5 -> 0; 0.5 -> 0
    assert s.sum() == 0


def test_mask_holds_membrane_and_blocks_spikes():
    x = np.array([[0.75, 0.75, 0.75], [5.0, 5.0, -5.0]], np.float32)   # [T=2, 3 neurons]
    mask = np.array([1.0, 0.0, 1.0], np.float32)
    s, m = run(x, 1.0, mask=mask)
    assert s.tolist() == [[0, 0, 0], [1, 0, 0]]
    assert m.tolist() == [[1, 0, 1], [0, 0, -1]]
    # Masked after a value is stored: it stays.
    rng = np.random.default_rng(3)
    x = rng.integers(-8, 9, size=(5, 2, 3, 4, 4)) * 0.25
    mask = (rng.random((3, 4, 4)) > 0.4).astype(np.float32)
    for membrane in ("ternary", "binary", "int2", "int3", "int4", "float"):
        s, m = run(x, 1.0, membrane, mask)
        rs, rm = reference(x, 1.0, membrane, mask)
        np.testing.assert_array_equal(s, rs)
        np.testing.assert_array_equal(m, rm)
        assert (s[:, :, mask == 0] == 0).all()


def test_tensor_vth_and_module():
    x = torch.tensor(np.random.default_rng(1).integers(-8, 9, (4, 3, 5)) * 0.25, dtype=torch.float32)
    neuron = QLIF(vth_init=1.25)
    assert isinstance(neuron.vth, torch.nn.Parameter) and neuron.vth.dim() == 0
    s, m = neuron(x)
    rs, rm = reference(x.numpy(), 1.25)
    np.testing.assert_array_equal(s.detach().numpy(), rs)
    np.testing.assert_array_equal(m.detach().numpy(), rm)
    fixed = QLIF(vth_init=1.25, learnable_vth=False)
    assert not isinstance(fixed.vth, torch.nn.Parameter)
    assert "vth" in dict(fixed.named_buffers())


def _sig(z):
    return 1.0 / (1.0 + math.exp(-z))


def _stacked(r, T=2.0, mids=(-0.5, 0.5)):
    return sum(T * _sig(T * (r - b)) * (1 - _sig(T * (r - b))) for b in mids)


def test_quantizer_backward_is_stacked_sigmoid():
    # Inputs far below vth (no spike) so r == u == x; dq/dx at t=0 is the quantizer surrogate.
    pts = [0.0, 0.5, -0.5, 1.0, -1.0, 0.3, -2.0]
    expected_t2 = {0.0: 0.786, 0.5: 0.710, -0.5: 0.710, 1.0: 0.484, -1.0: 0.484, -2.0: 0.104}
    for mode, mids in (("ternary", (-0.5, 0.5)), ("binary", (0.5,))):
        for temp in (2.0, 3.5):
            x = torch.tensor([pts], requires_grad=True)   # [T=1, N]
            _, m = qlif_forward(x, vth=10.0, membrane=mode, surrogate_temp=temp)
            m.sum().backward()
            want = [_stacked(p, temp, mids) for p in pts]
            np.testing.assert_allclose(x.grad[0].numpy(), want, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(membrane_quant_grad(torch.tensor(pts), mode, temp).numpy(),
                                       want, rtol=1e-5, atol=1e-7)
    for p, v in expected_t2.items():
        assert abs(_stacked(p) - v) < 1e-3


def test_spike_backward_is_triangle():
    # dspike/du at t=0 with q_prev=0; only the spike output is used.
    u = torch.tensor([[0.0, 0.3, 0.8, 1.0, 1.2, 1.9, 2.5]], requires_grad=True)
    for g in (1.0, 0.5):
        u.grad = None
        s, _ = qlif_forward(u, vth=1.0, spike_width=g)
        s.sum().backward()
        want = [max(g - abs(v - 1.0), 0.0) / g ** 2 for v in u[0].tolist()]
        np.testing.assert_allclose(u.grad[0].numpy(), want, rtol=1e-6, atol=1e-7)


def _tri(v, vth=1.0, g=1.0):
    return max(g - abs(v - vth), 0.0) / g ** 2


def test_vth_gradient_counts_neurons_on_both_sides():
    # The default rule: d spike / d vth = -d spike / d u, fired or not (0.8 and 0.9 do not
    # fire and still count: lowering the threshold would make them fire).
    vth = torch.tensor(1.0, requires_grad=True)
    x = torch.tensor([[0.8, 0.9, 1.2, 2.5]])
    s, _ = qlif_forward(x, vth)
    s.sum().backward()
    want = -sum(_tri(v) for v in (0.8, 0.9, 1.2, 2.5))
    assert vth.grad.item() == pytest.approx(want, rel=1e-5)
    # The earlier rule ("fired"): only 1.2, weighted by sigmoid(u - vth).
    vth.grad = None
    s, _ = qlif_forward(x, vth, vth_grad="fired")
    s.sum().backward()
    assert vth.grad.item() == pytest.approx(-_tri(1.2) * _sig(0.2), rel=1e-5)


def _linear_spike_loss(vth, rule):
    # Three neurons that should not fire sit just above the threshold, six that should
    # fire just below it: raising vth by h > 0.02 silences the three (loss -3), lowering it
    # fires the six (loss -6), so the loss rises with vth (finite difference +30 at h 0.05).
    x = torch.tensor([[1.02] * 3 + [0.98] * 6])
    c = torch.tensor([1.0] * 3 + [-1.0] * 6)
    s, _ = qlif_forward(x, vth, vth_grad=rule)
    return (s * c).sum()


def test_vth_gradient_sign_follows_finite_difference():
    h = 0.05
    with torch.no_grad():
        fd = (float(_linear_spike_loss(torch.tensor(1.0 + h), "output"))
              - float(_linear_spike_loss(torch.tensor(1.0 - h), "output"))) / (2 * h)
    assert fd == pytest.approx(30.0)
    grads = {}
    for rule in ("output", "surrogate", "normalized", "sigmoid", "fired"):
        vth = torch.tensor(1.0, requires_grad=True)
        _linear_spike_loss(vth, rule).backward()
        grads[rule] = vth.grad.item()
    for rule in ("output", "surrogate", "normalized", "sigmoid"):
        assert grads[rule] > 0, (rule, grads)
    # The earlier rule sees only the three fired neurons and points the other way.
    assert grads["fired"] < 0


def test_vth_gradient_output_rule_skips_the_reset():
    # Two steps: the loss reads only the membrane after step 0, which depends on vth only
    # through the hard reset (a fired neuron's membrane is 0, else it holds its level).
    x = torch.tensor([[1.2, 0.9, 1.1], [0.0, 0.0, 0.0]], requires_grad=True)
    got = {}
    for rule in ("output", "surrogate"):
        vth = torch.tensor(1.0, requires_grad=True)
        _, m = qlif_forward(x, vth, vth_grad=rule)
        m[0].sum().backward()
        got[rule] = 0.0 if vth.grad is None else vth.grad.item()
    assert got["output"] == 0.0
    assert got["surrogate"] != 0.0
    # The first step's spikes (no reset before them): the same gradient under both rules.
    for rule in ("output", "surrogate"):
        vth = torch.tensor(1.0, requires_grad=True)
        s, _ = qlif_forward(x, vth, vth_grad=rule)
        s[0].sum().backward()
        got[rule] = vth.grad.item()
    assert got["output"] == pytest.approx(got["surrogate"])
    with pytest.raises(ValueError, match="threshold gradient rule"):
        qlif_forward(x, 1.0, vth_grad="nope")


# --- multi-bit membranes (training only) -------------------------------------------------

def _levels_of(mode, values):
    x = torch.tensor([values], dtype=torch.float32)     # [T=1, N]: q_prev = 0, so u = x
    _, m = qlif_forward(x, vth=100.0, membrane=mode)   # vth far away: nothing fires
    return m[0].tolist()


@pytest.mark.parametrize("mode,lowest", [("int2", -2), ("int3", -6), ("int4", -14)])
def test_multibit_levels_and_ties(mode, lowest):
    # Every level lowest..1 is reached, nothing else, and the clamp holds at both ends.
    sweep = np.arange(-40.0, 40.0, 0.125, dtype=np.float32).tolist()
    got = _levels_of(mode, sweep)
    assert sorted(set(got)) == [float(v) for v in range(lowest, 2)]
    assert len(set(got)) == 2 ** int(mode[3:])
    assert _levels_of(mode, [-1000.0, lowest - 0.5, lowest - 0.01, 5.0, 99.0]) == \
        [lowest, lowest, lowest, 1.0, 1.0]
    # Ties (exact midpoints) go to the lower level; a hair above goes up.
    mids = [k + 0.5 for k in range(lowest, 1)]
    assert _levels_of(mode, mids) == [float(k) for k in range(lowest, 1)]
    above = [float(np.nextafter(np.float32(v), np.float32(np.inf))) for v in mids]
    assert _levels_of(mode, above) == [float(k + 1) for k in range(lowest, 1)]
    below = [float(np.nextafter(np.float32(v), np.float32(-np.inf))) for v in mids]
    assert _levels_of(mode, below) == [float(k) for k in range(lowest, 1)]
    # Integers are their own level. The leak halves the stored level: q = lowest, then
    # x = 0 gives u = lowest/2 (an integer: lowest is even), then lowest/4 (for int2 the
    # tie -0.5, which goes down to -1).
    assert _levels_of(mode, [float(k) for k in range(lowest, 2)]) == \
        [float(k) for k in range(lowest, 2)]
    x = torch.tensor([[float(lowest)], [0.0], [0.0]])
    _, m = qlif_forward(x, vth=1.0, membrane=mode)
    want = [lowest, lowest // 2, nearest_level(lowest // 2 * 0.5, lowest)]
    assert m[:, 0].tolist() == [float(v) for v in want]


def test_multibit_examples_by_hand():
    assert _levels_of("int2", [-3.0, -2.0, -1.6, -1.5, -1.4, -0.5, -0.4, 0.5, 0.51, 1.0, 3.0]) == \
        [-2.0, -2.0, -2.0, -2.0, -1.0, -1.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert _levels_of("int3", [-7.0, -5.5, -5.49, -2.7, 0.2]) == [-6.0, -6.0, -5.0, -3.0, 0.0]
    assert _levels_of("int4", [-20.0, -13.5, -13.4, -7.25, 0.75]) == [-14.0, -14.0, -13.0, -7.0, 1.0]


@pytest.mark.parametrize("mode", ["int2", "int3", "int4", "ternary", "binary"])
def test_quantizer_backward_sums_sigmoids_at_midpoints(mode):
    # The midpoints are written out by hand in MIDPOINTS; r == x at t = 0 (nothing fires).
    pts = [-20.0, -14.0, -13.5, -6.0, -5.5, -3.2, -2.0, -1.5, -1.0, -0.5, 0.0, 0.3, 0.5, 1.0, 2.0]
    for temp in (2.0, 0.7):
        x = torch.tensor([pts], requires_grad=True)
        _, m = qlif_forward(x, vth=100.0, membrane=mode, surrogate_temp=temp)
        m.sum().backward()
        want = [_stacked(p, temp, MIDPOINTS[mode]) for p in pts]
        np.testing.assert_allclose(x.grad[0].numpy(), want, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(membrane_quant_grad(torch.tensor(pts), mode, temp).numpy(),
                                   want, rtol=1e-5, atol=1e-7)
    # One value by hand: int2 at r = -1 with T = 2 is 2 s(1)(1 - s(1)) twice + 2 s(3)(1 - s(3)).
    if mode == "int2":
        by_hand = 2 * (2 * _sig(1) * (1 - _sig(1))) + 2 * _sig(-3) * (1 - _sig(-3))
        assert float(membrane_quant_grad(torch.tensor(-1.0), "int2", 2.0)) == \
            pytest.approx(by_hand, rel=1e-6)
        assert by_hand == pytest.approx(0.8768, abs=1e-4)


def test_ternary_and_binary_unchanged_bit_for_bit():
    """Forward and backward equal the original two-level code exactly (not just closely)."""
    gen = torch.Generator().manual_seed(5)
    r = torch.cat([torch.randn(4000, generator=gen) * 2.0,
                   torch.arange(-16, 17, dtype=torch.float32) * 0.25])   # all tie points
    for mode in ("ternary", "binary"):
        for temp in (2.0, 3.5):
            x = r[None].clone().requires_grad_(True)
            _, m = qlif_forward(x, vth=100.0, membrane=mode, surrogate_temp=temp)
            m.sum().backward()
            if mode == "ternary":
                q_old = (r > 0.5).to(r.dtype) - (r <= -0.5).to(r.dtype)
                mids = (-0.5, 0.5)
            else:
                q_old = (r > 0.5).to(r.dtype)
                mids = (0.5,)
            g_old = torch.zeros_like(r)
            for b in mids:
                s = torch.sigmoid(temp * (r - b))
                g_old = g_old + temp * s * (1.0 - s)
            assert torch.equal(m[0].detach(), q_old)
            assert torch.equal(x.grad[0], g_old)


def test_multibit_membrane_in_config_model_and_export():
    import yaml
    from pathlib import Path
    from model_export.from_torch import export_model
    from project_config import UserError, config_from_dict
    from train.model import SpikingConvNet
    raw = yaml.safe_load((Path(__file__).resolve().parent.parent / "configs" /
                          "slice_digits.yaml").read_text())
    for mode in ("int2", "int3", "int4"):
        raw["quant"]["membrane"] = mode
        cfg = config_from_dict(raw, where=f"{mode}.yaml")
        model = SpikingConvNet(cfg)
        assert all(b.neuron.membrane == mode for b in model.blocks)
        inp = cfg.model["input"]
        x = torch.randint(0, 2 ** inp["bits"], (2, 3, inp["channels"], inp["height"], inp["width"]))
        logits = model(x.float())
        logits.sum().backward()        # trains: gradients reach the first conv
        assert model.blocks[0].conv.weight.grad is not None
        # Training only: the integer export refuses it, naming the key.
        with pytest.raises(UserError, match="quant.membrane"):
            export_model(model, cfg)
