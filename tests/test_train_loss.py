"""TET loss against a hand computation."""
import math

import pytest
import torch

from train.loss import tet_loss


def test_tet_loss_by_hand():
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 0.5, 1.0]],
                           [[1.0, 1.0, 0.0], [0.0, -2.0, 3.0]]])   # [T=2, B=2, C=3]
    target = torch.tensor([0, 2])

    def ce(row, k):
        return -row[k] + math.log(sum(math.exp(v) for v in row))

    rows = logits.tolist()
    ce_mean = sum((ce(rows[t][0], 0) + ce(rows[t][1], 2)) / 2 for t in range(2)) / 2
    flat = [v for t in rows for b in t for v in b]
    for lam, tv in ((0.0, 1.0), (0.05, 1.0), (0.9, 0.5), (1.0, 2.0)):
        mse = sum((v - tv) ** 2 for v in flat) / len(flat)
        want = (1 - lam) * ce_mean + lam * mse
        assert tet_loss(logits, target, lam, tv).item() == pytest.approx(want, rel=1e-6)


def test_tet_loss_gradient_flows():
    logits = torch.randn(3, 4, 5, requires_grad=True)
    tet_loss(logits, torch.tensor([0, 1, 2, 3]), 0.05).backward()
    assert logits.grad.abs().sum() > 0
