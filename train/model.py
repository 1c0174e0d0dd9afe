"""SpikingConvNet: PoT conv + BatchNorm + QLIF blocks, average-pooled spikes, PoT classifier."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .neuron import QLIF
from .pruning import ChannelGate, SpatialPruning
from .quant import PoTConv2d, PoTLinear


class SpikingConvBlock(nn.Module):
    """One spiking layer; masks are buffers so they travel with the state_dict."""

    def __init__(self, spec, quant: dict, pruning: dict | None = None, prior_positions=None):
        super().__init__()
        self.conv = PoTConv2d(spec.in_channels, spec.out_channels, spec.kernel,
                              padding=spec.padding, bias=True, weight_bits=quant["weight_bits"])
        self.bn = nn.BatchNorm2d(spec.out_channels)
        self.neuron = QLIF(membrane=quant["membrane"], vth_init=quant["vth_init"],
                           learnable_vth=quant["learnable_vth"],
                           surrogate_temp=quant["surrogate_temp"],
                           spike_width=quant["spike_width"], vth_grad=quant["vth_grad"])
        self.pool = int(spec.pool)
        self.register_buffer("channel_mask", torch.ones(spec.out_channels))
        self.register_buffer("position_mask", torch.ones(spec.out_height, spec.out_width))
        # Runtime pruning from the membrane prior (docs/INTEGER_SPEC.md section 5).
        pruning = pruning or {}
        self.spatial = None
        if pruning.get("spatial_ratio", 0.0) > 0.0:
            self.spatial = SpatialPruning(spec.out_channels, pruning["spatial_ratio"])
        self.gate = None
        if pruning.get("channel_gate_threshold", 0.0) > 0.0 and prior_positions:
            self.gate = ChannelGate(spec.in_channels, spec.out_channels, prior_positions,
                                    pruning["channel_gate_threshold"])
        # Dense synaptic operations per step (padding taps excluded) for the ops budget, and
        # the last forward's kept fractions [T, B] (positions, channels; None = all).
        self.dense_ops = float(spec.in_channels * spec.out_channels * valid_taps(spec).sum())
        self.last_active = None

    def mask(self):
        return self.channel_mask[:, None, None] * self.position_mask[None, :, :]

    def forward(self, x, prior=None):
        """x [T, B, C, H, W] -> (pooled spikes, spikes, membranes, masks).

        ``prior``: the previous layer's membranes [T, B, C_in, H', W'] (for the gate).
        ``masks``: computed positions [T, B, H, W] and channels [T, B, C] (hard 0/1), or None.
        """
        T, B = x.shape[:2]
        cur = self.bn(self.conv(x.reshape(T * B, *x.shape[2:])))
        cur = cur.reshape(T, B, *cur.shape[1:])
        if self.spatial is None and self.gate is None:
            spikes, membranes = self.neuron(cur, mask=self.mask())
            masks = None
            self.last_active = None
        else:
            gate = self.gate(prior) if self.gate is not None else None
            kept = []

            def runtime(t, q_prev):
                keep = (self.spatial.keep(t, q_prev) if self.spatial is not None
                        else torch.ones_like(q_prev[:, 0]))
                kept.append(keep.detach())
                active = keep[:, None]
                if gate is not None:
                    active = active * gate[t][:, :, None, None]
                return active, keep[:, None]

            spikes, membranes = self.neuron(cur, mask=self.mask(), runtime_mask=runtime)
            if self.spatial is not None:
                self.spatial.update()
            positions = torch.stack(kept) * self.position_mask
            channels = (gate.detach() if gate is not None
                        else torch.ones(T, B, cur.shape[2], device=cur.device)) * self.channel_mask
            masks = (positions, channels)
            # Channels keep their straight-through gradient: the ops budget trains the gates.
            open_frac = (gate * self.channel_mask).mean(-1) if gate is not None else None
            self.last_active = (positions.mean(dim=(-2, -1)), open_frac)
        out = spikes
        if self.pool > 1:
            out = F.avg_pool2d(spikes.reshape(T * B, *spikes.shape[2:]), self.pool)
            out = out.reshape(T, B, *out.shape[1:])
        return out, spikes, membranes, masks


def valid_taps(spec) -> torch.Tensor:
    """Per output position [H_out, W_out], the kernel taps that fall inside the input map
    (padding taps excluded): the dense count of a position's synaptic operations per input
    and output channel (docs/INTEGER_SPEC.md, work counts)."""
    kh, kw = spec.kernel
    ones = torch.ones(1, 1, spec.in_height, spec.in_width)
    return F.conv2d(ones, torch.ones(1, 1, kh, kw), padding=spec.padding)[0, 0]


def layer_pruning(pruning: dict, index: int) -> dict:
    """The pruning settings of spiking layer ``index``: layer 0 (the sensor's input) has no
    spatial pruning unless ``pruning.spatial_first_layer`` asks for it."""
    if index == 0 and not pruning.get("spatial_first_layer", False):
        return dict(pruning, spatial_ratio=0.0)
    return pruning


class SpikingConvNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_scale = float(cfg.model["input"]["scale"])
        self.timesteps = cfg.timesteps
        specs = cfg.spiking_layers
        self.blocks = nn.ModuleList([
            SpikingConvBlock(spec, cfg.quant, layer_pruning(cfg.pruning, i),
                             specs[i - 1].out_height * specs[i - 1].out_width if i else None)
            for i, spec in enumerate(specs)])
        fc = cfg.layers[-1]
        last_pool = cfg.spiking_layers[-1].pool if cfg.spiking_layers else 1
        self.classifier = PoTLinear(fc.in_channels * fc.in_height * fc.in_width, fc.out_channels,
                                    weight_bits=cfg.quant["weight_bits"],
                                    in_scale=1.0 / last_pool ** 2)

    def forward(self, x, record=False):
        """x [T, B, C, H, W] of integer values -> logits [T, B, classes] (per step)."""
        h = x * self.input_scale
        records = []
        prior = None
        for block in self.blocks:
            h, spikes, membranes, masks = block(h, prior)
            prior = membranes
            if record:
                rec = {"spikes": spikes, "membranes": membranes}
                if masks is not None:
                    rec["spatial_keep"], rec["channel_keep"] = masks
                records.append(rec)
        logits = self.classifier(h.flatten(2))
        return (logits, records) if record else logits

    def pruning_loss(self) -> torch.Tensor:
        """Mean open probability of the channel gates in the last forward pass (0 if none):
        the penalty that makes gates close where the loss allows."""
        probs = [b.gate.last_probability.mean() for b in self.blocks
                 if b.gate is not None and b.gate.last_probability is not None]
        if not probs:
            return torch.zeros(())
        return torch.stack(probs).mean()

    def ops_kept_fraction(self) -> torch.Tensor:
        """Kept fraction of the dense synaptic operations in the last forward pass, counted
        as docs/INTEGER_SPEC.md's work counts do: a layer's operations at a step scale with
        its computed positions, its open output channels and its open input channels (the
        previous layer's open channels); the classifier with the last layer's open channels.
        Differentiable through the gates (straight-through), for the operations budget."""
        num, den, prev = torch.zeros(()), 0.0, None
        for b in self.blocks:
            pos, chan = b.last_active if b.last_active is not None else (None, None)
            frac = torch.ones(())
            for part in (pos, chan, prev):
                if part is not None:
                    frac = frac * part.to(num.device)
            num = num + b.dense_ops * frac.mean()
            den += b.dense_ops
            prev = chan
        fc = float(self.classifier.weight.numel())
        num = num + fc * (prev.mean().to(num.device) if prev is not None else 1.0)
        return num / (den + fc)

    @staticmethod
    def predict(logits):
        """Class = argmax of the logits summed over time (first index on ties)."""
        return logits.sum(0).argmax(-1)


def _merge_time(module, x):
    """Apply a per-image module to [T, B, ...] by folding T into the batch."""
    T, B = x.shape[:2]
    y = module(x.reshape(T * B, *x.shape[2:]))
    return y.reshape(T, B, *y.shape[1:])


def _qlif(quant, membrane=None):
    return QLIF(membrane=membrane or quant["membrane"], vth_init=quant["vth_init"],
                learnable_vth=quant["learnable_vth"], surrogate_temp=quant["surrogate_temp"],
                spike_width=quant["spike_width"], vth_grad=quant["vth_grad"])


class SpikingBasicBlock(nn.Module):
    """ResNet BasicBlock on spikes: conv-BN-QLIF, conv-BN, + shortcut current, QLIF.

    The shortcut adds to the second conv's current before the neuron (as in TDBN's
    ResNet-19), so every tensor between blocks stays a binary spike map.
    """

    def __init__(self, in_planes, planes, stride, quant):
        super().__init__()
        bits = quant["weight_bits"]
        self.conv1 = PoTConv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False,
                               weight_bits=bits)
        self.bn1 = nn.BatchNorm2d(planes)
        self.lif1 = _qlif(quant)
        self.conv2 = PoTConv2d(planes, planes, 3, padding=1, bias=False, weight_bits=bits)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                PoTConv2d(in_planes, planes, 1, stride=stride, bias=False, weight_bits=bits),
                nn.BatchNorm2d(planes))
        self.lif2 = _qlif(quant)

    def forward(self, x, records=None):
        s1, m1 = self.lif1(_merge_time(lambda v: self.bn1(self.conv1(v)), x))
        cur = _merge_time(lambda v: self.bn2(self.conv2(v)), s1)
        cur = cur + (x if self.shortcut is None else _merge_time(self.shortcut, x))
        s2, m2 = self.lif2(cur)
        if records is not None:
            records += [{"spikes": s1, "membranes": m1}, {"spikes": s2, "membranes": m2}]
        return s2


class SpikingResNet19(nn.Module):
    """ResNet-19 for static images (training only; the hardware runs conv chains).

    Stem conv-BN-QLIF (3x3/1, or 7x7/2 as in the paper's code), BasicBlocks [3, 3, 2] at
    strides 1, 2, 2, global average pool, PoT FC to half the last width with BN, a
    full-precision LIF, PoT FC to the classes at every step. Widths are ``model.planes`` x ``width_scale``.
    """

    BLOCKS = (3, 3, 2)
    STRIDES = (1, 2, 2)

    def __init__(self, cfg):
        super().__init__()
        m, quant = cfg.model, cfg.quant
        bits = quant["weight_bits"]
        self.input_scale = float(m["input"]["scale"])
        self.timesteps = cfg.timesteps
        widths = [max(1, round(p * m["width_scale"])) for p in m["planes"]]
        self.widths = widths
        k, stride, pad = (3, 1, 1) if m["stem"] == "conv3" else (7, 2, 3)
        self.stem_conv = PoTConv2d(m["input"]["channels"], widths[0], k, stride=stride,
                                   padding=pad, bias=False, weight_bits=bits)
        self.stem_bn = nn.BatchNorm2d(widths[0])
        self.stem_lif = _qlif(quant)
        blocks, in_planes = [], widths[0]
        for planes, n, s in zip(widths[1:], self.BLOCKS, self.STRIDES):
            for i in range(n):
                blocks.append(SpikingBasicBlock(in_planes, planes, s if i == 0 else 1, quant))
                in_planes = planes
        self.layers = nn.ModuleList(blocks)
        hidden = max(1, in_planes // 2)
        self.fc1 = PoTLinear(in_planes, hidden, weight_bits=bits)
        # Not in the paper's code: without it the hidden LIF starts silent (pooled rates
        # x small FC weights stay far below threshold) and no gradient reaches the body.
        self.fc_bn = nn.BatchNorm1d(hidden)
        self.fc_lif = _qlif(quant, membrane="float")
        self.classifier = PoTLinear(hidden, m["classes"], weight_bits=bits)

    def forward(self, x, record=False):
        """x [T, B, C, H, W] of integer values -> logits [T, B, classes] (per step)."""
        records = [] if record else None
        h = x * self.input_scale
        s, mem = self.stem_lif(_merge_time(lambda v: self.stem_bn(self.stem_conv(v)), h))
        if record:
            records.append({"spikes": s, "membranes": mem})
        for block in self.layers:
            s = block(s, records)
        pooled = s.mean(dim=(-2, -1))                  # [T, B, C]
        hs, hm = self.fc_lif(_merge_time(lambda v: self.fc_bn(self.fc1(v)), pooled))
        if record:
            records.append({"spikes": hs, "membranes": hm})
        logits = self.classifier(hs)
        return (logits, records) if record else logits

    predict = staticmethod(SpikingConvNet.predict)


ARCHS = {"convnet": SpikingConvNet, "resnet19": SpikingResNet19}


def build_model(cfg) -> nn.Module:
    """The network ``model.arch`` names, freshly initialised from ``cfg``."""
    return ARCHS[cfg.model.get("arch", "convnet")](cfg)
