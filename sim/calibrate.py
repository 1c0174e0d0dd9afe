"""Random networks with realistic spike rates, for running large shapes without a trained model.

:func:`model_export.random_net.random_export` folds thresholds from scales guessed from the
weights alone, so in a deep network activity drifts layer by layer (it dies out or
saturates). :func:`calibrated_export` refolds each spiking layer's thresholds from the
currents its real inputs produce, layer by layer, with one scale per layer found by
bisection so that the layer's unmasked neurons spike at ``rate`` on the given inputs:

    u = q/2 + s * (I - mean_c) / std_c + b_c,   b_c ~ N(0, 0.25),  Vth_c ~ U(0.8, 1.2)

(folded exactly by :func:`model_export.fold.fold_channel`, so F >= P >= N hold as in a
trained model). Deterministic in ``seed``.
"""
from __future__ import annotations

import numpy as np

import golden
from golden.model import neuron_step, sum_pool, synaptic_current, time_major_inputs
from model_export.fold import fold_channel
from model_export.random_net import random_export


def _run_layer(layer, membrane, currents):
    """Spikes [B, T, C, H, W] of one layer over all steps (golden's neuron, masks applied)."""
    B, T = currents.shape[:2]
    q = np.zeros((B,) + currents.shape[2:], np.int8)
    spikes = np.zeros(currents.shape, np.uint8)
    for t in range(T):
        spikes[:, t], q = neuron_step(layer, membrane, currents[:, t], q)
    return spikes


def _active(layer) -> np.ndarray:
    return (layer.channel_mask[:, None, None].astype(bool)
            & layer.position_mask[None, :, :].astype(bool))


def spike_rates(net, result) -> list:
    """Per spiking layer: spikes / computed (unmasked) neuron-steps, over the batch."""
    out = []
    for layer, s in zip(net.spiking_layers, result.spikes):
        active = _active(layer)
        out.append(float(s[:, :, active].mean()) if active.any() else 0.0)
    return out


def calibrated_export(cfg, inputs: np.ndarray, seed: int, rate: float = 0.15,
                      iterations: int = 14):
    """A random export for ``cfg`` whose spiking layers fire at about ``rate`` on ``inputs``
    ([B, T, C, H, W] integers)."""
    # No negative scales nor negative-zero codes: the documented VGG-9 runs' networks stay
    # the ones they were measured on (an A_c < 0 channel is its weights' signs negated).
    net = random_export(cfg, seed, negative_fraction=0.0, negative_zero=0.0)
    return calibrate_thresholds(net, inputs, np.random.default_rng(seed + 1000), rate,
                                iterations)


def calibrate_thresholds(net, inputs: np.ndarray, rng, rate=0.15, iterations: int = 14,
                         keep=(), ensure_activity: bool = False):
    """Refold ``net``'s spiking thresholds (in place) so that each layer fires at about its
    rate on ``inputs`` ([B, T, C, H, W] integers); returns ``net``.

    Parameters
    ----------
    rate : float or sequence of float
        The target spike rate, one for all layers or one per spiking layer.
    rng : numpy Generator
        Draws each layer's offsets ``b_c`` and thresholds ``Vth_c``.
    keep : collection of int
        Layers whose thresholds stay as they are (their spikes still feed the next layer).
    ensure_activity : bool
        Random cases' corners: a channel whose current does not vary over the inputs
        (silent inputs, zero weights, a silent layer before it) fires on its offset alone
        (``B_c > Vth_c``) with probability ``rate``, at least one unmasked such channel per
        layer when none varies; and if the bisection's scale leaves the layer silent, the
        larger end of its interval (where the rate was reached) is taken.
    """
    x = time_major_inputs(net, inputs).astype(np.int64)
    B, T = x.shape[:2]
    rates = np.broadcast_to(np.asarray(rate, dtype=float), (len(net.spiking_layers),))
    for i, layer in enumerate(net.spiking_layers):
        cur = synaptic_current(layer, x.reshape((B * T,) + x.shape[2:]))
        cur = cur.reshape((B, T) + cur.shape[1:])
        active = _active(layer)
        if i not in keep:
            _fold_layer(net, layer, cur, active, rng, float(rates[i]), iterations,
                        ensure_activity)
        spikes = _run_layer(layer, net.membrane, cur)
        x = sum_pool(spikes.reshape((B * T,) + spikes.shape[2:]), layer.pool)
        x = x.reshape((B, T) + x.shape[1:])
    return net


