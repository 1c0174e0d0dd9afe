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

``python -m hw.perf --config X.yaml [--export DIR] [--inputs X.npy] [--lanes 16,32,64,128]
[--json OUT]`` prints, per lane count, every layer's predicted cycles, its lane bound
(synaptic ops / lanes), the lane utilization and its SRAM bits. Without ``--export`` and
``--inputs`` it uses the network and inputs the last ``make sim CONFIG=X`` co-simulated
(``build/<name>/sim_summary.json``).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

import golden
from golden.model import GoldenResult, step_work, sum_pool
from model_export.format import ExportError, NetworkExport, load_export
from project_config import Config, UserError, cli_main, load_config
from project_config.cli import add_config, add_export, add_json, parser
from project_config.files import check_output_file, write_json_report
from .params import PACK_GROUPS, CoreParams, LayerPlan


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


def position_accumulate(lp: LayerPlan, taps: np.ndarray, skipping: bool = True) -> int:
    """Cycles in ACCUMULATE for one packed group of a position whose kernel taps have
    ``taps`` nonzero inputs (-1 outside the map). With window fetch the window is one word,
    already in the window register: one cycle per nonzero input, at least one."""
    if lp.window_fetch:
        return max(int(np.maximum(taps, 0).sum()), 1)
    return accumulate_cycles(tuple(int(n) for n in taps), skipping)


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


def _padded(lp: LayerPlan, bits: np.ndarray, lanes: int) -> np.ndarray:
    """Per-channel bits padded to whole windows: [windows, PACK_GROUPS, lanes]."""
    out = np.zeros(lp.windows * PACK_GROUPS * lanes, bool)
    out[:lp.out_channels] = bits
    return out.reshape(lp.windows, PACK_GROUPS, lanes)


