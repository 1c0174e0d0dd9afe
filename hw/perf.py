"""Cycle model of the generated core: every layer's cycles at every step, without simulating RTL.

The model replays the scheduler of hw.core state by state (docs/HARDWARE.md, "Schedule"),
driven by what golden computes: the nonzero inputs of every kernel tap, the computed
positions (static mask and spatial pruning) and the computed channels (channel mask and
gates) of each layer and step. For a stall-free run it equals the RTL's cycle counts
exactly; with stalls, the RTL's count is the model's plus the cycles the environment held
the core (a record not taken, a frame word not offered), which the testbench counts.

Cycle accounting is the testbench's (hw.protocol.RecordDecoder.layer_cycles): cycle 0 is
the first LOAD cycle; layer ``l`` at step ``t`` spans from the previous layer's last record
(the previous step's classifier for layer 0, so layer 0 includes loading the frame) to its
own last record (a spiking layer's signature, the classifier's last current).

    cycles = core_cycles(params, net, golden_result, index)   # CoreCycles
    cycles.layer_step     # int64 [layers, T]
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from golden.model import GoldenResult, sum_pool
from model_export.format import NetworkExport
from .params import CoreParams, LayerPlan


@dataclass
class CoreCycles:
    """Cycles of one inference.

    Members
    -------
    layer_step : ndarray
        int64 [layers, T], as the testbench accounts them (module docstring).
    total : int
        Cycle count from the first LOAD cycle to the cycle after the last logits record.
    """
    layer_step: np.ndarray
    total: int

    @property
    def per_layer(self) -> np.ndarray:
        return self.layer_step.sum(axis=1)


@lru_cache(maxsize=1 << 16)
def accumulate_cycles(taps: tuple, skipping: bool = True) -> int:
    """Cycles in ACCUMULATE for one (position, group): ``taps`` is, per kernel tap in order,
    the input word's nonzero count, or -1 for a tap outside the map.

    The state issues one nonzero input per cycle and reads the next tap's word when the
    current word has at most one input left after this cycle (one read in flight); a tap
    outside the map takes a fetch slot but no read. Skipping off: every tap is read and
    issues all C_in channels (the caller passes C_in for every tap).
    """
    n_taps = len(taps)
    current, pending, pending_nz, fetch, cycles = 0, False, 0, 0, 0
    while True:
        cycles += 1
        remaining = max(current - 1, 0)
        if remaining:
            after = remaining
        elif pending:
            after = pending_nz
        else:
            after = 0
        taps_left = fetch < n_taps
        done = not taps_left and not pending and not remaining
        pending = False
        if taps_left and after <= 1:
            if taps[fetch] >= 0 or not skipping:
                pending, pending_nz = True, max(taps[fetch], 0)
            fetch += 1
        current = after
        if done:
            return cycles


def layer_inputs(net: NetworkExport, res: GoldenResult, index: int) -> list:
    """Per layer, its integer input map at every step of sample ``index``: [T, C, H, W]."""
    x = [res.inputs[index].astype(np.int64)]
    for i, layer in enumerate(net.spiking_layers):
        x.append(sum_pool(res.spikes[i][index], layer.pool))
    return x


def tap_counts(lp: LayerPlan, x: np.ndarray) -> np.ndarray:
    """Nonzero inputs of every kernel tap of every output position, -1 outside the map:
    int64 [T, H_out, W_out, taps] for the layer's input ``x`` [T, C, H, W]."""
    T = x.shape[0]
    nz = (x != 0).sum(axis=1)                                   # [T, H, W]
    p = lp.padding
    padded = np.pad(nz, ((0, 0), (p, p), (p, p)), constant_values=-1)
    kh, kw = lp.kernel
    win = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(1, 2))
    return win.reshape(T, lp.out_height, lp.out_width, kh * kw)


