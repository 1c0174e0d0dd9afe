"""Host side of the core's streams, in plain Python (no simulator needed).

The words themselves (parameter transfers, frames, the record decoder) are hw.protocol's;
this module is the scoreboard's side:

- :func:`expected_keys`: every record the core must send for a sample, no more.
- :func:`expected_records`: the record stream itself, as a core equal to golden sends it
  (the scoreboard's own test: every checker must catch its kind of corruption of it).
- :func:`expected_signatures`: golden spikes -> each (layer, step)'s CRC-32 and spike count,
  replaying the core's visiting order (:func:`visit_order`).
- :func:`compare`: golden vs RTL, every layer and step; returns mismatch descriptions.
- :func:`perf_differences`: hw.perf's cycles (plus the cycles the environment held the
  core) vs the measured ones, every layer and step.
"""
from __future__ import annotations

import numpy as np

from golden.model import step_work
from hw.params import PACK_GROUPS, CoreParams
from hw.protocol import (COUNTERS, KIND_CURRENT, KIND_LOGITS, KIND_SIGNATURE, KIND_SPIKES,
                         RecordDecoder, pack_fields, record_fields, signature_fields, twos)
from hw.signature import crc32_packed
from model_export.format import NetworkExport

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


def counter_mismatches(golden, index: int, dec) -> list:
    """[((layer, step), golden counters, rtl counters)] where the core's work counters differ
    from golden.step_work (the skipping core only: the reference core issues everything)."""
    if not dec.p.skipping:
        return []
    work = step_work(dec.net, golden, dec.p.lanes, PACK_GROUPS)
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


def expected_keys(dec: RecordDecoder, golden=None, index: int = 0) -> set:
    """(kind, layer, step, pos, group) of every record the core must emit for the decoder's
    export and requested spike layers, no more.

    With ``golden`` (a GoldenResult) the computed positions and channels of sample ``index``
    at each step decide (runtime pruning); without, the static masks.
    """
    p, net, L = dec.p, dec.net, dec.p.lanes
    keys = set()
    for lp, le in zip(p.spiking_layers, net.spiking_layers):
        keys.update((KIND_SIGNATURE, lp.index, t, 0, 0) for t in range(p.timesteps))
        if lp.index not in dec.spike_layers:
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
    expected = expected_keys(dec, golden, index)
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


def perf_differences(model, dec: RecordDecoder, cycles: int, limit: int = 4) -> tuple[int, list]:
    """hw.perf's prediction ``model`` (a CoreCycles) plus the cycles the environment held the
    core, against what the decoder measured: every layer and step, and the total ``cycles``.
    Returns (number of differing values, descriptions of the first few)."""
    held = np.array(dec.held_cycles(), dtype=np.int64)
    want = model.layer_step + held
    got = np.array(dec.step_cycles(), dtype=np.int64)
    bad = np.argwhere(want != got)
    out = [f"performance model: layer {l} step {t}: hw.perf {model.layer_step[l, t]} + held "
           f"{held[l, t]} cycles, measured {got[l, t]}" for l, t in bad[:limit]]
    total = model.total + int(held.sum()) + dec.held_tail
    if total != cycles:
        out.append(f"performance model: total: hw.perf {model.total} + held "
                   f"{total - model.total} cycles, measured {cycles}")
    return len(bad) + int(total != cycles), out


def expected_records(p: CoreParams, net: NetworkExport, golden, index: int) -> list:
    """The record words a core equal to golden emits for sample ``index``, in order: per
    step, per spiking layer its spike records (visiting order, live groups) and its
    signature; the classifier's currents per group; the logits after the last step."""
    fields, L, MB, LW = record_fields(p), p.lanes, p.membrane_bits, p.logit_width
    work = step_work(net, golden, L, PACK_GROUPS)
    sigs = expected_signatures(p, net, golden, index)
    out = []
    for t in range(p.timesteps):
        for lp, le in zip(p.spiking_layers, net.spiking_layers):
            positions, channels = computed_work(golden, index, le, t)
            live = live_groups(lp, channels, L)
            ys, xs = visit_order(lp, positions)
            for y, x in zip(ys, xs):
                for g in np.flatnonzero(live):
                    data = 0
                    for j in range(L):       # closed lanes report their held membrane
                        c = g * L + j
                        if c < lp.out_channels:
                            data |= int(golden.spikes[lp.index][index, t, c, y, x]) << j
                            q = int(golden.membranes[lp.index][index, t, c, y, x])
                            data |= twos(q, MB) << (L + j * MB)
                    out.append(pack_fields(fields, kind=KIND_SPIKES, layer=lp.index, step=t,
                                           pos=int(y * lp.out_width + x), group=int(g),
                                           data=data))
            crc, spikes = sigs[(lp.index, t)]
            counts = {k: int(work[lp.index][k][index, t]) for k in COUNTERS}
            out.append(pack_fields(fields, kind=KIND_SIGNATURE, layer=lp.index, step=t,
                                   data=pack_fields(signature_fields(p), crc=crc, spikes=spikes,
                                                    **counts)))
        fc = p.classifier
        for g in range(fc.groups):
            data = sum(twos(int(golden.currents[index, t, c]), LW) << ((c - g * L) * LW)
                       for c in range(g * L, min((g + 1) * L, fc.out_channels)))
            out.append(pack_fields(fields, kind=KIND_CURRENT, layer=fc.index, step=t, group=g,
                                   data=data))
    fc = p.classifier
    for g in range(fc.groups):
        data = sum(twos(int(golden.logits[index, c]), LW) << ((c - g * L) * LW)
                   for c in range(g * L, min((g + 1) * L, fc.out_channels)))
        out.append(pack_fields(fields, kind=KIND_LOGITS, layer=fc.index,
                               step=p.timesteps - 1, group=g, data=data))
    return out
