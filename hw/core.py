"""The SNN core: memories, PoT shift-add lanes, neuron units and the mask-skipping scheduler.

Dataflow (output-stationary, one layer at a time, one step at a time):

    for t in 0..T-1:
        load the input frame into act_sram[0]                     (frame stream)
        for each layer l:
            for each pool window, each position p in it:          (masked p: skipped)
                for each group g of `lanes` output channels:      (all-masked g: skipped)
                    acc = 0
                    for each kernel tap inside the map:
                        read the input word; for each NONZERO input channel ci:
                            acc[j] += s * (x << (K - k)) in all lanes      (1 cycle)
                    neuron units compare acc with the thresholds;
                    membrane_sram is updated; a record is emitted       (record stream)
                write the window's pooled spike counts into act_sram[l+1]
    emit the logits                                               (record stream)

Zero inputs cost nothing: a find-first-set over the word's nonzero bitmap issues only
nonzero channels, and the next tap's word is read while the current one is issued, so a
tap costs max(1, nonzero inputs) cycles.
"""
from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .neuron_unit import NeuronUnit
from .params import (CoreParams, KIND_CURRENT, KIND_LOGITS, KIND_SPIKES, TARGET_CHANNEL_MASK,
                     TARGET_POSITION_MASK, TARGET_THRESHOLDS, TARGET_WEIGHTS, bits_for,
                     param_fields, record_fields)
from .pot_shift_add import PotShiftAdd
from .sram import Sram


def first_set_index(m, vec, name):
    """Index of the lowest set bit of ``vec`` (0 when ``vec`` is 0), as a comb signal."""
    n = len(vec)
    lowest = Signal(n, name=f"{name}_lowest")
    m.d.comb += lowest.eq(vec & (~vec + 1)[:n])
    index = Signal(bits_for(n), name=name)
    for b in range(len(index)):
        hits = [lowest[i] for i in range(n) if (i >> b) & 1]
        if hits:
            m.d.comb += index[b].eq(Cat(*hits).any())
    return index


