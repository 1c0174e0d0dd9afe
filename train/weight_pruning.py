"""Unstructured magnitude pruning of the PoT weights (Han et al. 2015; Schaefer et al. 2023).

A pruned weight is removed by the 0/1 ``weight_mask`` of its layer (:class:`train.quant.WeightMask`):
it is zero before quantization, so it exports as the zero code, and it stays zero through
training (its gradient is masked). Two scopes:

- ``"layer"``: every PoT layer loses the same fraction, its own smallest-magnitude weights;
- ``"global"``: one magnitude ranking over all PoT layers together, so layers with many
  small weights lose more.

In both, exactly ``round(sparsity * n)`` weights are pruned (n = the weights ranked);
ties are broken by position, so the count is exact. Ranking uses the masked weights, so
weights pruned before rank first and a larger sparsity only adds to an existing mask
(cumulative pruning: 0.5, then 0.7, ... never revives a weight).

Unlike the membrane-prior pruning of ``train.pruning`` (runtime masks over positions and
channels), these masks are static and per weight.
"""
from __future__ import annotations

import torch
from torch import nn

from .quant import WeightMask

SCOPES = ("layer", "global")


def pot_layers(model: nn.Module, include_classifier: bool = True) -> list:
    """(name, module) of every maskable PoT layer, in registration order."""
    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, WeightMask):
            if not include_classifier and isinstance(mod, nn.Linear):
                continue
            out.append((name, mod))
    return out


def _check_sparsity(sparsity) -> float:
    s = float(sparsity)
    if not 0.0 <= s < 1.0:
        raise ValueError(f"weight sparsity {sparsity!r} is not in [0, 1)")
    return s


def _smallest_mask(magnitude: torch.Tensor, count: int) -> torch.Tensor:
    """0/1 mask (flat) that zeroes the ``count`` smallest entries of ``magnitude`` (stable)."""
    order = torch.sort(magnitude, stable=True).indices
    mask = torch.ones_like(magnitude)
    mask[order[:count]] = 0.0
    return mask


@torch.no_grad()
def magnitude_masks(layers: list, sparsity: float, scope: str = "layer") -> dict:
    """Masks (name -> 0/1 tensor of the weight's shape) that prune ``sparsity`` of the weights
    of ``layers`` ((name, module) pairs) by magnitude, without installing them."""
    s = _check_sparsity(sparsity)
    if scope not in SCOPES:
        raise ValueError(f"pruning scope {scope!r} is not one of {list(SCOPES)}")
    mags = {name: mod.masked_weight().detach().abs().flatten().double().cpu()
            for name, mod in layers}
    out = {}
    if scope == "layer":
        for name, mod in layers:
            m = mags[name]
            out[name] = _smallest_mask(m, int(round(s * m.numel()))).reshape(mod.weight.shape)
    else:
        flat = torch.cat([mags[name] for name, _ in layers]) if layers else torch.zeros(0)
        mask = _smallest_mask(flat, int(round(s * flat.numel())))
        start = 0
        for name, mod in layers:
            n = mod.weight.numel()
            out[name] = mask[start:start + n].reshape(mod.weight.shape)
            start += n
    return out


@torch.no_grad()
def prune_by_magnitude(model: nn.Module, sparsity: float, scope: str = "layer",
                       include_classifier: bool = True) -> list:
    """Prune ``sparsity`` of the PoT weights of ``model`` by magnitude (in place).

    Combined with any existing mask (a weight once pruned stays pruned). Returns
    :func:`sparsity_report` of the result.
    """
    layers = pot_layers(model, include_classifier)
    masks = magnitude_masks(layers, sparsity, scope)
    for name, mod in layers:
        new = masks[name].to(mod.weight.device, mod.weight.dtype)
        if mod.weight_mask is not None:
            new = new * mod.weight_mask
        mod.set_weight_mask(new)
    return sparsity_report(model)


@torch.no_grad()
def sparsity_report(model: nn.Module) -> list:
    """Per PoT layer: weights, pruned by the mask, and zero after PoT quantization
    (pruned plus those the quantizer rounds to zero), with the fractions."""
    rows = []
    for name, mod in pot_layers(model):
        n = mod.weight.numel()
        pruned = 0 if mod.weight_mask is None else int((mod.weight_mask == 0).sum())
        if mod.weight_bits is None:
            zero = int((mod.masked_weight() == 0).sum())
        else:
            sign, _, _ = mod.pot_codes()
            zero = int((sign == 0).sum())
        rows.append({"layer": name, "weights": n, "pruned": pruned, "zero_codes": zero,
                     "mask_sparsity": pruned / n if n else 0.0,
                     "code_sparsity": zero / n if n else 0.0})
    return rows


def clear_masks(model: nn.Module):
    """Remove every weight mask (the zeroed weights stay zero until trained)."""
    for _, mod in pot_layers(model):
        mod.clear_weight_mask()
