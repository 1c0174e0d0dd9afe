"""Line, branch and toggle coverage of the generated core, from Verilator's ``coverage.dat``.

    python -m sim.regress --simulator verilator --cases 100 --per-shape 25 --code-coverage

A core built with ``sim.runner.build_simulator(..., code_coverage=True)`` (Verilator
``--coverage-line --coverage-toggle``) writes ``coverage.dat`` when its simulation ends. This
module reads that file (Verilator's own format, ``# SystemC::Coverage-3``: one ``C 'key'
count`` line a point, the key a list of ``\\x01name\\x02value`` fields), sums the points of
several runs of the same design, and summarizes one design's points against its Verilog:

- **line**: Verilator's statement-block points (``v_line``) in the core's own file;
- **branch**: both arms of every ``if``, ``case`` item and ``? :`` (``v_branch``);
- **toggle**: every bit of every named signal, 0->1 and 1->0 (``v_toggle``).

Excluded, and counted per reason in the summary:

- the memory models (``spquant_sram.v``): behavioural SRAMs that a real chip replaces;
- Yosys' wake-up block ``if (\\$auto$verilog_backend...dump_module$N) begin end``: an
  empty statement the Verilog backend writes so that ``always @*`` runs at time 0, whose
  condition is the constant 0 (its arm is dead by construction and holds no logic);
- toggles of Yosys temporaries (``\\$N`` wires and the wake-up register: one expression
  each, of named signals whose bits are counted). They are still summed into
  ``toggle_all`` for reference;
- toggles of bits tied to a constant (:func:`constant_bits`: Yosys' constant propagation
  over the flattened design proves the bit never changes, so no test can toggle it). Most
  are the per-layer constants' high bits (``cur_*``: a base address of a few words in a
  32-bit field) and the window packer's routing for lane counts the core does not have.

Every random shape is a different core, so points are summed only within a design; a
regression's figure pools the designs (covered points over points, all designs), and the
uncovered points are listed per design with their Verilog text.
"""
from __future__ import annotations

import json
import re
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from hw.synth import run_yosys
from hw.toolchain import tool_command
from project_config.files import atomic_write

KINDS = {"v_line": "line", "v_branch": "branch", "v_toggle": "toggle"}
MEMORY_MODELS = ("spquant_sram.v",)
_WAKE_UP = "verilog_backend.cc"
# Verilator's spelling of Yosys' `\$123` and `\$auto$...` (the wake-up register) names.
_TEMPORARY = re.compile(r"^__024(\d|auto__024)")


def read_dat(path) -> dict:
    """{key: count} of one ``coverage.dat`` (the key as Verilator wrote it)."""
    points = {}
    with open(path, encoding="latin-1") as f:
        for line in f:
            if not line.startswith("C '"):
                continue
            key, count = line[3:].rstrip("\n").rsplit("' ", 1)
            points[key] = points.get(key, 0) + int(count)
    return points


def merge_dat(paths) -> dict:
    """The points of several runs of one design, counts summed."""
    total = Counter()
    for p in paths:
        total.update(read_dat(p))
    return dict(total)


def write_dat(points: dict, path) -> None:
    """``points`` in Verilator's format, for ``verilator_coverage --annotate`` where installed."""
    atomic_write(Path(path), ("# SystemC::Coverage-3\n" + "".join(
        f"C '{k}' {n}\n" for k, n in sorted(points.items()))).encode("latin-1"))


def fields(key: str) -> dict:
    """The named fields of a point's key: f (file), l (line), page, o (the point's name), ..."""
    return dict(kv.split("\x02", 1) for kv in key.split("\x01")[1:] if "\x02" in kv)


