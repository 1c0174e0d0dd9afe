"""Host side of the core's streams, in plain Python (no simulator needed).

- :func:`param_transfers`: an export -> the parameter-load transfers (weights, thresholds,
  masks) at the addresses of :class:`hw.params.CoreParams`.
- :func:`frame_words`: one step's integer input -> the frame stream's words.
- :class:`RecordDecoder`: the record stream -> spike maps, membranes, currents, logits and
  signatures in the golden model's shapes, checking that every record is expected and none
  repeats.
- :func:`expected_signatures`: golden spikes -> each (layer, step)'s CRC-32 and spike count,
  replaying the core's visiting order (:func:`visit_order`).
- :func:`compare`: golden vs RTL, every layer and step; returns mismatch descriptions.
"""
from __future__ import annotations

import numpy as np

from hw.params import (CoreParams, KIND_CURRENT, KIND_LOGITS, KIND_SIGNATURE, KIND_SPIKES,
                       SIGNATURE_CRC_WIDTH, TARGET_CHANNEL_MASK, TARGET_GATE_THRESHOLDS,
                       TARGET_GATE_WEIGHTS, TARGET_LAYER_PRUNING, TARGET_POSITION_MASK,
                       TARGET_THRESHOLDS, TARGET_WEIGHTS, pack_fields, param_fields,
                       record_fields, unpack_fields)
from hw.signature import crc32_packed
from model_export.format import NetworkExport


def _twos(v: int, width: int) -> int:
    return v & ((1 << width) - 1)


def _signed(v: int, width: int) -> int:
    return v - (1 << width) if v >> (width - 1) else v


def param_transfers(p: CoreParams, net: NetworkExport) -> list[int]:
    """Packed param-stream payloads that load every parameter memory word (padding lanes too)."""
    p.check_export(net)
    fields = param_fields(p)
    L, b, W = p.lanes, p.weight_bits, p.acc_width
    out = []
    for lp, le in zip(p.layers, net.layers):
        codes = le.w_code.reshape(le.out_channels, le.in_channels, lp.taps)
        for g in range(lp.groups):
            chans = range(g * L, min((g + 1) * L, lp.out_channels))
            for tap in range(lp.taps):
                for ci in range(lp.in_channels):
                    word = 0
                    for j, c in enumerate(chans):
                        word |= int(codes[c, ci, tap]) << (j * b)
                    out.append(pack_fields(fields, target=TARGET_WEIGHTS,
                                           addr=lp.weight_addr(g, tap, ci), data=word))
            cmask = 0
            for j in range(L):
                c = g * L + j
                lane_word = 0
                if c < lp.out_channels:
                    cmask |= int(le.channel_mask[c]) << j
                    if lp.kind == "conv":
                        flat = le.thresholds[c].reshape(-1)     # [levels * 3], F P N per level
                        for f, v in enumerate(flat):
                            lane_word |= _twos(int(v), W) << (f * W)
                    else:
                        lane_word = _twos(int(le.bias[c]), W)
                out.append(pack_fields(fields, target=TARGET_THRESHOLDS,
                                       addr=lp.group_base + g, lane=j, data=lane_word))
            out.append(pack_fields(fields, target=TARGET_CHANNEL_MASK,
                                   addr=lp.group_base + g, data=cmask))
        if lp.kind == "conv":
            for i, bit in enumerate(le.position_mask.reshape(-1)):
                out.append(pack_fields(fields, target=TARGET_POSITION_MASK,
                                       addr=lp.position_base + i, data=int(bit)))
            out += _pruning_transfers(p, lp, le, fields)
    return out


def _pruning_transfers(p: CoreParams, lp, le, fields) -> list[int]:
    """Runtime-pruning parameters of one spiking layer (none when the core has no pruning).

    An export without them loads the "off" values: theta_s = -C_out (keeps every position)
    and the gate unused.
    """
    if not (p.spatial_pruning or p.channel_gating):
        return []
    L, EW, GW = p.lanes, p.importance_width, p.gate_width
    theta = int(le.spatial_threshold[0]) if le.spatial_pruning else -lp.out_channels
    out = [pack_fields(fields, target=TARGET_LAYER_PRUNING, addr=lp.index,
                       data=_twos(theta, EW) | (int(le.gated) << EW))]
    if lp.gated and le.gated:
        for g in range(lp.groups):
            for ci in range(lp.in_channels):
                word = 0
                for j in range(L):
                    c = g * L + j
                    if c < lp.out_channels:
                        word |= {0: 0b00, 1: 0b01, -1: 0b11}[int(le.gate_weights[c, ci])] << (2 * j)
                out.append(pack_fields(fields, target=TARGET_GATE_WEIGHTS,
                                       addr=lp.gate_weight_base + g * lp.in_channels + ci,
                                       data=word))
            for j in range(L):
                c = g * L + j
                theta_g = int(le.gate_thresholds[c]) if c < lp.out_channels else 0
                out.append(pack_fields(fields, target=TARGET_GATE_THRESHOLDS,
                                       addr=lp.gate_group_base + g, lane=j,
                                       data=_twos(theta_g, GW)))
    return out


