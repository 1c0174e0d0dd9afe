"""Spatial-channel pruning from the membrane-potential prior (docs/INTEGER_SPEC.md section 5).

Both masks are computed in the forward pass exactly as golden and the hardware compute them
in integers, and the network trains with them in the loop (end to end):

- :class:`SpatialPruning`: a position is skipped at step ``t`` when the sum of its stored
  membrane levels over the channels, ``e``, is below an integer threshold ``theta_s <= 0``;
  its membranes are reset to 0. ``theta_s`` tracks the ``ratio`` quantile of ``e`` during
  training; the mask itself passes no gradient (see :meth:`SpatialPruning.keep`).
- :class:`ChannelGate`: a 2-bit PoT pointwise conv over the previous layer's membranes summed
  over positions; channel ``o`` is computed when ``z[o] >= theta_g[o]``, the integer form of
  ``sigmoid(alpha * z / HW + b[o]) > threshold``. Its weights and biases learn through a
  sigmoid straight-through estimator, pushed toward closing by the ``gate_penalty`` loss
  (the operations budget); the prior is an input only and passes no gradient back, and in
  the recovery phase the gate is a hard mask.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .quant import pot_codes, pot_quantize


def straight_through(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """``hard`` in the forward pass (exactly), the gradient of ``soft`` backward."""
    return hard + (soft - soft.detach())


class SpatialPruning(nn.Module):
    """Membrane-importance position mask of one layer with ``channels`` output channels.

    Buffers: ``theta_running`` (float running estimate of the quantile). :attr:`theta` is the
    integer threshold the forward uses and the exporter writes.
    """

    def __init__(self, channels: int, ratio: float, momentum: float = 0.1):
        super().__init__()
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"spatial pruning ratio {ratio!r} is not in (0, 1)")
        self.channels, self.ratio, self.momentum = int(channels), float(ratio), float(momentum)
        self.register_buffer("theta_running", torch.tensor(0.0))
        self._samples = []
        self.frozen = False      # recovery phase: the threshold no longer moves

    @property
    def theta(self) -> int:
        return int(min(0, max(-self.channels, round(float(self.theta_running)))))

    def keep(self, t: int, q_prev: torch.Tensor) -> torch.Tensor:
        """0/1 keep mask [B, H, W] for step ``t`` from the membranes ``q_prev`` [B, C, H, W]."""
        e = q_prev.sum(dim=1)
        if self.training and torch.is_grad_enabled() and t > 0 and not self.frozen:
            self._samples.append(e.detach().flatten())
        # A hard mask with no gradient: a sigmoid straight-through estimator here fed every
        # channel's membrane gradient through the mask and destabilised training (event
        # digits, 10 epochs, 35%: 0.818 test accuracy with it, 0.949 without, 0.962 unpruned).
        return (e >= self.theta).to(q_prev.dtype)

    def update(self):
        """Move the running threshold toward this forward pass's ``ratio`` quantile of e."""
        if not self._samples:
            return
        e = torch.cat(self._samples)
        self._samples = []
        if e.numel() > 1 << 20:   # torch.quantile's input limit; a strided sample is enough
            e = e[:: e.numel() // (1 << 20) + 1]
        qv = float(torch.quantile(e.float(), self.ratio))
        with torch.no_grad():
            self.theta_running.mul_(1.0 - self.momentum).add_(self.momentum * qv)

    def extra_repr(self):
        return f"channels={self.channels}, ratio={self.ratio}, theta={self.theta}"


def mask_parameters(model) -> list:
    """The parameters of every channel gate of ``model`` (what the recovery phase freezes)."""
    return [p for m in model.modules() if isinstance(m, ChannelGate) for p in m.parameters()]


def freeze_masks(model, frozen: bool = True):
    """Recovery phase: spatial thresholds stop tracking their quantile; gate parameters
    get no updates (the trainer drops their gradients, see ``trainer._train_epoch``) and
    the gates pass no gradient (a hard mask, like the spatial one), so the weights adapt to
    the masks instead of reopening them: measured on event digits (seed 0, 8 fine-tuning
    epochs, 2 of recovery), with the straight-through gradient left on in recovery the kept
    fraction of the operations rose from 0.29 to 0.39 in the recovery epochs."""
    for m in model.modules():
        if isinstance(m, (SpatialPruning, ChannelGate)):
            m.frozen = bool(frozen)


class ChannelGate(nn.Module):
    """Channel gate of a layer from the previous layer's membranes.

    Parameters
    ----------
    in_channels, out_channels : the layer's channels (the prior has ``in_channels``).
    prior_positions : H x W of the previous layer's output map (before pooling).
    threshold : the gate opens when its sigmoid score exceeds this (0.47 in the paper).
    """

    def __init__(self, in_channels: int, out_channels: int, prior_positions: int,
                 threshold: float = 0.47):
        super().__init__()
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"channel gate threshold {threshold!r} is not in (0, 1)")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.positions = int(prior_positions)
        self.threshold = float(threshold)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels) / math.sqrt(in_channels))
        # Just open at the start (sigmoid(0) = 0.5 > 0.47), where the gradient is largest:
        # the task loss and the gate penalty then decide which channels stay open.
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.last_probability = None
        # Recovery phase: the gate is a hard mask with no gradient, so the task loss cannot
        # reopen closed channels through the previous layer's membranes (the prior).
        self.frozen = False

    @property
    def bound(self) -> int:
        return self.in_channels * self.positions

    def codes(self):
        """(G int8 [C_out, C_in] in {-1, 0, 1}, alpha_log2) of the 2-bit PoT gate weights."""
        sign, _, alpha_log2 = pot_codes(self.weight, 2)
        return sign, alpha_log2

    def thresholds(self) -> torch.Tensor:
        """theta_g as int64 [C_out]: z >= theta_g  <=>  alpha * z / HW + b > logit(threshold)."""
        _, alpha_log2 = self.codes()
        logit = math.log(self.threshold / (1.0 - self.threshold))
        rhs = ((logit - self.bias.detach().double()) * self.positions) / 2.0 ** alpha_log2
        theta = torch.floor(rhs) + 1
        return theta.clamp(-self.bound, self.bound + 1).to(torch.int64)

    def forward(self, prior: torch.Tensor) -> torch.Tensor:
        """Open mask [T, B, C_out] (0/1, straight-through) from membranes [T, B, C_in, H, W]."""
        # The prior is an input of the gate, not a path to train the network: with its
        # gradient, the operations budget pushed the previous layer's weights toward
        # membranes that close gates, and the kept fraction rose again as soon as the
        # penalty stopped (recovery). The gate's own weights and bias learn the budget.
        p = prior.detach().sum(dim=(-2, -1))                          # [T, B, C_in]
        sign, _ = self.codes()
        z = p @ sign.to(p.dtype).t()                                  # exact: small integers
        hard = (z.double() >= self.thresholds().to(z.device)).to(p.dtype)
        if self.frozen:
            self.last_probability = None
            return hard.detach()
        w_q = pot_quantize(self.weight, 2)                            # alpha * sign, STE
        soft = torch.sigmoid(p @ w_q.t() / self.positions + self.bias)
        self.last_probability = soft
        return straight_through(hard, soft)

    def extra_repr(self):
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"positions={self.positions}, threshold={self.threshold}")
