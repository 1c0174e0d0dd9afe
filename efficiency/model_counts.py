"""Work counts of a PyTorch SpQuant-SNN model: the model side of the three-way count check
(model, golden, RTL counters) of the efficiency report and the counts of models that have
no integer export (``benchmarks.weight_pruning_study``, 8-bit).

Needs torch, unlike the rest of :mod:`efficiency`: ``efficiency/__init__`` does not import
this module, so ``import efficiency`` stays NumPy-only.
"""
from __future__ import annotations

import numpy as np
import torch

from efficiency.counts import layer_counts
from train.data import to_time_major


def model_counts(model, cfg, x, lanes: int, batch: int = 64) -> list:
    """Per layer, summed over ``x`` (a test set, as ``train.data.load_dataset`` gives it)
    and its steps: the count rows of ``efficiency.counts.layer_counts`` from the PyTorch
    model's own spikes and pruning masks, with ``lanes`` output channels per group.

    The same definitions as golden's counts (``golden.work_counts``), taken from the
    model instead of the integer export: they agree with golden (and with the core's
    counters) exactly when the model's spikes and masks equal the export's, and they
    also serve a model that cannot be exported (8-bit PoT).
    """
    T, bits = cfg.timesteps, cfg.quant["weight_bits"]
    specs = list(cfg.layers)
    w_nz = []
    for block in model.blocks:
        sign, _, _ = block.conv.pot_codes()
        w_nz.append(sign.numpy() != 0)
    fc = specs[-1]
    sign, _, _ = model.classifier.pot_codes()
    w_nz.append(sign.numpy().reshape(fc.out_channels, fc.in_channels, *fc.kernel) != 0)
    rows = [None] * len(specs)
    model.eval()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = to_time_major(x[i:i + batch], T)                     # [T, B, C, H, W]
            _, records = model(xb, record=True)
            inp = xb.reshape(-1, *xb.shape[2:]).numpy() != 0
            open_in = None          # computed input channels per sample-step (layer 0: all)
            for l, spec in enumerate(specs):
                if l < len(model.blocks):
                    block, rec = model.blocks[l], records[l]
                    n = inp.shape[0]
                    sp = rec.get("spatial_keep")
                    pos = (sp.reshape(n, spec.out_height, spec.out_width).numpy() > 0.5
                           if sp is not None else
                           np.broadcast_to(block.position_mask.numpy() > 0.5,
                                           (n, spec.out_height, spec.out_width)))
                    ch = rec.get("channel_keep")
                    chan = (ch.reshape(n, spec.out_channels).numpy() > 0.5 if ch is not None
                            else np.broadcast_to(block.channel_mask.numpy() > 0.5,
                                                 (n, spec.out_channels)))
                    c = layer_counts(inp, w_nz[l], spec.padding, lanes, pos, chan, kind="conv",
                                     open_in=open_in)
                    open_in = chan.sum(axis=1)
                    s = rec["spikes"]
                    s = s.reshape(-1, *s.shape[2:])
                    if block.pool > 1:
                        s = torch.nn.functional.avg_pool2d(s, block.pool)
                    inp = s.numpy() != 0
                else:
                    c = layer_counts(inp, w_nz[l], 0, lanes, kind="fc", open_in=open_in)
                rows[l] = c if rows[l] is None else {
                    k: (v + c[k] if isinstance(v, int) else v) for k, v in rows[l].items()}
    for l, spec in enumerate(specs):
        rows[l].update(layer=l, acc_width=spec.with_weight_bits(bits).acc_width, weight_bits=bits,
                       weights=int(w_nz[l].size), nonzero_weights=int(w_nz[l].sum()))
    return rows
