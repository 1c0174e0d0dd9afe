"""The random differential regression, small: both simulators, identical results."""
import json

import pytest

from sim.random_cases import random_case, random_shape, shape_config
from conftest import run_cli


def test_random_shapes_are_valid_and_varied():
    shapes = [shape_config(s) for s in range(200)]
    assert {c.quant["membrane"] for c in shapes} == {"ternary", "binary"}
    assert {c.quant["weight_bits"] for c in shapes} == {2, 4}
    assert min(c.timesteps for c in shapes) == 1 and max(c.timesteps for c in shapes) == 16
    assert {l.kernel[0] for c in shapes for l in c.spiking_layers} == {1, 2, 3, 5}
    assert {l.pool for c in shapes for l in c.spiking_layers} == {1, 2}
    assert {c.hardware["lanes"] for c in shapes} == set(range(1, 9))
    assert {c.pruning["spatial_ratio"] > 0 for c in shapes} == {True, False}


def test_random_cases_reach_the_corners():
    notes = " ".join(random_case(shape_config(s), s)[2] for s in range(120))
    for corner in ("weights zero", "weights max", "weights max_negative", "weights smallest",
                   "raw thresholds", "mask none", "mask all", "inputs silent", "inputs saturated",
                   "bias at the range limits", "runtime pruning", "spatial keep_all",
                   "spatial prune_most", "gates open", "gates closed"):
        assert corner in notes, corner


def test_random_case_is_deterministic():
    a = random_case(shape_config(3), 99)
    b = random_case(shape_config(3), 99)
    assert (a[1] == b[1]).all() and a[2] == b[2]
    assert all((x.w_code == y.w_code).all() for x, y in zip(a[0].layers, b[0].layers))
    assert random_shape(3) == random_shape(3)


@pytest.mark.sim
def test_regression_command_on_both_simulators(tmp_path):
    r = run_cli("sim.regress", "--simulator", "both", "--cases", "8", "--per-shape", "4",
                "--seed", "3", "--workers", "2", "--code-coverage", "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "8 passed, 0 failed" in r.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["passed"] == summary["cases"] == 8
    assert summary["activity"]["cases"] == 8
    assert f"activity: {summary['activity']['no_spike']} of 8 cases without a spike" in r.stdout
    # Functional coverage sampled by both simulators' testbenches, merged (sim.coverage).
    cov = json.loads((tmp_path / "coverage.json").read_text())
    assert 0 < cov["summary"]["hit"] < cov["summary"]["bins"]
    assert sum(cov["hits"]["shape.membrane"].values()) > 0
    assert sum(cov["hits"]["stream.backpressure"].values()) > 0
    assert f"functional coverage: {cov['summary']['hit']} of" in r.stdout
    assert "| item | bins hit | never hit |" in (tmp_path / "coverage.md").read_text()
    # Verilator line and toggle coverage of both shapes' cores (sim.code_coverage).
    code = json.loads((tmp_path / "code_coverage.json").read_text())
    assert code["pooled"]["designs"] == 2 and set(code["designs"]) == {"shape3000", "shape3001"}
    for kind in ("line", "branch", "toggle"):
        assert 0 < code["pooled"]["kinds"][kind]["hit"] < code["pooled"]["kinds"][kind]["points"]
    assert code["pooled"]["excluded"]["memory models (spquant_sram.v)"] > 0
    assert (tmp_path / "code_coverage" / "shape3000.dat").read_text(
        encoding="latin-1").startswith("# SystemC::Coverage-3")
    assert f"lines {code['pooled']['kinds']['line']['percent']}%" in r.stdout
    assert "Signals with untoggled bits" in (tmp_path / "code_coverage.md").read_text()
