"""Co-simulation of the large-network path and of the skip-disabled reference core.

- VGG-9's topology at test size (configs/vgg9_small.yaml) with runtime pruning computed on
  chip, parameters preloaded from memory images (only the pruning settings stream),
  signature records only, on Icarus and Verilator; a fault
  (layer 0's weights zeroed behind golden's back) is caught by the signatures and the debug
  rerun names the first differing neuron.
- The core built with skipping off issues every input, position and group: bit-exact
  results, and exactly the cycles of CoreParams.skip_disabled_cycles on both simulators.
"""
import numpy as np
import pytest
import yaml

import golden
from hw.build import build
from hw.params import CoreParams
from hw.protocol import PRELOADED_TARGETS, param_fields, param_transfers, unpack_fields
from model_export import save_export
from model_export.random_net import random_export, random_inputs
from project_config import load_config
from sim.calibrate import add_runtime_pruning, calibrated_export
from sim.runner import build_simulator, cosimulate, preloaded_sha256, run_case

pytestmark = pytest.mark.sim

SMALL = "vgg9_small.yaml"


def _small_case(tmp_path, seed, samples=1, pruning=True):
    cfg = load_config(SMALL)
    x = random_inputs(random_export(cfg, seed), samples, seed + 1)
    net = calibrated_export(cfg, x, seed)
    if pruning:
        net = add_runtime_pruning(cfg, net, x, seed)
    save_export(net, tmp_path / "export")
    return net, x


def test_vgg9_small_preloaded_signature_mode_and_fault(tmp_path):
    net, x = _small_case(tmp_path, 11)
    ref = golden.run(net, x)
    assert all(s.sum() > 0 for s in ref.spikes)         # every signature covers real spikes
    # The runtime pruning computed on chip really prunes (vgg9_small has the paper's).
    assert sum(int((~p[:, 1:]).sum()) for p in ref.positions) > 0
    assert sum(int((~c).sum()) for c in ref.channels[1:]) > 0
    params = CoreParams(load_config(SMALL))
    fields = param_fields(params)
    runtime_only = [w for w in param_transfers(params, net)
                    if unpack_fields(fields, w)["target"] not in PRELOADED_TARGETS]
    assert runtime_only                                  # pruning settings still stream
    hw = build(load_config(SMALL), tmp_path / "hw", do_lint=False, export=tmp_path / "export")
    cycles = {}
    for sim in ("icarus", "verilator"):
        runner = build_simulator(sim, hw, tmp_path / f"sim_{sim}")
        common = dict(config=SMALL, jobs=[{"export": tmp_path / "export", "inputs": x}],
                      stall_probability=0.0, seed=1, records="signature",
                      preloaded=preloaded_sha256(hw))
        r = run_case(runner, sim, tmp_path / f"sim_{sim}", tag="signature", **common)
        assert r["mismatches"] == 0 and not r["testbench_failed"], r["details"]
        assert r["jobs"][0]["params_streamed"] == len(runtime_only)
        assert r["predictions"] == list(ref.predictions)
        cycles[sim] = r["cycles"]
        # A wrong core: the signatures catch it, the rerun with layer 0's full records names
        # the first differing neuron.
        bad = run_case(runner, sim, tmp_path / f"sim_{sim}", tag="fault",
                       fault="drop_layer0_weights", **common)
        assert bad["mismatches"] > 0
        problems = " ".join(bad["details"][0]["problems"])
        assert "layer 0 t=0 signature" in problems
        debug = bad["jobs"][0]["debug"]
        assert debug and debug[0]["layer"] == 0
        assert debug[0]["first_difference"].startswith("layer 0 t=0 ")
    assert cycles["icarus"] == cycles["verilator"]


def _tiny_dense_config(tmp_path):
    raw = {"model": {"name": "tiny", "input": {"channels": 2, "height": 6, "width": 6, "bits": 3},
                     "timesteps": 3, "classes": 5,
                     "layers": [{"channels": 5, "kernel": 3, "padding": 1, "pool": 2},
                                {"channels": 4, "kernel": 3, "padding": 0, "pool": 1}]},
           "hardware": {"lanes": 3, "skipping": False}}
    path = tmp_path / "tiny_dense.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_skip_disabled_cycles_match_the_closed_form(tmp_path):
    """Masks (random, plus a dead group and masked positions) and zero inputs are all issued;
    the results stay bit-exact and the cycles are the closed form's, on both simulators."""
    config = _tiny_dense_config(tmp_path)
    cfg = load_config(config)
    net = random_export(cfg, 71)
    net.layers[0].channel_mask[3:] = 0
    net.layers[0].position_mask[0, :3] = 0
    save_export(net, tmp_path / "export")
    x = random_inputs(net, 2, 72, density=0.4)
    want = CoreParams(cfg).skip_disabled_cycles()
    for sim in ("icarus", "verilator"):
        r = cosimulate(config, tmp_path / "export", x, sim, tmp_path / sim,
                       stall_probability=0.0, seed=1)
        assert r["mismatches"] == 0 and not r["testbench_failed"], r["details"]
        assert r["cycles"] == [want["total"]] * 2
        assert r["jobs"][0]["layer_cycles"] == [2 * c for c in want["layers"]]


def test_vgg9_small_skip_disabled_cycles(tmp_path):
    """The closed form on VGG-9's topology (pooling every second layer, several groups),
    preloaded and in signature mode, as make sim CONFIG=vgg9 uses it."""
    net, x = _small_case(tmp_path, 13, pruning=False)   # the reference core has no pruning
    r = cosimulate(SMALL, tmp_path / "export", x, "verilator", tmp_path / "work",
                   stall_probability=0.0, seed=1, preload=True, records="signature",
                   skipping=False)
    want = CoreParams(load_config(SMALL), skipping=False).skip_disabled_cycles()
    assert r["mismatches"] == 0 and not r["testbench_failed"], r["details"]
    assert r["cycles"] == [want["total"]]
    assert r["jobs"][0]["layer_cycles"] == want["layers"]
