"""The core's stream protocol in one place: word layouts, the one word packer, the decoder.

Everything that turns parameters or inputs into words for the core, or the core's records
back into numbers, is here; the generator (hw.core) takes its port layouts from the same
field lists (docs/HARDWARE.md, "Streams").

- Layouts: :func:`param_fields` (the parameter stream), :func:`record_fields` (the record
  stream), :func:`signature_fields` (a signature record's data); :func:`pack_fields` and
  :func:`unpack_fields` convert between a word and its fields.
- Parameter words: :func:`layer_memory_fields` lays one layer's parameters out as the words
  of each preloadable SRAM, in hw.params' memory map. The memory images
  (hw.memory_image) and the streamed loader (:func:`param_transfers`) are both built from
  it, so the two cannot disagree.
- Inputs: :func:`frame_words`, one step's input as the frame stream's words.
- Records: :class:`RecordDecoder` accumulates one inference's records into golden-shaped
  arrays, noting duplicates and out-of-range records.

NumPy only (no Amaranth): the testbench and the image writer import it.
"""
from __future__ import annotations

import numpy as np

from .params import PACK_GROUPS, SIGNATURE_CRC_WIDTH, CoreParams, LayerPlan, bits_for

# Parameter-load targets (param_in.payload.target).
(TARGET_WEIGHTS, TARGET_THRESHOLDS, TARGET_CHANNEL_MASK, TARGET_POSITION_MASK,
 TARGET_LAYER_PRUNING, TARGET_GATE_WEIGHTS, TARGET_GATE_THRESHOLDS) = range(7)
# Output-record kinds (out.payload.kind).
KIND_SPIKES, KIND_CURRENT, KIND_LOGITS, KIND_SIGNATURE = range(4)
# The core's work counters per (layer, step), in golden.step_work's names, as a signature
# record carries them.
COUNTERS = ("events", "synaptic_ops", "neuron_updates")
# The SRAMs that can start from image files, and the parameter targets that write them;
# runtime-pruning settings always stream.
PRELOADED = ("weight_sram_even", "weight_sram_odd", "threshold_sram", "channel_mask_sram",
             "position_mask_sram")
PRELOADED_TARGETS = (TARGET_WEIGHTS, TARGET_THRESHOLDS, TARGET_CHANNEL_MASK, TARGET_POSITION_MASK)
# A gate weight in {-1, 0, 1} as its 2-bit lane field.
_GATE_CODE = {0: 0b00, 1: 0b01, -1: 0b11}


# --- layouts ---------------------------------------------------------------------------

def record_fields(p: CoreParams) -> list:
    """Output record fields, LSB first: (name, width)."""
    return [("kind", 2), ("layer", bits_for(len(p.layers))), ("step", bits_for(p.timesteps)),
            ("pos", bits_for(p.max_positions)), ("group", bits_for(p.max_groups)),
            ("data", p.record_data_width)]


def param_fields(p: CoreParams) -> list:
    """Parameter-load fields, LSB first: (name, width)."""
    return [("target", 3), ("addr", p.param_addr_width), ("lane", bits_for(p.lanes)),
            ("data", p.param_data_width)]


def signature_fields(p: CoreParams) -> list:
    """Fields of a signature record's data, LSB first: (name, width)."""
    return [("crc", SIGNATURE_CRC_WIDTH), ("spikes", p.spike_count_width),
            ("events", p.event_count_width), ("synaptic_ops", p.synaptic_count_width),
            ("neuron_updates", p.update_count_width)]


def pack_fields(fields, **values) -> int:
    """Fields -> one word; each value is truncated to its field's width."""
    word, off = 0, 0
    for name, width in fields:
        v = values.get(name, 0)
        word |= (v & ((1 << width) - 1)) << off
        off += width
    return word


def unpack_fields(fields, word: int) -> dict:
    """One word -> {field name: unsigned value}."""
    out, off = {}, 0
    for name, width in fields:
        out[name] = (word >> off) & ((1 << width) - 1)
        off += width
    return out


def twos(v, width: int):
    """Two's complement of ``v`` in ``width`` bits (int or array; arrays come back uint64)."""
    if isinstance(v, np.ndarray):
        return (v.astype(np.int64) & ((1 << width) - 1)).astype(np.uint64)
    return int(v) & ((1 << width) - 1)


def signed(v: int, width: int) -> int:
    """A ``width``-bit two's complement field as a Python int."""
    return v - (1 << width) if v >> (width - 1) else v


# --- parameter words -------------------------------------------------------------------

def _pad_channels(a: np.ndarray, channels: int) -> np.ndarray:
    """Pad axis 0 with zeros to ``channels`` (a group's padding lanes)."""
    return np.pad(a, [(0, channels - a.shape[0])] + [(0, 0)] * (a.ndim - 1))


