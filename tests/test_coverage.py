"""sim.coverage without a simulator: bins are hit by what a case really contains, files
merge by adding hits, and the report lists every bin never hit."""
import json

import numpy as np

import golden
from model_export.random_net import random_export, random_inputs
from sim import coverage


def _delta(before, after):
    """Bins whose hits grew: {item: {bin, ...}}."""
    return {item: {b for b, n in bins.items() if n > before[item][b]}
            for item, bins in after.items()}


def _case(slice_cfg, f_value=None):
    net = random_export(slice_cfg, 3, mask_fraction=0.0)
    x = random_inputs(net, 1, 4, density=0.5)
    if f_value is not None:
        net.layers[1].thresholds[0, :, 0] = f_value
    return net, x, golden.run(net, x)


def test_a_current_exactly_on_its_threshold_is_hit(slice_cfg):
    from golden.model import sum_pool, synaptic_current
    net, x, ref = _case(slice_cfg)
    l1 = net.layers[1]
    cur = synaptic_current(l1, sum_pool(ref.spikes[0][0], net.layers[0].pool))   # [T, C, H, W]
    value = int(cur[0, 0, 0, 0])          # channel 0 at step 0 (q_prev = 0), position (0, 0)
    before = coverage.hits()
    net, x, ref = _case(slice_cfg, f_value=value)
    coverage.sample_inference(net, ref, 0)
    assert "ternary I == F" in _delta(before, coverage.hits())["thresholds.hit"]
    # F saturated at the top is never reached: the saturation bin, not the tie.
    hi = (1 << (l1.acc_width - 1)) - 1
    before = coverage.hits()
    net, x, ref = _case(slice_cfg, f_value=hi)
    net.layers[1].thresholds[..., 0] = hi
    net.layers[0].thresholds[..., 0] = hi
    ref = golden.run(net, x)
    coverage.sample_inference(net, ref, 0)
    coverage.sample_export(net)
    got = _delta(before, coverage.hits())
    assert "ternary I == F" not in got["thresholds.hit"]
    assert "F max" in got["thresholds.saturated"]


def test_export_bins_follow_the_network(slice_cfg):
    net = random_export(slice_cfg, 5)
    net.layers[0].channel_mask[...] = 0
    net.layers[1].position_mask[...] = 1
    net.layers[2].w_code[...] = 0b1000         # the negative zero of 4-bit codes
    before = coverage.hits()
    coverage.sample_export(net)
    got = _delta(before, coverage.hits())
    assert got["masks.channel"] >= {"none"} and "all" in got["masks.position"]
    assert "4-bit sign 1 e 0" in got["weights.code"]
    assert got["shape.spiking_layers"] == {"2"} and got["shape.membrane"] == {"ternary"}
    assert got["shape.kernel"] == {"3"} and "2" in got["shape.pool"]


def test_backpressure_and_reset_bins():
    before = coverage.hits()
    coverage.sample_backpressure([0, 2, 9])
    coverage.sample_reset(3, 10)
    got = _delta(before, coverage.hits())
    assert got["stream.backpressure"] == {"0", "2", "4+"}
    assert got["reset"] == {"during the first frame"}


def test_merge_adds_hits_and_the_report_lists_what_was_never_hit(tmp_path):
    zero = {item: {str(b): 0 for b in bins} for item, bins in coverage.BINS.items()}
    a, b = json.loads(json.dumps(zero)), json.loads(json.dumps(zero))
    a["pooled.count"]["3"] = 2
    b["pooled.count"]["3"] = 5
    b["reset"]["after the first frame"] = 1
    for name, hits in (("a", a), ("b", b)):
        (tmp_path / f"{name}.json").write_text(json.dumps(hits))
    total = coverage.merge([tmp_path / "a.json", tmp_path / "b.json"])
    assert total["pooled.count"]["3"] == 7 and total["reset"]["after the first frame"] == 1
    s = coverage.write_report(total, tmp_path / "c.json", tmp_path / "c.md", "test")
    size = sum(len(v) for v in coverage.BINS.values())
    assert (s["bins"], s["hit"]) == (size, 2)
    assert "3" not in s["never_hit"]["pooled.count"] and "0" in s["never_hit"]["pooled.count"]
    md = (tmp_path / "c.md").read_text()
    assert f"2 of {size} bins hit" in md
    assert "| reset | 1/2 | during the first frame |" in md
    assert json.loads((tmp_path / "c.json").read_text())["summary"] == s
