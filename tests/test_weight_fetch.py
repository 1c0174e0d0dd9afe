"""hw.weight_fetch on Icarus (and Verilator for one parameter set) against cocotbext-axi's
AXI RAM at three memory settings: no added latency, a fixed 24-cycle latency per burst, and
a random latency with random ARREADY and RVALID stalls; every block read back equal to the
memory, bursts never across 4 KB, several bursts in flight."""
import json
import os

import pytest
from amaranth.back import verilog

from hw.sram import SRAM_VERILOG
from hw.toolchain import LINT_WAIVERS, apply_verilator_env, lint, note_simulator
from hw.weight_fetch import WeightFetch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETTINGS = [{"name": "no added latency", "latency": 0, "ar_pause": 0.0, "r_pause": 0.0},
            {"name": "24 cycles a burst", "latency": 24, "ar_pause": 0.0, "r_pause": 0.0},
            {"name": "random", "latency": [0, 40], "ar_pause": 0.3, "r_pause": 0.3}]


def test_parameters_are_checked():
    for kwargs, match in (({"word_width": 0, "bank_words": 4}, "word_width"),
                          ({"word_width": 8, "bank_words": 4, "data_width": 48}, "data_width"),
                          ({"word_width": 8, "bank_words": 4, "max_burst": 257}, "max_burst"),
                          ({"word_width": 8, "bank_words": 4, "addr_width": 8}, "addr_width")):
        with pytest.raises(ValueError, match=match):
            WeightFetch(**kwargs)


@pytest.mark.sim
@pytest.mark.parametrize("simulator,params", [
    ("icarus", {"word_width": 64, "bank_words": 40, "data_width": 64, "max_burst": 16,
                "max_outstanding": 4}),
    ("icarus", {"word_width": 100, "bank_words": 24, "data_width": 32, "max_burst": 8,
                "max_outstanding": 2}),
    ("verilator", {"word_width": 64, "bank_words": 40, "data_width": 64, "max_burst": 16,
                   "max_outstanding": 4}),
])
def test_blocks_arrive_intact_at_every_latency(tmp_path, simulator, params):
    params = {"addr_width": 32, "banks": 2, **params}
    hw = tmp_path / "hw"
    hw.mkdir()
    (hw / "weight_fetch.v").write_text(verilog.convert(WeightFetch(**params), name="weight_fetch",
                                                       emit_src=False))
    (hw / "spquant_sram.v").write_text(SRAM_VERILOG)
    ok, log = lint([hw / "weight_fetch.v", hw / "spquant_sram.v"], "weight_fetch")
    assert ok, log[-2000:]                 # verilator -Wall with the core's waivers
    case = {"params": params, "settings": SETTINGS, "blocks": 24, "seed": 5,
            "results": str(tmp_path / "results.json")}
    (tmp_path / "case.json").write_text(json.dumps(case))
    from cocotb_tools.runner import get_runner
    note_simulator(f"{simulator} build")
    if simulator == "verilator":
        apply_verilator_env()
    runner = get_runner(simulator)
    runner.build(sources=[hw / "weight_fetch.v", hw / "spquant_sram.v"], hdl_toplevel="weight_fetch",
                 build_dir=str(tmp_path / "build"), timescale=("1ns", "1ps"), always=True,
                 build_args=([str(LINT_WAIVERS), "-Wno-fatal"] if simulator == "verilator"
                             else ["-g2005"]))
    note_simulator(f"{simulator} run")
    runner.test(hdl_toplevel="weight_fetch", test_module="sim.tb_weight_fetch",
                build_dir=str(tmp_path / "build"), test_dir=str(tmp_path),
                extra_env={"SPQ_CASE": str(tmp_path / "case.json"),
                           "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])},
                results_xml=str(tmp_path / "results.xml"))
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["setting"] for r in results] == [s["name"] for s in SETTINGS]
    for r in results:
        assert r["blocks"] == 24 and r["words"] > 0 and not r["problems"], r
    # With no stalls on the address channel, bursts overlap (the RAM model queues two).
    assert results[1]["max_outstanding_seen"] >= 2
    # A fixed latency costs cycles; the random setting too (its stalls).
    assert results[1]["cycles"] > results[0]["cycles"] and results[2]["cycles"] > results[0]["cycles"]
