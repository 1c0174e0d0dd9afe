"""Functional coverage of the co-simulation (cocotb-coverage), sampled by the testbench.

The bins come from the integer contract (docs/INTEGER_SPEC.md) and are the same for every
network, so that the files of many simulations (sim.regress's workers) merge by adding hits:

- ``shape.*``: spiking layers, kernels, padding, pooling, membrane mode, weight bits, lanes,
  steps (section 1);
- ``weights.code``: every PoT code (section 2) per weight width, crossed: (bits, sign, e),
  the negative zero (sign 1, e 0) included;
- ``thresholds.hit``: a computed neuron's current exactly on its ``F``, ``P`` or ``N``
  (the ties of section 4), crossed with the membrane mode; ``thresholds.saturated``: a
  threshold clamped to either end of its range (section 4, "Saturation");
- ``masks.channel`` / ``masks.position``: static masks that gate everything, nothing or
  a part (section 5);
- ``gates``: a gated layer's channel open or closed at a step, and steps at which every
  unmasked channel is open or closed; ``pruning``: steps with and without pruned positions;
- ``pooled.count``: the sum-pooled spike counts 0 to 4 that a pool-2 layer passes on;
- ``stream.backpressure``: how long the record stream's ready stays low on a shown record;
- ``reset``: reset asserted in the middle of an inference, while the first frame loads or
  later (the scheduler's state is internal to the core and not visible at the ports).

:func:`sample_export`, :func:`sample_inference`, :func:`sample_backpressure` and
:func:`sample_reset` record hits; :func:`save` writes ``{item: {bin: hits}}`` as JSON;
:func:`merge` adds such files; :func:`write_report` writes the merged JSON and a markdown
report listing every bin never hit.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from golden.model import sum_pool, synaptic_current
from project_config.files import atomic_write

PREFIX = "spquant"
RUN_BINS = [0, 1, 2, 3, "4+"]        # backpressure: cycles a shown record waits

BINS = {
    "shape.spiking_layers": [1, 2, 3],
    "shape.kernel": [1, 2, 3, 5],
    "shape.padding": [0, 1, 2],
    "shape.pool": [1, 2],
    "shape.membrane": ["ternary", "binary"],
    "shape.weight_bits": [2, 4],
    "shape.lanes": list(range(1, 9)),
    "shape.timesteps": ["1", "2-4", "5-8", "9-16"],
    "weights.code": [f"{b}-bit sign {s} e {e}" for b in (2, 4) for s in (0, 1)
                     for e in range(1 << (b - 1))],
    "thresholds.hit": [f"{m} I == {k}" for m in ("ternary", "binary")
                       for k in ("F", "P", "N") if (m, k) != ("binary", "N")],
    "thresholds.saturated": [f"{k} {end}" for k in ("F", "P", "N") for end in ("min", "max")],
    "masks.channel": ["all", "none", "part"],
    "masks.position": ["all", "none", "part"],
    "gates": ["open", "closed", "step all open", "step all closed"],
    "pruning": ["step with pruned positions", "step without"],
    "pooled.count": [0, 1, 2, 3, 4],
    "stream.backpressure": RUN_BINS,
    "reset": ["during the first frame", "after the first frame"],
}

_POINTS = {}


def _point(item: str):
    """The sampler of cover point ``item``: called with the set of bins observed, it hits
    each of them once (a cocotb-coverage CoverPoint with a membership relation)."""
    if item not in _POINTS:
        # Only the testbench samples: merging and reporting need no cocotb-coverage.
        from cocotb_coverage.coverage import CoverPoint

        @CoverPoint(f"{PREFIX}.{item}", xf=lambda seen: seen, rel=lambda seen, b: b in seen,
                    bins=BINS[item], inj=False)     # a set of values: hit every bin in it
        def sample(seen):
            pass
        _POINTS[item] = sample
    return _POINTS[item]


def _hit(item: str, seen):
    seen = set(seen) & set(BINS[item])
    if seen:
        _point(item)(seen)


def _steps_bin(t: int) -> str:
    return "1" if t == 1 else "2-4" if t <= 4 else "5-8" if t <= 8 else "9-16"


def _mask_bin(mask) -> str:
    return "all" if mask.all() else "none" if not mask.any() else "part"


def sample_export(net) -> None:
    """The network's shape, weight codes, saturated thresholds and static masks."""
    spiking = net.spiking_layers
    _hit("shape.spiking_layers", [len(spiking)])
    _hit("shape.kernel", [l.kernel[0] for l in spiking])
    _hit("shape.padding", [l.padding for l in spiking])
    _hit("shape.pool", [l.pool for l in spiking])
    _hit("shape.membrane", [net.membrane])
    _hit("shape.timesteps", [_steps_bin(net.timesteps)])
    codes = set()
    for layer in net.layers:
        b = layer.weight_bits
        _hit("shape.weight_bits", [b])
        for code in np.unique(layer.w_code):
            codes.add(f"{b}-bit sign {int(code) >> (b - 1)} e {int(code) & ((1 << (b - 1)) - 1)}")
    _hit("weights.code", codes)
    saturated = set()
    for layer in spiking:
        lo, hi = -(1 << (layer.acc_width - 1)), (1 << (layer.acc_width - 1)) - 1
        kinds = ("F", "P", "N") if net.membrane == "ternary" else ("F", "P")
        for k, name in enumerate(kinds):
            col = layer.thresholds[:, :, k]
            saturated |= {f"{name} min"} if (col == lo).any() else set()
            saturated |= {f"{name} max"} if (col == hi).any() else set()
        _hit("masks.channel", [_mask_bin(layer.channel_mask)])
        _hit("masks.position", [_mask_bin(layer.position_mask)])
    _hit("thresholds.saturated", saturated)


