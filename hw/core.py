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
                            acc[j] += s * (x << (K - k))  in all lanes      (1 cycle)
                    neuron units compare acc with the thresholds;
                    membrane_sram is updated; a record is emitted       (record stream)
                    the spikes go into the window's pooled counts and the layer's signature
                write the window's pooled spike counts into act_sram[l+1]
            spiking layer: emit its signature record (CRC-32, spike count)
    emit the logits                                               (record stream)

Zero inputs cost nothing: a find-first-set over the word's nonzero bitmap issues only
nonzero channels, and the next tap's word is read while the current one is issued, so a
tap costs max(1, nonzero inputs) cycles. With ``CoreParams.skipping`` off the same
scheduler visits every position and group and issues every channel of every tap (zeros and
padding included); masked neurons still neither update nor spike, so results are the same.

Activation words are stored as bit planes (bit k of channel c at k * C + c): the nonzero map
of a word is the OR of its planes and the pooled counts are added as carry-save planes,
which keeps the logic word-parallel (small and fast in Verilator).
"""
from types import SimpleNamespace

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .channel_gate import ChannelGateLanes
from .logic import LayerConstants, tree_sum
from .neuron_unit import NeuronUnit
from .packer import WindowPacker
from .param_loader import ParamLoader
from .params import CoreParams, bits_for
from .protocol import (KIND_CURRENT, KIND_LOGITS, KIND_SIGNATURE, KIND_SPIKES, PRELOADED,
                       param_fields, record_fields)
from .pot_shift_add import PotShiftAdd
from .pool_counter import PoolCounter
from .signature_unit import SignatureUnit
from .sram import Sram
from .tap_issue import TapIssue


class SnnCore(wiring.Component):
    """A generated core for one network shape (see :class:`hw.params.CoreParams`).

    Parameters
    ----------
    params : CoreParams
        Shape, widths, memory map, ``skipping``.
    init_files : dict, optional
        SRAM instance name -> image file (``$readmemh``) the memory starts from
        (``hw.memory_image``); memories not named start undefined.

    Members
    -------
    frame : In(stream.Signature(C_in * input_bits))
        Input values of one position per transfer, raster order, channel c at bits
        [c*bits, (c+1)*bits); ``H*W`` transfers per step, T steps per inference.
    param : In(stream.Signature(param layout))
        Parameter loading (weights, thresholds, channel and position masks); always ready,
        each transfer written one cycle after it is taken. Use only between inferences.
    record : Out(stream.Signature(record layout))
        Kind 0: spikes and next membranes of one computed (layer, step, position, group),
        for the layers selected by ``spike_records``; kind 3: the signature of each
        spiking layer at each step (CRC-32 of its spike bits, spike count); kind 1: the
        classifier's currents per step; kind 2: the logits at the end. Honours
        backpressure: the core waits while ``record.ready`` is low.
    spike_records : In(spiking layers)
        Bit l set: layer l emits its kind-0 records (full-record mode); clear: only its
        signatures. Sampled when an inference starts (its first frame word): a change
        during an inference takes effect at the next.
    busy : Out(1)
        An inference is in progress.

    The reset port acts one cycle late (it is registered). Cycle costs: docs/HARDWARE.md.
    """

    def __init__(self, params: CoreParams, init_files: dict | None = None):
        self.p = params
        self.init_files = dict(init_files or {})
        self.record_layout = data.StructLayout(dict(record_fields(params)))
        self.param_layout = data.StructLayout(dict(param_fields(params)))
        super().__init__({
            "frame": In(stream.Signature(params.input_channels * params.input_bits)),
            "param": In(stream.Signature(self.param_layout)),
            "record": Out(stream.Signature(self.record_layout)),
            "spike_records": In(len(params.spiking_layers)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        # The core runs in a domain whose reset is the port's, registered once (a reset
        # synchronizer stage): no register's next state then depends on a port directly,
        # which lets simulators evaluate it once per clock edge instead of at every input
        # event. The reset takes effect, and is released, one cycle after the port's.
        m.domains.core = core_domain = ClockDomain("core", local=True)
        reset_q = Signal(init=1, reset_less=True)
        m.d.sync += reset_q.eq(ResetSignal("sync"))
        m.d.comb += [core_domain.clk.eq(ClockSignal("sync")), core_domain.rst.eq(reset_q)]
        L, b, W = p.lanes, p.weight_bits, p.acc_width
        XB, CIN = p.max_x_bits, p.max_issue_width   # CIN: inputs of the widest fetched word
        TLW = p.threshold_lane_width
        n_layers = len(p.layers)
        unknown = set(self.init_files) - set(PRELOADED)
        if unknown:
            raise ValueError(f"init_files: no preloadable memory named {sorted(unknown)}")

        # ---------------- memories ----------------
        def sram(name, width, depth, granularity=None, broadcast=False):
            return Sram(name, width=width, depth=max(1, depth), granularity=granularity,
                        init_file=self.init_files.get(name), broadcast=broadcast).add_to(m)

        # Two weight banks, the even and the odd groups of each packing window, read together.
        weight_banks = [sram("weight_sram_even", L * b, p.weight_depth),
                        sram("weight_sram_odd", L * b, p.weight_depth_odd)]
        # Thresholds are loaded one lane at a time: one lane of data, fanned out.
        thresholds = sram("threshold_sram", L * TLW, p.group_depth, TLW, broadcast=True)
        channel_masks = sram("channel_mask_sram", L, p.group_depth)
        position_masks = sram("position_mask_sram", 1, p.position_depth)
        if p.spatial_pruning:
            importances = sram("importance_sram", p.importance_width, p.position_depth)
        membranes = sram("membrane_sram", L * p.membrane_bits, p.membrane_depth)
        # A window-fetch layer's input map is held once per kernel tap, every copy written
        # together and each read at its own tap's address (docs/HARDWARE.md, "Window fetch");
        # its entry in `acts` is then only the shared write port.
        acts, act_copies = [], {}
        for lp in p.layers:
            if lp.window_fetch:
                copies = [sram(f"act_sram{lp.index}_tap{k}", lp.act_width, lp.act_depth)
                          for k in range(lp.taps)]
                port = SimpleNamespace(waddr=Signal.like(copies[0].waddr),
                                       wdata=Signal.like(copies[0].wdata),
                                       wen=Signal.like(copies[0].wen))
                m.d.comb += [s for c in copies for s in (c.waddr.eq(port.waddr),
                                                         c.wdata.eq(port.wdata),
                                                         c.wen.eq(port.wen))]
                act_copies[lp.index] = copies
                acts.append(port)
            else:
                acts.append(sram(f"act_sram{lp.index}", lp.act_width, lp.act_depth))
        MB = p.membrane_bits
        pruning = p.spatial_pruning or p.channel_gating
        PW, GW, EW = p.prior_width, p.gate_width, p.importance_width
        if p.channel_gating:
            priors = sram("prior_sram", L * PW, p.prior_depth)
            gate_weights = sram("gate_weight_sram", L * 2, p.gate_weight_depth)
            gate_thresholds = sram("gate_threshold_sram", L * GW, p.gate_group_depth, GW,
                                   broadcast=True)

        # ---------------- parameter loading ----------------
        # Transfers are registered and written a cycle later, so that nothing depends on the
        # port combinationally (simulators re-evaluate such logic at every input event).
        loader = ParamLoader(layout=self.param_layout, lanes=L)
        m.submodules.param_loader = DomainRenamer("core")(loader)
        m.d.comb += [loader.param.valid.eq(self.param.valid),
                     loader.param.payload.eq(self.param.payload),
                     self.param.ready.eq(loader.param.ready)]
        for bank, mem in enumerate(weight_banks):     # weight transfer address: 2 * word + bank
            m.d.comb += [mem.waddr.eq(loader.addr[1:]), mem.wdata.eq(loader.data),
                         mem.wen.eq(loader.weights[bank])]
        m.d.comb += [
            thresholds.waddr.eq(loader.addr), thresholds.wdata.eq(loader.data[:TLW]),
            thresholds.wen.eq(loader.thresholds),
            channel_masks.waddr.eq(loader.addr), channel_masks.wdata.eq(loader.data),
            channel_masks.wen.eq(loader.channel_mask),
            position_masks.waddr.eq(loader.addr), position_masks.wdata.eq(loader.data),
            position_masks.wen.eq(loader.position_mask),
        ]
        # Per layer: the spatial threshold theta_s and whether the layer's gate is in use.
        # Parameters like the SRAM contents: a reset leaves them loaded.
        spatial_theta = [Signal(signed(EW), name=f"spatial_theta{lp.index}", reset_less=True)
                         for lp in p.spiking_layers]
        gate_on = [Signal(name=f"gate_on{lp.index}", reset_less=True) for lp in p.spiking_layers]
        if pruning:
            with m.If(loader.layer_pruning):
                for lp in p.spiking_layers:
                    with m.If(loader.addr == lp.index):
                        m.d.core += [spatial_theta[lp.index].eq(loader.data[:EW].as_signed()),
                                     gate_on[lp.index].eq(loader.data[EW])]
        if p.channel_gating:
            m.d.comb += [
                gate_weights.waddr.eq(loader.addr), gate_weights.wdata.eq(loader.data),
                gate_weights.wen.eq(loader.gate_weights),
                gate_thresholds.waddr.eq(loader.addr),
                gate_thresholds.wdata.eq(loader.data[:GW]),
                gate_thresholds.wen.eq(loader.gate_thresholds),
            ]

        # ---------------- scheduler state ----------------
        layer = Signal(bits_for(n_layers))
        step = Signal(bits_for(p.timesteps))
        first_step = Signal()
        m.d.comb += first_step.eq(step == 0)
        DB = bits_for(p.max_dim + 1)               # a map height or width, 0 .. max_dim
        wy, wx = Signal(DB), Signal(DB)            # pool window (= position of the next layer)
        dy, dx = Signal(1), Signal(1)              # position inside the window
        group = Signal(bits_for(p.max_groups + 1))    # reaches `groups` in a one-group window
        pos_live = Signal()                        # position mask bit (always 1 when skipping)
        in_addr = Signal(bits_for(p.input_height * p.input_width))
        # Bit planes of a word: plane k holds bit k of every channel; it is only as wide as
        # the widest layer whose inputs have more than k bits.
        plane_width = [max(lp.issue_width for lp in p.layers if lp.x_bits > k) for k in range(XB)]
        # Tap fetch and issue (hw.tap_issue): fetch pointer (ky, kx) -> one input-word read
        # in flight -> the word whose nonzero channels are being issued (ACCUMULATE).
        tap_issue = TapIssue(channels=CIN, plane_widths=plane_width, max_taps=p.max_taps,
                             max_kernel=p.max_kernel, skipping=p.skipping)
        m.submodules.tap_issue = DomainRenamer("core")(tap_issue)
        ky, kx = tap_issue.ky, tap_issue.kx

        # Per-layer constants, selected by `layer` (driven at the end of elaborate: only
        # those read exist).
        cur = LayerConstants(p.layers, {
            "in_h": (16, lambda lp: lp.in_height),
            "in_w": (16, lambda lp: lp.in_width),
            "out_w": (16, lambda lp: lp.out_width),
            "win_h": (16, lambda lp: lp.out_height // lp.pool),
            "win_w": (16, lambda lp: lp.out_width // lp.pool),
            "kw": (bits_for(p.max_kernel + 1), lambda lp: lp.kernel[1]),
            "pad": (8, lambda lp: lp.padding),
            "pool2": (1, lambda lp: int(lp.pool == 2)),
            "groups": (16, lambda lp: lp.groups),
            "taps": (16, lambda lp: lp.taps),
            "cin": (16, lambda lp: lp.in_channels),
            "cin_mask": (CIN, lambda lp: (1 << lp.in_channels) - 1),
            "x_mask": (XB, lambda lp: (1 << lp.x_bits) - 1),
            "is_fc": (1, lambda lp: int(lp.kind == "fc")),
            "w_base": (32, lambda lp: lp.weight_base),
            "w_base_odd": (32, lambda lp: lp.weight_base_odd),
            "g_base": (32, lambda lp: lp.group_base),
            "m_base": (32, lambda lp: lp.membrane_base),
            "p_base": (32, lambda lp: lp.position_base),
            "r_base": (32, lambda lp: lp.prior_base),
            "prev_r_base": (32, lambda lp: p.layers[lp.index - 1].prior_base if lp.index else 0),
            "gw_base": (32, lambda lp: lp.gate_weight_base),
            "gg_base": (32, lambda lp: lp.gate_group_base),
            "gated": (1, lambda lp: int(lp.gated)),
            "cout": (16, lambda lp: lp.out_channels),
            "window": (1, lambda lp: int(lp.window_fetch)),
        })
        # Runtime settings of the current layer (loaded, not constant).
        cur_theta = Signal(signed(EW))
        cur_gate_on = Signal()
        with m.Switch(layer):
            for lp in p.spiking_layers:
                with m.Case(lp.index):
                    m.d.comb += [cur_theta.eq(spatial_theta[lp.index]),
                                 cur_gate_on.eq(gate_on[lp.index] & int(lp.gated))]
        # Spatial pruning runs where the threshold can refuse a position (theta_s > -C_out).
        spatial_live = Signal()
        if p.spatial_pruning:
            m.d.comb += spatial_live.eq(~cur["is_fc"] & ~first_step
                                        & (cur_theta > -cur["cout"].as_signed()))

        y, x = Signal(DB), Signal(DB)
        m.d.comb += [
            y.eq(Mux(cur["pool2"], Cat(dy, wy), wy)),
            x.eq(Mux(cur["pool2"], Cat(dx, wx), wx)),
        ]
        pos = Signal(bits_for(p.max_positions))
        m.d.comb += pos.eq(y * cur["out_w"] + x)
        # A tap's input row and column: -padding .. max_dim + max_kernel (ky past the last tap).
        iy = Signal(signed(bits_for(p.max_dim + p.max_kernel + 1) + 1))
        ix = Signal.like(iy)
        m.d.comb += [iy.eq(y + ky - cur["pad"]), ix.eq(x + kx - cur["pad"])]
        tap_inside = (iy >= 0) & (iy < cur["in_h"]) & (ix >= 0) & (ix < cur["in_w"])
        in_pos = Signal(bits_for(max(lp.act_depth for lp in p.layers) + 1))
        m.d.comb += in_pos.eq(iy * cur["in_w"] + ix)

        # Memory addresses follow the scheduler registers; data arrives one cycle later and
        # stays valid while the registers hold. The group's reads (threshold, membrane,
        # channel sum) follow `read_group`: the group itself, or the odd group of the window
        # in the cycle that moves to its NEURON (its reads are then in flight while the even
        # group writes). The position mask is read one position ahead (`mask_pos`): in
        # POSITION_CHECK its bit for the position just entered has arrived.
        read_group = Signal.like(group)
        m.d.comb += read_group.eq(group)
        pos_after = Signal.like(pos)               # the position visited after this one
        with m.If(~cur["pool2"] | ~dx):
            m.d.comb += pos_after.eq(pos + 1)
        with m.Elif(~dy):
            m.d.comb += pos_after.eq(pos + cur["out_w"] - 1)
        with m.Elif(wx == cur["win_w"] - 1):
            m.d.comb += pos_after.eq(pos + 1)
        with m.Else():
            m.d.comb += pos_after.eq(pos + 1 - cur["out_w"])
        mask_pos = Signal.like(pos)                # position 0 in the MASK pass, see MASK_AND
        m.d.comb += mask_pos.eq(pos_after)
        membrane_waddr = Signal.like(membranes.waddr)
        m.d.comb += [
            position_masks.raddr.eq(cur["p_base"] + mask_pos),
            thresholds.raddr.eq(cur["g_base"] + read_group),
            channel_masks.raddr.eq(cur["g_base"] + group),
            membranes.raddr.eq(cur["m_base"] + pos * cur["groups"] + read_group),
            membrane_waddr.eq(cur["m_base"] + pos * cur["groups"] + group),
        ]
        if p.spatial_pruning:
            m.d.comb += importances.raddr.eq(cur["p_base"] + mask_pos)
        if p.channel_gating:
            prior_waddr = Signal.like(priors.waddr)
            m.d.comb += [priors.raddr.eq(cur["r_base"] + read_group),
                         prior_waddr.eq(cur["r_base"] + group)]
        for lp, act in zip(p.layers, acts):
            if not lp.window_fetch:
                m.d.comb += act.raddr.eq(in_pos[:len(act.raddr)])

        # Window fetch: the copies are read one position ahead, like the position mask, so
        # that in POSITION_CHECK the whole window of the position just entered has arrived
        # (the layer's first position's in the MASK pass). `win_y`, `win_x`: that position.
        window_layers = [lp for lp in p.layers if lp.window_fetch]
        in_mask_pass = Signal()
        if window_layers:
            next_wy, next_wx = Signal(DB), Signal(DB)
            with m.If(wx == cur["win_w"] - 1):
                m.d.comb += [next_wy.eq(wy + 1), next_wx.eq(0)]
            with m.Else():
                m.d.comb += [next_wy.eq(wy), next_wx.eq(wx + 1)]
            win_y, win_x = Signal(DB), Signal(DB)
            with m.If(in_mask_pass):
                m.d.comb += [win_y.eq(y), win_x.eq(x)]
            with m.Elif(~cur["pool2"]):
                m.d.comb += [win_y.eq(next_wy), win_x.eq(next_wx)]
            with m.Elif(~dx):
                m.d.comb += [win_y.eq(y), win_x.eq(x + 1)]
            with m.Elif(~dy):
                m.d.comb += [win_y.eq(y + 1), win_x.eq(x - 1)]
            with m.Else():
                m.d.comb += [win_y.eq(Cat(C(0, 1), next_wy)), win_x.eq(Cat(C(0, 1), next_wx))]
            # Per copy: its tap's address and whether the tap is inside the map, the latter
            # registered to meet the read data.
            window_inside = {}
            for lp in window_layers:
                kh, kw = lp.kernel
                inside_q = Signal(lp.taps, name=f"window_inside{lp.index}")
                window_inside[lp.index] = inside_q
                for k, copy in enumerate(act_copies[lp.index]):
                    oy, ox = k // kw - lp.padding, k % kw - lp.padding
                    ty, tx = win_y + oy, win_x + ox        # signed where the offset is
                    inside = (ty < lp.in_height) & (tx < lp.in_width)
                    for t, o in ((ty, oy), (tx, ox)):
                        if o < 0:                          # (unsigned >= 0: a lint warning)
                            inside &= t >= 0
                    m.d.comb += copy.raddr.eq((ty * lp.in_width + tx)[:len(copy.raddr)])
                    m.d.core += inside_q[k].eq(inside)

        # The fetched word's planes (zero above the layer's input bits) and nonzero map: one
        # tap's C_in inputs, or with window fetch every tap's, input (tap, c) at tap * C_in + c.
        fetched = [Signal(w, name=f"fetched_plane{k}") for k, w in enumerate(plane_width)]
        # The window register is only as wide as the window layers' words (zero above).
        window_width = [max([lp.issue_width for lp in window_layers if lp.x_bits > k], default=0)
                        for k in range(XB)]
        window_word = [Signal(w, name=f"window_plane{k}") if w else C(0, 1)  # no 0-bit wires
                       for k, w in enumerate(window_width)]
        with m.Switch(layer):
            for lp, act in zip(p.layers, acts):
                with m.Case(lp.index):
                    n = lp.in_channels
                    if lp.window_fetch:
                        for k in range(lp.x_bits):
                            m.d.comb += fetched[k][:lp.issue_width].eq(Cat(*(
                                copy.rdata[k * n:(k + 1) * n]
                                & Mux(window_inside[lp.index][t], (1 << n) - 1, 0)
                                for t, copy in enumerate(act_copies[lp.index]))))
                    else:
                        m.d.comb += [fetched[k][:n].eq(act.rdata[k * n:(k + 1) * n])
                                     for k in range(lp.x_bits)]
        fetched_nz = Signal(CIN)
        nz = 0
        for plane in fetched:
            nz = nz | plane
        m.d.comb += fetched_nz.eq(nz)
        # The window register: a window-fetch position's word, taken in POSITION_CHECK (the
        # copies' addresses move on to the next position then) for each of its packed groups.
        window_nz = Signal(max(window_width, default=0) or 1)
        in_position_check = Signal()
        word_now = [Mux(in_position_check, f, w) for f, w in zip(fetched, window_word)]
        word_now_nz = Mux(in_position_check, fetched_nz, window_nz)
        m.d.comb += [
            tap_issue.taps.eq(cur["taps"]), tap_issue.kw.eq(cur["kw"]),
            tap_issue.cin_mask.eq(cur["cin_mask"]), tap_issue.x_mask.eq(cur["x_mask"]),
            tap_issue.tap_inside.eq(tap_inside),
            tap_issue.fetched_planes.eq(Cat(*fetched)), tap_issue.fetched_nz.eq(fetched_nz),
            tap_issue.start_planes.eq(Cat(*(f_w[:w] for f_w, w in zip(word_now, plane_width)))),
            tap_issue.start_nz.eq(word_now_nz),
        ]
        is_window = Signal()
        if window_layers:
            m.d.comb += is_window.eq(cur["window"])
            with m.If(in_position_check):
                m.d.core += [w.eq(f) for w, f, n in zip(window_word, fetched, window_width) if n]
                m.d.core += window_nz.eq(fetched_nz)

        # ---------------- synapse lanes ----------------
        lanes = PotShiftAdd(lanes=L, weight_bits=b, max_shift=p.max_shift, x_bits=XB, acc_width=W)
        m.submodules.pot_shift_add = DomainRenamer("core")(lanes)
        ev_valid = Signal()
        ev_x = Signal(XB)
        # Both banks at the window's offset: the codes of (tap, channel) for its two groups.
        weight_offset = Signal(max(len(bank.raddr) for bank in weight_banks))
        m.d.comb += [
            weight_offset.eq((group[1:] * cur["taps"] + tap_issue.tap) * cur["cin"]
                             + tap_issue.channel),
            weight_banks[0].raddr.eq(cur["w_base"] + weight_offset),
            weight_banks[1].raddr.eq(cur["w_base_odd"] + weight_offset),
            lanes.valid.eq(ev_valid), lanes.x.eq(ev_x),
        ]
        m.d.core += ev_valid.eq(0)
        with m.If(tap_issue.issue):
            m.d.core += [ev_valid.eq(1), ev_x.eq(tap_issue.x)]

        # ---------------- channel gate ----------------
        # open_bits[c]: channel c of the current layer is computed this step: its channel mask
        # and, where the layer's gate is in use, the gate (the MASK pass at each layer start).
        OW = max(lp.windows for lp in p.layers) * 2 * L
        open_bits = Signal(OW, init=(1 << OW) - 1)
        gate_c = Signal(bits_for(p.max_in_channels + 1))     # input channel being fed
        gate_feed = Signal()                                 # a fed word arrives this cycle
        gate_feed_lane = Signal(bits_for(L))
        if p.channel_gating:
            gate = ChannelGateLanes(lanes=L, prior_width=PW, z_width=GW)
            m.submodules.channel_gate = DomainRenamer("core")(gate)
            m.d.comb += [
                gate_weights.raddr.eq(cur["gw_base"] + group * cur["cin"] + gate_c),
                gate_thresholds.raddr.eq(cur["gg_base"] + group),
                gate.valid.eq(gate_feed),
                gate.prior.eq(priors.rdata.word_select(gate_feed_lane, PW).as_signed()),
                gate.weights.eq(gate_weights.rdata),
                gate.thresholds.eq(gate_thresholds.rdata),
            ]

        # ---------------- packing (docs/HARDWARE.md, "Dense lanes"; hw.packer) ----------------
        # A window is two consecutive groups (2L channels). `win_cmask`: its channels computed
        # at this position (open bits: mask and gate; position). Scheduled: the channels its
        # packed groups run, cmask itself where packing applies (skipping core, spiking
        # layers), else every valid channel of each live group (the classifier, whose
        # currents are all emitted) or of every group (skipping off).
        packed_k = Signal()
        packer = WindowPacker(lanes=L, weight_bits=b, acc_width=W)
        m.submodules.window_packer = DomainRenamer("core")(packer)
        win_cmask = packer.win_computed
        m.d.comb += [
            packer.k.eq(packed_k), packer.acc.eq(lanes.acc),
            packer.codes.eq(Cat(weight_banks[0].rdata, weight_banks[1].rdata)),
            lanes.codes.eq(packer.lane_codes),
        ]
        # The window's valid channels (those below C_out) and the channels of each half.
        remaining_channels = Signal(signed(bits_for(max(lp.out_channels for lp in p.layers)
                                                    + 2 * L * (p.max_groups + 1)) + 2))
        m.d.comb += remaining_channels.eq(cur["cout"] - group[1:] * (2 * L))
        window_valid = Cat(*(remaining_channels > i for i in range(2 * L)))

        def set_window(position_live):
            """Register the window's channels; start its first packed group, if any."""
            cm = Signal(2 * L, name="window_cmask_next")
            nxt = Signal(2 * L, name="sched_next")
            # Open bits past C_out are another layer's (the MASK pass writes the layer's own).
            m.d.comb += cm.eq(open_bits.word_select(group[1:], 2 * L) & window_valid
                              & Mux(position_live, (1 << 2 * L) - 1, 0))
            if p.skipping:
                live_halves = Cat(Mux(cm[:L].any(), (1 << L) - 1, 0),
                                  Mux(cm[L:].any(), (1 << L) - 1, 0))
                m.d.comb += nxt.eq(Mux(cur["is_fc"], window_valid & live_halves, cm))
            else:
                m.d.comb += nxt.eq(window_valid)
            m.d.comb += [packer.load.eq(1), packer.computed.eq(cm), packer.scheduled.eq(nxt)]
            with m.If(nxt.any()):
                start_pack(0)
            with m.Else():
                m.next = "WIN_EMPTY"

        # ---------------- neuron units ----------------
        spikes = Signal(L)
        q_next = Signal(L * MB)
        cmask = Signal(L)                 # lanes computed in this group: mask, gate, position
        m.d.comb += cmask.eq(win_cmask.word_select(group[0], L))
        group_current = Signal(L * W)
        m.d.comb += group_current.eq(packer.expanded.word_select(group[0], L * W))
        for j in range(L):
            nu = NeuronUnit(membrane=p.membrane, acc_width=W)
            m.submodules[f"neuron_unit{j}"] = nu
            m.d.comb += [
                nu.current.eq(group_current[j * W:(j + 1) * W].as_signed()),
                nu.q_prev.eq(membranes.rdata[j * MB:(j + 1) * MB]),
                nu.first_step.eq(first_step),
                nu.active.eq(cmask[j]),
                nu.thresholds.eq(thresholds.rdata[j * TLW:(j + 1) * TLW]),
                spikes[j].eq(nu.spike),
                q_next[j * MB:(j + 1) * MB].eq(nu.q_next),
            ]
        live = Signal()                            # this (position, group) is computed
        m.d.comb += live.eq(cmask.any())

        # ---------------- membrane prior: importance and channel sums ----------------
        def level(code):
            """A stored membrane code as a signed level (ternary 11 = -1)."""
            if MB == 2:
                return code.as_signed()
            return Cat(code, C(0, 1)).as_signed()

        q_stored = [membranes.rdata[j * MB:(j + 1) * MB] for j in range(L)]
        q_eff = [Mux(first_step, 0, q) for q in q_stored]         # as the neuron units see it
        if p.spatial_pruning:
            # Spatial importance e of every position (sum of its stored levels over all
            # channels, docs/INTEGER_SPEC.md section 5) is kept in importance_sram and follows
            # every membrane write: e += sum(q_new - q_old) per group (NEURON), e = 0 (a pruned
            # position's reset). It is read one position ahead like the mask bit, so the
            # decision costs no cycle; `importance` runs over the position's groups.
            importance = Signal(signed(EW))
            importance_next = Signal(signed(EW))
            m.d.comb += importance_next.eq(importance + tree_sum(
                level(q_next[j * MB:(j + 1) * MB]) - level(q_eff[j]) for j in range(L)))
            stored_importance = importances.rdata.as_signed()

            def write_importance(value):
                m.d.comb += [importances.waddr.eq(cur["p_base"] + pos),
                             importances.wdata.eq(value), importances.wen.eq(1)]
        if p.channel_gating:
            # The channel sums P of the current layer follow every membrane write:
            # P[c] += q_new - q_old (NEURON), P[c] -= q_old (a pruned position's reset).
            prior_words = [priors.rdata[j * PW:(j + 1) * PW].as_signed() for j in range(L)]
            prior_after_update = Signal(L * PW)
            prior_after_reset = Signal(L * PW)
            for j in range(L):
                m.d.comb += [
                    prior_after_update[j * PW:(j + 1) * PW].eq(
                        prior_words[j] + level(q_next[j * MB:(j + 1) * MB]) - level(q_eff[j])),
                    prior_after_reset[j * PW:(j + 1) * PW].eq(prior_words[j] - level(q_stored[j])),
                ]
        prior_clear_addr = Signal(bits_for(max(p.prior_depth, 1) + 1))


        # Pooled spike counts of the current window as carry-save bit planes: plane k holds
        # bit k of every output channel's count (0..pool^2).
        spiking = p.spiking_layers
        MAXC = p.max_out_channels
        PB = max(lp.x_bits for lp in p.layers[1:])
        pool = PoolCounter(channels=MAXC, count_bits=PB)
        m.submodules.pool_counter = DomainRenamer("core")(pool)
        pool_planes = [pool.planes[k * MAXC:(k + 1) * MAXC] for k in range(PB)]
        spikes_at = Signal(MAXC)                   # this group's spikes at its channels
        with m.Switch(group):
            for g in range(max(lp.groups for lp in spiking)):
                with m.Case(g):
                    lo, hi = g * L, min((g + 1) * L, MAXC)
                    m.d.comb += spikes_at[lo:hi].eq(spikes[:hi - lo])

        # Signature of the layer's spike stream at this step and its work counters.
        signature = SignatureUnit(lanes=L, spike_count_width=p.spike_count_width,
                                  event_count_width=p.event_count_width,
                                  synaptic_count_width=p.synaptic_count_width,
                                  update_count_width=p.update_count_width,
                                  synaptic_width=len(packer.synaptic))
        m.submodules.signature = DomainRenamer("core")(signature)
        # An event is counted in the cycle its addition lands (a window-fetch word's first
        # input is issued the cycle after the window's routing is loaded).
        m.d.comb += [signature.spikes.eq(spikes), signature.synaptic.eq(packer.synaptic),
                     signature.event.eq(ev_valid),
                     pool.spikes.eq(spikes_at)]

        # Classifier logits, accumulated over steps.
        fc = p.classifier
        LW = p.logit_width
        logits = [Signal(signed(LW), name=f"logit{c}") for c in range(fc.out_channels)]

        # ---------------- record stream ----------------
        rec = self.record.payload
        m.d.comb += [rec.layer.eq(layer), rec.step.eq(step), rec.pos.eq(pos),
                     rec.group.eq(group)]
        # The classifier always emits; spiking layers as `spike_records` selects (sampled
        # while waiting for a frame, so it is stable over an inference).
        spike_records_q = Signal(len(self.spike_records), init=(1 << len(self.spike_records)) - 1)
        spike_records = Cat(spike_records_q, Const(1, 1))
        emit = Signal()
        m.d.comb += emit.eq(live & (cur["is_fc"] | spike_records.bit_select(layer, 1)))

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
                m.d.core += [dx.eq(~dx), dy.eq(dy ^ dx), group.eq(0)]
                m.next = "POSITION_CHECK"

        # The window's groups after its packed groups: NEURON for a computed group (every
        # group when skipping is off), INIT_ZERO for an uncomputed one at step 0 of a pruning
        # core, nothing otherwise. The odd group's reads (threshold, membrane, channel sum)
        # are presented in the cycle that moves to its NEURON (read_group); the even group's
        # were presented since the window was set up.
        has_odd = Signal()                         # group 2w + 1 exists
        m.d.comb += has_odd.eq(Cat(C(1, 1), group[1:]) < cur["groups"])
        next_window_group = Cat(C(0, 1), group[1:] + 1)
        half_live = [win_cmask[:L].any(), win_cmask[L:].any()]

        def needs_neuron(half):
            return half_live[half] if p.skipping else C(1, 1)

        def needs_zero(half):                      # only where INIT_ZERO exists (pruning)
            return first_step & ~cur["is_fc"] & ~half_live[half]

        def next_window():
            with m.If(next_window_group >= cur["groups"]):
                next_position()
            with m.Else():
                m.d.core += group.eq(next_window_group)
                m.next = "WINDOW"

        def odd_group_or_next_window():            # the even group is done (group = 2w)
            with m.If(has_odd & needs_neuron(1)):
                m.d.comb += read_group.eq(group | 1)
                m.d.core += group.eq(group | 1)
                m.next = "NEURON"
            if pruning:
                with m.Elif(has_odd & needs_zero(1)):
                    m.d.core += group.eq(group | 1)
                    m.next = "INIT_ZERO"
            with m.Else():
                next_window()

        def even_group():                          # the packed groups are done (group = 2w)
            with m.If(needs_neuron(0)):
                m.next = "NEURON"
            if pruning:
                with m.Elif(needs_zero(0)):
                    m.next = "INIT_ZERO"
            with m.Else():
                odd_group_or_next_window()

        def next_group():                          # group is done (NEURON, INIT_ZERO)
            with m.If(group[0]):
                next_window()
            with m.Else():
                odd_group_or_next_window()

        def start_pack(k):
            m.d.comb += [lanes.clear.eq(1), tap_issue.start.eq(1)]
            m.d.core += packed_k.eq(k)
            if window_layers:
                # The whole window is the current word: nothing left to fetch.
                m.d.comb += tap_issue.start_word.eq(is_window)
            m.next = "ACCUMULATE"

        def store_open_word(value_of):
            """Set the current group's open bits to ``value_of(their current value)``."""
            for g in range(p.max_groups):
                with m.If(group == g):
                    word = open_bits[g * L:(g + 1) * L]
                    m.d.core += word.eq(value_of(word))

        def next_group_of_pass(done, again):
            """A per-group pass (gate scoring, MASK): the next group, or ``done`` at group 0."""
            with m.If(last_group):
                m.d.core += group.eq(0)
                m.next = done
            with m.Else():
                m.d.core += group.eq(group + 1)
                m.next = again

        def start_layer():
            m.d.core += [wy.eq(0), wx.eq(0), dy.eq(0), dx.eq(0), group.eq(0)]
            m.d.comb += signature.clear.eq(1)

        m.d.comb += self.busy.eq(1)      # overridden while waiting for a new inference
        with m.FSM(name="scheduler", domain="core") as scheduler:
            with m.State("LOAD"):
                with m.If((step == 0) & (in_addr == 0)):
                    m.d.core += spike_records_q.eq(self.spike_records)
                bits = p.input_bits
                frame_planes = Cat(*(self.frame.payload[c * bits + k]
                                     for k in range(bits) for c in range(p.input_channels)))
                m.d.comb += [self.frame.ready.eq(1),
                             self.busy.eq((step != 0) | (in_addr != 0)),
                             acts[0].waddr.eq(in_addr), acts[0].wdata.eq(frame_planes),
                             acts[0].wen.eq(self.frame.valid)]
                with m.If(self.frame.valid):
                    m.d.core += in_addr.eq(in_addr + 1)
                    with m.If(in_addr == p.input_height * p.input_width - 1):
                        m.d.core += [in_addr.eq(0), layer.eq(0)]
                        start_layer()
                        if p.channel_gating:
                            with m.If(first_step):
                                m.d.core += prior_clear_addr.eq(0)
                                m.next = "PRIOR_CLEAR"
                            with m.Else():
                                m.next = "LAYER_START"
                        elif pruning:
                            m.next = "LAYER_START"
                        else:
                            m.next = "MASK_ADDR"

            if p.channel_gating:
                with m.State("PRIOR_CLEAR"):   # the channel sums start at 0 each inference
                    m.d.comb += [priors.waddr.eq(prior_clear_addr), priors.wdata.eq(0),
                                 priors.wen.eq(1)]
                    m.d.core += prior_clear_addr.eq(prior_clear_addr + 1)
                    with m.If(prior_clear_addr == p.prior_depth - 1):
                        m.next = "LAYER_START"

            if pruning:
                with m.State("LAYER_START"):   # `layer` now selects the new layer's constants
                    m.next = "MASK_ADDR"
                    if p.channel_gating:
                        with m.If(cur_gate_on):
                            m.d.core += group.eq(0)
                            m.next = "GATE_CLEAR"

            if p.channel_gating:
                gate_lane = Signal(bits_for(L))
                gate_word = Signal(bits_for(p.max_groups + 1))

                with m.State("GATE_CLEAR"):    # score one group of L output channels
                    m.d.comb += gate.clear.eq(1)
                    m.d.core += [gate_c.eq(0), gate_lane.eq(0), gate_word.eq(0)]
                    m.next = "GATE_FEED"

                with m.State("GATE_FEED"):
                    # Present input channel gate_c's gate word and prior word; they are added
                    # next cycle. The last add lands the cycle after gate_c reaches C_in.
                    m.d.comb += priors.raddr.eq(cur["prev_r_base"] + gate_word)
                    with m.If(gate_c < cur["cin"]):
                        m.d.core += [gate_feed.eq(1), gate_feed_lane.eq(gate_lane),
                                     gate_c.eq(gate_c + 1)]
                        with m.If(gate_lane == L - 1):
                            m.d.core += [gate_lane.eq(0), gate_word.eq(gate_word + 1)]
                        with m.Else():
                            m.d.core += gate_lane.eq(gate_lane + 1)
                    with m.Else():
                        m.d.core += gate_feed.eq(0)
                        m.next = "GATE_STORE"

                with m.State("GATE_STORE"):    # scores complete: keep the group's open bits
                    store_open_word(lambda word: gate.open)
                    next_group_of_pass("MASK_ADDR", "GATE_CLEAR")

            # MASK pass: the layer's channel masks into its open bits, one group per two
            # cycles (ANDed with the gates' open bits where the layer's gate is in use).
            with m.State("MASK_ADDR"):         # channel-mask address of the group presented
                m.next = "MASK_AND"

            with m.State("MASK_AND"):
                # The layer's first position is the one POSITION_CHECK enters after the pass.
                m.d.comb += [mask_pos.eq(0), in_mask_pass.eq(1)]
                store_open_word(lambda word: channel_masks.rdata
                                & Mux(cur_gate_on, word, (1 << L) - 1))
                with m.If(cur["is_fc"]):
                    next_group_of_pass("POSITION", "MASK_ADDR")
                with m.Else():
                    next_group_of_pass("POSITION_CHECK", "MASK_ADDR")

            with m.State("POSITION"):          # the classifier's one position
                m.d.core += pos_live.eq(1)
                m.next = "WINDOW"

            with m.State("POSITION_CHECK"):    # the position's mask bit has arrived
                m.d.comb += in_position_check.eq(1)
                m.d.core += pos_live.eq(position_masks.rdata[0])
                if p.skipping:
                    with m.If(position_masks.rdata[0]):
                        if p.spatial_pruning:
                            m.d.core += importance.eq(Mux(first_step, 0, stored_importance))
                            with m.If(spatial_live & (stored_importance < cur_theta)):
                                m.next = "PRUNE_WRITE"   # group 0's word was presented
                            with m.Else():
                                set_window(1)
                        else:
                            set_window(1)
                    with m.Else():
                        next_position()
                else:
                    set_window(position_masks.rdata[0])

            if p.spatial_pruning:
                # Below theta_s the position is pruned: its membranes are reset to 0 and
                # nothing is accumulated.
                with m.State("PRUNE_ADDR"):
                    m.next = "PRUNE_WRITE"

                with m.State("PRUNE_WRITE"):
                    m.d.comb += [membranes.waddr.eq(membrane_waddr), membranes.wdata.eq(0),
                                 membranes.wen.eq(1)]
                    write_importance(0)
                    if p.channel_gating:
                        m.d.comb += [priors.waddr.eq(prior_waddr),
                                     priors.wdata.eq(prior_after_reset), priors.wen.eq(1)]
                    with m.If(last_group):
                        next_position()
                    with m.Else():
                        m.d.core += group.eq(group + 1)
                        m.next = "PRUNE_ADDR"

            # A window: its computed channels and their routing, then its packed groups,
            # then its groups' updates.
            with m.State("WINDOW"):
                set_window(pos_live)

            with m.State("WIN_EMPTY"):         # no channel to run: only the groups' updates
                even_group()

            if pruning:
                with m.State("INIT_ZERO"):
                    m.d.comb += [membranes.waddr.eq(membrane_waddr), membranes.wdata.eq(0),
                                 membranes.wen.eq(1)]
                    if p.spatial_pruning:
                        write_importance(importance)
                    next_group()

            with m.State("ACCUMULATE"):
                # One nonzero input of the current word to all lanes per cycle (hw.tap_issue):
                # a tap costs max(1, nonzero inputs) cycles; taps outside the map cost 1.
                # Skipping off: every channel of every tap is issued (C_in cycles per tap).
                m.d.comb += tap_issue.run.eq(1)
                with m.If(tap_issue.done):
                    m.next = "DRAIN"

            with m.State("DRAIN"):             # the last event's add lands this cycle
                # The window's last packed group goes straight to the updates, which read
                # its currents unregistered (packer.expanded); a first of two is kept.
                with m.If(~packed_k & packer.second):
                    m.next = "EXPAND"
                with m.Else():
                    even_group()

            with m.State("EXPAND"):            # packed group 0's currents kept; run group 1
                m.d.comb += packer.expand.eq(1)
                start_pack(1)

            with m.State("NEURON"):
                m.d.comb += self.record.valid.eq(emit)
                with m.If(cur["is_fc"]):
                    m.d.comb += rec.kind.eq(KIND_CURRENT)
                    for j in range(L):
                        m.d.comb += rec.data[j * LW:(j + 1) * LW].eq(
                            group_current[j * W:(j + 1) * W].as_signed())
                with m.Else():
                    m.d.comb += [rec.kind.eq(KIND_SPIKES),
                                 rec.data[:L].eq(spikes), rec.data[L:L * (1 + MB)].eq(q_next)]
                with m.If(self.record.ready | ~emit):
                    m.d.comb += [membranes.waddr.eq(membrane_waddr), membranes.wdata.eq(q_next),
                                 membranes.wen.eq(live & ~cur["is_fc"])]
                    if p.channel_gating:
                        m.d.comb += [priors.waddr.eq(prior_waddr),
                                     priors.wdata.eq(prior_after_update),
                                     priors.wen.eq(live & ~cur["is_fc"])]
                    with m.If(live & ~cur["is_fc"]):
                        m.d.comb += [pool.add.eq(1), signature.update.eq(1)]
                        if p.spatial_pruning:
                            write_importance(importance_next)
                            m.d.core += importance.eq(importance_next)
                    with m.If(live & cur["is_fc"]):
                        for c in range(fc.out_channels):
                            j = c % L
                            bias = thresholds.rdata[j * TLW:j * TLW + W].as_signed()
                            base = Mux(first_step, 0, logits[c])
                            with m.If((group == c // L) & cmask[j]):
                                m.d.core += logits[c].eq(
                                    base + group_current[j * W:(j + 1) * W].as_signed() + bias)
                    next_group()

            with m.State("POOL_WRITE"):        # close the window
                with m.If(~cur["is_fc"]):
                    with m.Switch(layer):
                        for lp in spiking:
                            nxt = p.layers[lp.index + 1]
                            with m.Case(lp.index):
                                wr = acts[lp.index + 1]
                                m.d.comb += [
                                    wr.waddr.eq(wy * nxt.in_width + wx),
                                    wr.wdata.eq(Cat(*(pool_planes[k][:lp.out_channels]
                                                      for k in range(nxt.x_bits)))),
                                    wr.wen.eq(1),
                                ]
                    m.d.comb += pool.clear.eq(1)
                m.d.core += [group.eq(0), dy.eq(0), dx.eq(0)]
                with m.If(last_window | cur["is_fc"]):
                    m.next = "LAYER_DONE"
                with m.Else():
                    with m.If(wx == cur["win_w"] - 1):
                        m.d.core += [wx.eq(0), wy.eq(wy + 1)]
                    with m.Else():
                        m.d.core += wx.eq(wx + 1)
                    m.next = "POSITION_CHECK"

            with m.State("LAYER_DONE"):
                with m.If(cur["is_fc"]):
                    with m.If(step == p.timesteps - 1):
                        m.d.core += group.eq(0)
                        m.next = "LOGITS"
                    with m.Else():
                        m.d.core += step.eq(step + 1)
                        m.next = "LOAD"
                with m.Else():
                    # The layer's signature at this step, then the next layer.
                    m.d.comb += [self.record.valid.eq(1), rec.kind.eq(KIND_SIGNATURE),
                                 rec.pos.eq(0), rec.group.eq(0),
                                 rec.data.eq(signature.fields)]
                    with m.If(self.record.ready):
                        m.d.core += layer.eq(layer + 1)
                        start_layer()
                        m.next = "LAYER_START" if pruning else "MASK_ADDR"

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
                        m.d.core += [step.eq(0), group.eq(0)]
                        m.next = "LOAD"
                    with m.Else():
                        m.d.core += group.eq(group + 1)

        # The scheduler's counters, for hw.formal (its harnesses elaborate the core to
        # constrain and check them); nothing in the design reads this.
        self.scheduler_counters = SimpleNamespace(layer=layer, step=step, wy=wy, wx=wx, dy=dy,
                                                  dx=dx, group=group, cur=cur,
                                                  ongoing=scheduler.ongoing)
        cur.drive(m, layer)
        return m