class SnnCore(wiring.Component):
    """A generated core for one network shape (see :class:`hw.params.CoreParams`).

    Members
    -------
    frame : In(stream.Signature(C_in * input_bits))
        Input values of one position per transfer, raster order, channel c at bits
        [c*bits, (c+1)*bits); ``H*W`` transfers per step, T steps per inference.
    param : In(stream.Signature(param layout))
        Parameter loading (weights, thresholds, channel and position masks); always ready.
        Use only between inferences.
    record : Out(stream.Signature(record layout))
        One record per computed (layer, step, position, group): spikes and next membranes
        (kind 0); classifier currents per step (kind 1); logits at the end (kind 2).
        Honours backpressure: the core waits while ``record.ready`` is low.
    busy : Out(1)
        An inference is in progress.
    """

    def __init__(self, params: CoreParams):
        self.p = params
        self.record_layout = data.StructLayout(dict(record_fields(params)))
        self.param_layout = data.StructLayout(dict(param_fields(params)))
        super().__init__({
            "frame": In(stream.Signature(params.input_channels * params.input_bits)),
            "param": In(stream.Signature(self.param_layout)),
            "record": Out(stream.Signature(self.record_layout)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        L, b, W = p.lanes, p.weight_bits, p.acc_width
        XB, CIN = p.max_x_bits, p.max_in_channels
        TLW = p.threshold_lane_width
        n_layers = len(p.layers)

        # ---------------- memories ----------------
        def sram(name, width, depth, granularity=None):
            return Sram(name, width=width, depth=max(1, depth), granularity=granularity).add_to(m)

        weights = sram("weight_sram", L * b, p.weight_depth)
        thresholds = sram("threshold_sram", L * TLW, p.group_depth, TLW)
        channel_masks = sram("channel_mask_sram", L, p.group_depth)
        position_masks = sram("position_mask_sram", 1, p.position_depth)
        membranes = sram("membrane_sram", L * p.membrane_bits, p.membrane_depth)
        acts = [sram(f"act_sram{lp.index}", lp.act_width, lp.act_depth) for lp in p.layers]

        # ---------------- parameter loading ----------------
        prm = self.param.payload
        m.d.comb += self.param.ready.eq(1)
        load = self.param.valid
        m.d.comb += [
            weights.waddr.eq(prm.addr), weights.wdata.eq(prm.data),
            weights.wen.eq(load & (prm.target == TARGET_WEIGHTS)),
            thresholds.waddr.eq(prm.addr), thresholds.wdata.eq(Cat(*([prm.data[:TLW]] * L))),
            thresholds.wen.eq(Mux(load & (prm.target == TARGET_THRESHOLDS), (Const(1, L) << prm.lane)[:L], 0)),
            channel_masks.waddr.eq(prm.addr), channel_masks.wdata.eq(prm.data),
            channel_masks.wen.eq(load & (prm.target == TARGET_CHANNEL_MASK)),
            position_masks.waddr.eq(prm.addr), position_masks.wdata.eq(prm.data),
            position_masks.wen.eq(load & (prm.target == TARGET_POSITION_MASK)),
        ]

        # ---------------- scheduler state ----------------
        layer = Signal(bits_for(n_layers))
        step = Signal(bits_for(p.timesteps))
        first_step = Signal()
        m.d.comb += first_step.eq(step == 0)
        wy, wx = Signal(16), Signal(16)            # pool window (= position of the next layer)
        dy, dx = Signal(1), Signal(1)              # position inside the window
        group = Signal(bits_for(p.max_groups))
        in_addr = Signal(bits_for(p.input_height * p.input_width))
        # Tap pipeline: fetch pointer -> one input-word read in flight -> the word whose
        # nonzero channels are being issued (see the ACCUMULATE state).
        ky, kx = Signal(8), Signal(8)              # next tap to fetch
        fetch_tap = Signal(bits_for(p.max_taps + 1))
        read_pending = Signal()                    # a word read was issued last cycle
        read_tap = Signal(bits_for(p.max_taps))
        nonzero = Signal(CIN)                      # channels of the current word still to issue
        xcanon = Signal(CIN * XB)                  # current word, one XB-bit slot per channel
        tap = Signal(bits_for(p.max_taps))         # tap of the current word

        # Per-layer constants, selected by `layer`.
        def const(name, width, f):
            sig = Signal(width, name=f"cur_{name}")
            with m.Switch(layer):
                for lp in p.layers:
                    with m.Case(lp.index):
                        m.d.comb += sig.eq(f(lp))
            return sig

        cur = {
            "in_h": const("in_h", 16, lambda lp: lp.in_height),
            "in_w": const("in_w", 16, lambda lp: lp.in_width),
            "out_w": const("out_w", 16, lambda lp: lp.out_width),
            "win_h": const("win_h", 16, lambda lp: lp.out_height // lp.pool),
            "win_w": const("win_w", 16, lambda lp: lp.out_width // lp.pool),
            "kw": const("kw", 8, lambda lp: lp.kernel[1]),
            "pad": const("pad", 8, lambda lp: lp.padding),
            "pool2": const("pool2", 1, lambda lp: int(lp.pool == 2)),
            "groups": const("groups", 16, lambda lp: lp.groups),
            "taps": const("taps", 16, lambda lp: lp.taps),
            "cin": const("cin", 16, lambda lp: lp.in_channels),
            "is_fc": const("is_fc", 1, lambda lp: int(lp.kind == "fc")),
            "w_base": const("w_base", 32, lambda lp: lp.weight_base),
            "g_base": const("g_base", 32, lambda lp: lp.group_base),
            "m_base": const("m_base", 32, lambda lp: lp.membrane_base),
            "p_base": const("p_base", 32, lambda lp: lp.position_base),
        }

        y, x = Signal(16), Signal(16)
        m.d.comb += [
            y.eq(Mux(cur["pool2"], Cat(dy, wy), wy)),
            x.eq(Mux(cur["pool2"], Cat(dx, wx), wx)),
        ]
        pos = Signal(bits_for(p.max_positions))
        m.d.comb += pos.eq(y * cur["out_w"] + x)
        iy = Signal(signed(18))
        ix = Signal(signed(18))
        m.d.comb += [iy.eq(y + ky - cur["pad"]), ix.eq(x + kx - cur["pad"])]
        tap_inside = (iy >= 0) & (iy < cur["in_h"]) & (ix >= 0) & (ix < cur["in_w"])

        # Memory addresses follow the scheduler registers; data arrives one cycle later and
        # stays valid while the registers hold.
        m.d.comb += [
            position_masks.raddr.eq(cur["p_base"] + pos),
            thresholds.raddr.eq(cur["g_base"] + group),
            channel_masks.raddr.eq(cur["g_base"] + group),
            membranes.raddr.eq(cur["m_base"] + pos * cur["groups"] + group),
        ]
        for act in acts:
            n = len(act.raddr)
            m.d.comb += act.raddr.eq(iy[:n] * cur["in_w"] + ix[:n])

        # Fetched word in canonical form (one XB-bit slot per channel) and its nonzero map.
        fetched = Signal(CIN * XB)
        fetched_nz = Signal(CIN)
        with m.Switch(layer):
            for lp, act in zip(p.layers, acts):
                with m.Case(lp.index):
                    for ci in range(lp.in_channels):
                        v = act.rdata[ci * lp.x_bits:(ci + 1) * lp.x_bits]
                        m.d.comb += [fetched[ci * XB:ci * XB + lp.x_bits].eq(v),
                                     fetched_nz[ci].eq(v.any())]

        # ---------------- synapse lanes ----------------
        m.submodules.pot_shift_add = lanes = PotShiftAdd(
            lanes=L, weight_bits=b, max_shift=p.max_shift, x_bits=XB, acc_width=W)
        ev_valid = Signal()
        ev_x = Signal(XB)
        ci = first_set_index(m, nonzero, "event_channel")
        m.d.comb += [
            weights.raddr.eq(cur["w_base"] + (group * cur["taps"] + tap) * cur["cin"] + ci),
            lanes.valid.eq(ev_valid), lanes.x.eq(ev_x), lanes.codes.eq(weights.rdata),
        ]
        m.d.sync += ev_valid.eq(0)

        # ---------------- neuron units ----------------
        MB = p.membrane_bits
        spikes = Signal(L)
        q_next = Signal(L * MB)
        cmask = channel_masks.rdata
        for j in range(L):
            nu = NeuronUnit(membrane=p.membrane, acc_width=W)
            m.submodules[f"neuron_unit{j}"] = nu
            m.d.comb += [
                nu.current.eq(lanes.lane_acc(j)),
                nu.q_prev.eq(membranes.rdata[j * MB:(j + 1) * MB]),
                nu.first_step.eq(first_step),
                nu.active.eq(cmask[j]),
                nu.thresholds.eq(thresholds.rdata[j * TLW:(j + 1) * TLW]),
                spikes[j].eq(nu.spike),
                q_next[j * MB:(j + 1) * MB].eq(nu.q_next),
            ]

        # Pooled spike counts of the current window, one slot per output channel.
        PB = max(lp.x_bits for lp in p.layers[1:])
        pool_acc = [Signal(PB, name=f"pool_acc{c}") for c in range(p.max_out_channels)]

        # Classifier logits, accumulated over steps.
        fc = p.classifier
        LW = p.logit_width
        logits = [Signal(signed(LW), name=f"logit{c}") for c in range(fc.out_channels)]

        # ---------------- record stream ----------------
        rec = self.record.payload
        m.d.comb += [rec.layer.eq(layer), rec.step.eq(step), rec.pos.eq(pos),
                     rec.group.eq(group)]

        # ---------------- the scheduler ----------------
        last_sub = Signal()
        m.d.comb += last_sub.eq(~cur["pool2"] | (dy & dx))
        last_window = (wy == cur["win_h"] - 1) & (wx == cur["win_w"] - 1)
        last_group = group == cur["groups"] - 1

        def next_position():
            """Advance to the next position of the window, or close the window."""
            with m.If(last_sub):
                m.next = "POOL_WRITE"
            with m.Else():
                m.d.sync += [dx.eq(~dx), dy.eq(dy ^ dx), group.eq(0)]
                m.next = "POSITION"

        def next_group():
            with m.If(last_group):
                next_position()
            with m.Else():
                m.d.sync += group.eq(group + 1)
                m.next = "GROUP"

        def start_layer():
            m.d.sync += [wy.eq(0), wx.eq(0), dy.eq(0), dx.eq(0), group.eq(0)]

        m.d.comb += self.busy.eq(1)      # overridden while waiting for a new inference
        with m.FSM(name="scheduler"):
            with m.State("LOAD"):
                m.d.comb += [self.frame.ready.eq(1),
                             self.busy.eq((step != 0) | (in_addr != 0)),
                             acts[0].waddr.eq(in_addr), acts[0].wdata.eq(self.frame.payload),
                             acts[0].wen.eq(self.frame.valid)]
                with m.If(self.frame.valid):
                    m.d.sync += in_addr.eq(in_addr + 1)
                    with m.If(in_addr == p.input_height * p.input_width - 1):
                        m.d.sync += [in_addr.eq(0), layer.eq(0)]
                        start_layer()
                        m.next = "POSITION"

            with m.State("POSITION"):          # position-mask address is presented
                with m.If(cur["is_fc"]):
                    m.next = "GROUP"
                with m.Else():
                    m.next = "POSITION_CHECK"

            with m.State("POSITION_CHECK"):    # mask bit has arrived
                with m.If(position_masks.rdata[0]):
                    m.next = "GROUP"
                with m.Else():
                    next_position()

            with m.State("GROUP"):             # threshold, mask, membrane addresses presented
                m.next = "GROUP_CHECK"

            with m.State("GROUP_CHECK"):
                with m.If(cmask == 0):
                    next_group()
                with m.Else():
                    m.d.comb += lanes.clear.eq(1)
                    m.d.sync += [fetch_tap.eq(0), ky.eq(0), kx.eq(0), read_pending.eq(0),
                                 nonzero.eq(0)]
                    m.next = "ACCUMULATE"

            with m.State("ACCUMULATE"):
                # Every cycle: issue one nonzero input of the current word to all lanes;
                # take the word read last cycle (if any) as the next current word, dropping
                # it if all zero; read the next tap's word when the current word will be used
                # up by the next cycle, so words follow each other without bubbles. A tap
                # costs max(1, nonzero inputs) cycles; taps outside the map cost 1.
                remaining = Signal(CIN)
                m.d.comb += remaining.eq(nonzero & (nonzero - 1)[:CIN])
                with m.If(nonzero.any()):
                    m.d.sync += [ev_valid.eq(1), ev_x.eq(xcanon.word_select(ci, XB))]
                after = Signal(CIN)                # the current word's channels after this cycle
                with m.If(remaining.any()):
                    m.d.comb += after.eq(remaining)
                    m.d.sync += nonzero.eq(remaining)
                with m.Elif(read_pending):
                    m.d.comb += after.eq(fetched_nz)
                    m.d.sync += [nonzero.eq(fetched_nz), xcanon.eq(fetched), tap.eq(read_tap)]
                with m.Else():
                    m.d.sync += nonzero.eq(0)
                taps_left = fetch_tap < cur["taps"]
                at_most_one = (after & (after - 1)[:CIN]) == 0
                m.d.sync += read_pending.eq(0)
                with m.If(taps_left & at_most_one):
                    with m.If(tap_inside):
                        m.d.sync += [read_pending.eq(1), read_tap.eq(fetch_tap)]
                    m.d.sync += fetch_tap.eq(fetch_tap + 1)
                    with m.If(kx == cur["kw"] - 1):
                        m.d.sync += [kx.eq(0), ky.eq(ky + 1)]
                    with m.Else():
                        m.d.sync += kx.eq(kx + 1)
                with m.If(~taps_left & ~read_pending & ~remaining.any()):
                    m.next = "DRAIN"

            with m.State("DRAIN"):             # the last event's add lands this cycle
                m.next = "NEURON"

            with m.State("NEURON"):
                m.d.comb += self.record.valid.eq(1)
                with m.If(cur["is_fc"]):
                    m.d.comb += rec.kind.eq(KIND_CURRENT)
                    for j in range(L):
                        m.d.comb += rec.data[j * LW:(j + 1) * LW].eq(lanes.lane_acc(j))
                with m.Else():
                    m.d.comb += [rec.kind.eq(KIND_SPIKES),
                                 rec.data[:L].eq(spikes), rec.data[L:L * (1 + MB)].eq(q_next)]
                with m.If(self.record.ready):
                    m.d.comb += [membranes.waddr.eq(membranes.raddr), membranes.wdata.eq(q_next),
                                 membranes.wen.eq(~cur["is_fc"])]
                    with m.If(~cur["is_fc"]):
                        for c in range(p.max_out_channels):
                            with m.If(group == c // L):
                                m.d.sync += pool_acc[c].eq(pool_acc[c] + spikes[c % L])
                    with m.Else():
                        for c in range(fc.out_channels):
                            j = c % L
                            bias = thresholds.rdata[j * TLW:j * TLW + W].as_signed()
                            base = Mux(first_step, 0, logits[c])
                            with m.If((group == c // L) & cmask[j]):
                                m.d.sync += logits[c].eq(base + lanes.lane_acc(j) + bias)
                    next_group()

            with m.State("POOL_WRITE"):        # close the window
                with m.If(~cur["is_fc"]):
                    with m.Switch(layer):
                        for lp in p.spiking_layers:
                            nxt = p.layers[lp.index + 1]
                            with m.Case(lp.index):
                                wr = acts[lp.index + 1]
                                m.d.comb += [
                                    wr.waddr.eq(wy * nxt.in_width + wx),
                                    wr.wdata.eq(Cat(*(pool_acc[c][:nxt.x_bits]
                                                     for c in range(lp.out_channels)))),
                                    wr.wen.eq(1),
                                ]
                    m.d.sync += [s.eq(0) for s in pool_acc]
                m.d.sync += [group.eq(0), dy.eq(0), dx.eq(0)]
                with m.If(last_window | cur["is_fc"]):
                    m.next = "LAYER_DONE"
                with m.Else():
                    with m.If(wx == cur["win_w"] - 1):
                        m.d.sync += [wx.eq(0), wy.eq(wy + 1)]
                    with m.Else():
                        m.d.sync += wx.eq(wx + 1)
                    m.next = "POSITION"

            with m.State("LAYER_DONE"):
                with m.If(cur["is_fc"]):
                    with m.If(step == p.timesteps - 1):
                        m.d.sync += group.eq(0)
                        m.next = "LOGITS"
                    with m.Else():
                        m.d.sync += step.eq(step + 1)
                        m.next = "LOAD"
                with m.Else():
                    m.d.sync += layer.eq(layer + 1)
                    start_layer()
                    m.next = "POSITION"

            with m.State("LOGITS"):            # one record per group of the classifier
                m.d.comb += [self.record.valid.eq(1), rec.kind.eq(KIND_LOGITS)]
                with m.Switch(group):
                    for g in range(fc.groups):
                        with m.Case(g):
                            for j in range(L):
                                c = g * L + j
                                if c < fc.out_channels:
                                    m.d.comb += rec.data[j * LW:(j + 1) * LW].eq(logits[c])
                with m.If(self.record.ready):
                    with m.If(group == fc.groups - 1):
                        m.d.sync += [step.eq(0), group.eq(0)]
                        m.next = "LOAD"
                    with m.Else():
                        m.d.sync += group.eq(group + 1)

        return m
