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


# How the spike's backward pass reaches the threshold (``quant.vth_grad``); see
# :func:`vth_surrogate` and docs/RESULTS.md (the threshold's gradient against finite
# differences of the loss).
VTH_GRAD_RULES = ("surrogate", "output", "normalized", "sigmoid", "fired")
DEFAULT_VTH_GRAD = "output"


def vth_surrogate(u, vth, width, rule, spike=None):
    """The surrogate of ``d spike / d vth`` per neuron for threshold rule ``rule``.

    ``spike = H(u - vth)`` with the triangle surrogate ``tri(u - vth)`` for ``d/du``
    (half-width ``width``):

    - ``"surrogate"``: ``-tri(u - vth)``, the triangle's own derivative in ``vth``
      (``d spike/d vth = -d spike/d u``), every neuron in the triangle;
    - ``"output"``: the same, but only through the spike output: the hard reset's use of the
      spike passes no threshold gradient (see :func:`qlif_forward`);
    - ``"normalized"``: the spike as ``H(u / vth - 1)``: ``-(u / vth) * tri(u - vth)``;
    - ``"sigmoid"``: a sigmoid surrogate of the same peak slope, ``-k s (1 - s)`` with
      ``s = sigmoid(k (u - vth))``, ``k = 4 / width``;
    - ``"fired"``: the earlier rule, ``-tri(u - vth) * sigmoid(u - vth)``, fired neurons only
      (its sign disagreed with finite differences of the loss, see docs/RESULTS.md).
    """
    d = u - vth
    tri = (width - d.abs()).clamp_min(0.0) / (width * width)
    if rule in ("surrogate", "output"):
        return -tri
    if rule == "normalized":
        return -tri * u / vth
    if rule == "sigmoid":
        k = 4.0 / width
        s = torch.sigmoid(k * d)
        return -k * s * (1.0 - s)
    if rule == "fired":
        return -tri * torch.sigmoid(d) * spike
    raise ValueError(f"threshold gradient rule {rule!r} is not one of {list(VTH_GRAD_RULES)}")


class _SpikeFn(torch.autograd.Function):
    """spike = (u > vth); triangle surrogate for u, :func:`vth_surrogate` for vth."""

    @staticmethod
    def forward(ctx, u, vth, width, rule):
        spike = (u > vth).to(u.dtype)
        ctx.save_for_backward(u, vth, spike)
        ctx.width, ctx.rule = width, rule
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
            gv = grad * vth_surrogate(u, vth, g, ctx.rule, spike)
            grad_vth = gv.sum_to_size(vth.shape)
        return grad_u, grad_vth, None, None


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
                 runtime_mask=None, vth_grad=DEFAULT_VTH_GRAD):
    """Run the QLIF over time-major input ``x`` [T, ...]; returns (spikes, membranes) [T, ...].

    ``mask``: static 0/1 mask; a masked neuron is never visited. ``runtime_mask(t, q_prev)``
    returns ``(active, keep)``, 0/1 tensors (straight-through gradients allowed) broadcastable
    to ``x[t]``: an inactive neuron neither spikes nor updates; where ``keep`` is 0 the
    neuron does not spike and its membrane is reset to 0 (a pruned position,
    docs/INTEGER_SPEC.md section 5). ``vth_grad``: the threshold's backward rule
    (:func:`vth_surrogate`).
    """
    if membrane not in MEMBRANE_MODES:
        raise ValueError(f"membrane mode {membrane!r} is not one of {list(MEMBRANE_MODES)}")
    if vth_grad not in VTH_GRAD_RULES:
        raise ValueError(f"threshold gradient rule {vth_grad!r} is not one of "
                         f"{list(VTH_GRAD_RULES)}")
    if not torch.is_tensor(vth):
        vth = torch.tensor(float(vth), dtype=x.dtype, device=x.device)
    keep = None if mask is None else (torch.as_tensor(mask, device=x.device) != 0)
    # "output": the reset reads a second spike whose threshold is held constant (the same
    # values); only when the threshold learns, so a fixed threshold runs as it always did.
    split_reset = vth_grad == "output" and vth.requires_grad and torch.is_grad_enabled()
    q = torch.zeros_like(x[0])
    spikes, membranes = [], []
    for t in range(x.shape[0]):
        u = 0.5 * q + x[t]
        spike = _SpikeFn.apply(u, vth, spike_width, vth_grad)
        fired = _SpikeFn.apply(u, vth.detach(), spike_width, vth_grad) if split_reset else spike
        if keep is not None:
            spike = torch.where(keep, spike, torch.zeros_like(spike))
            fired = torch.where(keep, fired, torch.zeros_like(fired))
        if runtime_mask is not None:
            active, reset_keep = runtime_mask(t, q)
            spike = spike * (active * reset_keep)
            fired = fired * (active * reset_keep) if split_reset else spike
        r = u * (1.0 - fired)
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
                 surrogate_temp=2.0, spike_width=1.0, vth_grad=DEFAULT_VTH_GRAD):
        super().__init__()
        if membrane not in MEMBRANE_MODES:
            raise ValueError(f"membrane mode {membrane!r} is not one of {list(MEMBRANE_MODES)}")
        if vth_grad not in VTH_GRAD_RULES:
            raise ValueError(f"threshold gradient rule {vth_grad!r} is not one of "
                             f"{list(VTH_GRAD_RULES)}")
        self.vth_grad = vth_grad
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
                            runtime_mask, self.vth_grad)

    def extra_repr(self):
        return (f"membrane={self.membrane}, vth={float(self.vth.detach()):.4g}, "
                f"learnable={isinstance(self.vth, nn.Parameter)}")
