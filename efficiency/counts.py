"""Weight-aware work counts (NumPy, no torch): what zero weights cost and could save.

:func:`golden.work_counts` counts the work of a core that skips zero *inputs* and masked
or pruned positions and channels; it does not look at the weights, because the core does
not: all lanes of a group share one input per cycle, so an input is issued to the group
even when some (or all) of its live lanes hold a zero weight code for that tap, and a zero
code is an add of 0 in its lane. :func:`layer_counts` recomputes golden's keys from the
activity (so the same definitions serve a float-side count of a model that cannot be
exported) and adds:

- ``weighted_ops``: nonzero input x nonzero weight into a computed neuron: the synaptic
  additions of a datapath that also skips zero weights (Equation 31's ideal count);
- ``useful_events``: events (nonzero input issued to a packed group at a computed
  position) for which at least one channel of the packed group has a nonzero weight for
  that tap: the events a scheduler that skipped zero weights per group would still issue;
- ``computed_neurons`` (neuron x step actually updated), ``dense_neurons`` (all neurons,
  every step), ``weights`` and ``nonzero_weights``, ``kind``;
- ``ops``, ``ops_output_only``, ``dense_ops`` and ``dense_ops_padded``: the operation counts
  of ``golden.operation_counts`` and ``golden.dense_counts`` (docs/INTEGER_SPEC.md, work
  counts), with the same definitions.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

import golden
from golden.model import dense_counts, operation_counts, time_major_inputs
from project_config.geometry import PACK_GROUPS

CHUNK = 128    # samples x steps per block (bounds the im2col buffer)


def nonzero_codes(w_code: np.ndarray, bits: int) -> np.ndarray:
    """bool: the PoT codes that are not the zero code (exponent field e != 0)."""
    return (w_code.astype(np.int64) & ((1 << (bits - 1)) - 1)) != 0


def layer_counts(x_nonzero: np.ndarray, w_nonzero: np.ndarray, padding: int, lanes: int,
                 positions: np.ndarray | None = None, channels: np.ndarray | None = None,
                 kind: str = "conv", open_in: np.ndarray | None = None,
                 pack_groups: int = PACK_GROUPS) -> dict:
    """Counts of one layer over a batch of inputs.

    ``x_nonzero`` bool [N, C_in, H, W] (N = samples x steps), ``w_nonzero`` bool
    [C_out, C_in, kh, kw], ``positions`` bool [N, H_out, W_out] and ``channels`` bool
    [N, C_out] the computed positions and channels (all when None), ``open_in`` [N] the
    number of input channels computed by the previous layer (all ``C_in`` when None);
    ``pack_groups`` the core's packing window (golden.step_work).
    """
    x_nonzero = np.asarray(x_nonzero, bool)
    w_nonzero = np.asarray(w_nonzero, bool)
    n, c_in = x_nonzero.shape[:2]
    c_out, _, kh, kw = w_nonzero.shape
    h_out = x_nonzero.shape[2] + 2 * padding - kh + 1
    w_out = x_nonzero.shape[3] + 2 * padding - kw + 1
    hw, fan_in = h_out * w_out, c_in * kh * kw
    pos = (np.ones((n, hw), bool) if positions is None
           else np.asarray(positions, bool).reshape(n, hw))
    chan = (np.ones((n, c_out), bool) if channels is None
            else np.broadcast_to(np.asarray(channels, bool), (n, c_out)))
    groups = -(-c_out // lanes)
    # Packing windows of pack_groups groups (docs/INTEGER_SPEC.md section 9, `events`).
    windows, span = -(-groups // pack_groups), pack_groups * lanes
    wmat = w_nonzero.reshape(c_out, fan_in).astype(np.float64)
    w_win = np.pad(wmat, ((0, windows * span - c_out), (0, 0))).reshape(windows, span, fan_in)
    totals = dict.fromkeys(("synaptic_ops", "events", "neuron_updates", "weighted_ops",
                            "useful_events", "computed_neurons"), 0)
    for s in range(0, n, CHUNK):
        xs = np.pad(x_nonzero[s:s + CHUNK].astype(np.float64),
                    ((0, 0), (0, 0), (padding, padding), (padding, padding)))
        b = len(xs)
        win = np.lib.stride_tricks.sliding_window_view(xs, (kh, kw), axis=(2, 3))
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(b, hw, fan_in)   # [b, HW, fan_in]
        p = pos[s:s + b].astype(np.float64)                             # [b, HW]
        c = chan[s:s + b].astype(np.float64)                            # [b, C_out]
        c_grp = np.pad(c, ((0, 0), (0, groups * lanes - c_out))).reshape(b, groups, lanes)
        live = (c_grp.sum(axis=2) > 0).astype(np.float64)               # [b, G]
        # Packed group k of a window: its computed channels of rank kL .. kL + L - 1.
        c_win = np.pad(c, ((0, 0), (0, windows * span - c_out))).reshape(b, windows, span)
        rank = np.cumsum(c_win, axis=2) - c_win
        member = np.stack([c_win * (rank // lanes == k) for k in range(pack_groups)], axis=2)
        packed = (member.sum(axis=3) > 0).astype(np.float64)            # [b, windows, k]
        seen = (cols.sum(axis=2) * p).sum(axis=1)                       # nonzero inputs issued
        totals["synaptic_ops"] += int(np.rint(seen @ c.sum(axis=1)))
        totals["events"] += int(np.rint(seen @ packed.sum(axis=(1, 2))))
        totals["neuron_updates"] += int(np.rint(p.sum(axis=1) @ live.sum(axis=1)))
        totals["computed_neurons"] += int(np.rint(p.sum(axis=1) @ c.sum(axis=1)))
        hits = cols @ wmat.T                                            # [b, HW, C_out]
        totals["weighted_ops"] += int(np.rint(np.einsum("bpc,bp,bc->", hits, p, c)))
        anyw = (np.einsum("bwks,wsf->bwkf", member, w_win) > 0).astype(np.float64)
        totals["useful_events"] += int(np.rint(np.einsum("bpf,bp,bwkf->", cols, p, anyw)))
    totals["ideal_cycles"] = totals["events"] + totals["neuron_updates"]
    totals["useful_ideal_cycles"] = totals["useful_events"] + totals["neuron_updates"]
    geometry = SimpleNamespace(kind="conv", in_channels=c_in, in_height=x_nonzero.shape[2],
                               in_width=x_nonzero.shape[3], out_channels=c_out,
                               out_height=h_out, out_width=w_out, kernel=(kh, kw),
                               padding=padding, fan_in=fan_in)
    open_in = np.full(n, c_in) if open_in is None else np.asarray(open_in)
    totals.update({k: int(v.sum()) for k, v in
                   operation_counts(geometry, pos, chan, open_in).items()})
    totals.update(dense_counts(geometry, n))
    totals.update(dense_neurons=n * c_out * hw,
                  positions=int(pos.sum()), channels=int(chan.sum()), kind=kind,
                  weights=int(w_nonzero.size), nonzero_weights=int(w_nonzero.sum()))
    return totals


def recount(net, inputs: np.ndarray, lanes: int, result=None) -> list:
    """:func:`layer_counts` of every layer of an integer export, from golden's activity
    (``result``: a :func:`golden.run` result for these inputs, to reuse), plus the layer's
    ``acc_width`` and ``weight_bits``."""
    res = golden.run(net, inputs) if result is None else result
    x = time_major_inputs(net, inputs)
    x = x.reshape((-1,) + x.shape[2:]) != 0                                  # [B*T, C, H, W]
    out = []
    for i, layer in enumerate(net.layers):
        open_in = None
        if i > 0:
            s = res.spikes[i - 1]
            x = golden.sum_pool(s.reshape((-1,) + s.shape[2:]), net.layers[i - 1].pool) != 0
            open_in = res.channels[i - 1].reshape(x.shape[0], -1).sum(axis=1)
        if layer.kind == "conv":
            pos = res.positions[i].reshape(-1, layer.out_height, layer.out_width)
            chan = res.channels[i].reshape(-1, layer.out_channels)
        else:
            pos = chan = None
        row = layer_counts(x, nonzero_codes(layer.w_code, layer.weight_bits), layer.padding,
                           lanes, pos, chan, kind=layer.kind, open_in=open_in)
        row.update(layer=i, acc_width=layer.acc_width, weight_bits=layer.weight_bits)
        out.append(row)
    return out


def export_counts(net, inputs: np.ndarray, lanes: int) -> list:
    """Per layer of an integer export: :func:`golden.work_counts`'s row (golden's numbers
    for the keys it has) completed with the weight-aware keys of :func:`recount`."""
    rows = golden.work_counts(net, inputs, lanes)
    out = []
    for mine, row in zip(recount(net, inputs, lanes), rows):
        merged = dict(mine)
        merged.update(row)
        out.append(merged)
    return out


def weight_skip_savings(rows: list) -> dict:
    """What skipping zero weights would save, summed over layers: events (input issues),
    ideal cycles and synaptic additions, absolute and as fractions."""
    ev = sum(r["events"] for r in rows)
    useful = sum(r["useful_events"] for r in rows)
    cyc = sum(r["ideal_cycles"] for r in rows)
    ucyc = sum(r["useful_ideal_cycles"] for r in rows)
    syn = sum(r["synaptic_ops"] for r in rows)
    wops = sum(r["weighted_ops"] for r in rows)
    frac = lambda a, b: (a / b) if b else 0.0
    return {"events": ev, "useful_events": useful, "events_saved": frac(ev - useful, ev),
            "ideal_cycles": cyc, "useful_ideal_cycles": ucyc,
            "cycles_saved": frac(cyc - ucyc, cyc),
            "synaptic_ops": syn, "weighted_ops": wops, "adds_saved": frac(syn - wops, syn)}
