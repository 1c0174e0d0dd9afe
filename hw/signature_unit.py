"""The signature and work counters of one spiking layer at one step (docs/HARDWARE.md,
"Record modes and signatures"; docs/INTEGER_SPEC.md section 9)."""
from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .logic import popcount
from .signature import CRC_INIT, CRC_WIDTH, CRC_XOROUT, update_masks


class SignatureUnit(wiring.Component):
    """CRC-32 of a layer's spike records, its spike count and its work counters.

    Parameters
    ----------
    lanes : int
        Spike bits per record (>= 1), lane 0 first into the CRC (hw.signature).
    spike_count_width, event_count_width, synaptic_count_width, update_count_width : int
        Widths of the counters (>= 1 each); they wrap, as the record fields do.
    synaptic_width : int
        Width of ``synaptic``, the lane additions of one event.

    Members
    -------
    clear : In(1)
        Start a new signature: the CRC register to its preset, the counters to 0 (takes
        precedence over ``update`` and ``event`` in the same cycle).
    update : In(1)
        Feed ``spikes`` into the CRC, add their count to the spike count and count one
        neuron update.
    spikes : In(lanes)
    event : In(1)
        Count one event (an input issued to the lanes) and add ``synaptic`` to the lane
        additions.
    synaptic : In(synaptic_width)
    fields : Out(32 + the four counter widths)
        The signature record's payload: the finalized CRC (``zlib.crc32`` of the records
        when ``lanes`` is a multiple of 8), then spike count, events, synaptic ops and
        neuron updates, low bits first.

    Latency: every input acts at the clock edge; ``fields`` are registered (they include
    the cycle's update from the next cycle on). Throughput: one record and one event per
    cycle.
    """

    def __init__(self, *, lanes: int, spike_count_width: int, event_count_width: int,
                 synaptic_count_width: int, update_count_width: int, synaptic_width: int):
        widths = {"lanes": lanes, "spike_count_width": spike_count_width,
                  "event_count_width": event_count_width,
                  "synaptic_count_width": synaptic_count_width,
                  "update_count_width": update_count_width, "synaptic_width": synaptic_width}
        for name, v in widths.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self.lanes = lanes
        self.widths = (spike_count_width, event_count_width, synaptic_count_width,
                       update_count_width)
        super().__init__({
            "clear": In(1), "update": In(1), "spikes": In(lanes),
            "event": In(1), "synaptic": In(synaptic_width),
            "fields": Out(CRC_WIDTH + sum(self.widths)),
        })

    def elaborate(self, platform):
        m = Module()
        crc = Signal(CRC_WIDTH, init=CRC_INIT)
        crc_next = Signal(CRC_WIDTH)
        state_mask, word_mask = update_masks(self.lanes)
        for k in range(CRC_WIDTH):
            m.d.comb += crc_next[k].eq((crc & state_mask[k]).xor()
                                       ^ (self.spikes & word_mask[k]).xor())
        spikes, events, synaptic, updates = (Signal(w, name=n) for w, n in zip(
            self.widths, ("spike_count", "event_count", "synaptic_count", "update_count")))
        with m.If(self.clear):
            m.d.sync += [crc.eq(CRC_INIT), spikes.eq(0), events.eq(0), synaptic.eq(0),
                         updates.eq(0)]
        with m.Else():
            with m.If(self.update):
                m.d.sync += [crc.eq(crc_next), spikes.eq(spikes + popcount(self.spikes)),
                             updates.eq(updates + 1)]
            with m.If(self.event):
                m.d.sync += [events.eq(events + 1), synaptic.eq(synaptic + self.synaptic)]
        m.d.comb += self.fields.eq(Cat(crc ^ CRC_XOROUT, spikes, events, synaptic, updates))
        return m
