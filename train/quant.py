"""Power-of-two (PoT) weight quantization: w_q = sign * 2**alpha_log2 * 2**-k, or 0.

The codes (sign, k, alpha_log2) are what the exporter turns into shift-add hardware, so
``pot_codes`` and ``pot_quantize`` share one code path and agree exactly.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from project_config.geometry import WEIGHT_BITS, max_shift


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


class WeightMask:
    """Mixin for the PoT layers: an optional 0/1 mask on ``weight`` (unstructured pruning).

    The buffer ``weight_mask`` is None (dense, and absent from the state_dict, so older
    checkpoints load unchanged) until :meth:`set_weight_mask`. The forward, the PoT codes
    and the classifier's bias step all use ``weight * weight_mask``: a pruned weight is
    exactly 0 before quantization, so it gets the zero code and the exporter, golden and
    the hardware see a zero weight. Its gradient is 0 (the mask multiplies it), so training
    never revives it. ``train.weight_pruning`` sets masks by magnitude.
    """

    def _init_weight_mask(self):
        self.register_buffer("weight_mask", None)

    def masked_weight(self) -> torch.Tensor:
        if self.weight_mask is None:
            return self.weight
        return self.weight * self.weight_mask

    @torch.no_grad()
    def set_weight_mask(self, mask):
        """Install a 0/1 mask of the weight's shape (1 = kept) and zero the pruned weights."""
        mask = torch.as_tensor(mask).detach().to(device=self.weight.device)
        if tuple(mask.shape) != tuple(self.weight.shape):
            raise ValueError(f"weight mask shape {list(mask.shape)} does not match the "
                             f"weight {list(self.weight.shape)}")
        mask = mask.to(self.weight.dtype)
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("weight mask values must be 0 or 1")
        self.weight_mask = mask.clone()
        self.weight.mul_(self.weight_mask)

    def clear_weight_mask(self):
        self.weight_mask = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A checkpoint with a mask restores it; one without (dense, or older) clears it.
        if prefix + "weight_mask" in state_dict:
            self.weight_mask = torch.ones_like(self.weight)   # filled (and shape-checked) below
        else:
            self.weight_mask = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class PoTConv2d(WeightMask, nn.Conv2d):
    """Conv2d whose forward uses PoT-quantized weights (weight_bits None = float)."""

    def __init__(self, *args, weight_bits=4, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_weight_mask()
        self.weight_bits = weight_bits
        if weight_bits is not None:
            max_shift(weight_bits)

    def quantized_weight(self):
        if self.weight_bits is None:
            return self.masked_weight()
        return pot_quantize(self.masked_weight(), self.weight_bits)

    def forward(self, x):
        return self._conv_forward(x, self.quantized_weight(), self.bias)

    def pot_codes(self):
        if self.weight_bits is None:
            raise ValueError("full-precision layer (weight_bits None) has no PoT codes")
        return pot_codes(self.masked_weight(), self.weight_bits)


class PoTLinear(WeightMask, nn.Linear):
    """The classifier: PoT weights and a bias on the integer grid of its accumulator.

    The bias step is 2**(alpha_log2 - K) * in_scale, the value of one unit of the
    hardware's integer current, so the float logit equals step * (I_int + bias_int).
    """

    def __init__(self, in_features, out_features, bias=True, weight_bits=4, in_scale=1.0):
        super().__init__(in_features, out_features, bias=bias)
        self._init_weight_mask()
        self.weight_bits = weight_bits
        self.in_scale = float(in_scale)
        if weight_bits is not None:
            max_shift(weight_bits)

    def quantized_weight(self):
        if self.weight_bits is None:
            return self.masked_weight()
        return pot_quantize(self.masked_weight(), self.weight_bits)

    def bias_step(self) -> float:
        alpha = alpha_log2_of(self.masked_weight())
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
        return pot_codes(self.masked_weight(), self.weight_bits)

    def extra_repr(self):
        return super().extra_repr() + f", weight_bits={self.weight_bits}, in_scale={self.in_scale}"