def layer_memory_fields(p: CoreParams, lp: LayerPlan, le) -> dict:
    """One layer's words in each preloadable SRAM: {sram: (fields [words, F] uint64, field
    width)}, word ``a`` being ``sum_i fields[a, i] << (i * field width)``; lane j of group g
    is channel ``g * lanes + j``, padding lanes 0.

    - ``weight_sram_even`` / ``weight_sram_odd``: the even / odd groups' weights, address
      order (window of two groups, tap, input channel), one b-bit code per lane;
    - ``threshold_sram``: one word per group, each lane F, P, N per membrane level in
      W bits (the classifier: its bias in the first field);
    - ``channel_mask_sram``: one bit per lane, a word per group;
    - ``position_mask_sram``: a bit per output position, raster order (spiking layers).
    """
    L, W, n = p.lanes, p.acc_width, lp.groups * p.lanes
    codes = _pad_channels(le.w_code.reshape(le.out_channels, le.in_channels, lp.taps), n)
    codes = codes.reshape(lp.groups, L, lp.in_channels, lp.taps).transpose(0, 3, 2, 1)
    if lp.kind == "conv":
        lane = twos(le.thresholds.reshape(le.out_channels, -1), W)
    else:
        lane = np.zeros((le.out_channels, p.levels * 3), np.uint64)
        lane[:, 0] = twos(le.bias, W)
    words = codes.reshape(lp.groups, -1, L).astype(np.uint64)       # [groups, taps * C_in, L]
    out = {
        "weight_sram_even": (words[0::PACK_GROUPS].reshape(-1, L), p.weight_bits),
        "weight_sram_odd": (words[1::PACK_GROUPS].reshape(-1, L), p.weight_bits),
        "threshold_sram": (_pad_channels(lane, n).reshape(lp.groups, -1), W),
        "channel_mask_sram": (_pad_channels(le.channel_mask.astype(np.uint64), n)
                              .reshape(lp.groups, L), 1),
    }
    if lp.kind == "conv":
        out["position_mask_sram"] = (le.position_mask.reshape(-1, 1).astype(np.uint64), 1)
    return out


def memory_fields(p: CoreParams, net) -> dict:
    """Every preloadable SRAM's words for an export: {sram: (fields, field width)}, the
    layers' :func:`layer_memory_fields` in address order."""
    p.check_export(net)
    per_layer = [layer_memory_fields(p, lp, le) for lp, le in zip(p.layers, net.layers)]
    out = {}
    for name in PRELOADED:
        parts = [fields[name] for fields in per_layer if name in fields]
        out[name] = (np.concatenate([f for f, _ in parts]), parts[0][1])
    return out


def pack_row(fields: np.ndarray, width: int) -> int:
    """One row of fields -> the word (field i at bit i * width)."""
    word = 0
    for i, f in enumerate(fields):
        word |= int(f) << (i * width)
    return word


def param_transfers(p: CoreParams, net) -> list[int]:
    """Packed param-stream payloads that load every parameter memory word (padding lanes
    too), layer by layer: per group its weights, per-lane thresholds and channel mask; then
    the layer's position masks and its runtime-pruning settings."""
    p.check_export(net)
    fields, L = param_fields(p), p.lanes
    out = []
    for lp, le in zip(p.layers, net.layers):
        mem = layer_memory_fields(p, lp, le)
        banks = (mem["weight_sram_even"][0], mem["weight_sram_odd"][0])
        wb = p.weight_bits
        (thresholds, tw), (cmasks, _) = mem["threshold_sram"], mem["channel_mask_sram"]
        per_group = lp.taps * lp.in_channels
        lane_fields = thresholds.shape[1] // L
        for g in range(lp.groups):
            bank, base = lp.weight_addr(g, 0, 0)
            offset = base - (lp.weight_base_odd if bank else lp.weight_base)
            for a in range(per_group):
                out.append(pack_fields(fields, target=TARGET_WEIGHTS, addr=2 * (base + a) + bank,
                                       data=pack_row(banks[bank][offset + a], wb)))
            for j in range(L):
                lane = thresholds[g, j * lane_fields:(j + 1) * lane_fields]
                out.append(pack_fields(fields, target=TARGET_THRESHOLDS, addr=lp.group_base + g,
                                       lane=j, data=pack_row(lane, tw)))
            out.append(pack_fields(fields, target=TARGET_CHANNEL_MASK, addr=lp.group_base + g,
                                   data=pack_row(cmasks[g], 1)))
        if lp.kind == "conv":
            for i, (bit,) in enumerate(mem["position_mask_sram"][0]):
                out.append(pack_fields(fields, target=TARGET_POSITION_MASK,
                                       addr=lp.position_base + i, data=int(bit)))
            out += _pruning_transfers(p, lp, le, fields)
    return out


