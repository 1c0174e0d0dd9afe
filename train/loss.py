"""TET loss (temporal efficient training): CE at every step plus an MSE pull to a constant."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def tet_loss(logits_per_step: torch.Tensor, target: torch.Tensor, lam: float,
             target_value: float = 1.0) -> torch.Tensor:
    """(1-lam) * mean_t CE(logits_t, target) + lam * MSE(all logits, target_value)."""
    T = logits_per_step.shape[0]
    ce = sum(F.cross_entropy(logits_per_step[t], target) for t in range(T)) / T
    if lam == 0:
        return ce
    mse = F.mse_loss(logits_per_step, torch.full_like(logits_per_step, float(target_value)))
    return (1.0 - lam) * ce + lam * mse
