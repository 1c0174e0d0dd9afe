"""Quantized LIF neuron (QLIF): integer membrane levels, hard reset, 0.5 leak.

Membrane modes: "ternary" {-1, 0, +1} and "binary" {0, 1} (the ones the integer export
and the hardware run); "int2", "int3", "int4" (training only, for the membrane precision
sweep): a b-bit membrane holds the 2**b integer levels -(2**b - 2) .. +1, the official
code's scheme (upper clamp 1, the extra levels all on the negative side); "float": no
quantization. Forward values are exact (comparisons only) so the integer export can
reproduce them; the backward passes use the surrogates of the SpQuant-SNN paper's code.
"""
from __future__ import annotations

import torch
from torch import nn

# b-bit membranes: 2**b levels, lowest -(2**b - 2), highest +1.
MULTIBIT_MODES = {"int2": 2, "int3": 3, "int4": 4}
MEMBRANE_MODES = ("ternary", "binary", *MULTIBIT_MODES, "float")


def membrane_levels(mode):
    """(lowest, highest) integer level of a quantized membrane mode; None for "float"."""
    if mode == "ternary":
        return (-1, 1)
    if mode == "binary":
        return (0, 1)
    if mode in MULTIBIT_MODES:
        return (-((1 << MULTIBIT_MODES[mode]) - 2), 1)
    if mode == "float":
        return None
    raise ValueError(f"membrane mode {mode!r} is not one of {list(MEMBRANE_MODES)}")


def membrane_midpoints(mode):
    """The decision points between adjacent levels, lowest first (one surrogate term each)."""
    if mode == "ternary":
        return (-0.5, 0.5)
    if mode == "binary":
        return (0.5,)
    lo, hi = membrane_levels(mode)
    return tuple(level + 0.5 for level in range(lo, hi))


class _SpikeFn(torch.autograd.Function):
    """spike = (u > vth); triangle surrogate for u, fired-only sigmoid path for vth."""

    @staticmethod
    def forward(ctx, u, vth, width):
        spike = (u > vth).to(u.dtype)
        ctx.save_for_backward(u, vth, spike)
        ctx.width = width
        return spike

    @staticmethod
    def backward(ctx, grad):
        u, vth, spike = ctx.saved_tensors
        g = ctx.width
        d = u - vth
        tri = (g - d.abs()).clamp_min(0.0) / (g * g)
        grad_u = grad * tri if ctx.needs_input_grad[0] else None
        grad_vth = None
        if ctx.needs_input_grad[1]:
            # Only neurons that fired move the threshold (learnable-threshold rule).
            gv = -(grad * tri * torch.sigmoid(d) * spike)
            grad_vth = gv.sum_to_size(vth.shape)
        return grad_u, grad_vth, None


class _MembraneQuantFn(torch.autograd.Function):
    """Nearest level (of clamp(r, lowest, 1)), ties toward -inf; stacked-sigmoid surrogate:
    one sigmoid-derivative term centred on each midpoint between adjacent levels."""

    @staticmethod
    def forward(ctx, r, mode, temp):
        if mode == "ternary":
            q = (r > 0.5).to(r.dtype) - (r <= -0.5).to(r.dtype)
        elif mode == "binary":
            q = (r > 0.5).to(r.dtype)
        else:
            # Multi-bit: c = clamp(r, lowest, 1), n = floor(c); the level is n, or n + 1
            # when c lies strictly above the midpoint n + 0.5 (a tie goes down). Every step
            # is exact in floating point (clamp, floor, n + 0.5 for small n, a comparison).
            lo, hi = membrane_levels(mode)
            c = r.clamp(float(lo), float(hi))
            n = torch.floor(c)
            q = n + (c > n + 0.5).to(r.dtype)
        ctx.save_for_backward(r)
        ctx.mode, ctx.temp = mode, temp
        return q

    @staticmethod
    def backward(ctx, grad):
        (r,) = ctx.saved_tensors
        t = ctx.temp
        dq = torch.zeros_like(r)
        for b in membrane_midpoints(ctx.mode):
            s = torch.sigmoid(t * (r - b))
            dq = dq + t * s * (1.0 - s)
        return grad * dq, None, None


