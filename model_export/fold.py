"""Fold batch-norm, bias, leak, weight scale and Vth into integer thresholds (exact).

docs/INTEGER_SPEC.md, section 4. Pure Python ``fractions``: no torch, no float rounding.
"""
from __future__ import annotations

import math
from fractions import Fraction

HALF = Fraction(1, 2)


def q_levels(membrane: str):
    return (-1, 0, 1) if membrane == "ternary" else (0, 1)


def fold_channel(A: float, B: float, vth: float, membrane: str, width: int):
    """Thresholds ``[[F, P, N] for q_prev in levels]`` for ``u = q/2 + A*I + B``, A >= 0.

    A, B and vth are taken as exact binary fractions. Results are clamped to the signed
    ``width``-bit range, which lies outside every reachable current (section 3).
    """
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    A, B, V = Fraction(A), Fraction(B), Fraction(vth)
    if A < 0:
        raise ValueError("fold_channel needs A >= 0 (flip the channel's weight signs first)")
    rows = []
    for q in q_levels(membrane):
        off = B + q * HALF
        if A == 0:
            # The decision does not depend on I: "always" is lo for >= and hi for <=.
            F = lo if off > V else hi
            P = lo if off > HALF else hi
            N = hi if off <= -HALF else lo
        else:
            F = math.floor((V - off) / A) + 1
            P = math.floor((HALF - off) / A) + 1
            N = math.floor((-HALF - off) / A)
        if membrane == "binary":
            N = lo
        rows.append([min(max(v, lo), hi) for v in (F, P, N)])
    return rows
