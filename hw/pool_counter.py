"""Pooled spike counts of one pool window, as carry-save bit planes (docs/HARDWARE.md,
"Schedule", step 3)."""
from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class PoolCounter(wiring.Component):
    """Counts, per channel, the spikes of the positions of a pool window.

    Parameters
    ----------
    channels : int
        Channels counted (>= 1).
    count_bits : int
        Bits of a count (>= 1); counts wrap at ``2 ** count_bits`` (the core sizes them for
        ``pool ** 2``).

    Members
    -------
    add : In(1)
        Add ``spikes`` (one bit per channel) to the counts.
    spikes : In(channels)
    clear : In(1)
        Set the counts to 0 (after this cycle's ``add``, if any, is dropped).
    planes : Out(count_bits * channels)
        The counts as bit planes: plane ``k`` (bits ``[k * channels, (k + 1) * channels)``)
        holds bit ``k`` of every channel's count, which is how the next layer's input map
        stores a word (hw.core, POOL_WRITE).

    Latency: registered, one cycle. Throughput: one add per cycle. The planes add as a
    ripple of half adders per channel, one plane per bit (no adder wider than 1 bit).
    """

    def __init__(self, *, channels: int, count_bits: int):
        for name, v in (("channels", channels), ("count_bits", count_bits)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self.channels, self.count_bits = channels, count_bits
        super().__init__({"add": In(1), "spikes": In(channels), "clear": In(1),
                          "planes": Out(count_bits * channels)})

    def elaborate(self, platform):
        m = Module()
        planes = [Signal(self.channels, name=f"plane{k}") for k in range(self.count_bits)]
        with m.If(self.clear):
            m.d.sync += [plane.eq(0) for plane in planes]
        with m.Elif(self.add):
            carry = self.spikes
            for plane in planes:
                m.d.sync += plane.eq(plane ^ carry)
                carry = plane & carry
        m.d.comb += self.planes.eq(Cat(*planes))
        return m
