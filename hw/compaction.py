"""Stream compaction: the kept elements of a vector packed to its low end, in order.

The dense-lanes datapath (docs/HARDWARE.md, "Dense lanes") packs the open output channels of
a (layer, step) into consecutive lanes: lane ``j`` of packed group ``g`` takes the
``(g * lanes + j)``-th open channel. :class:`Compaction` does that for one vector of
per-channel fields (the weight codes of one input, say); :func:`drop_counts` gives the
per-element shift it needs, computed once per (layer, step).

The network has ``ceil(log2(n))`` stages of 2:1 multiplexers. Stage ``s`` moves an element
``2^s`` places down when bit ``s`` of its shift (the number of dropped elements before it)
is set. Processing the bits from the lowest up never makes two elements meet: for kept
elements ``i < j``, ``z_j - z_i`` of the ``j - i - 1`` elements between them are dropped, so
``j - i >= z_j - z_i + 1``; after stage ``s`` element ``i`` sits at ``i - (z_i mod M)``
with ``M = 2^(s+1)``, and ``(z_j mod M) - (z_i mod M) <= z_j - z_i``, so the two stay at
least one slot apart. Each slot therefore has at most one source.
"""
from __future__ import annotations

import numpy as np
from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .params import bits_for


def drop_counts(keep) -> np.ndarray:
    """Per element: how many elements before it are dropped (the shift it needs)."""
    keep = np.asarray(keep, dtype=bool)
    return np.concatenate([[0], np.cumsum(~keep)[:-1]]).astype(np.int64)


def compact_reference(values, keep) -> np.ndarray:
    """The kept values in order, then zeros: what :class:`Compaction` computes."""
    values, keep = np.asarray(values), np.asarray(keep, dtype=bool)
    out = np.zeros_like(values)
    kept = values[keep]
    out[:len(kept)] = kept
    return out


class Compaction(wiring.Component):
    """Packs the kept fields of a vector to its low end (combinational).

    Parameters
    ----------
    count : int
        Elements in the vector (n >= 1).
    width : int
        Bits per element (>= 1).

    Members
    -------
    data : In(count * width)
        Element ``i`` at bits ``[i * width, (i + 1) * width)``.
    keep : In(count)
        Bit ``i``: element ``i`` is kept.
    shift : In(count * shift_width)
        Element ``i``'s shift, :func:`drop_counts` (only kept elements' matter).
    packed : Out(count * width)
        Slot ``k``: the ``k``-th kept element; 0 past the number kept.

    Latency 0 (no registers); ``ceil(log2(count))`` levels of 2:1 multiplexers,
    about ``count * log2(count) * (width + 1)`` of them.
    """

    def __init__(self, count: int, width: int):
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, not {count!r}")
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        self.count, self.width = count, width
        self.stages = bits_for(count) if count > 1 else 0
        self.shift_width = max(1, self.stages)
        super().__init__({
            "data": In(count * width),
            "keep": In(count),
            "shift": In(count * self.shift_width),
            "packed": Out(count * width),
        })

    def elaborate(self, platform):
        m = Module()
        n, w, S = self.count, self.width, self.shift_width
        # A slot holds (valid, shift, data); the shift bits below the current stage are used up.
        valid = [self.keep[i] for i in range(n)]
        shift = [self.shift[i * S:(i + 1) * S] for i in range(n)]
        data = [self.data[i * w:(i + 1) * w] for i in range(n)]
        for s in range(self.stages):
            step = 1 << s
            nv, ns, nd = [], [], []
            for k in range(n):
                src = k + step
                stay = Signal(name=f"s{s}_stay{k}")
                move = Signal(name=f"s{s}_move{k}")
                m.d.comb += stay.eq(valid[k] & ~shift[k][s])
                if src < n:
                    m.d.comb += move.eq(valid[src] & shift[src][s])
                v = Signal(name=f"s{s}_valid{k}")
                z = Signal(S, name=f"s{s}_shift{k}")
                d = Signal(w, name=f"s{s}_data{k}")
                if src < n:
                    m.d.comb += [v.eq(stay | move),
                                 z.eq(Mux(move, shift[src], shift[k])),
                                 d.eq(Mux(move, data[src], data[k]))]
                else:
                    m.d.comb += [v.eq(stay), z.eq(shift[k]), d.eq(data[k])]
                nv.append(v)
                ns.append(z)
                nd.append(d)
            valid, shift, data = nv, ns, nd
        m.d.comb += self.packed.eq(Cat(*(Mux(v, d, 0) for v, d in zip(valid, data))))
        return m