def frame_words(p: CoreParams, x_step: np.ndarray) -> list[int]:
    """Input [C, H, W] of one step -> one word per position, raster order."""
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


def computed_work(golden, index: int, le, t: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions [H, W], channels [C]) that layer ``le`` computes at step ``t`` of sample
    ``index``: golden's runtime masks (static masks, spatial pruning and channel gates) when
    ``golden`` has them, else the static masks."""
    positions = getattr(golden, "positions", None) if golden is not None else None
    if positions is not None:
        return (positions[le.index][index, t],
                golden.channels[le.index][index, t])
    return le.position_mask.astype(bool), le.channel_mask.astype(bool)


def visit_order(lp, computed_positions) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) of a spiking layer's computed positions ([H, W] bool) in the core's visiting
    order: pool windows in raster order, the positions of a window in raster order (hw.core)."""
    P = lp.pool
    wy, wx, dy, dx = np.meshgrid(np.arange(lp.out_height // P), np.arange(lp.out_width // P),
                                 np.arange(P), np.arange(P), indexing="ij")
    ys, xs = (wy * P + dy).reshape(-1), (wx * P + dx).reshape(-1)
    keep = np.asarray(computed_positions)[ys, xs].astype(bool)
    return ys[keep], xs[keep]


def live_groups(lp, computed_channels, lanes: int) -> np.ndarray:
    """Groups of ``lanes`` output channels with at least one computed channel."""
    return np.array([bool(np.asarray(computed_channels)[g * lanes:(g + 1) * lanes].any())
                     for g in range(lp.groups)])


def record_spike_bits(p: CoreParams, lp, spikes_t: np.ndarray, positions, channels) -> np.ndarray:
    """One step's spikes [C, H, W] -> the spike bits of the layer's records in visiting
    order, [records, lanes] (lane j of group g is channel g * lanes + j; padding lanes 0)."""
    L = p.lanes
    ys, xs = visit_order(lp, positions)
    padded = np.zeros((lp.groups * L, len(ys)), np.uint8)
    padded[:lp.out_channels] = spikes_t[:, ys, xs]
    live = live_groups(lp, channels, L)
    return padded.reshape(lp.groups, L, -1)[live].transpose(2, 0, 1).reshape(-1, L)


def expected_signatures(p: CoreParams, net: NetworkExport, golden, index: int) -> dict:
    """{(layer, step): (crc, spike count)} of golden sample ``index``, as the core computes
    them (hw.signature: the lanes' spike bits of each record, lane 0 first)."""
    out = {}
    for lp, le in zip(p.spiking_layers, net.spiking_layers):
        for t in range(p.timesteps):
            positions, channels = computed_work(golden, index, le, t)
            bits = record_spike_bits(p, lp, golden.spikes[lp.index][index, t], positions, channels)
            out[(lp.index, t)] = (crc32_packed(p.lanes, bits), int(bits.sum()))
    return out


# The core's work counters per (layer, step), in golden.step_work's names.
COUNTERS = ("events", "synaptic_ops", "neuron_updates")


def signature_fields(p: CoreParams) -> list:
    """Fields of a signature record's data, LSB first: (name, width)."""
    return [("crc", SIGNATURE_CRC_WIDTH), ("spikes", p.spike_count_width),
            ("events", p.event_count_width), ("synaptic_ops", p.synaptic_count_width),
            ("neuron_updates", p.update_count_width)]


def counter_mismatches(golden, index: int, dec) -> list:
    """[((layer, step), golden counters, rtl counters)] where the core's work counters differ
    from golden.step_work (the skipping core only: the reference core issues everything)."""
    from golden.model import step_work
    if not dec.p.skipping:
        return []
    work = step_work(dec.net, golden, dec.p.lanes)
    out = []
    for lp in dec.p.spiking_layers:
        for t in range(dec.p.timesteps):
            want = tuple(int(work[lp.index][k][index, t]) for k in COUNTERS)
            got = dec.counters.get((lp.index, t))
            if got != want:
                out.append(((lp.index, t), want, got))
    return out


def counter_totals(per_sample: list, layers: int) -> list:
    """The core's work counters as the testbench reports them (per sample,
    ``{"layer,step": [COUNTERS]}``) summed over samples and steps: one dict per layer
    (keys COUNTERS), ``None`` for a layer without counters (the classifier)."""
    out = [None] * layers
    for sample in per_sample:
        for key, values in sample.items():
            layer = int(key.split(",")[0])
            if len(values) != len(COUNTERS):
                raise ValueError(f"counter record {key}: {len(values)} values, "
                                 f"expected {len(COUNTERS)} ({', '.join(COUNTERS)})")
            row = out[layer] or dict.fromkeys(COUNTERS, 0)
            for name, v in zip(COUNTERS, values):
                row[name] += int(v)
            out[layer] = row
    return out


class RecordDecoder:
    """Accumulates one inference's records into golden-shaped arrays.

    ``spike_layers``: the spiking layers whose per-(position, group) records the core was
    asked for (``spike_records``; default all); every spiking layer also sends a signature
    per step.
    """

    def __init__(self, p: CoreParams, net: NetworkExport | None, spike_layers=None):
        self.p, self.net = p, net
        self.spike_layers = (set(range(len(p.spiking_layers))) if spike_layers is None
                             else set(spike_layers))
        self.signatures = {}          # (layer, step) -> (crc, spike count)
        self.counters = {}            # (layer, step) -> the core's work counters (COUNTERS)
        self.fields = record_fields(p)
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
        self.last_cycle = {}          # (layer, step) -> cycle of that layer's last record

    @property
    def done(self) -> bool:
        return self.logit_groups == self.p.classifier.groups

    def add(self, word: int, cycle: int = 0):
        r = unpack_fields(self.fields, word)
        p, L = self.p, self.p.lanes
        self.records += 1
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
        data, g = r["data"], r["group"]
        if r["kind"] == KIND_SIGNATURE:
            if lp.kind != "conv":
                self.errors.append(f"signature record for the classifier {key}")
                return
            fields = unpack_fields(signature_fields(p), data)
            self.signatures[(r["layer"], r["step"])] = (fields["crc"], fields["spikes"])
            self.counters[(r["layer"], r["step"])] = tuple(fields[k] for k in COUNTERS)
        elif r["kind"] == KIND_SPIKES:
            if lp.kind != "conv" or r["pos"] >= lp.positions or g >= lp.groups:
                self.errors.append(f"unexpected spike record {key}")
                return
            y, x = divmod(r["pos"], lp.out_width)
            if self.net is not None and not self.net.layers[lp.index].position_mask[y, x]:
                self.errors.append(f"record for masked position {key}")
            mb = p.membrane_bits
            for j in range(L):
                c = g * L + j
                if c >= lp.out_channels:
                    continue
                self.spikes[lp.index][r["step"], c, y, x] = (data >> j) & 1
                self.recorded[lp.index][r["step"], c, y, x] = True
                q = (data >> (L + j * mb)) & ((1 << mb) - 1)
                self.membranes[lp.index][r["step"], c, y, x] = _signed(q, mb) if mb == 2 else q
        elif r["kind"] in (KIND_CURRENT, KIND_LOGITS):
            if lp.kind != "fc" or g >= lp.groups:
                self.errors.append(f"unexpected classifier record {key}")
                return
            LW = p.logit_width
            for j in range(L):
                c = g * L + j
                if c < lp.out_channels:
                    v = _signed((data >> (j * LW)) & ((1 << LW) - 1), LW)
                    if r["kind"] == KIND_CURRENT:
                        self.currents[r["step"], c] = v
                    else:
                        self.logits[c] = v
            if r["kind"] == KIND_LOGITS:
                self.logit_groups += 1
        else:
            self.errors.append(f"unknown record kind {key}")

    def layer_cycles(self) -> list:
        """Cycles per layer over the inference: from the previous layer's last record (or the
        previous step's end, so layer 0 includes loading the frame) to its own last record."""
        p = self.p
        out = [0] * len(p.layers)
        end = 0
        for t in range(p.timesteps):
            for l in range(len(p.layers)):
                last = self.last_cycle.get((l, t))
                if last is not None:
                    out[l] += last - end
                    end = last
        return out

    def expected_keys(self, golden=None, index: int = 0) -> set:
        """(kind, layer, step, pos, group) of every record the core must emit, no more.

        With ``golden`` (a GoldenResult) the computed positions and channels of sample
        ``index`` at each step decide (runtime pruning); without, the static masks.
        """
        p, net, L = self.p, self.net, self.p.lanes
        keys = set()
        for lp, le in zip(p.spiking_layers, net.spiking_layers):
            keys.update((KIND_SIGNATURE, lp.index, t, 0, 0) for t in range(p.timesteps))
            if lp.index not in self.spike_layers:
                continue
            for t in range(p.timesteps):
                pos_ok, chans = computed_work(golden, index, le, t)
                live = [g for g in range(lp.groups) if chans[g * L:(g + 1) * L].any()]
                for pos in np.flatnonzero(pos_ok):
                    keys.update((KIND_SPIKES, lp.index, t, int(pos), g) for g in live)
        fc = p.classifier
        for g in range(fc.groups):
            keys.update((KIND_CURRENT, fc.index, t, 0, g) for t in range(p.timesteps))
            keys.add((KIND_LOGITS, fc.index, p.timesteps - 1, 0, g))
        return keys


def compare(golden, index: int, dec: RecordDecoder, limit=8) -> tuple[int, list[str]]:
    """Every layer, step, neuron: golden sample ``index`` vs the decoded RTL records.

    Returns (number of mismatching values + protocol errors, descriptions of the first few).
    """
    out = list(dec.errors)
    expected = dec.expected_keys(golden, index)
    missing, extra = sorted(expected - dec.seen), sorted(dec.seen - expected)
    if missing:
        out.append(f"{len(missing)} records missing (kind, layer, step, pos, group), first {missing[:4]}")
    if extra:
        out.append(f"{len(extra)} unexpected records, first {extra[:4]}")
    count = len(out)
    bad_sigs = signature_mismatches(golden, index, dec)
    count += len(bad_sigs)
    for (l, t), want, got in bad_sigs[:limit]:
        out.append(f"layer {l} t={t} signature (crc, spikes): golden ({want[0]:#010x}, {want[1]}) "
                   f"rtl " + (f"({got[0]:#010x}, {got[1]})" if got else "none"))
    if len(bad_sigs) > limit:
        out.append(f"signatures: {len(bad_sigs) - limit} more mismatches")
    bad_counters = counter_mismatches(golden, index, dec)
    count += len(bad_counters)
    for (l, t), want, got in bad_counters[:limit]:
        out.append(f"layer {l} t={t} work counters {COUNTERS}: golden {want} rtl {got}")
    for l, (gs, gm) in enumerate(zip(golden.spikes, golden.membranes)):
        if l not in dec.spike_layers:
            continue
        for name, g, r in (("spikes", gs[index], dec.spikes[l]),
                           ("membrane", gm[index], dec.membranes[l])):
            differs = g != r
            if name == "membrane":
                # Only recorded neurons: a closed channel holds its membrane unseen (and a
                # pruned position's reset shows in its next computed step).
                differs &= dec.recorded[l]
            bad = np.argwhere(differs)
            count += len(bad)
            for t, c, y, x in bad[:limit]:
                out.append(f"layer {l} {name} t={t} c={c} y={y} x={x}: "
                           f"golden {g[t, c, y, x]} rtl {r[t, c, y, x]}")
            if len(bad) > limit:
                out.append(f"layer {l} {name}: {len(bad) - limit} more mismatches")
    bad_currents = np.argwhere(golden.currents[index] != dec.currents)
    bad_logits = np.flatnonzero(golden.logits[index] != dec.logits)
    count += len(bad_currents) + len(bad_logits)
    for t, c in bad_currents[:limit]:
        out.append(f"classifier current t={t} c={c}: golden {golden.currents[index][t, c]} "
                   f"rtl {dec.currents[t, c]}")
    for c in bad_logits[:limit]:
        out.append(f"logit c={c}: golden {golden.logits[index][c]} rtl {dec.logits[c]}")
    return count, out


def signature_mismatches(golden, index: int, dec: RecordDecoder) -> list:
    """[((layer, step), golden (crc, count), rtl (crc, count) or None)], layer-major order."""
    want = expected_signatures(dec.p, dec.net, golden, index)
    return [(key, want[key], dec.signatures.get(key)) for key in sorted(want)
            if dec.signatures.get(key) != want[key]]


def first_difference(golden, index: int, dec: RecordDecoder, layer: int) -> str | None:
    """The first neuron of ``layer`` whose spike or membrane differs, in the core's order
    (step, then visiting order, then channel), from a decoder that has the layer's full
    records; None if the layer matches."""
    p, net = dec.p, dec.net
    lp, le = p.layers[layer], net.layers[layer]
    ys, xs = visit_order(lp, le.position_mask)
    g_s, r_s = golden.spikes[layer][index][:, :, ys, xs], dec.spikes[layer][:, :, ys, xs]
    g_q, r_q = golden.membranes[layer][index][:, :, ys, xs], dec.membranes[layer][:, :, ys, xs]
    seen = dec.recorded[layer][:, :, ys, xs]        # membranes are checked where recorded
    bad = np.argwhere(((g_s != r_s) | ((g_q != r_q) & seen)).transpose(0, 2, 1))   # [T, pos, C]
    if not len(bad):
        return None
    t, i, c = bad[0]
    y, x = ys[i], xs[i]
    return (f"layer {layer} t={t} c={c} y={y} x={x} (group {c // p.lanes}, lane {c % p.lanes}): "
            f"golden spike {g_s[t, c, i]} membrane {g_q[t, c, i]}, rtl spike {r_s[t, c, i]} "
            f"membrane {r_q[t, c, i]}")
