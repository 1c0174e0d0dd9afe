"""Co-simulation: the generated core on Icarus and Verilator, bit-exact against golden.

Random networks inside the contract (masks, negative and zero scales, all code values),
random inputs, random idle cycles on the input streams and random backpressure on the
record stream. Every layer's spikes and membranes, every step, the classifier currents and
the logits are compared; the record stream must hold exactly the unmasked work.
"""
import numpy as np
import pytest
import yaml

from model_export import save_export
from model_export.random_net import random_export, random_inputs
from project_config import load_config
from sim.runner import cosimulate
from conftest import ROOT, assert_clean

pytestmark = pytest.mark.sim

TINY = {
    "model": {"name": "tiny", "input": {"channels": 2, "height": 6, "width": 6, "bits": 3},
              "timesteps": 3, "classes": 5,
              "layers": [{"channels": 5, "kernel": 3, "padding": 1, "pool": 2},
                         {"channels": 4, "kernel": 3, "padding": 0, "pool": 1}]},
    "hardware": {"lanes": 3},
}


def _config(tmp_path, name, membrane="ternary", bits=4):
    if name == "slice":
        raw = yaml.safe_load((ROOT / "configs" / "slice_digits.yaml").read_text())
    else:
        raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    raw.setdefault("quant", {})
    raw["quant"] = {**raw["quant"], "membrane": membrane, "weight_bits": bits}
    path = tmp_path / f"{name}_{membrane}_{bits}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


CASES = [
    # simulator, config, membrane, weight bits, samples, stall probability, seed
    ("icarus", "slice", "ternary", 4, 2, 0.3, 11),
    ("icarus", "tiny", "binary", 2, 2, 0.5, 12),
    ("verilator", "slice", "ternary", 4, 6, 0.3, 13),
    ("verilator", "tiny", "ternary", 2, 6, 0.0, 14),
    ("verilator", "tiny", "binary", 4, 6, 0.6, 15),
]


@pytest.mark.parametrize("sim, name, membrane, bits, samples, stall, seed", CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}-{c[3]}bit" for c in CASES])
def test_rtl_matches_golden(tmp_path, sim, name, membrane, bits, samples, stall, seed):
    config = _config(tmp_path, name, membrane, bits)
    net = random_export(load_config(config), seed)
    save_export(net, tmp_path / "export")
    x = random_inputs(net, samples, seed + 100, density=0.35)
    r = cosimulate(config, tmp_path / "export", x, sim, tmp_path / "work",
                   stall_probability=stall, seed=seed)
    # hw.perf predicts every layer's cycles at every step (plus the stalls the testbench
    # caused), on both simulators, with and without backpressure: assert_clean checks it.
    assert_clean(r, samples)
    assert all(c > 0 for c in r["cycles"])
    assert len(r["jobs"][0]["step_cycles"]) == samples


def test_both_simulators_agree_on_the_same_case(tmp_path):
    config = _config(tmp_path, "tiny", "ternary", 4)
    net = random_export(load_config(config), 21)
    save_export(net, tmp_path / "export")
    x = random_inputs(net, 2, 22, density=0.5)
    runs = {sim: cosimulate(config, tmp_path / "export", x, sim, tmp_path / sim,
                            stall_probability=0.0, seed=3) for sim in ("icarus", "verilator")}
    for r in runs.values():
        assert_clean(r, 2)
    assert runs["icarus"]["predictions"] == runs["verilator"]["predictions"]
    assert runs["icarus"]["cycles"] == runs["verilator"]["cycles"]   # same cycle-accurate model


def test_masks_that_gate_everything_and_nothing(tmp_path):
    config = _config(tmp_path, "tiny", "ternary", 4)
    net = random_export(load_config(config), 31)
    net.layers[0].position_mask[...] = 0          # layer 0 computes nothing at all
    net.layers[1].channel_mask[...] = 1
    net.layers[1].position_mask[...] = 1
    save_export(net, tmp_path / "export")
    x = random_inputs(net, 2, 32, density=1.0)
    r = cosimulate(config, tmp_path / "export", x, "verilator", tmp_path / "work",
                   stall_probability=0.2, seed=5)
    assert_clean(r, 2)


def test_scoreboard_catches_a_wrong_rtl(tmp_path):
    """The comparison can fail: weights dropped in the RTL only must show up as mismatches."""
    config = _config(tmp_path, "tiny", "ternary", 4)
    net = random_export(load_config(config), 41)
    save_export(net, tmp_path / "export")
    x = random_inputs(net, 1, 42, density=0.6)
    r = cosimulate(config, tmp_path / "export", x, "verilator", tmp_path / "work",
                   stall_probability=0.0, seed=1, fault="drop_layer0_weights")
    assert r["completed"] and r["samples"] == 1 and r["testbench_failed"]
    assert r["mismatches"] > 0 and r["details"]


