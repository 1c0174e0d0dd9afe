"""SpikingConvNet: PoT conv + BatchNorm + QLIF blocks, average-pooled spikes, PoT classifier."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .neuron import QLIF
from .quant import PoTConv2d, PoTLinear


class SpikingConvBlock(nn.Module):
    """One spiking layer; masks are buffers so they travel with the state_dict."""

    def __init__(self, spec, quant: dict):
        super().__init__()
        self.conv = PoTConv2d(spec.in_channels, spec.out_channels, spec.kernel,
                              padding=spec.padding, bias=True, weight_bits=quant["weight_bits"])
        self.bn = nn.BatchNorm2d(spec.out_channels)
        self.neuron = QLIF(membrane=quant["membrane"], vth_init=quant["vth_init"],
                           learnable_vth=quant["learnable_vth"],
                           surrogate_temp=quant["surrogate_temp"],
                           spike_width=quant["spike_width"])
        self.pool = int(spec.pool)
        self.register_buffer("channel_mask", torch.ones(spec.out_channels))
        self.register_buffer("position_mask", torch.ones(spec.out_height, spec.out_width))

    def mask(self):
        return self.channel_mask[:, None, None] * self.position_mask[None, :, :]

    def forward(self, x):
        """x [T, B, C, H, W] -> (pooled spikes, spikes, membranes)."""
        T, B = x.shape[:2]
        cur = self.bn(self.conv(x.reshape(T * B, *x.shape[2:])))
        cur = cur.reshape(T, B, *cur.shape[1:])
        spikes, membranes = self.neuron(cur, mask=self.mask())
        out = spikes
        if self.pool > 1:
            out = F.avg_pool2d(spikes.reshape(T * B, *spikes.shape[2:]), self.pool)
            out = out.reshape(T, B, *out.shape[1:])
        return out, spikes, membranes


class SpikingConvNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_scale = float(cfg.model["input"]["scale"])
        self.timesteps = cfg.timesteps
        self.blocks = nn.ModuleList([SpikingConvBlock(spec, cfg.quant)
                                     for spec in cfg.spiking_layers])
        fc = cfg.layers[-1]
        last_pool = cfg.spiking_layers[-1].pool if cfg.spiking_layers else 1
        self.classifier = PoTLinear(fc.in_channels * fc.in_height * fc.in_width, fc.out_channels,
                                    weight_bits=cfg.quant["weight_bits"],
                                    in_scale=1.0 / last_pool ** 2)

    def forward(self, x, record=False):
        """x [T, B, C, H, W] of integer values -> logits [T, B, classes] (per step)."""
        h = x * self.input_scale
        records = []
        for block in self.blocks:
            h, spikes, membranes = block(h)
            if record:
                records.append({"spikes": spikes, "membranes": membranes})
        logits = self.classifier(h.flatten(2))
        return (logits, records) if record else logits

    @staticmethod
    def predict(logits):
        """Class = argmax of the logits summed over time (first index on ties)."""
        return logits.sum(0).argmax(-1)
