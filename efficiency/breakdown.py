"""Where the work of a dense network goes in the core: skipped or done (NumPy, no torch).

The core does three kinds of skipping (docs/HARDWARE.md): it does not visit masked or
pruned positions, it does not compute closed or masked channels (it packs the computed
channels of each window of two groups into as few groups of ``lanes`` as hold them, so
closed channels cost no issue), and it issues only the nonzero inputs of
a receptive field (so nothing from an input channel the previous layer did not compute:
its spikes are 0). :func:`skip_breakdown` splits a layer's dense synaptic operations
(every in-map tap; padding taps are not operations) into those skipped parts and the
operations done, and does the same for input issues (the cycle-level view: one issue feeds
every lane of a group). The parts add up exactly:

    dense_ops  = skipped_position_ops + skipped_channel_ops + skipped_input_channel_ops
                 + skipped_zero_input_ops + synaptic_ops
    dense_issues = skipped_position_issues + skipped_group_issues
                   + skipped_zero_input_issues + events

``ops`` (= dense_ops - skipped position, channel and input-channel ops) is the operation
count the tables use (``golden.operation_counts``, docs/INTEGER_SPEC.md): the paper's
FLOPs of the computed neurons from the computed input channels, every input counted,
zero or not, so it is larger than the synaptic operations a core that skips zero inputs
(spikes are sparse) does. ``ops_output_only`` is the earlier count, ``k^2 x C_in x
computed channels x computed positions`` (padding taps and closed input channels
included), against ``dense_ops_padded``.

:func:`lane_use` splits a layer's lane-cycles (``lanes x cycles``) into lane additions
and idle lane-cycles, by cause, from the core's own counters and cycle count.
"""
from __future__ import annotations

import numpy as np

from golden.model import dense_counts, step_work, valid_taps


def skip_breakdown(net, res, lanes: int) -> list:
    """Per layer of ``net``, summed over ``res``'s samples and steps (``res``: a
    :func:`golden.run` result): dense, skipped and done work, in synaptic operations
    (``*_ops``) and in input issues (``*_issues``), and the position and channel counts."""
    work = step_work(net, res, lanes)
    B, T = res.inputs.shape[:2]
    out = []
    for i, (layer, w) in enumerate(zip(net.layers, work)):
        hw = layer.out_height * layer.out_width if layer.kind == "conv" else 1
        c_out, fan_in = layer.out_channels, layer.fan_in
        groups = -(-c_out // lanes)
        if layer.kind == "conv":
            pos = res.positions[i].reshape(B * T, -1).sum(axis=1).astype(np.int64)
            chan = res.channels[i].reshape(B * T, -1)
        else:
            pos = np.ones(B * T, np.int64)
            chan = np.ones((B * T, c_out), bool)
        open_ch = chan.sum(axis=1).astype(np.int64)
        packed = w["packed_groups"].reshape(B * T).astype(np.int64)
        steps = B * T
        row = {"layer": i, "kind": layer.kind, "steps": steps, "fan_in": fan_in,
               "out_channels": c_out, "positions_per_step": hw, "groups": groups,
               "position_steps": steps * hw, "positions_computed": int(pos.sum()),
               "neurons_dense": steps * hw * c_out,
               "neurons_computed": int((pos * open_ch).sum()),
               "events": int(w["events"].sum()), "synaptic_ops": int(w["synaptic_ops"].sum()),
               "neuron_updates": int(w["neuron_updates"].sum())}
        row.update(dense_counts(layer, steps))
        c_in = layer.in_channels
        taps = valid_taps(layer).reshape(-1)
        tap_sum = ((res.positions[i].reshape(B * T, -1) * taps).sum(axis=1) if layer.kind == "conv"
                   else np.full(B * T, int(taps.sum()))).astype(np.int64)
        position_ops = int(tap_sum.sum()) * c_out * c_in
        channel_ops = int((tap_sum * open_ch).sum()) * c_in
        row["ops"] = int(w["ops"].sum())
        row["ops_output_only"] = int(w["ops_output_only"].sum())
        row["skipped_position_ops"] = row["dense_ops"] - position_ops
        row["skipped_channel_ops"] = position_ops - channel_ops
        row["skipped_input_channel_ops"] = channel_ops - row["ops"]
        row["skipped_zero_input_ops"] = row["ops"] - row["synaptic_ops"]
        row["dense_issues"] = steps * hw * groups * fan_in
        position_issues = int(pos.sum()) * groups * fan_in
        packed_issues = int((pos * packed).sum()) * fan_in
        row["skipped_position_issues"] = row["dense_issues"] - position_issues
        row["skipped_group_issues"] = position_issues - packed_issues
        row["skipped_zero_input_issues"] = packed_issues - row["events"]
        out.append(row)
    return out


def lane_use(lanes: int, cycles: float, events: float, synaptic_ops: float) -> dict:
    """A layer's lane-cycles split by what the lanes did, from the core's cycle count and
    counters: ``adds`` (lane additions, the synaptic operations), ``idle_in_issue`` (lanes
    of a packed group that receives an input but that the group does not fill) and
    ``idle_no_issue`` (every lane, in cycles that issue no input: neuron updates, window
    set-up, pruning passes, frame loading)."""
    if cycles < events:
        raise ValueError(f"cycles {cycles} < events {events}: one event takes one cycle")
    total = lanes * cycles
    return {"lane_cycles": total, "adds": synaptic_ops,
            "idle_in_issue": lanes * events - synaptic_ops,
            "idle_no_issue": lanes * (cycles - events),
            "utilization": synaptic_ops / total if total else 0.0}


def count_differences(sources: dict, keys=("events", "synaptic_ops", "neuron_updates")) -> list:
    """Where per-layer count rows from several sources disagree.

    ``sources``: {name: [row per layer]} (a source may have ``None`` for a layer it does not
    count). Returns ``[(layer, key, {name: value})]`` for every layer and key on which two
    sources that both count it differ; empty when they all agree."""
    names = list(sources)
    n = max(len(rows) for rows in sources.values())
    out = []
    for layer in range(n):
        for key in keys:
            values = {}
            for name in names:
                rows = sources[name]
                row = rows[layer] if layer < len(rows) else None
                if row is not None and key in row:
                    values[name] = int(row[key])
            if len(set(values.values())) > 1:
                out.append((layer, key, values))
    return out