def window_plan(p: CoreParams, lp: LayerPlan, computed: np.ndarray, first_step: bool) -> list:
    """Per packing window of one computed position: (packed groups, fixed cycles), the
    fixed cycles being every state but ACCUMULATE, DRAIN and EXPAND (docs/HARDWARE.md,
    "Schedule"). ``computed``: the layer's computed channels at this step (bool [C_out])."""
    L = p.lanes
    live = _padded(lp, computed, L).any(axis=2)                  # [windows, 2]
    valid = _padded(lp, np.ones(lp.out_channels, bool), L)
    exists = valid.any(axis=2)
    if not p.skipping:
        sched = valid.sum(axis=(1, 2))
    elif lp.kind == "fc":
        sched = (valid & live[:, :, None]).sum(axis=(1, 2))
    else:
        sched = _padded(lp, computed, L).sum(axis=(1, 2))
    zero_ok = (p.spatial_pruning or p.channel_gating) and first_step and lp.kind == "conv"
    out = []
    for w in range(lp.windows):
        packed = -(-int(sched[w]) // L)
        fixed = 1 + int(packed == 0)                              # WINDOW, WIN_EMPTY
        neuron = [not p.skipping or bool(live[w, h]) for h in (0, 1)]
        zero = [zero_ok and not live[w, h] for h in (0, 1)]
        fixed += int(neuron[0] or zero[0])                        # NEURON / INIT_ZERO
        if exists[w, 1]:
            fixed += int(neuron[1] or zero[1])                    # NEURON / INIT_ZERO
        out.append((packed, fixed))
    return out


def _position_cycles(plan: list, acc: int) -> int:
    """Cycles of one computed position's windows: each packed group ACCUMULATE + DRAIN, and
    EXPAND between a window's two packed groups (the last one's currents are read
    unregistered)."""
    return sum(packed * (acc + 1) + max(packed - 1, 0) + fixed for packed, fixed in plan)


def _spiking_layer(p: CoreParams, lp: LayerPlan, le, counts, res, index, t) -> int:
    """Cycles of spiking layer ``lp`` at step ``t`` from LAYER_START (or its MASK pass)
    to its LAYER_DONE, that cycle included."""
    pruning = p.spatial_pruning or p.channel_gating
    cycles = 1 if pruning else 0                                  # LAYER_START
    if p.channel_gating and lp.gated and le.gated:
        cycles += lp.groups * (lp.in_channels + 3)                # GATE_CLEAR, _FEED, _STORE
    cycles += 2 * lp.groups                                       # MASK_ADDR, MASK_AND
    if p.skipping:
        computed = res.positions[lp.index][index, t]
        channels = res.channels[lp.index][index, t]
    else:
        computed = np.ones((lp.out_height, lp.out_width), bool)
        channels = np.ones(lp.out_channels, bool)
    static = le.position_mask.astype(bool) if p.skipping else computed
    scoring = (p.spatial_pruning and t > 0 and le.spatial_pruning
               and int(le.spatial_threshold[0]) > -lp.out_channels)
    plan = window_plan(p, lp, channels, t == 0)
    for y, x, closes_window in visit_positions(lp):
        cycles += 1                                               # POSITION_CHECK
        if static[y, x]:
            if scoring and not computed[y, x]:
                cycles += 2 * lp.groups - 1                       # PRUNE_WRITE, _ADDR
            else:
                acc = position_accumulate(lp, counts[t, y, x], p.skipping)
                # The first window's WINDOW cycle is POSITION_CHECK's.
                cycles += _position_cycles(plan, acc) - 1
        cycles += int(closes_window)                              # POOL_WRITE
    return cycles + 1                                             # LAYER_DONE


def _classifier_groups(p: CoreParams, lp: LayerPlan, le, counts, t) -> int:
    """Cycles of the classifier at step ``t`` from LAYER_START (or its MASK pass) to the NEURON
    cycle of its last group, that cycle included (its last record)."""
    pruning = p.spatial_pruning or p.channel_gating
    acc = position_accumulate(lp, counts[t, 0, 0], p.skipping)
    channels = le.channel_mask.astype(bool).reshape(-1)
    return (int(pruning) + 2 * lp.groups + 1                      # LAYER_START, MASK, POSITION
            + _position_cycles(window_plan(p, lp, channels, t == 0), acc))


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
        now += _classifier_groups(p, fc, net.layers[fc.index], counts[fc.index], t)
        stamps[fc.index, t] = now
        now += 2                  # POOL_WRITE, LAYER_DONE
    total = now + fc.groups + 1   # LOGITS, then the edge that closes the last one
    flat = stamps.T.reshape(-1)   # (step, layer) order, as records arrive
    spans = np.diff(np.concatenate([[0], flat])).reshape(T, -1).T
    return CoreCycles(layer_step=spans.astype(np.int64), total=int(total))


# --- reporting -------------------------------------------------------------------------

def layer_sram_bits(p: CoreParams) -> list:
    """SRAM bits each layer occupies in the core's memories (as hw.params lays them out)."""
    L = p.lanes
    out = []
    for lp in p.layers:
        bits = lp.groups * lp.taps * lp.in_channels * L * p.weight_bits      # weights
        bits += lp.groups * L * (p.threshold_lane_width + 1)                 # thresholds, mask
        bits += lp.act_depth * lp.act_width * lp.act_copies                  # input map(s)
        if lp.kind == "conv":
            bits += lp.positions * (lp.groups * L * p.membrane_bits + 1)     # membranes, mask
            if p.spatial_pruning:
                bits += lp.positions * p.importance_width                    # importance
        out.append(int(bits))
    return out


def lane_report(p: CoreParams, net: NetworkExport, res: GoldenResult) -> dict:
    """Predicted cycles of every sample of ``res`` and, per layer, the lane bound (synaptic
    ops / lanes: no lane-parallel core can take fewer cycles) and the lane utilization
    (synaptic ops / (lanes x cycles))."""
    B = res.inputs.shape[0]
    runs = [core_cycles(p, net, res, i) for i in range(B)]
    work = step_work(net, res, p.lanes)
    layer_step = np.mean([r.layer_step for r in runs], axis=0)
    ops = np.array([w["synaptic_ops"].sum() / B for w in work])
    cycles = layer_step.sum(axis=1)
    sram = layer_sram_bits(p)
    layers = [{"layer": lp.index, "cycles": float(c), "synaptic_ops": float(o),
               "lane_bound": float(o / p.lanes), "utilization": float(o / (p.lanes * c)),
               "sram_bits": s, "cycles_per_step": [float(v) for v in row]}
              for lp, c, o, s, row in zip(p.layers, cycles, ops, sram, layer_step)]
    total_ops = float(ops.sum())
    total = float(np.mean([r.total for r in runs]))
    return {"lanes": p.lanes, "samples": B, "layers": layers,
            "cycles_per_inference": total, "synaptic_ops": total_ops,
            "lane_bound": total_ops / p.lanes,
            "utilization": total_ops / (p.lanes * total), "sram_bits": int(sum(sram)),
            "cycles_per_sample": [r.total for r in runs]}


def format_report(rep: dict) -> list:
    """Lines of the per-layer table of one :func:`lane_report`."""
    lines = [f"{rep['lanes']} lanes, {rep['samples']} sample(s), per inference:",
             f"  {'layer':>5} {'cycles':>11} {'lane bound':>11} {'utilization':>11} "
             f"{'SRAM bits':>12}"]
    for row in rep["layers"]:
        lines.append(f"  {row['layer']:>5} {row['cycles']:>11.0f} {row['lane_bound']:>11.0f} "
                     f"{row['utilization']:>10.1%} {row['sram_bits']:>12,}")
    lines.append(f"  {'total':>5} {rep['cycles_per_inference']:>11.0f} {rep['lane_bound']:>11.0f} "
                 f"{rep['utilization']:>10.1%} {rep['sram_bits']:>12,}")
    return lines


def _lane_counts(text: str) -> list:
    try:
        lanes = [int(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"--lanes: {text!r} is not a comma list of integers") from None
    bad = [v for v in lanes if not 1 <= v <= 1024]
    if bad:
        raise UserError(f"--lanes: {bad[0]} is outside hardware.lanes' range 1..1024")
    return lanes


def _case(cfg: Config, export: str | None, inputs: str | None):
    """(export dir, integer inputs) from the options, else from the last make sim's summary."""
    summary = Path("build") / cfg.name / "sim_summary.json"
    if export is None or inputs is None:
        if not summary.is_file():
            raise UserError(f"{summary}: not found; run `make sim CONFIG={cfg.name}` first, or "
                            "give --export and --inputs")
        done = json.loads(summary.read_text())
        if "export" not in done or "inputs" not in done:
            raise UserError(f"{summary}: names no export and inputs (written by an older "
                            f"make sim); run `make sim CONFIG={cfg.name}` again")
        export = export or done["export"]
        inputs = inputs or done["inputs"]
    try:
        x = np.load(inputs, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"{inputs}: cannot read integer inputs ({e})") from None
    if x.dtype.kind not in "iu":
        raise UserError(f"{inputs}: inputs must be integers, got {x.dtype}")
    return export, x


def main(argv=None):
    ap = parser("python -m hw.perf", __doc__)
    add_config(ap)
    add_export(ap)
    ap.add_argument("--inputs", help=".npy of integer inputs [B, T, C, H, W] (or [B, C, H, W])")
    ap.add_argument("--lanes", help="comma list of lane counts to predict (default hardware.lanes)")
    add_json(ap)
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    lanes = _lane_counts(args.lanes) if args.lanes else [cfg.hardware["lanes"]]
    if args.json:
        check_output_file(args.json, "--json")      # before golden runs, not after
    export, x = _case(cfg, args.export, args.inputs)
    net = load_export(export)
    try:
        res = golden.run(net, x)
    except ValueError as e:
        raise UserError(f"{args.inputs or export}: {e}") from None
    reports = []
    for n in lanes:
        p = CoreParams(dataclasses.replace(cfg, hardware={**cfg.hardware, "lanes": n}))
        p.check_export(net, where=str(export))
        rep = lane_report(p, net, res)
        reports.append(rep)
        print("\n".join(format_report(rep)))
    if args.json:
        write_json_report(args.json, {"config": cfg.path, "export": str(export),
                                      "reports": reports})
    return 0


def cli():
    """Console-script entry point (pyproject [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
