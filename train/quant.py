"""Power-of-two (PoT) weight quantization: w_q = sign * 2**alpha_log2 * 2**-k, or 0.

The codes (sign, k, alpha_log2) are what the exporter turns into shift-add hardware, so
``pot_codes`` and ``pot_quantize`` share one code path and agree exactly.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

WEIGHT_BITS = (2, 4, 8)


def max_shift(bits: int) -> int:
    """K, the largest shift of a b-bit code."""
    if bits not in WEIGHT_BITS:
        raise ValueError(f"weight bits {bits!r} is not one of {list(WEIGHT_BITS)}")
    return (1 << (bits - 1)) - 2


def alpha_log2_of(w: torch.Tensor) -> int:
    """Per-layer scale exponent: round(log2(max|w|)) of the detached weight (0 if all zero)."""
    m = float(w.detach().abs().max()) if w.numel() else 0.0
    if m == 0.0 or not math.isfinite(m):
        return 0
    return int(round(math.log2(m)))


def pot_codes(w: torch.Tensor, bits: int):
    """Return (sign int8 in {-1,0,1}, k int64 in 0..K (0 where sign==0), alpha_log2 int)."""
    big_k = max_shift(bits)
    w = w.detach()
    alpha = alpha_log2_of(w)
    a = w.abs().double()   # float64 log2: no float32 error near the rounding points
    nonzero = a >= 2.0 ** (alpha - big_k) / 2
    safe = torch.where(nonzero, a, torch.ones_like(a))
    k = torch.round(alpha - torch.log2(safe)).clamp(0, big_k).to(torch.int64)
    k = torch.where(nonzero, k, torch.zeros_like(k))
    sign = (torch.sign(w) * nonzero).to(torch.int8)
    return sign, k, alpha


def pot_value(sign: torch.Tensor, k: torch.Tensor, alpha_log2: int, dtype=torch.float32):
    """sign * 2.0**(alpha_log2 - k) as a float tensor (exact: powers of two)."""
    return sign.to(dtype) * 2.0 ** (alpha_log2 - k).to(dtype)


def pot_quantize(w: torch.Tensor, bits: int) -> torch.Tensor:
    """PoT-quantized ``w`` with a straight-through gradient."""
    sign, k, alpha = pot_codes(w, bits)
    w_q = pot_value(sign, k, alpha, w.dtype)
    return w + (w_q - w).detach()


class PoTConv2d(nn.Conv2d):
    """Conv2d whose forward uses PoT-quantized weights (weight_bits None = float)."""

    def __init__(self, *args, weight_bits=4, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight_bits = weight_bits
        if weight_bits is not None:
            max_shift(weight_bits)

    def quantized_weight(self):
        if self.weight_bits is None:
            return self.weight
        return pot_quantize(self.weight, self.weight_bits)

    def forward(self, x):
        return self._conv_forward(x, self.quantized_weight(), self.bias)

    def pot_codes(self):
        if self.weight_bits is None:
            raise ValueError("full-precision layer (weight_bits None) has no PoT codes")
        return pot_codes(self.weight, self.weight_bits)


class PoTLinear(nn.Linear):
    """The classifier: PoT weights and a bias on the integer grid of its accumulator.

    The bias step is 2**(alpha_log2 - K) * in_scale, the value of one unit of the
    hardware's integer current, so the float logit equals step * (I_int + bias_int).
    """

    def __init__(self, in_features, out_features, bias=True, weight_bits=4, in_scale=1.0):
        super().__init__(in_features, out_features, bias=bias)
        self.weight_bits = weight_bits
        self.in_scale = float(in_scale)
        if weight_bits is not None:
            max_shift(weight_bits)

    def quantized_weight(self):
        if self.weight_bits is None:
            return self.weight
        return pot_quantize(self.weight, self.weight_bits)

    def bias_step(self) -> float:
        alpha = alpha_log2_of(self.weight)
        return 2.0 ** (alpha - max_shift(self.weight_bits)) * self.in_scale

    def _bias_units(self):
        # float64: dividing by a power-of-two step is exact (so it equals the float32
        # result) and cannot overflow even for 8-bit codes, whose step is ~2**-128.
        return torch.round(self.bias.double() / self.bias_step())

    def quantized_bias(self):
        if self.bias is None or self.weight_bits is None:
            return self.bias
        b_q = (self._bias_units() * self.bias_step()).to(self.bias.dtype)
        return self.bias + (b_q - self.bias).detach()

    def bias_int(self) -> torch.Tensor:
        """round(bias / step) as int64: the bias in units of the integer accumulator."""
        if self.weight_bits is None:
            raise ValueError("full-precision classifier (weight_bits None) has no integer bias")
        if self.bias is None:
            return torch.zeros(self.out_features, dtype=torch.int64)
        units = self._bias_units().detach()
        if units.abs().max() >= 2.0 ** 63:
            raise OverflowError(f"classifier bias in units of the step {self.bias_step():g} "
                                f"does not fit int64 (weight_bits {self.weight_bits})")
        return units.to(torch.int64)

    def forward(self, x):
        return F.linear(x, self.quantized_weight(), self.quantized_bias())

    def pot_codes(self):
        if self.weight_bits is None:
            raise ValueError("full-precision layer (weight_bits None) has no PoT codes")
        return pot_codes(self.weight, self.weight_bits)

    def extra_repr(self):
        return super().extra_repr() + f", weight_bits={self.weight_bits}, in_scale={self.in_scale}"