def visit_positions(lp: LayerPlan) -> list:
    """Output positions (y, x) in the core's order, and whether each closes a pool window."""
    P = lp.pool
    out = []
    for wy in range(lp.out_height // P):
        for wx in range(lp.out_width // P):
            for dy in range(P):
                for dx in range(P):
                    out.append((wy * P + dy, wx * P + dx, dy == P - 1 and dx == P - 1))
    return out


def _group_open(lp: LayerPlan, channels: np.ndarray, lanes: int) -> np.ndarray:
    """Per group: any computed channel (the group's lanes are not all masked or closed)."""
    padded = np.zeros(lp.groups * lanes, bool)
    padded[:lp.out_channels] = channels
    return padded.reshape(lp.groups, lanes).any(axis=1)


def _spiking_layer(p: CoreParams, lp: LayerPlan, le, counts, res, index, t) -> int:
    """Cycles of spiking layer ``lp`` at step ``t`` from LAYER_START (or its first POSITION)
    to its LAYER_DONE, that cycle included."""
    pruning = p.spatial_pruning or p.channel_gating
    cycles = 1 if pruning else 0                                  # LAYER_START
    if p.channel_gating and lp.gated and le.gated:
        cycles += lp.groups * (lp.in_channels + 3)                # GATE_CLEAR, _FEED, _STORE
    if p.skipping:
        computed = res.positions[lp.index][index, t]
        groups_open = _group_open(lp, res.channels[lp.index][index, t], p.lanes)
    else:
        computed = np.ones((lp.out_height, lp.out_width), bool)
        groups_open = np.ones(lp.groups, bool)
    static = le.position_mask.astype(bool) if p.skipping else computed
    scoring = (p.spatial_pruning and t > 0 and le.spatial_pruning
               and int(le.spatial_threshold[0]) > -lp.out_channels)
    open_count = int(groups_open.sum())
    for y, x, closes_window in visit_positions(lp):
        cycles += 2                                               # POSITION, POSITION_CHECK
        if static[y, x]:
            if scoring:
                cycles += 2 * lp.groups + 1                       # SCORE_ADDR/_ACC, DECIDE
            if scoring and not computed[y, x]:
                cycles += 2 * lp.groups                           # PRUNE_ADDR/_WRITE
            else:
                acc = accumulate_cycles(tuple(int(n) for n in counts[t, y, x]), p.skipping)
                cycles += 2 * lp.groups                           # GROUP, GROUP_CHECK
                cycles += open_count * (acc + 2)                  # ACCUMULATE, DRAIN, NEURON
                if pruning and t == 0:
                    cycles += lp.groups - open_count              # INIT_ZERO
        cycles += int(closes_window)                              # POOL_WRITE
    return cycles + 1                                             # LAYER_DONE


def _classifier_groups(p: CoreParams, lp: LayerPlan, counts, t) -> int:
    """Cycles of the classifier at step ``t`` from LAYER_START (or POSITION) to the NEURON
    cycle of its last group, that cycle included (its last record)."""
    pruning = p.spatial_pruning or p.channel_gating
    acc = accumulate_cycles(tuple(int(n) for n in counts[t, 0, 0]), p.skipping)
    return int(pruning) + 1 + lp.groups * (acc + 4)


def core_cycles(p: CoreParams, net: NetworkExport, res: GoldenResult, index: int = 0) -> CoreCycles:
    """The cycles of sample ``index`` of golden result ``res`` on the core ``p`` (module
    docstring). ``res`` must be ``net``'s golden result."""
    p.check_export(net)
    T = p.timesteps
    inputs = layer_inputs(net, res, index)
    counts = []
    for lp, x in zip(p.layers, inputs):
        c = tap_counts(lp, x)
        if not p.skipping:
            c = np.full_like(c, lp.in_channels)
        counts.append(c)
    load = p.input_height * p.input_width
    fc = p.classifier
    stamps = np.zeros((len(p.layers), T), np.int64)
    now = -1                      # the cycle before the first LOAD cycle
    for t in range(T):
        now += load               # LOAD
        if p.channel_gating and t == 0:
            now += p.prior_depth  # PRIOR_CLEAR
        for lp, le in zip(p.spiking_layers, net.spiking_layers):
            now += _spiking_layer(p, lp, le, counts[lp.index], res, index, t)
            stamps[lp.index, t] = now
        now += _classifier_groups(p, fc, counts[fc.index], t)
        stamps[fc.index, t] = now
        now += 2                  # POOL_WRITE, LAYER_DONE
    total = now + fc.groups + 1   # LOGITS, then the edge that closes the last one
    flat = stamps.T.reshape(-1)   # (step, layer) order, as records arrive
    spans = np.diff(np.concatenate([[0], flat])).reshape(T, -1).T
    return CoreCycles(layer_step=spans.astype(np.int64), total=int(total))
