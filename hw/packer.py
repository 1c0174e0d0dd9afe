"""The packing unit: one window of two channel groups run as dense packed groups.

docs/HARDWARE.md, "Dense lanes": a window holds ``2 x lanes`` consecutive output channels.
Its ``n`` scheduled channels run in ``ceil(n / lanes)`` packed groups (0, 1 or 2); lane
``j`` of packed group ``k`` takes the ``(k * lanes + j)``-th scheduled channel. The routing
(:class:`hw.compaction.PackRouter`) depends only on which channels are scheduled, so it is
registered once per window; at every event a compaction network routes the two groups'
weight codes into the lanes, and after each packed group an expansion network puts the
lanes' currents back at their channels.
"""
from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .compaction import PackNetwork, PackRouter
from .logic import popcount
from .params import bits_for


class WindowPacker(wiring.Component):
    """Packs one window of ``2 x lanes`` channels into the lanes and unpacks the currents.

    Parameters
    ----------
    lanes : int
        Lanes of the core (>= 1); a window has ``2 x lanes`` channels.
    weight_bits : int
        Bits of a weight code.
    acc_width : int
        Bits of a lane's current.

    Members
    -------
    load : In(1)
        Take ``computed`` and ``scheduled`` as the new window's (registered).
    computed : In(2 * lanes)
        The window's channels computed at this position (their lane additions count).
    scheduled : In(2 * lanes)
        The channels its packed groups run: ``computed`` itself, or more (the classifier
        runs every valid channel of a live group; a skip-disabled core every channel).
    win_computed : Out(2 * lanes)
        ``computed`` of the current window.
    second : Out(1)
        The window needs a second packed group (more than ``lanes`` scheduled channels).
    k : In(1)
        The packed group being run.
    codes : In(2 * lanes * weight_bits)
        The two groups' codes of one (tap, input channel), channel order.
    lane_codes : Out(lanes * weight_bits)
        Packed group ``k``'s codes: lane ``j`` the ``(k * lanes + j)``-th scheduled
        channel's, 0 past the last.
    synaptic : Out(bits_for(lanes + 1))
        Computed channels in packed group ``k``: the lane additions of one event.
    acc : In(lanes * acc_width)
        The lanes' currents after packed group ``k``.
    expand : In(1)
        Register ``expanded`` into ``currents``.
    expanded : Out(2 * lanes * acc_width)
        The window's currents in channel order as they stand after packed group ``k``
        (combinational from ``acc``): packed group 0 gives every field (unscheduled ones
        0); packed group 1 only its own, the others from ``currents``.
    currents : Out(2 * lanes * acc_width)
        ``expanded`` as of the last ``expand`` (registered).

    Latency: the routing is registered the cycle after ``load`` (``lane_codes`` and
    ``second`` and ``synaptic`` are valid from the second cycle after ``load``);
    ``expanded`` follows ``acc`` in the same cycle; ``currents`` one cycle after
    ``expand``. Throughput one event per cycle.
    """

    def __init__(self, *, lanes: int, weight_bits: int, acc_width: int):
        for name, v in (("lanes", lanes), ("weight_bits", weight_bits), ("acc_width", acc_width)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self.lanes, self.weight_bits, self.acc_width = lanes, weight_bits, acc_width
        n = 2 * lanes
        super().__init__({
            "load": In(1), "computed": In(n), "scheduled": In(n),
            "win_computed": Out(n), "second": Out(1),
            "k": In(1), "codes": In(n * weight_bits), "lane_codes": Out(lanes * weight_bits),
            "synaptic": Out(bits_for(lanes + 1)),
            "acc": In(lanes * acc_width), "expand": In(1), "expanded": Out(n * acc_width),
            "currents": Out(n * acc_width),
        })

    def elaborate(self, platform):
        m = Module()
        L, b, W, n = self.lanes, self.weight_bits, self.acc_width, 2 * self.lanes
        m.submodules.pack_router = router = PackRouter(n)
        m.submodules.pack_codes = pack_codes = PackNetwork(n, b)
        m.submodules.unpack_currents = unpack = PackNetwork(n, W, expand=True)
        sched = Signal(n)
        with m.If(self.load):
            m.d.sync += [self.win_computed.eq(self.computed), sched.eq(self.scheduled)]
        # The routing, registered: the data networks are then multiplexers only.
        moves = Signal(len(router.moves))
        packed_valid = Signal(n)
        upper = Signal(n)                 # scheduled channels of packed group 1
        synaptic = [Signal(bits_for(L + 1), name=f"synaptic{k}") for k in (0, 1)]
        RW = router.rank_width
        m.d.comb += router.keep.eq(sched)
        upper_next = Signal(n)            # named: an expression would be rebuilt at each use
        m.d.comb += upper_next.eq(Cat(*(sched[i] & (router.ranks[i * RW:(i + 1) * RW] >= L)
                                        for i in range(n))))
        m.d.sync += [moves.eq(router.moves), packed_valid.eq(router.packed_valid),
                     upper.eq(upper_next),
                     synaptic[0].eq(popcount(self.win_computed & sched & ~upper_next)),
                     synaptic[1].eq(popcount(self.win_computed & upper_next))]
        m.d.comb += [
            self.second.eq(packed_valid[L]),
            self.synaptic.eq(Mux(self.k, synaptic[1], synaptic[0])),
            pack_codes.data.eq(self.codes), pack_codes.moves.eq(moves),
            pack_codes.mask.eq(packed_valid),
            self.lane_codes.eq(Mux(self.k, pack_codes.out[L * b:], pack_codes.out[:L * b])),
            unpack.data.eq(Cat(self.acc, self.acc)),   # slot r and r + L: lane r
            unpack.moves.eq(moves), unpack.mask.eq(sched),
        ]
        for i in range(n):
            field = slice(i * W, (i + 1) * W)
            m.d.comb += self.expanded[field].eq(
                Mux(~self.k | upper[i], unpack.out[field], self.currents[field]))
        with m.If(self.expand):
            m.d.sync += self.currents.eq(self.expanded)
        return m
