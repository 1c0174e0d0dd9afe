"""QLIF forward follows the integer-membrane rule exactly; surrogates match their formulas."""
import math

import numpy as np
import pytest
import torch

from train.neuron import QLIF, membrane_quant_grad, qlif_forward


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
            else:
                qn = u
            q[i] = qn
            spikes[t][i], mems[t][i] = float(s), qn
    return spikes, mems


def run(x, vth, membrane="ternary", mask=None):
    s, m = qlif_forward(torch.tensor(np.asarray(x, np.float32)), vth, membrane,
                        None if mask is None else torch.tensor(mask))
    return s.numpy(), m.numpy()


@pytest.mark.parametrize("membrane", ["ternary", "binary", "float"])
def test_random_against_reference(membrane):
    rng = np.random.default_rng(0)
    # Multiples of 0.25 hit every tie point (+-0.5, vth) often; continuous values elsewhere.
    ties = rng.integers(-8, 9, size=(6, 5, 40)) * 0.25
    cont = rng.normal(0, 1.2, size=(6, 5, 40))
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
    for membrane in ("ternary", "binary", "float"):
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


def test_vth_gradient_only_from_fired_neurons():
    vth = torch.tensor(1.0, requires_grad=True)
    # 0.8 and 0.9 are inside the triangle but do not fire: they must not contribute.
    x = torch.tensor([[0.8, 0.9]])
    s, _ = qlif_forward(x, vth)
    s.sum().backward()
    assert vth.grad.item() == 0.0
    vth.grad = None
    x = torch.tensor([[1.2, 0.9, 1.5]])
    s, _ = qlif_forward(x, vth)
    s.sum().backward()
    want = -sum((1 - abs(v - 1.0)) * _sig(v - 1.0) for v in (1.2, 1.5))
    assert vth.grad.item() == pytest.approx(want, rel=1e-5)
    assert vth.grad.item() < 0
