"""Stream compaction and its inverse: the kept fields of a vector packed to its low end, in
order, and packed fields put back where they came from.

The dense-lanes datapath (docs/HARDWARE.md, "Dense lanes") packs the open output channels
of a window of channel groups into consecutive lanes: lane ``j`` of packed group ``k`` takes
the ``(k * lanes + j)``-th open channel of the window. The routing depends only on which
channels are open, so it is computed once per (position, window) by :class:`PackRouter`
and registered; the data networks (:class:`PackNetwork`) are then plain multiplexers:
weight codes are compacted at every event, accumulated currents expanded once per packed
group.

A network has ``ceil(log2(n))`` stages of 2:1 multiplexers. Compaction stage ``s`` moves an
element ``2^s`` places down when bit ``s`` of its shift (the number of dropped elements
before it, :func:`drop_counts`) is set. Processing the bits from the lowest up never makes
two elements meet: for kept elements ``i < j``, ``z_j - z_i`` of the ``j - i - 1`` elements
between them are dropped, so ``j - i >= z_j - z_i + 1``; after stage ``s`` element ``i``
sits at ``i - (z_i mod M)`` with ``M = 2^(s+1)``, and ``(z_j mod M) - (z_i mod M) <= z_j -
z_i``, so the two stay at least one slot apart. Each slot therefore has at most one source,
and running the stages backwards (highest first, moving up) undoes them exactly: that is
the expansion.
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
    """The kept values in order, then zeros: what a compacting :class:`PackNetwork`
    computes under :class:`PackRouter`'s routing and slot mask."""
    values, keep = np.asarray(values), np.asarray(keep, dtype=bool)
    out = np.zeros_like(values)
    kept = values[keep]
    out[:len(kept)] = kept
    return out


def expand_reference(packed, keep) -> np.ndarray:
    """Packed values back at the kept positions, zeros elsewhere: what an expanding
    :class:`PackNetwork` computes (the inverse of :func:`compact_reference`)."""
    packed, keep = np.asarray(packed), np.asarray(keep, dtype=bool)
    out = np.zeros_like(packed)
    out[keep] = packed[:int(keep.sum())]
    return out


def _stages(count: int) -> int:
    return bits_for(count) if count > 1 else 0


class PackRouter(wiring.Component):
    """The routing of the compaction (and expansion) networks for one keep pattern
    (combinational).

    Parameters
    ----------
    count : int
        Elements in the vector (>= 1).

    Members
    -------
    keep : In(count)
        Bit ``i``: element ``i`` is kept.
    moves : Out(stages * count)
        Bit ``s * count + k``: at compaction stage ``s``, slot ``k`` takes slot ``k + 2^s``.
    packed_valid : Out(count)
        Bit ``k``: packed slot ``k`` holds a kept element (``k <`` the number kept).
    ranks : Out(count * rank_width)
        Element ``i``'s packed slot (the number of kept elements before it).

    ``stages = ceil(log2(count))``. Latency 0; the shifts are a prefix count and travel
    with the valid bits through the stages, so this is the larger part of a packing unit's
    logic, built once and shared by every data network that uses its routing.
    """

    def __init__(self, count: int):
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(f"count must be a positive integer, not {count!r}")
        self.count = count
        self.stages = _stages(count)
        self.rank_width = bits_for(count + 1)
        super().__init__({
            "keep": In(count),
            "moves": Out(max(1, self.stages * count)),
            "packed_valid": Out(count),
            "ranks": Out(count * self.rank_width),
        })

    def elaborate(self, platform):
        m = Module()
        n, R = self.count, self.rank_width
        # Prefix counts: rank_i kept before i, z_i = i - rank_i dropped before i.
        ranks = [Signal(R, name=f"rank{i}") for i in range(n)]
        m.d.comb += ranks[0].eq(0)
        for i in range(1, n):
            m.d.comb += ranks[i].eq(ranks[i - 1] + self.keep[i - 1])
        m.d.comb += self.ranks.eq(Cat(*ranks))
        total = Signal(R)
        m.d.comb += total.eq(ranks[n - 1] + self.keep[n - 1])
        m.d.comb += self.packed_valid.eq(Cat(*(total > k for k in range(n))))
        S = max(1, self.stages)
        valid = [self.keep[i] for i in range(n)]
        shift = []
        for i in range(n):
            z = Signal(S, name=f"drop{i}")
            m.d.comb += z.eq(i - ranks[i])
            shift.append(z)
        for s in range(self.stages):
            step = 1 << s
            nv, ns = [], []
            for k in range(n):
                src = k + step
                v = Signal(name=f"s{s}_valid{k}")
                z = Signal(S, name=f"s{s}_shift{k}")
                stay = valid[k] & ~shift[k][s]
                if src < n:
                    move = Signal(name=f"s{s}_move{k}")
                    m.d.comb += [move.eq(valid[src] & shift[src][s]),
                                 v.eq(stay | move), z.eq(Mux(move, shift[src], shift[k])),
                                 self.moves[s * n + k].eq(move)]
                else:
                    m.d.comb += [v.eq(stay), z.eq(shift[k])]
                nv.append(v)
                ns.append(z)
            valid, shift = nv, ns
        return m