def _pruning_transfers(p: CoreParams, lp: LayerPlan, le, fields) -> list[int]:
    """Runtime-pruning parameters of one spiking layer (none when the core has no pruning).

    An export without them loads the "off" values: theta_s = -C_out (keeps every position)
    and the gate unused.
    """
    if not (p.spatial_pruning or p.channel_gating):
        return []
    L, EW, GW = p.lanes, p.importance_width, p.gate_width
    theta = int(le.spatial_threshold[0]) if le.spatial_pruning else -lp.out_channels
    out = [pack_fields(fields, target=TARGET_LAYER_PRUNING, addr=lp.index,
                       data=twos(theta, EW) | (int(le.gated) << EW))]
    if not (lp.gated and le.gated):
        return out
    for g in range(lp.groups):
        chans = range(g * L, min((g + 1) * L, lp.out_channels))
        for ci in range(lp.in_channels):
            word = 0
            for j, c in enumerate(chans):
                word |= _GATE_CODE[int(le.gate_weights[c, ci])] << (2 * j)
            out.append(pack_fields(fields, target=TARGET_GATE_WEIGHTS,
                                   addr=lp.gate_weight_base + g * lp.in_channels + ci, data=word))
        for j in range(L):
            c = g * L + j
            theta_g = int(le.gate_thresholds[c]) if c < lp.out_channels else 0
            out.append(pack_fields(fields, target=TARGET_GATE_THRESHOLDS,
                                   addr=lp.gate_group_base + g, lane=j, data=twos(theta_g, GW)))
    return out


def frame_words(p: CoreParams, x_step: np.ndarray) -> list[int]:
    """Input [C, H, W] of one step -> one word per position, raster order, channel c's
    value at bits [c * input_bits, (c + 1) * input_bits)."""
    C, H, Wd = x_step.shape
    bits = p.input_bits
    words = []
    for y in range(H):
        for x in range(Wd):
            w = 0
            for c in range(C):
                w |= int(x_step[c, y, x]) << (c * bits)
            words.append(w)
    return words


# --- records ---------------------------------------------------------------------------

