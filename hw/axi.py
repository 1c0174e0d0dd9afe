"""The AXI bus wrapper of the core: AXI4-Stream in and out, an AXI4-Lite register block.

:class:`SnnCoreAxi` instantiates :class:`hw.core.SnnCore` unchanged and adds what a SoC
integration needs (docs/HARDWARE.md, "AXI wrapper"):

- ``s_axis_frame``: AXI4-Stream slave, the core's frame stream (one input position per
  transfer, TDATA as ``frame.payload`` padded to whole bytes). Accepted only between a
  start (``CTRL.start``) and the end of that inference.
- ``s_axis_param``: AXI4-Stream slave, the core's parameter stream (``param.payload``
  padded to bytes, hw.protocol.param_transfers). Accepted only while no inference runs,
  which is the core's rule for parameter loading (TREADY low otherwise).
- ``m_axis_record``: AXI4-Stream master, the core's records, TLAST on the last logits
  record of an inference (its last record).
- ``s_axil``: AXI4-Lite slave with the register map of :mod:`hw.regmap` (start, status,
  the interrupt's enable and status, ``spike_records``, the cycle and work counters and the
  identity block). ``irq``: level interrupt, ``IRQ_STATUS & IRQ_ENABLE``, registered.

Signal names follow the usual ``<bus>_<signal>`` convention (``s_axil_awaddr``,
``m_axis_record_tvalid``), as cocotbext-axi and Vivado's interface inference expect. The
wrapper runs in the ``sync`` domain: ``clk``, and ``rst`` active high, synchronous
(``rst = ~aresetn`` for an AXI reset).

The streams pass through without a register stage: the core's TVALID never depends on
TREADY (AXI4-Stream's only rule for a combinational path), and its TREADY depends on its
state only.
"""
from __future__ import annotations

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import regmap
from .core import SnnCore
from .params import CoreParams
from .protocol import KIND_LOGITS, KIND_SIGNATURE, signature_fields

