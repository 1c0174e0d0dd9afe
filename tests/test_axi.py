"""The AXI wrapper (hw.axi) and its register map (hw.regmap).

The map is checked as a table and against the documentation; the wrapper is built and
linted, and co-simulated on Icarus and Verilator with cocotbext-axi's bus models under
random idle cycles and backpressure, bit-exact against golden (sim.tb_axi).
"""
import dataclasses

import pytest

from conftest import ROOT, run_cli
from hw import regmap
from hw.params import CoreParams
from model_export import save_export
from model_export.random_net import random_export, random_inputs
from project_config import load_config

SLICE = ROOT / "configs" / "slice_digits.yaml"


def test_docs_hold_the_generated_register_table():
    text = (ROOT / "docs" / "HARDWARE.md").read_text()
    assert regmap.render_into(text) == text, "run python -m hw.regmap --docs docs/HARDWARE.md"
    for r in regmap.REGISTERS:
        assert f"`{r.name}`" in text


def test_the_table_check_rejects_bad_maps():
    regs = list(regmap.REGISTERS)
    regmap.check_table(regs)
    ctrl = regmap.BY_NAME["CTRL"]
    with pytest.raises(ValueError, match="used twice"):
        regmap.check_table(regs + [dataclasses.replace(ctrl, name="CTRL2")])
    with pytest.raises(ValueError, match="word-aligned"):
        regmap.check_table([dataclasses.replace(ctrl, offset=0x2)])
    wide = dataclasses.replace(ctrl, access="RW", fields=(regmap.Field("a", 0, 8, ""),
                                                           regmap.Field("b", 4, 8, "")))
    with pytest.raises(ValueError, match="overlapping"):
        regmap.check_table([wide])
    with pytest.raises(ValueError, match="1-bit pulse"):
        regmap.check_table([dataclasses.replace(ctrl, fields=(regmap.Field("go", 0, 2, ""),))])


def test_identity_values_follow_the_parameters(slice_cfg):
    p = CoreParams(slice_cfg)
    ids = regmap.identity_values(p)
    assert ids["ID"] == regmap.ID_MAGIC
    assert ids["P_LANES"] == p.lanes == slice_cfg.hardware["lanes"]
    assert ids["P_TIMESTEPS"] == slice_cfg.timesteps
    assert ids["P_FRAME_TDATA"] % 8 == 0 and ids["P_FRAME_TDATA"] >= p.input_channels * p.input_bits
    feats = ids["P_FEATURES"]
    assert regmap.field_value("P_FEATURES", "skipping", feats) == int(p.skipping)
    assert regmap.field_value("P_FEATURES", "channel_gating", feats) == int(p.channel_gating)
    # A reference (skip-disabled) core says so in its identity block.
    off = regmap.identity_values(CoreParams(slice_cfg, skipping=False))["P_FEATURES"]
    assert regmap.field_value("P_FEATURES", "skipping", off) == 0


@pytest.mark.sim
def test_build_bus_axi_lints_and_names_its_top(tmp_path):
    r = run_cli("hw.build", "--config", str(SLICE), "--bus", "axi", "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    assert "snn_core_axi.v" in r.stdout and "lint clean" in r.stdout
    from hw.build import read_build
    rep = read_build(tmp_path / "b")
    assert (rep["top"], rep["bus"]) == ("snn_core_axi", "axi")
    text = (tmp_path / "b" / "snn_core_axi.v").read_text()
    for port in ("s_axil_awaddr", "s_axis_frame_tdata", "s_axis_param_tready",
                 "m_axis_record_tlast", "irq"):
        assert port in text
    assert not (tmp_path / "b" / "snn_core.v").exists()
    # The bare core rebuilt into the same folder replaces the wrapper.
    r = run_cli("hw.build", "--config", str(SLICE), "--no-lint", "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b" / "snn_core.v").exists()
    assert not (tmp_path / "b" / "snn_core_axi.v").exists()
    assert read_build(tmp_path / "b")["top"] == "snn_core"


def test_build_rejects_an_unknown_bus(tmp_path):
    r = run_cli("hw.build", "--config", str(SLICE), "--bus", "wishbone", "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "--bus" in r.stderr
    assert not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def slice_case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("axi")
    net = random_export(load_config(SLICE), 61)
    save_export(net, tmp / "export")
    return tmp, net


@pytest.mark.sim
def test_axi_core_matches_golden_on_both_simulators(slice_case):
    """0 mismatches under random idle cycles and backpressure, full-record and
    signature-only inferences, interrupt enabled and not; both simulators count the same
    cycles in the CYCLES register."""
    from sim.runner import cosimulate
    tmp, net = slice_case
    x = random_inputs(net, 2, 62, density=0.35)
    runs = {}
    for sim in ("icarus", "verilator"):
        r = cosimulate(str(SLICE), tmp / "export", x, sim, tmp / f"work_{sim}",
                       stall_probability=0.3, seed=63, bus="axi")
        assert r["samples"] == 2
        assert r["mismatches"] == 0, r["details"]
        assert not r["testbench_failed"]
        assert all(c > 0 for c in r["cycles"])
        runs[sim] = r
    assert runs["icarus"]["cycles"] == runs["verilator"]["cycles"]
    assert runs["icarus"]["jobs"][0]["counters"] == runs["verilator"]["jobs"][0]["counters"]


@pytest.mark.sim
def test_axi_scoreboard_catches_a_wrong_rtl(slice_case):
    """The comparison can fail: zero weights loaded over s_axis_param behind golden's back."""
    from sim.runner import cosimulate
    tmp, net = slice_case
    x = random_inputs(net, 1, 64, density=0.6)
    r = cosimulate(str(SLICE), tmp / "export", x, "icarus", tmp / "work_fault",
                   stall_probability=0.2, seed=65, bus="axi", fault="drop_layer0_weights")
    assert r["mismatches"] > 0 and r["details"]