# Constant propagation only: no wreduce or FSM passes, which rename or drop wires. Word
# level first, then on single-bit gates (techmap), which also finds the bits a word cell
# ties without tying its whole output (a mux of per-layer constants that agree in a bit,
# an adder's carry out of bits that are 0); each netlist is one proof, the union is taken.
_CONSTANT_SCRIPT = """read_verilog -sv {files}
hierarchy -top {top}
proc
flatten
setattr -unset init
opt -full
write_json netlist_words.json
techmap
opt -full
write_json netlist_gates.json
"""
_CONSTANT_NETLISTS = ("netlist_words.json", "netlist_gates.json")
TIED = "bits tied to a constant (Yosys constant propagation)"


def constant_bits(hw_dir, top: str = "snn_core") -> set:
    """{(signal, bit)} of the named signals whose bits Yosys proves constant in the design
    of ``hw_dir`` (its Verilog files): ``proc; flatten; opt -full``, then every netname bit
    that became a constant, at word level and again after ``techmap; opt -full`` (gates).
    ``signal`` is hierarchical with dots (``window_packer.moves``), as
    :func:`toggle_signal` names a toggle point. Register init values are dropped first,
    so a register counts as constant only when its inputs are. A tied bit can still show
    one toggle, at time 0, from Verilator's initial 0 to its constant 1."""
    hw_dir = Path(hw_dir)
    files = sorted(p.name for p in hw_dir.glob("*.v"))
    with tempfile.TemporaryDirectory() as tmp:   # YoWASP tools see their working folder only
        for name in files:
            (Path(tmp) / name).write_bytes((hw_dir / name).read_bytes())
        run_yosys(tool_command("yosys"), _CONSTANT_SCRIPT.format(files=" ".join(files), top=top),
                  Path(tmp), "constants.log")
        netlists = [json.loads((Path(tmp) / n).read_text()) for n in _CONSTANT_NETLISTS]
    tied = set()
    for netlist in netlists:
        for name, net in netlist["modules"][top]["netnames"].items():
            if name.startswith("$"):
                continue
            offset = int(net.get("offset", 0))
            for i, bit in enumerate(net["bits"]):
                if bit in ("0", "1"):                # "x" is a don't-care: it may move
                    tied.add((name, i + offset))
    return tied


def toggle_signal(f: dict) -> tuple[str, int]:
    """A toggle point's (hierarchical signal name, bit), as Yosys names it flattened."""
    o = f.get("o", "").split(":")[0].replace("__024", "$")
    mo = re.match(r"^(.*?)(?:\[(\d+)\])?$", o)
    scope = f.get("h", "").split(".")[1:]             # below the top module
    return ".".join([*scope, mo.group(1)]), int(mo.group(2) or 0)


def _exclusion(f: dict, source: list) -> str | None:
    if Path(f.get("f", "")).name in MEMORY_MODELS:
        return "memory models (spquant_sram.v)"
    line = int(f.get("l", 0))
    if KINDS.get(f["page"].split("/")[0]) != "toggle":
        if 0 < line <= len(source) and _WAKE_UP in source[line - 1]:
            return "Yosys' time-0 wake-up block (constant-0 condition, empty)"
    return None


def _signal(f: dict) -> str:
    """A toggle point's signal, bit and direction, with Verilator's $ spelling undone."""
    return f.get("o", "").replace("__024", "$").replace("__DOT__", ".")