def _bytes(width: int) -> int:
    return -(-width // 8) * 8


class SnnCoreAxi(wiring.Component):
    """The core behind AXI4-Stream and AXI4-Lite interfaces (module docstring).

    Parameters
    ----------
    params : CoreParams
    init_files : dict, optional
        As for :class:`hw.core.SnnCore` (preloaded SRAM images).
    """

    def __init__(self, params: CoreParams, init_files: dict | None = None):
        self.p = params
        self.core = SnnCore(params, init_files)
        fw = _bytes(params.input_channels * params.input_bits)
        pw = _bytes(len(self.core.param.payload.as_value()))
        rw = _bytes(len(self.core.record.payload.as_value()))
        A, D = regmap.ADDR_WIDTH, regmap.DATA_WIDTH
        super().__init__({
            "s_axis_frame_tdata": In(fw), "s_axis_frame_tvalid": In(1),
            "s_axis_frame_tready": Out(1),
            "s_axis_param_tdata": In(pw), "s_axis_param_tvalid": In(1),
            "s_axis_param_tready": Out(1),
            "m_axis_record_tdata": Out(rw), "m_axis_record_tvalid": Out(1),
            "m_axis_record_tready": In(1), "m_axis_record_tlast": Out(1),
            "s_axil_awaddr": In(A), "s_axil_awvalid": In(1), "s_axil_awready": Out(1),
            "s_axil_wdata": In(D), "s_axil_wstrb": In(D // 8), "s_axil_wvalid": In(1),
            "s_axil_wready": Out(1),
            "s_axil_bresp": Out(2), "s_axil_bvalid": Out(1), "s_axil_bready": In(1),
            "s_axil_araddr": In(A), "s_axil_arvalid": In(1), "s_axil_arready": Out(1),
            "s_axil_rdata": Out(D), "s_axil_rresp": Out(2), "s_axil_rvalid": Out(1),
            "s_axil_rready": In(1),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p, core = self.p, self.core
        m.submodules.core = core

        # ---------------- control state ----------------
        running = Signal()          # started, last record not yet taken
        done = Signal()             # STATUS.done
        start = Signal()            # CTRL.start written with 1 (a pulse)
        cycles = Signal(64)
        counters = {name: Signal(64, name=f"count_{name}")
                    for name in ("events", "synaptic_ops", "neuron_updates")}
        inferences = Signal(32)

        # ---------------- streams ----------------
        rec = core.record.payload
        fc = p.classifier
        last = Signal()
        m.d.comb += [
            core.frame.valid.eq(self.s_axis_frame_tvalid & running),
            core.frame.payload.eq(self.s_axis_frame_tdata),
            self.s_axis_frame_tready.eq(core.frame.ready & running),
            # Parameters only between inferences (hw.core: "use only between inferences").
            self.s_axis_param_tready.eq(~running & ~core.busy),
            core.param.valid.eq(self.s_axis_param_tvalid & self.s_axis_param_tready),
            core.param.payload.eq(self.s_axis_param_tdata),
            self.m_axis_record_tdata.eq(rec.as_value()),
            self.m_axis_record_tvalid.eq(core.record.valid),
            core.record.ready.eq(self.m_axis_record_tready),
            last.eq((rec.kind == KIND_LOGITS) & (rec.group == fc.groups - 1)),
            self.m_axis_record_tlast.eq(last),
        ]
        taken = core.record.valid & core.record.ready
        finished = taken & last

        with m.If(start & ~running):
            m.d.sync += [running.eq(1), done.eq(0), cycles.eq(0)]
            m.d.sync += [c.eq(0) for c in counters.values()]
        with m.Elif(running):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(finished):
                m.d.sync += [running.eq(0), done.eq(1), inferences.eq(inferences + 1)]
        # Work counters: each signature record carries its (layer, step)'s counts.
        offset = 0
        sig = {}
        for name, width in signature_fields(p):
            sig[name] = rec.data[offset:offset + width]
            offset += width
        with m.If(taken & (rec.kind == KIND_SIGNATURE) & running):
            m.d.sync += [c.eq(c + sig[name]) for name, c in counters.items()]

        # ---------------- register block (generated from hw.regmap) ----------------
        irq_set = {"IRQ_STATUS.done": finished}
        sources = {
            "STATUS.busy": running | core.busy, "STATUS.done": done,
            "INFERENCES.value": inferences,
            "CYCLES_LO.value": cycles[:32], "CYCLES_HI.value": cycles[32:],
        }
        for reg, name in (("EVENTS", "events"), ("SYNAPTIC_OPS", "synaptic_ops"),
                          ("NEURON_UPDATES", "neuron_updates")):
            sources[f"{reg}_LO.value"] = counters[name][:32]
            sources[f"{reg}_HI.value"] = counters[name][32:]
        pulses = {"CTRL.start": start}
        storage = self._register_block(m, sources, irq_set, pulses)
        m.d.comb += core.spike_records.eq(storage["SPIKE_RECORDS.layers"])
        m.d.sync += self.irq.eq((storage["IRQ_STATUS.done"] & storage["IRQ_ENABLE.done"]))
        return m

    def _register_block(self, m, sources, sets, pulses) -> dict:
        """The AXI4-Lite slave and every register of :data:`hw.regmap.REGISTERS`: read-only
        fields from ``sources`` (or their generated value), RW and W1C storage (``sets``:
        the W1C fields' set conditions), WO fields as one-cycle ``pulses``. Returns the
        storage signals by ``"REG.field"``."""
        p = self.p
        D = regmap.DATA_WIDTH
        # Write channel: take the address and the data together, answer on B.
        bvalid, bresp = Signal(), Signal(2)
        write = Signal()
        m.d.comb += [write.eq(self.s_axil_awvalid & self.s_axil_wvalid & ~bvalid),
                     self.s_axil_awready.eq(write), self.s_axil_wready.eq(write),
                     self.s_axil_bvalid.eq(bvalid), self.s_axil_bresp.eq(bresp)]
        with m.If(bvalid & self.s_axil_bready):
            m.d.sync += bvalid.eq(0)
        with m.If(write):
            m.d.sync += [bvalid.eq(1), bresp.eq(regmap.RESP_SLVERR)]
        waddr = self.s_axil_awaddr[2:]
        byte_mask = Cat(*(self.s_axil_wstrb[i].replicate(8) for i in range(D // 8)))
        # Read channel: one read at a time, data registered.
        rvalid, rdata, rresp = Signal(), Signal(D), Signal(2)
        m.d.comb += [self.s_axil_arready.eq(~rvalid), self.s_axil_rvalid.eq(rvalid),
                     self.s_axil_rdata.eq(rdata), self.s_axil_rresp.eq(rresp)]
        with m.If(rvalid & self.s_axil_rready):
            m.d.sync += rvalid.eq(0)
        read = self.s_axil_arvalid & ~rvalid
        with m.If(read):
            m.d.sync += [rvalid.eq(1), rdata.eq(0), rresp.eq(regmap.RESP_SLVERR)]
        raddr = self.s_axil_araddr[2:]

        storage = {}
        for r in regmap.REGISTERS:
            word = r.offset >> 2
            value = Signal(D, name=f"reg_{r.name.lower()}")
            hit_w = write & (waddr == word)
            for f in r.fields:
                key, w = f"{r.name}.{f.name}", regmap.field_width(f, p)
                bits = slice(f.lsb, f.lsb + w)
                wdata, wmask = self.s_axil_wdata[bits], byte_mask[bits]
                if f.value is not None:
                    m.d.comb += value[bits].eq(f.value(p))
                elif r.access == "RO":
                    m.d.comb += value[bits].eq(sources[key])
                elif r.access == "WO":
                    m.d.comb += pulses[key].eq(hit_w & wdata[0] & wmask[0])   # 1 bit
                else:
                    reg = Signal(w, init=f.reset, name=f"{r.name.lower()}_{f.name}")
                    storage[key] = reg
                    m.d.comb += value[bits].eq(reg)
                    if r.access == "RW":
                        with m.If(hit_w):
                            m.d.sync += reg.eq((reg & ~wmask) | (wdata & wmask))
                    else:       # W1C: a set in the same cycle as a clear wins
                        cleared = Mux(hit_w, reg & ~(wdata & wmask), reg)
                        m.d.sync += reg.eq(cleared | sets[key])
            with m.If(hit_w):
                m.d.sync += bresp.eq(regmap.RESP_OKAY)
            with m.If(read & (raddr == word)):
                m.d.sync += [rdata.eq(value), rresp.eq(regmap.RESP_OKAY)]
        return storage