def test_reset_mid_inference_and_parameter_reload(tmp_path):
    """Reset in the middle of an inference, then the next inference matches golden; a second
    export loaded into the same core (SRAM contents replaced) matches too."""
    from hw.build import build
    from sim.runner import build_simulator, run_case
    config = _config(tmp_path, "tiny", "ternary", 4)
    cfg = load_config(config)
    jobs = []
    for i, seed in enumerate((51, 52)):
        net = random_export(cfg, seed)
        save_export(net, tmp_path / f"export{i}")
        jobs.append({"export": tmp_path / f"export{i}", "tag": f"net{i}",
                     "inputs": random_inputs(net, 2, seed + 1, density=0.5),
                     "reset_mid_inference": True})
    for sim in ("icarus", "verilator"):
        hw = build(load_config(config), tmp_path / "hw", do_lint=False)
        runner = build_simulator(sim, hw, tmp_path / f"sim_{sim}")
        r = run_case(runner, sim, tmp_path / f"sim_{sim}", config=config, jobs=jobs,
                     stall_probability=0.3, seed=9, tag="reset")
        assert_clean(r, 4)
        assert [j["samples"] for j in r["jobs"]] == [2, 2]


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_worst_case_currents_do_not_overflow(tmp_path, sim):
    """Every input at its maximum, every weight at +-alpha in every lane: the current reaches
    +-bound (docs/INTEGER_SPEC.md section 3) and thresholds sit exactly on it."""
    from hw.build import build
    from sim.runner import build_simulator, run_case
    config = str(ROOT / "configs" / "slice_digits.yaml")
    cfg = load_config(config)
    jobs = []
    for sign in (+1, -1):
        net = random_export(cfg, 61)
        for layer in net.layers:
            lo = -(1 << (layer.acc_width - 1))
            layer.w_code[...] = 1 if (sign > 0 or layer.index == 0) else (1 | (1 << 3))
            if layer.kind == "conv":
                layer.channel_mask[...] = 1
                layer.position_mask[...] = 1
                if layer.index == 0:
                    layer.thresholds[...] = [lo, lo, lo]       # always fires: L1 sees 4s
                else:
                    b = layer.accumulator_bound
                    # Fire exactly at +bound; -1 exactly at -bound.
                    layer.thresholds[...] = [b, b, -b] if sign > 0 else [b + 1, b + 1, -b]
        save_export(net, tmp_path / f"e{sign}")
        x = np.full((1, cfg.timesteps, 1, 8, 8), 31, dtype=np.int64)
        jobs.append({"export": tmp_path / f"e{sign}", "inputs": x, "tag": f"sign{sign}"})
    import golden
    from model_export import load_export
    ref = golden.run(load_export(tmp_path / "e1"), jobs[0]["inputs"])
    assert ref.spikes[1][0, 0].sum() > 0                  # the +bound case really fires
    ref = golden.run(load_export(tmp_path / "e-1"), jobs[1]["inputs"])
    assert (ref.membranes[1][0, 0] == -1).sum() > 0       # and the -bound case reaches -1
    hw = build(load_config(config), tmp_path / "hw", do_lint=False)
    runner = build_simulator(sim, hw, tmp_path / f"sim_{sim}")
    r = run_case(runner, sim, tmp_path / f"sim_{sim}", config=config, jobs=jobs,
                 stall_probability=0.0, seed=1, tag="worst")
    assert_clean(r, 2)


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_runtime_pruning_on_chip_matches_golden(tmp_path, sim):
    """Spatial importance and channel gates computed by the core, bit-exact, and really
    pruning: some positions pruned and some channel-steps closed, and records only for the
    computed work."""
    import golden
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    raw["model"] = dict(raw["model"], timesteps=5)
    raw["pruning"] = {"spatial_ratio": 0.35, "channel_gate_threshold": 0.47}
    config = tmp_path / "pruned.yaml"
    config.write_text(yaml.safe_dump(raw))
    net = random_export(load_config(str(config)), 5, mask_fraction=0.0, pruning=True)
    x = random_inputs(net, 3, 105, density=0.5)
    ref = golden.run(net, x)
    pruned = sum(int((~p).sum()) for p in ref.positions)
    closed = int((~ref.channels[1]).sum())
    assert pruned > 0 and closed > 0 and ref.channels[1].any()
    save_export(net, tmp_path / "export")
    r = cosimulate(str(config), tmp_path / "export", x, sim, tmp_path / "work",
                   stall_probability=0.3, seed=5)
    assert_clean(r, 3)


@pytest.fixture(scope="module")
def tiny_verilator(tmp_path_factory):
    """The tiny core, built once for Verilator: (config path, runner, its build folder)."""
    from hw.build import build
    from sim.runner import build_simulator
    tmp = tmp_path_factory.mktemp("faults")
    config = _config(tmp, "tiny", "ternary", 4)
    hw = build(load_config(config), tmp / "hw", do_lint=False)
    return config, build_simulator("verilator", hw, tmp / "sim"), tmp / "sim"


# Each fault (sim.tb_core.FAULTS) against the one checker meant to catch it: every problem
# the scoreboard reports names that checker, so a broken checker cannot hide behind another.
FAULTS = [("flip_spike", "spikes t="), ("flip_membrane", "membrane t="),
          ("drop_record", "records missing"), ("duplicate_record", "duplicate record"),
          ("extra_record", "unexpected records"),
          ("busy_after_logits", "core still busy after the logits")]


@pytest.mark.parametrize("fault, needle", FAULTS, ids=[f[0] for f in FAULTS])
def test_each_checker_catches_its_own_fault(tmp_path, tiny_verilator, fault, needle):
    from sim.runner import run_case
    config, runner, sim_dir = tiny_verilator
    net = random_export(load_config(config), 81)
    net.layers[0].channel_mask[3:] = 0        # layer 0's group 1 is dead: no record is due
    save_export(net, tmp_path / "export")
    x = random_inputs(net, 2, 82, density=0.5)
    r = run_case(runner, "verilator", sim_dir, config=config, stall_probability=0.2, seed=2,
                 jobs=[{"export": tmp_path / "export", "inputs": x}], tag=fault, fault=fault)
    assert r["completed"] and r["samples"] == 2 and r["testbench_failed"]
    assert r["mismatches"] > 0
    problems = [line for d in r["details"] for line in d["problems"]]
    assert problems and all(needle in line for line in problems), problems
    # Record faults hit every sample; the busy fault only the last one.
    assert sorted({d["sample"] for d in r["details"]}) == ([1] if fault == "busy_after_logits"
                                                           else [0, 1])
