"""Power-of-two weights: codes reproduce the quantized tensor exactly."""
import math

import pytest
import torch

from train.quant import PoTConv2d, PoTLinear, alpha_log2_of, max_shift, pot_codes, pot_quantize


def _weights(seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(16, 8, 3, 3, generator=g) * 0.2
    w[0, 0] = 0.0                                      # exact zeros stay zero
    w[1, 0, 0, 0] = 1e-9                               # far below the zero threshold
    return w


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_codes_match_quantized(bits):
    K = (1 << (bits - 1)) - 2
    assert max_shift(bits) == K
    for seed in range(3):
        w = _weights(seed)
        wq = pot_quantize(w, bits)
        sign, k, alpha = pot_codes(w, bits)
        assert sign.dtype == torch.int8 and k.dtype == torch.int64 and isinstance(alpha, int)
        assert torch.equal(sign * 2.0 ** (alpha - k), wq)
        assert set(sign.unique().tolist()) <= {-1, 0, 1}
        assert int(k.min()) >= 0 and int(k.max()) <= K
        assert (k[sign == 0] == 0).all()
        assert (sign[w == 0] == 0).all()
        assert (sign[1, 0, 0, 0] == 0) == (bits < 8)    # 1e-9 is on the 8-bit grid only
        nz = wq[wq != 0].abs()
        e = torch.log2(nz)
        assert torch.equal(e, e.round())              # powers of two
        assert alpha == round(math.log2(float(w.abs().max())))
        assert torch.equal(torch.sign(wq), torch.sign(w) * (wq != 0))


def test_rounding_rules():
    # alpha_log2 = 0 (max |w| = 1); 4 bits: K = 6, zero threshold 2**-6 / 2.
    w = torch.tensor([1.0, -0.5, 0.3, 0.2, 2 ** -6, 2 ** -7, 2 ** -7 * 0.99, -0.0105, 1.3])
    sign, k, alpha = pot_codes(w, 4)
    assert alpha == 0
    assert sign.tolist() == [1, -1, 1, 1, 1, 1, 0, -1, 1]
    # 0.3: log2 = -1.74 -> k=2 (0.25); 0.2: -2.32 -> k=2; 2**-7 clamps to K=6; 1.3 -> k=0.
    assert k.tolist() == [0, 1, 2, 2, 6, 6, 0, 6, 0]
    assert pot_quantize(w, 4).tolist() == [1.0, -0.5, 0.25, 0.25, 2 ** -6, 2 ** -6, 0.0, -(2 ** -6), 1.0]


def test_two_bit_is_ternary():
    w = _weights(5)
    wq = pot_quantize(w, 2)
    a = 2.0 ** alpha_log2_of(w)
    assert set(wq.unique().tolist()) <= {-a, 0.0, a}
    assert set(wq.unique().tolist()) == {-a, 0.0, a}


def test_all_zero_and_ste():
    z = torch.zeros(4, 3)
    assert alpha_log2_of(z) == 0
    assert torch.equal(pot_quantize(z, 4), z)
    w = torch.randn(5, 7, requires_grad=True)
    pot_quantize(w, 4).mul(torch.arange(7.0)).sum().backward()
    assert torch.equal(w.grad, torch.arange(7.0).expand(5, 7))   # straight-through


def test_layers_use_quantized_weights():
    torch.manual_seed(0)
    conv = PoTConv2d(2, 4, 3, padding=1, weight_bits=4)
    x = torch.randn(3, 2, 5, 5)
    ref = torch.nn.functional.conv2d(x, pot_quantize(conv.weight, 4), conv.bias, padding=1)
    assert torch.equal(conv(x), ref)
    sign, k, alpha = conv.pot_codes()
    assert torch.equal(sign * 2.0 ** (alpha - k), pot_quantize(conv.weight, 4))
    fp = PoTConv2d(2, 4, 3, padding=1, weight_bits=None)
    fp.load_state_dict(conv.state_dict())
    assert torch.equal(fp(x), torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1))


@pytest.mark.parametrize("bits", [2, 4])
def test_linear_bias_on_integer_grid(bits):
    torch.manual_seed(1)
    fc = PoTLinear(12, 5, weight_bits=bits, in_scale=0.25)
    with torch.no_grad():
        fc.bias.copy_(torch.randn(5))
    sign, k, alpha = fc.pot_codes()
    step = 2.0 ** (alpha - max_shift(bits)) * 0.25
    b_int = fc.bias_int()
    assert b_int.dtype == torch.int64
    assert torch.equal(b_int, torch.round(fc.bias.detach() / step).to(torch.int64))
    # The float output is step * (integer current + bias_int) for integer inputs x / in_scale.
    x_int = torch.randint(0, 5, (3, 12))
    out = fc(x_int.float() * 0.25)
    w_units = (sign.long() << (max_shift(bits) - k))              # weight in units of 2**(alpha-K)
    i_int = x_int @ w_units.T
    assert torch.allclose(out.double(), step * (i_int + b_int).double(), atol=1e-6, rtol=0)
    # STE on the bias.
    out.sum().backward()
    assert torch.equal(fc.bias.grad, torch.full((5,), 3.0))


def test_linear_8bit_bias():
    # K = 126: the bias grid is finer than float32, so quantizing it is the identity and
    # its integer value does not fit int64 (must say so, not wrap around).
    torch.manual_seed(1)
    fc = PoTLinear(12, 5, weight_bits=8, in_scale=0.25)
    x = torch.randn(3, 12)
    assert torch.equal(fc(x), torch.nn.functional.linear(x, pot_quantize(fc.weight, 8), fc.bias))
    with pytest.raises(OverflowError):
        fc.bias_int()


def test_full_precision_linear():
    fc = PoTLinear(4, 2, weight_bits=None)
    x = torch.randn(3, 4)
    assert torch.equal(fc(x), torch.nn.functional.linear(x, fc.weight, fc.bias))
    with pytest.raises(ValueError):
        fc.bias_int()
