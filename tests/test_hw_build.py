"""hw.build: Verilog + report for the slice and for the paper's VGG-9, lint clean."""
import json

import pytest

from hw.build import build
from hw.params import CoreParams
from project_config import load_config
from conftest import run_cli


@pytest.mark.sim
def test_slice_build_report_and_lint(tmp_path):
    r = run_cli("hw.build", "--config", "slice_digits.yaml", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "lint clean" in r.stdout
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["lint"] == "clean" and rep["lanes"] == 8
    p = CoreParams(load_config("slice_digits.yaml"))
    # 2 bits per neuron of membrane: 8x8x8 + 4x4x16 neurons.
    assert rep["memory_bits"]["membrane"] == 2 * (8 * 8 * 8 + 4 * 4 * 16)
    assert rep["memory_bits"]["weights"] >= 4 * (8 * 9 + 16 * 8 * 9 + 10 * 64)
    assert rep["lane_accumulator_width"] == p.acc_width == max(l["accumulator_width"] for l in rep["layers"])
    assert (tmp_path / "snn_core.v").stat().st_size > 10_000
    assert "module spquant_sram" in (tmp_path / "spquant_sram.v").read_text()


@pytest.mark.sim
def test_vgg9_build_is_sized_for_the_network(tmp_path):
    out = build(load_config("vgg9.yaml"), tmp_path)
    rep = json.loads((out / "report.json").read_text())
    assert rep["lint"] == "clean"
    neurons = 48 * 48 * (64 + 128) + 24 * 24 * 256 * 2 + 12 * 12 * 512 * 2 + 6 * 6 * 512 * 2
    assert rep["memory_bits"]["membrane"] == 2 * neurons
    weights = (2 * 64 + 64 * 128 + 128 * 256 + 256 * 256 + 256 * 512 + 3 * 512 * 512) * 9 + 4608 * 10
    assert rep["memory_bits"]["weights"] >= 4 * weights
    assert rep["lanes"] == 64
    # Memories are SRAM macros, not per-word initial blocks: the Verilog stays small.
    assert (out / "snn_core.v").stat().st_size < 3_000_000


@pytest.mark.sim
@pytest.mark.parametrize("window_pairs", [0, 32])
def test_window_fetch_on_a_one_bit_layer_is_lint_clean(tmp_path, window_pairs):
    # Layer 0 (1-bit inputs, 3 channels, 1x1 kernel) has window fetch at window_pairs 32; the
    # classifier's inputs are 3-bit pooled counts, wider than any window layer's.
    from project_config import config_from_dict
    raw = {"model": {"name": "w", "input": {"channels": 3, "height": 2, "width": 2, "bits": 1},
                     "timesteps": 2, "layers": [{"channels": 4, "kernel": 1, "padding": 0,
                                                 "pool": 2}], "classes": 3},
           "hardware": {"lanes": 2, "window_pairs": window_pairs}}
    cfg = config_from_dict(raw)
    assert CoreParams(cfg).layers[0].window_fetch == bool(window_pairs)
    out = build(cfg, tmp_path)
    assert json.loads((out / "report.json").read_text())["lint"] == "clean"


def test_membrane_mode_changes_the_core(tmp_path):
    cfg = load_config("slice_digits.yaml")
    cfg.quant["membrane"] = "binary"
    assert CoreParams(cfg).memory_bits()["membrane"] == 8 * 8 * 8 + 4 * 4 * 16
