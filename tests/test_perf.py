"""hw.perf, the cycle model of the core: its parts against hand-derived cycle counts and the
closed form of the skip-disabled core, the check that compares it with the RTL, its CLI;
and, on the simulators, equality with the RTL's cycles per layer and step."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

import golden
from hw.params import CoreParams
from hw.perf import accumulate_cycles, core_cycles, lane_report, window_plan
from model_export import save_export
from model_export.random_net import random_export, random_inputs
from project_config import config_from_dict, load_config
from sim.host import perf_differences
from sim.random_cases import random_shape
from sim.runner import cosimulate
from conftest import ROOT, run_cli


@pytest.mark.parametrize("taps, cycles", [
    ((-1,), 2),            # a tap outside the map: a fetch slot, no read
    ((0,), 3),             # an all-zero word: read, arrives, dropped
    ((3,), 5),             # n inputs: 2 cycles of first fetch, then one per input
    ((3, 0, 2), 8),        # the next word is read while the last input of a word issues
    ((1, 1, 1, 1), 6),
    ((-1, -1, 4), 8),      # each tap outside the map costs its fetch slot
])
def test_accumulate_cycles_follow_the_tap_pipeline(taps, cycles):
    assert accumulate_cycles(taps) == cycles


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_skip_disabled_core_equals_its_closed_form(seed):
    """With skipping off the model must give params.skip_disabled_cycles, whatever the data."""
    cfg = config_from_dict(random_shape(seed), f"shape{seed}")
    p = CoreParams(cfg, skipping=False)
    net = random_export(cfg, seed)
    res = golden.run(net, random_inputs(net, 2, seed, density=0.4))
    closed = p.skip_disabled_cycles()
    for i in range(2):
        c = core_cycles(p, net, res, i)
        assert list(c.per_layer) == closed["layers"]
        assert c.total == closed["total"]


def test_an_input_word_costs_its_nonzero_inputs():
    """Layer 0 with 4 input channels: a denser input costs more cycles, and an all-zero
    input costs one cycle per tap (no inputs to issue)."""
    raw = {"model": {"name": "four", "input": {"channels": 4, "height": 6, "width": 6, "bits": 2},
                     "timesteps": 2, "classes": 3,
                     "layers": [{"channels": 3, "kernel": 3, "padding": 1}]},
           "hardware": {"lanes": 4}}
    cfg = config_from_dict(raw, "four")
    p = CoreParams(cfg)
    net = random_export(cfg, 4)
    cost = {d: core_cycles(p, net, golden.run(net, random_inputs(net, 1, 1, density=d)))
            .layer_step[0].sum() for d in (0.0, 0.2, 0.9)}
    assert cost[0.0] < cost[0.2] < cost[0.9]


def _measured(model, held=None, tail=0, bump=None):
    held = np.zeros_like(model.layer_step) if held is None else held
    steps = (model.layer_step + held).copy()
    if bump:
        steps[bump] += 1
    return SimpleNamespace(held_cycles=lambda: held.tolist(), step_cycles=lambda: steps.tolist(),
                           held_tail=tail)


def test_perf_check_names_every_differing_layer_and_step(slice_cfg):
    p = CoreParams(slice_cfg)
    net = random_export(slice_cfg, 4, pruning=True)
    model = core_cycles(p, net, golden.run(net, random_inputs(net, 1, 1)))
    held = np.zeros_like(model.layer_step)
    held[1, 2] = 5
    assert perf_differences(model, _measured(model, held, tail=3), model.total + 8) == (0, [])
    count, problems = perf_differences(model, _measured(model, held, 3, bump=(0, 1)),
                                       model.total + 9)
    assert count == 2 and "layer 0 step 1" in problems[0] and "total" in problems[1]


def test_lane_report_bounds_and_utilization(slice_cfg):
    p = CoreParams(slice_cfg)
    net = random_export(slice_cfg, 4, pruning=True)
    rep = lane_report(p, net, golden.run(net, random_inputs(net, 3, 1)))
    assert rep["samples"] == 3 and len(rep["layers"]) == len(p.layers)
    for row in rep["layers"]:
        assert row["lane_bound"] <= row["cycles"]
        assert 0 < row["utilization"] <= 1
        assert row["utilization"] == pytest.approx(row["lane_bound"] / row["cycles"])
        assert row["sram_bits"] > 0


def test_perf_cli_sweeps_lanes_and_writes_json(tmp_path, slice_cfg):
    net = random_export(slice_cfg, 4, pruning=True)
    save_export(net, tmp_path / "export")
    np.save(tmp_path / "x.npy", random_inputs(net, 2, 1))
    r = run_cli("hw.perf", "--config", "slice_digits.yaml", "--export", str(tmp_path / "export"),
                "--inputs", str(tmp_path / "x.npy"), "--lanes", "4,8,16",
                "--json", str(tmp_path / "perf.json"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "perf.json").read_text())["reports"]
    assert [x["lanes"] for x in rep] == [4, 8, 16]
    assert "lane bound" in r.stdout and "utilization" in r.stdout
    bad = run_cli("hw.perf", "--config", "slice_digits.yaml", "--export", str(tmp_path / "export"),
                  "--inputs", str(tmp_path / "x.npy"), "--lanes", "8,0")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--lanes" in bad.stderr


@pytest.mark.sim
@pytest.mark.parametrize("config, sim, stall, skipping", [
    ("vgg9_small.yaml", "verilator", 0.25, None),     # gates and spatial pruning in 7 layers
    ("vgg9_small.yaml", "icarus", 0.0, None),
    ("slice_digits.yaml", "verilator", 0.0, False),   # the reference core
])
def test_perf_model_equals_rtl_cycles(tmp_path, config, sim, stall, skipping):
    cfg = load_config(config)
    p = CoreParams(cfg, skipping=skipping)
    net = random_export(cfg, 3, pruning=p.spatial_pruning or p.channel_gating)
    save_export(net, tmp_path / "export")
    x = random_inputs(net, 2, 5, density=0.3)
    r = cosimulate(str(ROOT / "configs" / config), tmp_path / "export", x, sim, tmp_path,
                   stall_probability=stall, skipping=skipping, records="signature")
    assert r["samples"] == 2 and not r["testbench_failed"]
    assert r["mismatches"] == 0, r["details"]
    assert r["perf_mismatches"] == 0, r["details"]
    want = np.array([core_cycles(p, net, golden.run(net, x), i).layer_step for i in range(2)])
    if not stall:
        assert np.array_equal(np.array(r["jobs"][0]["step_cycles"]), want)


def test_closed_channels_cost_no_packed_group():
    """Packing (docs/HARDWARE.md, "Dense lanes"): a window of two groups whose computed
    channels fit one group of lanes runs one packed group, wherever they sit; all computed
    needs two, none runs nothing (one WIN_EMPTY cycle)."""
    raw = {"model": {"name": "pack", "input": {"channels": 2, "height": 4, "width": 4, "bits": 2},
                     "timesteps": 1, "classes": 3,
                     "layers": [{"channels": 8, "kernel": 3, "padding": 1}]},
           "hardware": {"lanes": 4}}
    p = CoreParams(config_from_dict(raw, "pack"))
    lp = p.layers[0]
    assert lp.groups == 2 and lp.windows == 1
    spread = np.array([1, 0, 1, 0, 0, 1, 0, 1], bool)       # 2 open in each group
    packed = {name: window_plan(p, lp, chans, False)[0][0]
              for name, chans in (("spread", spread), ("all", np.ones(8, bool)),
                                  ("none", np.zeros(8, bool)))}
    assert packed == {"spread": 1, "all": 2, "none": 0}
    # The fixed cycles: WINDOW, then NEURON for each group (the odd group's reads are
    # presented in the even group's NEURON).
    assert window_plan(p, lp, spread, False)[0][1] == 1 + 1 + 1
    assert window_plan(p, lp, np.zeros(8, bool), False)[0][1] == 1 + 1
