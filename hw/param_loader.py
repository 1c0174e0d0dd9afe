"""The parameter port: one transfer per cycle, registered, decoded into memory write strobes
(docs/HARDWARE.md, "Parameters"; hw.protocol's targets and fields)."""
from __future__ import annotations

from amaranth import Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .protocol import (TARGET_CHANNEL_MASK, TARGET_GATE_THRESHOLDS, TARGET_GATE_WEIGHTS,
                       TARGET_LAYER_PRUNING, TARGET_POSITION_MASK, TARGET_THRESHOLDS,
                       TARGET_WEIGHTS)

# Targets written one word per transfer (a 1-bit strobe each), and one lane per transfer.
WORD_TARGETS = {"channel_mask": TARGET_CHANNEL_MASK, "position_mask": TARGET_POSITION_MASK,
                "layer_pruning": TARGET_LAYER_PRUNING, "gate_weights": TARGET_GATE_WEIGHTS}
LANE_TARGETS = {"thresholds": TARGET_THRESHOLDS, "gate_thresholds": TARGET_GATE_THRESHOLDS}


class ParamLoader(wiring.Component):
    """Takes parameter transfers and presents them, a cycle later, as write strobes.

    Parameters
    ----------
    layout : data.StructLayout
        The transfer's fields (hw.protocol.param_fields): ``target``, ``addr``, ``lane``,
        ``data``.
    lanes : int
        Lanes of the core (>= 1): the width of the per-lane strobes.

    Members
    -------
    param : In(stream.Signature(layout))
        Always ready: one transfer per cycle.
    addr, lane, data : Out
        The registered transfer's fields.
    weights : Out(2)
        Weight-bank strobes: bit ``b`` writes bank ``b`` (even, odd) at word ``addr >> 1``
        (a weight transfer addresses word ``a`` of bank ``b`` as ``2a + b``).
    thresholds, gate_thresholds : Out(lanes)
        One-hot lane strobes (lane ``lane``) of the lane-wise loaded memories.
    channel_mask, position_mask, layer_pruning, gate_weights : Out(1)
        Word strobes.

    Latency: one cycle from a transfer to its strobe; nothing downstream depends on the
    port combinationally (simulators then evaluate the core once per clock edge).
    Throughput: one transfer per cycle.
    """

    def __init__(self, *, layout: data.StructLayout, lanes: int):
        if not isinstance(layout, data.StructLayout):
            raise TypeError(f"layout must be a data.StructLayout, not {layout!r}")
        missing = {"target", "addr", "lane", "data"} - {name for name, _ in layout}
        if missing:
            raise ValueError(f"layout lacks the field(s) {sorted(missing)}")
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self.layout, self.lanes = layout, lanes
        ports = {"param": In(stream.Signature(layout)),
                 "addr": Out(layout["addr"].shape), "lane": Out(layout["lane"].shape),
                 "data": Out(layout["data"].shape), "weights": Out(2)}
        ports.update({name: Out(lanes) for name in LANE_TARGETS})
        ports.update({name: Out(1) for name in WORD_TARGETS})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        prm = Signal(self.layout)
        load = Signal()
        m.d.comb += self.param.ready.eq(1)
        m.d.sync += [load.eq(self.param.valid), prm.eq(self.param.payload)]
        m.d.comb += [self.addr.eq(prm.addr), self.lane.eq(prm.lane), self.data.eq(prm.data)]
        is_weights = load & (prm.target == TARGET_WEIGHTS)
        m.d.comb += self.weights.eq(Mux(is_weights, Mux(prm.addr[0], 0b10, 0b01), 0))
        for name, target in WORD_TARGETS.items():
            m.d.comb += getattr(self, name).eq(load & (prm.target == target))
        for name, target in LANE_TARGETS.items():
            one_hot = (Const(1, self.lanes) << prm.lane)[:self.lanes]
            m.d.comb += getattr(self, name).eq(Mux(load & (prm.target == target), one_hot, 0))
        return m
