"""Design-space estimates for making closed and masked channels free (docs/HARDWARE.md,
"Dense lanes: the alternatives").

Each :class:`Variant` changes one thing in the schedule of the core as it was before
packing (fixed groups of consecutive channels, the schedule these estimates were made to
choose from): how output channels are packed into lane groups, what a (position, group) costs
besides issuing inputs, how kernel taps are fetched, whether the frame load overlaps the
previous step. The estimates share the exact model's activity (golden's nonzero inputs per
tap, computed positions and channels), so they differ from it only by the change named;
hw.perf is the exact model of the core as built (packing within windows of 2 groups).

``python -m hw.perf_explore --config vgg9.yaml`` prints the table for the case the last
``make sim CONFIG=vgg9`` ran.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import golden
from golden.model import GoldenResult, step_work
from model_export.format import NetworkExport, load_export
from project_config import cli_main, load_config
from project_config.cli import add_config, add_export, add_json, parser
from project_config.files import check_output_file, write_json_report
from .params import CoreParams
from .perf import _case, accumulate_cycles, core_cycles, layer_inputs, tap_counts, visit_positions


@dataclass(frozen=True)
class Variant:
    """One schedule.

    Members
    -------
    name : str
    packing : str
        ``"fixed"``: group g holds channels [gL, (g+1)L) and is skipped only when all are
        closed (the core before packing); ``"dense"``: the open channels of a (layer, step) packed into
        ceil(open / L) groups; ``"lane_banks"``: lane j may take any channel c = j mod L
        (a weight bank per lane), so a step needs max_j |open channels of lane j| groups;
        ``"permuted"``: fixed groups over channels relabelled at export time by how often
        they are open (measured on the same inputs: an upper bound for that idea);
        ``"window<k>"``: dense packing within each window of k consecutive groups (a
        compaction network over k x L channels instead of all of them).
    group_overhead : int
        Cycles of a computed (position, group) besides issuing its inputs: 6 before packing
        (GROUP, GROUP_CHECK, two cycles of first fetch, DRAIN, NEURON); a closed group
        visited costs min(2, this).
    window_fetch : bool
        Layers with few input channels read a whole kernel window per cycle (one read per
        position instead of one per tap).
    load_overlap : bool
        The frame of step t+1 is loaded while step t computes (a second input buffer).
    """
    name: str
    packing: str = "fixed"
    group_overhead: int = 6
    window_fetch: bool = False
    load_overlap: bool = False


VARIANTS = (
    Variant("fixed groups (before packing)", group_overhead=6),
    Variant("dense packing", packing="dense"),
    Variant("packing within windows of 2 groups", packing="window2"),
    Variant("packing within windows of 4 groups", packing="window4"),
    Variant("export-time permutation", packing="permuted"),
    Variant("per-lane weight banks", packing="lane_banks"),
    Variant("fixed groups + overlapped set-up", group_overhead=1),
    Variant("dense + overlapped set-up", packing="dense", group_overhead=1),
    Variant("dense + overlap + window fetch + frame overlap", packing="dense",
            group_overhead=1, window_fetch=True, load_overlap=True),
)


def groups_needed(variant: Variant, open_: np.ndarray, lanes: int, order=None) -> int:
    """Lane groups a (layer, step) runs for the open-channel vector ``open_`` [C]."""
    C = len(open_)
    if variant.packing == "dense":
        return math.ceil(int(open_.sum()) / lanes)
    if variant.packing.startswith("window"):
        # Packing within windows of k consecutive groups: each window's open channels in
        # ceil(open / L) groups; a compaction network over k * L channels only.
        k = int(variant.packing[len("window"):])
        span = k * lanes
        return sum(math.ceil(int(open_[i:i + span].sum()) / lanes) for i in range(0, C, span))
    if variant.packing == "lane_banks":
        per_lane = np.bincount(np.flatnonzero(open_) % lanes, minlength=lanes)
        return int(per_lane.max(initial=0))
    if variant.packing == "permuted":
        open_ = open_[order]
    groups = -(-C // lanes)
    padded = np.zeros(groups * lanes, bool)
    padded[:C] = open_
    return int(padded.reshape(groups, lanes).any(axis=1).sum())


def _window_cycles(taps: tuple) -> int:
    """ACCUMULATE when the whole window arrives in one read: max(1, nonzero inputs) + 1."""
    return max(1, sum(n for n in taps if n > 0)) + 1


def estimate(p: CoreParams, net: NetworkExport, res: GoldenResult, variant: Variant,
             index: int = 0) -> np.ndarray:
    """Estimated cycles per layer (summed over steps) of sample ``index`` under ``variant``."""
    T, L = p.timesteps, p.lanes
    inputs = layer_inputs(net, res, index)
    out = np.zeros(len(p.layers))
    for lp, le, x in zip(p.layers, net.layers, inputs):
        counts = tap_counts(lp, x)
        fc = lp.kind == "fc"
        chans = (np.ones((T, lp.out_channels), bool) if fc
                 else res.channels[lp.index][index])
        order = np.argsort(-chans.mean(axis=0), kind="stable")
        few_inputs = lp.in_channels * lp.taps <= p.max_in_channels
        for t in range(T):
            g = groups_needed(variant, chans[t], L, order)
            cyc = 0
            positions = ([(0, 0, True)] if fc else visit_positions(lp))
            computed = (np.ones((1, 1), bool) if fc else res.positions[lp.index][index, t])
            static = np.ones((1, 1), bool) if fc else le.position_mask.astype(bool)
            scoring = (not fc and p.spatial_pruning and t > 0 and le.spatial_pruning
                       and int(le.spatial_threshold[0]) > -lp.out_channels)
            for y, xx, closes in positions:
                cyc += 1 if fc else 2
                if not static[y, xx]:
                    continue
                if scoring:
                    cyc += 2 * lp.groups + 1
                    if not computed[y, xx]:
                        cyc += 2 * lp.groups
                        continue
                taps = tuple(int(n) for n in counts[t, y, xx])
                acc = (_window_cycles(taps) if variant.window_fetch and few_inputs
                       else accumulate_cycles(taps))
                # ACCUMULATE has 2 cycles of first fetch; the rest issues inputs.
                cyc += g * (acc - 2 + variant.group_overhead)
                if variant.packing == "fixed":        # closed groups are still checked
                    cyc += (lp.groups - g) * min(2, variant.group_overhead)
                cyc += int(closes and not fc)
            cyc += 2 if fc else 1
            if lp.index == 0 and not (variant.load_overlap and t > 0):
                cyc += p.input_height * p.input_width
            out[lp.index] += cyc
    return out


def explore(p: CoreParams, net: NetworkExport, res: GoldenResult, variants=VARIANTS) -> list:
    """Per variant: estimated cycles, lane utilization (per layer and overall), and the
    ratio to the core with skipping off."""
    B = res.inputs.shape[0]
    ops = np.array([w["synaptic_ops"].sum() / B for w in step_work(net, res, p.lanes)])
    dense = sum(p.skip_disabled_cycles()["layers"])
    built = np.mean([core_cycles(p, net, res, i).per_layer for i in range(B)], axis=0)
    out = [{"variant": "as built (hw.perf, exact)", "cycles": float(built.sum()),
            "utilization": float(ops.sum() / (p.lanes * built.sum())),
            "layer_utilization": [float(o / (p.lanes * c)) for o, c in zip(ops, built)],
            "vs_skipping_off": float(dense / built.sum())}]
    for v in variants:
        cyc = np.mean([estimate(p, net, res, v, i) for i in range(B)], axis=0)
        out.append({"variant": v.name, "cycles": float(cyc.sum()),
                    "utilization": float(ops.sum() / (p.lanes * cyc.sum())),
                    "layer_utilization": [float(o / (p.lanes * c)) for o, c in zip(ops, cyc)],
                    "vs_skipping_off": float(dense / cyc.sum())})
    return out


def main(argv=None):
    ap = parser("python -m hw.perf_explore", __doc__)
    add_config(ap)
    add_export(ap)
    ap.add_argument("--inputs", help=".npy of integer inputs (default: the last make sim's)")
    add_json(ap)
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    if args.json:
        check_output_file(args.json, "--json")      # before the exploration, not after
    export, x = _case(cfg, args.export, args.inputs)
    net = load_export(export)
    p = CoreParams(cfg)
    rows = explore(p, net, golden.run(net, x))
    print(f"{'variant':<48} {'cycles':>11} {'util':>6} {'layer 0':>8} {'x skip-off':>10}")
    for r in rows:
        print(f"{r['variant']:<48} {r['cycles']:>11.0f} {r['utilization']:>6.1%} "
              f"{r['layer_utilization'][0]:>8.1%} {r['vs_skipping_off']:>10.2f}")
    if args.json:
        write_json_report(args.json, {"config": cfg.path, "export": str(export), "variants": rows})
    return 0


if __name__ == "__main__":
    cli_main(main)