def _fold_layer(net, layer, cur, active, rng, rate, iterations, ensure_activity):
    """One layer's thresholds from its currents ``cur`` [B, T, C, H, W] (see
    :func:`calibrate_thresholds`)."""
    seen = cur[:, :, :, layer.position_mask.astype(bool)]       # [B, T, C, positions]
    mean = seen.mean(axis=(0, 1, 3)) if seen.size else np.zeros(layer.out_channels)
    std = seen.std(axis=(0, 1, 3)) if seen.size else np.zeros(layer.out_channels)
    bias = rng.normal(0.0, 0.25, layer.out_channels)
    vth = rng.uniform(0.8, 1.2, layer.out_channels)
    if ensure_activity:
        flat = std == 0
        fire = flat & (rng.random(layer.out_channels) < rate)
        live = np.flatnonzero(flat & layer.channel_mask.astype(bool))
        if len(live) and not fire[live].any() and flat.all():
            fire[rng.choice(live)] = True
        bias = np.where(fire, vth + rng.uniform(0.05, 0.5, layer.out_channels), bias)

    def fold(scale):
        rows = []
        for c in range(layer.out_channels):
            A = float(scale / std[c]) if std[c] > 0 else 0.0
            rows.append(fold_channel(A, float(bias[c] - A * mean[c]), float(vth[c]),
                                     net.membrane, layer.acc_width))
        return np.array(rows, dtype=np.int64)

    def rate_at(log_scale):
        layer.thresholds[...] = fold(np.exp(log_scale))
        s = _run_layer(layer, net.membrane, cur)
        return float(s[:, :, active].mean()) if active.any() else rate

    lo, hi = np.log(1e-2), np.log(1e2)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        r = rate_at(mid)
        lo, hi = (mid, hi) if r < rate else (lo, mid)
    if rate_at((lo + hi) / 2) == 0 and ensure_activity:
        rate_at(hi)


GATE_CLOSED_FRACTION = 0.5   # random gates: about half the channel-steps closed


def add_runtime_pruning(cfg, net, inputs: np.ndarray, seed: int,
                        closed_fraction: float = GATE_CLOSED_FRACTION):
    """Give ``net`` the runtime pruning its config turns on (docs/INTEGER_SPEC.md section 5),
    set from the unpruned network's own membranes on ``inputs``:

    - spatial threshold: the ``pruning.spatial_ratio`` quantile of the importance ``e`` over
      positions and steps t >= 1, rounded and clamped into [-C_out, 0] (ternary membranes
      can then prune; binary ones never do);
    - channel gate (layers >= 1): random ternary weights, and per channel the threshold at
      the ``closed_fraction`` quantile of its score ``z``, so each gate is closed at about
      that fraction of (sample, step) pairs.

    The pruned network's activity differs from the unpruned one's; the flow reports the
    fractions golden measures. Returns ``net`` (changed in place).
    """
    spatial = cfg.pruning["spatial_ratio"] > 0
    gating = cfg.pruning["channel_gate_threshold"] > 0
    if not (spatial or gating):
        return net
    rng = np.random.default_rng(seed + 2000)
    res = golden.run(net, inputs)
    for i, layer in enumerate(net.spiking_layers):
        q = res.membranes[i].astype(np.int64)                      # [B, T, C, H, W]
        if spatial:
            e = q[:, :-1].sum(axis=2)                              # prior of steps 1..T-1
            th = np.quantile(e, cfg.pruning["spatial_ratio"]) if e.size else 0
            layer.spatial_threshold = np.array(
                [int(np.clip(np.round(th), -layer.out_channels, 0))], np.int64)
        if gating and i > 0:
            prev = net.layers[i - 1]
            g = rng.choice([-1, 0, 1], size=(layer.out_channels, layer.in_channels))
            prior = res.membranes[i - 1].astype(np.int64).sum(axis=(3, 4))   # [B, T, C_in]
            z = prior @ g.T                                                  # [B, T, C_out]
            bound = layer.gate_bound(prev)
            theta = np.ceil(np.quantile(z.reshape(-1, layer.out_channels), closed_fraction,
                                        axis=0))
            layer.gate_weights = g.astype(np.int8)
            layer.gate_thresholds = np.clip(theta, -bound, bound + 1).astype(np.int64)
    return net
