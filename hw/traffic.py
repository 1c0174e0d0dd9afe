"""SRAM traffic of the generated core: words read and written per memory, per layer and inference.

The counts follow the schedule of hw.core (docs/HARDWARE.md, "Schedule") as hw.perf does,
driven by golden's work counts (:func:`golden.model.step_work`: events, packed groups,
neuron updates per layer, sample and step; the same numbers the core's own counters
report, which co-simulation compares with golden) and golden's computed positions and
channels. They are a model of the RTL's *useful* accesses, not counted by the RTL:

- ``weight_sram_even`` / ``_odd``: every event (one nonzero input issued to a packed group)
  reads both banks, one word of ``lanes`` codes each;
- ``act_sram<l>`` (layer ``l``'s input map, one word per position, all channels): read once
  per kernel tap inside the map, per computed position and packed group (with window fetch:
  once per computed position, one word from each tap's copy); written once per input position
  and step (the frame LOAD for layer 0, the previous layer's POOL_WRITE otherwise), in every
  copy;
- ``membrane_sram``: one word (``lanes`` membranes) read and one written per neuron update
  (computed position x live group); the ``INIT_ZERO`` writes of step 0 are not counted;
- ``threshold_sram``: one word per neuron update (the classifier: its bias word per group);
- ``channel_mask_sram``: one word per group, layer and step (the MASK pass);
  ``position_mask_sram``: one bit per position, layer and step;
- runtime pruning, where built: ``importance_sram`` read per computed position and written
  per neuron update; ``prior_sram`` (channel sums) read and written per neuron update of a
  gated core; the gate weights (one word per group and input channel) and gate thresholds
  (one word per group) read once per gated layer and step.

The generated ``spquant_sram`` has no read enable: as generated, every memory reads its
word at every cycle. :func:`memory_traffic` also returns that bound (``every_cycle``),
cycles x the sum of all read-port widths.
"""
from __future__ import annotations

import numpy as np

from golden.model import GoldenResult, step_work
from model_export.format import NetworkExport
from .params import CoreParams, LayerPlan
from .perf import core_cycles, tap_counts


def _access(reads: int, writes: int, width: int, depth: int) -> dict:
    """One memory's accesses: words read and written, word width, capacity (one macro)."""
    return {"reads": int(reads), "writes": int(writes), "width": int(width),
            "capacity": int(width) * max(int(depth), 1),
            "bits_read": int(reads) * int(width), "bits_written": int(writes) * int(width)}


def inside_taps(lp: LayerPlan) -> np.ndarray:
    """Kernel taps inside the input map of every output position: int64 [H_out, W_out]."""
    probe = np.zeros((1, 1, lp.in_height, lp.in_width), np.int64)
    return (tap_counts(lp, probe)[0] >= 0).sum(axis=-1)


def layer_accesses(p: CoreParams, lp: LayerPlan, le, work: dict, positions: np.ndarray) -> dict:
    """Accesses of layer ``lp`` summed over samples and steps: {memory: :func:`_access`}.

    ``work``: the layer's :func:`golden.model.step_work` row (arrays [B, T]); ``positions``:
    its computed positions, bool [B, T, H_out, W_out].
    """
    L = p.lanes
    B, T = work["events"].shape
    steps = B * T
    events = int(work["events"].sum())
    updates = int(work["neuron_updates"].sum())
    taps_in = inside_taps(lp)
    # Per (sample, step): in-map taps summed over the computed positions.
    taps_seen = (positions * taps_in).sum(axis=(2, 3))
    if lp.window_fetch:
        act_reads = int(taps_seen.sum())
    else:
        act_reads = int((taps_seen * work["packed_groups"]).sum())
    # Each access carries its macro's depth (one weight bank, one activation copy).
    out = {
        "weights": _access(2 * events, 0, L * p.weight_bits, max(p.weight_depth,
                                                                 p.weight_depth_odd)),
        "activations": _access(act_reads, lp.act_depth * lp.act_copies * steps, lp.act_width,
                               lp.act_depth),
        "thresholds": _access(updates, 0, L * p.threshold_lane_width, p.group_depth),
        "channel_masks": _access(lp.groups * steps, 0, L, p.group_depth),
    }
    if lp.kind == "conv":
        out["membranes"] = _access(updates, updates, L * p.membrane_bits, p.membrane_depth)
        out["position_masks"] = _access(lp.positions * steps, 0, 1, p.position_depth)
        if p.spatial_pruning:
            out["importance"] = _access(int(positions.sum()), updates, p.importance_width,
                                        p.position_depth)
        if p.channel_gating:
            out["priors"] = _access(updates, updates, L * p.prior_width, p.prior_depth)
            if lp.gated and le.gated:
                out["gate_weights"] = _access(lp.groups * lp.in_channels * steps, 0, L * 2,
                                              p.gate_weight_depth)
                out["gate_thresholds"] = _access(lp.groups * steps, 0, L * p.gate_width,
                                                 p.gate_group_depth)
    return out


def read_port_bits(p: CoreParams) -> int:
    """Sum of every memory's read-port width (bits read per cycle when every memory reads)."""
    L = p.lanes
    bits = 2 * L * p.weight_bits + L * p.membrane_bits + L * p.threshold_lane_width + L + 1
    bits += sum(lp.act_width * lp.act_copies for lp in p.layers)
    if p.spatial_pruning:
        bits += p.importance_width
    if p.channel_gating:
        bits += L * p.prior_width
        if p.gate_weight_depth:
            bits += L * 2 + L * p.gate_width
    return int(bits)


def memory_traffic(p: CoreParams, net: NetworkExport, res: GoldenResult) -> dict:
    """Per-inference SRAM traffic of the core ``p`` on golden result ``res`` of ``net``.

    Returns ``layers`` (per layer: {memory: reads, writes, width, bits_read, bits_written}
    per inference), ``totals`` ({memory: the same summed over layers}), ``bits_read`` and
    ``bits_written`` per inference, and ``every_cycle`` (the bound of a memory without a
    read enable: mean cycles x :func:`read_port_bits`).
    """
    p.check_export(net)
    B = res.inputs.shape[0]
    work = step_work(net, res, p.lanes)
    spiking = {lp.index: le for lp, le in zip(p.spiking_layers, net.spiking_layers)}
    layers, totals = [], {}
    for lp in p.layers:
        if lp.kind == "conv":
            positions = res.positions[lp.index].astype(np.int64)
        else:
            positions = np.ones(work[lp.index]["events"].shape + (1, 1), np.int64)
        acc = layer_accesses(p, lp, spiking.get(lp.index), work[lp.index], positions)
        row = {}
        for name, a in acc.items():
            per = {k: (v if k in ("width", "capacity") else v / B) for k, v in a.items()}
            row[name] = per
            t = totals.setdefault(name, {"reads": 0.0, "writes": 0.0, "bits_read": 0.0,
                                         "bits_written": 0.0})
            for k in ("reads", "writes", "bits_read", "bits_written"):
                t[k] += per[k]
        layers.append({"layer": lp.index, "kind": lp.kind, "memories": row})
    cycles = float(np.mean([core_cycles(p, net, res, i).total for i in range(B)]))
    port = read_port_bits(p)
    return {"samples": B, "layers": layers, "totals": totals,
            "bits_read": sum(t["bits_read"] for t in totals.values()),
            "bits_written": sum(t["bits_written"] for t in totals.values()),
            "every_cycle": {"cycles": cycles, "read_port_bits": port,
                            "bits_read": cycles * port}}