class RecordDecoder:
    """Accumulates one inference's records into golden-shaped arrays.

    Parameters
    ----------
    p : CoreParams
    net : NetworkExport or None
        With an export, a spike record for a statically masked position is an error.
    spike_layers : iterable of int, optional
        The spiking layers whose per-(position, group) records the core was asked for
        (``spike_records``; default all). Every spiking layer also sends a signature per step.
    keep_words : bool
        Also keep every record word in ``words``, in arrival order.

    Members
    -------
    spikes, membranes : list of ndarray
        Per spiking layer, [T, C, H, W] as decoded (0 where nothing was recorded).
    recorded : list of ndarray
        Per spiking layer, [T, C, H, W] bool: a record carried this neuron.
    currents : ndarray
        The classifier's currents [T, C]; ``logits`` [C].
    signatures, counters : dict
        (layer, step) -> (CRC, spike count) and -> the work counters (:data:`COUNTERS`).
    seen : set
        (kind, layer, step, pos, group) of every record; ``errors`` lists duplicates and
        out-of-range records.
    last_cycle : dict
        (layer, step) -> cycle stamp of that layer's last record.
    held, held_tail : dict, int
        Cycles the environment held the core, per (layer, step), and while the logits were
        shown (:meth:`hold`, :meth:`hold_frame`).
    """

    def __init__(self, p: CoreParams, net=None, spike_layers=None, keep_words: bool = False):
        self.p, self.net = p, net
        self.words = [] if keep_words else None   # every record word, in order, if asked
        self.spike_layers = (set(range(len(p.spiking_layers))) if spike_layers is None
                             else set(spike_layers))
        self.signatures = {}
        self.counters = {}
        self.fields = record_fields(p)
        self.sig_fields = signature_fields(p)
        T = p.timesteps
        self.spikes = [np.zeros((T, l.out_channels, l.out_height, l.out_width), np.uint8)
                       for l in p.spiking_layers]
        self.membranes = [np.zeros_like(s, dtype=np.int8) for s in self.spikes]
        self.recorded = [np.zeros_like(s, dtype=bool) for s in self.spikes]
        fc = p.classifier
        self.currents = np.zeros((T, fc.out_channels), np.int64)
        self.logits = np.zeros(fc.out_channels, np.int64)
        self.seen = set()
        self.errors = []
        self.logit_groups = 0
        self.records = 0
        self.last_cycle = {}
        self.held = {}                # (layer, step) -> cycles the environment held the core
        self.held_tail = 0            # ... while the logits were shown

    def hold(self, word: int):
        """A record shown but not taken this cycle: the cycle counts for its layer and step
        (for the logits, for the inference's tail)."""
        r = unpack_fields(self.fields, word)
        if r["kind"] == KIND_LOGITS:
            self.held_tail += 1
        else:
            key = (r["layer"], r["step"])
            self.held[key] = self.held.get(key, 0) + 1

    def hold_frame(self, step: int):
        """A cycle the core waited for a frame word of ``step`` (layer 0's time)."""
        self.held[(0, step)] = self.held.get((0, step), 0) + 1

    def held_cycles(self) -> list:
        """:meth:`hold` and :meth:`hold_frame` cycles per [layer][step]."""
        return [[self.held.get((l, t), 0) for t in range(self.p.timesteps)]
                for l in range(len(self.p.layers))]

    @property
    def done(self) -> bool:
        return self.logit_groups == self.p.classifier.groups

    def add(self, word: int, cycle: int = 0):
        """Decode one record word shown in clock cycle ``cycle``."""
        r = unpack_fields(self.fields, word)
        p = self.p
        self.records += 1
        if self.words is not None:
            self.words.append(word)
        if r["kind"] != KIND_LOGITS:
            key = (r["layer"], r["step"])
            self.last_cycle[key] = max(cycle, self.last_cycle.get(key, 0))
        key = (r["kind"], r["layer"], r["step"], r["pos"], r["group"])
        if key in self.seen:
            self.errors.append(f"duplicate record {key}")
        self.seen.add(key)
        if r["layer"] >= len(p.layers) or r["step"] >= p.timesteps:
            self.errors.append(f"record out of range {key}")
            return
        lp = p.layers[r["layer"]]
        if r["kind"] == KIND_SIGNATURE:
            self._signature(lp, r, key)
        elif r["kind"] == KIND_SPIKES:
            self._spikes(lp, r, key)
        elif r["kind"] in (KIND_CURRENT, KIND_LOGITS):
            self._classifier(lp, r, key)
        else:
            self.errors.append(f"unknown record kind {key}")

    def _signature(self, lp, r, key):
        if lp.kind != "conv":
            self.errors.append(f"signature record for the classifier {key}")
            return
        fields = unpack_fields(self.sig_fields, r["data"])
        self.signatures[(r["layer"], r["step"])] = (fields["crc"], fields["spikes"])
        self.counters[(r["layer"], r["step"])] = tuple(fields[k] for k in COUNTERS)

    def _spikes(self, lp, r, key):
        g, data, t = r["group"], r["data"], r["step"]
        if lp.kind != "conv" or r["pos"] >= lp.positions or g >= lp.groups:
            self.errors.append(f"unexpected spike record {key}")
            return
        y, x = divmod(r["pos"], lp.out_width)
        if self.net is not None and not self.net.layers[lp.index].position_mask[y, x]:
            self.errors.append(f"record for masked position {key}")
        L, mb = self.p.lanes, self.p.membrane_bits
        for j in range(L):
            c = g * L + j
            if c >= lp.out_channels:
                continue
            self.spikes[lp.index][t, c, y, x] = (data >> j) & 1
            self.recorded[lp.index][t, c, y, x] = True
            q = (data >> (L + j * mb)) & ((1 << mb) - 1)
            self.membranes[lp.index][t, c, y, x] = signed(q, mb) if mb == 2 else q

    def _classifier(self, lp, r, key):
        g = r["group"]
        if lp.kind != "fc" or g >= lp.groups:
            self.errors.append(f"unexpected classifier record {key}")
            return
        L, LW = self.p.lanes, self.p.logit_width
        for j in range(L):
            c = g * L + j
            if c < lp.out_channels:
                v = signed((r["data"] >> (j * LW)) & ((1 << LW) - 1), LW)
                if r["kind"] == KIND_CURRENT:
                    self.currents[r["step"], c] = v
                else:
                    self.logits[c] = v
        if r["kind"] == KIND_LOGITS:
            self.logit_groups += 1

    def step_cycles(self) -> list:
        """Cycles per layer and step, [layers][T]: from the previous layer's last record (the
        previous step's classifier for layer 0, so layer 0 includes loading the frame;
        cycle 0 for the first) to the layer's own last record at that step."""
        p = self.p
        out = [[0] * p.timesteps for _ in p.layers]
        end = 0
        for t in range(p.timesteps):
            for l in range(len(p.layers)):
                last = self.last_cycle.get((l, t))
                if last is not None:
                    out[l][t] = last - end
                    end = last
        return out

    def layer_cycles(self) -> list:
        """:meth:`step_cycles` summed over the steps, per layer."""
        return [sum(row) for row in self.step_cycles()]