class PackNetwork(wiring.Component):
    """Compacts or expands a vector of fields along a :class:`PackRouter`'s routing
    (combinational, multiplexers only).

    Parameters
    ----------
    count : int
        Elements in the vector (>= 1).
    width : int
        Bits per element (>= 1).
    expand : bool
        False: compaction (element ``i`` kept -> slot ``rank_i``); True: expansion (slot
        ``rank_i`` -> element ``i``).

    Members
    -------
    data : In(count * width)
        Element (or slot) ``i`` at bits ``[i * width, (i + 1) * width)``.
    moves : In(stages * count)
        The router's ``moves``.
    mask : In(count)
        Output ``k`` is 0 where its bit is clear: the router's ``packed_valid`` when
        compacting, ``keep`` when expanding.
    out : Out(count * width)

    Latency 0; ``ceil(log2(count))`` levels of ``count * width`` 2:1 multiplexers.
    """

    def __init__(self, count: int, width: int, *, expand: bool = False):
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(f"count must be a positive integer, not {count!r}")
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        self.count, self.width, self.expand = count, width, bool(expand)
        self.stages = _stages(count)
        super().__init__({
            "data": In(count * width),
            "moves": In(max(1, self.stages * count)),
            "mask": In(count),
            "out": Out(count * width),
        })

    def elaborate(self, platform):
        m = Module()
        n, w = self.count, self.width
        data = [self.data[i * w:(i + 1) * w] for i in range(n)]
        order = reversed(range(self.stages)) if self.expand else range(self.stages)
        for s in order:
            step, nd = 1 << s, []
            for k in range(n):
                d = Signal(w, name=f"s{s}_data{k}")
                if self.expand and k >= step:      # slot k - step moved down from k
                    m.d.comb += d.eq(Mux(self.moves[s * n + k - step], data[k - step], data[k]))
                elif not self.expand and k + step < n:
                    m.d.comb += d.eq(Mux(self.moves[s * n + k], data[k + step], data[k]))
                else:
                    m.d.comb += d.eq(data[k])
                nd.append(d)
            data = nd
        m.d.comb += self.out.eq(Cat(*(Mux(self.mask[k], d, 0) for k, d in enumerate(data))))
        return m


class Compaction(wiring.Component):
    """A router and a compacting network: the kept fields of ``data`` packed to the low end.

    Parameters and members as :class:`PackNetwork` (``data``, ``out`` renamed ``packed``)
    with ``keep`` In(count) in place of ``moves`` and ``mask``. Used alone to measure a
    packing unit's cost (docs/HARDWARE.md); the core shares one router between networks.
    """

    def __init__(self, count: int, width: int):
        self.router = PackRouter(count)
        self.network = PackNetwork(count, width)
        self.count, self.width = count, width
        super().__init__({"data": In(count * width), "keep": In(count),
                          "packed": Out(count * width)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.router, m.submodules.network = self.router, self.network
        m.d.comb += [self.router.keep.eq(self.keep), self.network.data.eq(self.data),
                     self.network.moves.eq(self.router.moves),
                     self.network.mask.eq(self.router.packed_valid),
                     self.packed.eq(self.network.out)]
        return m