def membrane_quant_grad(r, mode="ternary", temp=2.0):
    """The quantizer surrogate dq/dr as a plain function (for tests and inspection)."""
    r = torch.as_tensor(r, dtype=torch.float32)
    out = torch.zeros_like(r)
    for b in membrane_midpoints(mode):
        s = torch.sigmoid(temp * (r - b))
        out = out + temp * s * (1.0 - s)
    return out


def qlif_forward(x, vth=1.0, membrane="ternary", mask=None, surrogate_temp=2.0, spike_width=1.0,
                 runtime_mask=None):
    """Run the QLIF over time-major input ``x`` [T, ...]; returns (spikes, membranes) [T, ...].

    ``mask``: static 0/1 mask; a masked neuron is never visited. ``runtime_mask(t, q_prev)``
    returns ``(active, keep)``, 0/1 tensors (straight-through gradients allowed) broadcastable
    to ``x[t]``: an inactive neuron neither spikes nor updates; where ``keep`` is 0 the
    neuron does not spike and its membrane is reset to 0 (a pruned position,
    docs/INTEGER_SPEC.md section 5).
    """
    if membrane not in MEMBRANE_MODES:
        raise ValueError(f"membrane mode {membrane!r} is not one of {list(MEMBRANE_MODES)}")
    if not torch.is_tensor(vth):
        vth = torch.tensor(float(vth), dtype=x.dtype, device=x.device)
    keep = None if mask is None else (torch.as_tensor(mask, device=x.device) != 0)
    q = torch.zeros_like(x[0])
    spikes, membranes = [], []
    for t in range(x.shape[0]):
        u = 0.5 * q + x[t]
        spike = _SpikeFn.apply(u, vth, spike_width)
        if keep is not None:
            spike = torch.where(keep, spike, torch.zeros_like(spike))
        if runtime_mask is not None:
            active, reset_keep = runtime_mask(t, q)
            spike = spike * (active * reset_keep)
        r = u * (1.0 - spike)
        if membrane == "float":
            q_new = r
        else:
            q_new = _MembraneQuantFn.apply(r, membrane, surrogate_temp)
        if keep is not None:
            # A masked neuron is not visited: its stored membrane is left as it was.
            q_new = torch.where(keep, q_new, q)
        if runtime_mask is not None:
            # Multiplications by exact 0/1 keep the forward values exact.
            q_new = (active * q_new + (1.0 - active) * q) * reset_keep
        q = q_new
        spikes.append(spike)
        membranes.append(q)
    return torch.stack(spikes), torch.stack(membranes)


class QLIF(nn.Module):
    """Quantized LIF layer with a per-layer (optionally learnable) threshold."""

    def __init__(self, membrane="ternary", vth_init=1.0, learnable_vth=True,
                 surrogate_temp=2.0, spike_width=1.0):
        super().__init__()
        if membrane not in MEMBRANE_MODES:
            raise ValueError(f"membrane mode {membrane!r} is not one of {list(MEMBRANE_MODES)}")
        self.membrane = membrane
        self.surrogate_temp = float(surrogate_temp)
        self.spike_width = float(spike_width)
        vth = torch.tensor(float(vth_init))
        if learnable_vth:
            self.vth = nn.Parameter(vth)
        else:
            self.register_buffer("vth", vth)

    def forward(self, x, mask=None, runtime_mask=None):
        return qlif_forward(x, self.vth, self.membrane, mask, self.surrogate_temp, self.spike_width,
                            runtime_mask)

    def extra_repr(self):
        return (f"membrane={self.membrane}, vth={float(self.vth.detach()):.4g}, "
                f"learnable={isinstance(self.vth, nn.Parameter)}")
