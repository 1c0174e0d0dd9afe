"""golden.run (layer-major, one matrix product per layer for all steps, float32 where
exact) equals golden.run_stepwise (the hardware's step-major order) bit for bit."""
import numpy as np

import golden
from golden.model import run_stepwise
from model_export.random_net import random_export, random_inputs
from sim.random_cases import random_case, shape_config


def _same(a, b):
    for name in ("spikes", "membranes", "positions", "channels"):
        for x, y in zip(getattr(a, name), getattr(b, name)):
            assert x.dtype == y.dtype and (x == y).all(), name
    assert (a.currents == b.currents).all() and (a.logits == b.logits).all()
    assert a.currents.dtype == b.currents.dtype == np.int64


def test_layer_major_equals_step_major_on_random_cases():
    """The regression's corners: pruning and gates, saturated inputs, extreme weights."""
    pruned = 0
    for k in range(12):
        cfg = shape_config(7000 + k)
        for s in range(3):
            net, x, _ = random_case(cfg, 7_000_000 + 3 * k + s)
            a, b = golden.run(net, x), run_stepwise(net, x)
            _same(a, b)
            pruned += sum(int((~p).sum()) for p in a.positions)
    assert pruned > 0


def test_layer_major_equals_step_major_on_vgg9_small():
    from project_config import load_config
    cfg = load_config("vgg9_small.yaml")
    net = random_export(cfg, 3, pruning=True)
    x = random_inputs(net, 2, 4, density=0.5)
    _same(golden.run(net, x), run_stepwise(net, x))


def test_float32_path_is_exact_at_its_bound():
    """Currents right below 2^24 in magnitude take the float32 path and stay exact."""
    from golden.model import synaptic_current
    from project_config import load_config
    net = random_export(load_config("slice_digits.yaml"), 1)
    layer = net.layers[0]
    w = layer.signed_weights().reshape(layer.out_channels, -1)
    x = np.full((1, layer.in_channels, layer.in_height, layer.in_width),
                (1 << net.input_bits) - 1, np.int64)
    got = synaptic_current(layer, x)
    cols = np.lib.stride_tricks.sliding_window_view(
        np.pad(x, ((0, 0), (0, 0), (layer.padding,) * 2, (layer.padding,) * 2)),
        layer.kernel, axis=(2, 3)).transpose(0, 2, 3, 1, 4, 5).reshape(-1, w.shape[1])
    want = (cols @ w.T).reshape(1, layer.out_height, layer.out_width, -1).transpose(0, 3, 1, 2)
    assert (got == want).all() and np.abs(want).max() < 2 ** 24