def summarize(points: dict, verilog, tied: set = frozenset()) -> dict:
    """One design's coverage: points and hits per kind, exclusions per reason, and the
    uncovered points (line and branch: Verilog line and text; toggle: signal[bit] and
    direction). ``verilog``: the design's core file, for the text and the exclusions.
    ``tied``: its :func:`constant_bits`, excluded from toggle coverage."""
    source = Path(verilog).read_text().splitlines()
    count = {k: Counter() for k in ("line", "branch", "toggle", "toggle_all")}
    excluded = Counter()
    uncovered = defaultdict(list)
    for key, n in points.items():
        f = fields(key)
        kind = KINDS.get(f.get("page", "").split("/")[0])
        if kind is None:
            continue
        why = _exclusion(f, source)
        if why:
            excluded[why] += 1
            continue
        if kind == "toggle":
            count["toggle_all"]["points"] += 1
            count["toggle_all"]["hit"] += n > 0
            if _TEMPORARY.match(f.get("o", "")):
                excluded["toggles of Yosys temporaries ($N wires)"] += 1
                continue
            if toggle_signal(f) in tied:
                excluded[TIED] += 1
                continue
        count[kind]["points"] += 1
        count[kind]["hit"] += n > 0
        if n == 0:
            line = int(f.get("l", 0))
            if kind == "toggle":
                uncovered["toggle"].append(_signal(f))
            else:
                text = source[line - 1].strip() if 0 < line <= len(source) else ""
                uncovered[kind].append({"line": line, "arm": f.get("o", ""), "text": text[:120]})
    return {"kinds": {k: {"points": c["points"], "hit": c["hit"]} for k, c in count.items()},
            "excluded": dict(excluded),
            "uncovered": {k: sorted(v, key=str) for k, v in uncovered.items()}}


def percent(kind: dict) -> float:
    return round(100 * kind["hit"] / kind["points"], 2) if kind["points"] else 100.0


def pool(designs: dict) -> dict:
    """The pooled figure of several designs' summaries ({name: summary})."""
    total = {k: Counter() for k in ("line", "branch", "toggle", "toggle_all")}
    excluded = Counter()
    for s in designs.values():
        for k, c in s["kinds"].items():
            total[k].update(c)
        excluded.update(s["excluded"])
    kinds = {k: {"points": c["points"], "hit": c["hit"]} for k, c in total.items()}
    for k in kinds.values():
        k["percent"] = percent(k)
    return {"designs": len(designs), "kinds": kinds, "excluded": dict(excluded)}


def _signal_name(point: str) -> str:
    return re.sub(r"\[\d+\]", "", point.split(":")[0])


def write_report(designs: dict, json_path, md_path, title: str) -> dict:
    """``code_coverage.json`` (the pooled figure and every design's summary) and a markdown
    report listing each design's uncovered lines and branches and its least-toggled
    signals; returns the pooled figure."""
    pooled = pool(designs)
    atomic_write(Path(json_path), json.dumps({"pooled": pooled, "designs": designs}, indent=1))
    k = pooled["kinds"]
    lines = [f"# Code coverage: {title}", "",
             f"{pooled['designs']} designs (one generated core each), Verilator line and toggle "
             "coverage, pooled over the designs.", "",
             "| kind | covered | points | % |", "|---|---|---|---|"]
    for name, label in (("line", "lines (statement blocks)"), ("branch", "branch arms"),
                        ("toggle", "toggle, named signals"),
                        ("toggle_all", "toggle, every net (reference)")):
        lines.append(f"| {label} | {k[name]['hit']} | {k[name]['points']} | {k[name]['percent']} |")
    lines += ["", "Excluded points:", ""]
    lines += [f"- {why}: {n}" for why, n in sorted(pooled["excluded"].items())]
    for name, s in sorted(designs.items()):
        lines += ["", f"## {name}", ""]
        lines += [f"- {kind}: {c['hit']}/{c['points']} ({percent(c)}%)"
                  for kind, c in s["kinds"].items()]
        for kind in ("line", "branch"):
            miss = s["uncovered"].get(kind, [])
            if miss:
                lines += ["", f"Uncovered {kind} points:", ""]
                lines += [f"- line {m['line']} ({m['arm']}): `{m['text']}`" for m in miss]
        bits = Counter(_signal_name(p) for p in s["uncovered"].get("toggle", []))
        if bits:
            lines += ["", "Signals with untoggled bits (0->1 or 1->0 never seen), most first:", ""]
            lines.append(", ".join(f"`{n}` {c}" for n, c in bits.most_common(40))
                         + (f", and {len(bits) - 40} more" if len(bits) > 40 else ""))
    atomic_write(Path(md_path), "\n".join(lines) + "\n")
    return pooled