def sample_lanes(lanes: int) -> None:
    _hit("shape.lanes", [lanes])


def sample_inference(net, ref, index: int) -> None:
    """Golden sample ``index``: thresholds hit exactly, gates, pruning, pooled counts."""
    x = ref.inputs[index].astype(np.int64)                     # [T, C, H, W]
    hits, gates, pruning = set(), set(), set()
    for i, layer in enumerate(net.spiking_layers):
        cur = synaptic_current(layer, x)                       # [T, C, H, W]
        q = ref.membranes[i][index].astype(np.int64)
        q_prev = np.concatenate([np.zeros_like(q[:1]), q[:-1]])
        level = q_prev + 1 if net.membrane == "ternary" else q_prev
        c = np.arange(layer.out_channels)[None, :, None, None]
        computed = (ref.positions[i][index][:, None] & ref.channels[i][index][:, :, None, None])
        kinds = ("F", "P", "N") if net.membrane == "ternary" else ("F", "P")
        for k, name in enumerate(kinds):
            thr = layer.thresholds[:, :, k][c, level]
            if ((cur == thr) & computed).any():
                hits.add(f"{net.membrane} I == {name}")
        if layer.gated:
            allowed = layer.channel_mask.astype(bool)
            opened = ref.channels[i][index][:, allowed]         # [T, unmasked channels]
            if opened.size:
                gates |= {"open"} if opened.any() else set()
                gates |= {"closed"} if (~opened).any() else set()
                gates |= {"step all open"} if opened.all(axis=1).any() else set()
                gates |= {"step all closed"} if (~opened).all(axis=1).any() else set()
        if layer.spatial_threshold is not None:
            static = layer.position_mask.astype(bool)
            pruned = (static[None] & ~ref.positions[i][index]).any(axis=(1, 2))   # [T]
            pruning |= {"step with pruned positions"} if pruned.any() else set()
            pruning |= {"step without"} if (~pruned).any() else set()
        x = sum_pool(ref.spikes[i][index], layer.pool)
        if layer.pool == 2:
            _hit("pooled.count", np.unique(x).tolist())
    _hit("thresholds.hit", hits)
    _hit("gates", gates)
    _hit("pruning", pruning)


def sample_backpressure(runs) -> None:
    """Cycles each shown record waited for ``ready`` (0: taken at once)."""
    _hit("stream.backpressure", {r if r < 4 else "4+" for r in runs})


def sample_reset(cycle: int, frame_len: int) -> None:
    """A reset ``cycle`` cycles into an inference whose frames are ``frame_len`` words."""
    _hit("reset", ["during the first frame" if cycle < frame_len else "after the first frame"])


def hits() -> dict:
    """{item: {bin: hits}} of every bin of :data:`BINS` (0 for items never sampled)."""
    from cocotb_coverage.coverage import coverage_db     # as in _point: sampling only
    out = {}
    for item, bins in BINS.items():
        name = f"{PREFIX}.{item}"
        got = coverage_db[name].detailed_coverage if name in coverage_db else {}
        out[item] = {str(b): int(got.get(b, 0)) for b in bins}
    return out


def save(path) -> None:
    """Write this process's hits as JSON (atomically)."""
    atomic_write(Path(path), json.dumps(hits(), indent=1))


def merge(files) -> dict:
    """The hits of several :func:`save` files added bin by bin (every bin of :data:`BINS`)."""
    total = {item: {str(b): 0 for b in bins} for item, bins in BINS.items()}
    for f in files:
        for item, bins in json.loads(Path(f).read_text()).items():
            for b, n in bins.items():
                if item in total and b in total[item]:
                    total[item][b] += int(n)
    return total


def summary(total: dict) -> dict:
    """Bins hit, bins in all, and the bins never hit, per item and overall."""
    missed = {item: [b for b, n in bins.items() if n == 0] for item, bins in total.items()}
    size = sum(len(b) for b in total.values())
    hit = size - sum(len(m) for m in missed.values())
    return {"bins": size, "hit": hit, "percent": round(100 * hit / size, 2) if size else 0.0,
            "never_hit": {k: v for k, v in missed.items() if v}}


def write_report(total: dict, json_path, md_path, title: str) -> dict:
    """``coverage.json`` (hits and summary) and a markdown report; returns the summary."""
    s = summary(total)
    atomic_write(Path(json_path), json.dumps({"summary": s, "hits": total}, indent=1))
    lines = [f"# Functional coverage: {title}", "",
             f"{s['hit']} of {s['bins']} bins hit ({s['percent']}%).", "",
             "| item | bins hit | never hit |", "|---|---|---|"]
    for item, bins in total.items():
        n = sum(1 for v in bins.values() if v)
        lines.append(f"| {item} | {n}/{len(bins)} | {', '.join(s['never_hit'].get(item, [])) or '-'} |")
    atomic_write(Path(md_path), "\n".join(lines) + "\n")
    return s
