"""``python -m reports.datasheet [--configs A.yaml,B.yaml] [--out docs/DATASHEET.md] [--json OUT] [--work DIR] [--no-pnr] [--no-synth]`` (``make datasheet``)

The core's datasheet, written from measurements made by this command, per configuration:

- **network**: the config's own (``make_case``, as ``make sim``: the trained checkpoint,
  trained if missing, or the calibrated random network of ``sim.network: random``) and
  its ``sim.samples`` inputs; golden's inference of them;
- **cycles per inference**: ``hw.perf`` (the exact cycle model of the RTL: equal to the
  RTL's stall-free count), at the config's lane count and at every lane count placed;
  inferences per second and latency at each placed core's fmax;
- **resources**: generic Yosys synthesis (``hw.synth``: cells, flip-flops; the SRAMs as
  black-box macros, their bits from the generated parameters), and place and route where
  :data:`PNR_PLAN` asks (``hw.synth_ice40``: iCE40 HX8K; ``hw.synth_ecp5``: ECP5
  LFE5U-85F) with LUTs, flip-flops, block RAMs, DSPs and fmax; what is not placed, and why;
- **memory traffic** per inference (``hw.traffic``: words and bits read and written per
  memory, from golden's work counts and the schedule) and the bound of memories that read
  every cycle;
- **energy** per inference: arithmetic and SRAM accesses at 45 nm (Horowitz, ISSCC 2014;
  ``efficiency.energy.access_energy``), and the paper's Eq. 31 (additions only) at 7 nm
  (BitNet) as its own column.

It writes ``--out`` (default docs/DATASHEET.md) and ``--json`` (default
build/datasheet/datasheet.json) atomically, after every measurement has finished. Tool
work goes under ``--work`` (default build/datasheet), one folder per config.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

import golden
from efficiency.energy import (ENERGY_PJ, EQ31_SOURCE, HOROWITZ_SOURCE, SCALING_RULES,
                               access_energy, snn_energy)
from golden.model import step_work
from hw.params import CoreParams
from hw.perf import lane_report
from hw.synth import synthesize, with_lanes
from hw.synth_ecp5 import DEVICE as ECP5_DEVICE
from hw.synth_ice40 import DEVICE as ICE40_DEVICE
from hw.traffic import memory_traffic
from project_config import Config, UserError, cli_main, load_config
from project_config.cli import SAMPLES_MAX, bounded_int, comma_list, parser, seed
from project_config.files import (atomic_write, check_output_dir, check_output_file,
                                  write_json_report)
from sim.flow import make_case

CONFIGS = ("slice_digits.yaml", "vgg9_small.yaml", "vgg9.yaml")
# What is placed and routed, per config name: target -> lane counts of the placed copies.
# Small cores only (the slice at its own 8 lanes and at 16 on the ECP5: about 1.5 and 3.5
# min on 2 idle cores; on the iCE40 HX8K its 1-lane copy, and the 2-lane copy, which now
# needs more block RAMs than the HX8K has, and says so); the full VGG-9 fits neither device
# (its weight SRAM alone is 10x the ECP5's block RAM), which the datasheet says instead.
PNR_PLAN = {"slice_digits": {"ice40": (1, 2), "ecp5": (8, 16)},
            "vgg9_small": {"ice40": (4,), "ecp5": (4,)}}
# Block RAM bits of each device (the datasheet's "does not fit" check): iCE40 SB_RAM40_4K
# 4 Kbit each, ECP5 DP16KD 18 Kbit each (208 on the LFE5U-85F).
DEVICE_BRAM_BITS = {"ice40": ICE40_DEVICE["block_rams"] * 4096, "ecp5": 208 * 18432}
DEVICE_NAME = {"ice40": ICE40_DEVICE["name"], "ecp5": ECP5_DEVICE["name"]}
NOMINAL_MHZ = 100.0            # for configs with no placed core: a stated, unmeasured clock
WORK = Path("build") / "datasheet"


# --- measuring ----------------------------------------------------------------------------

def count_rows(p: CoreParams, net, res) -> list:
    """Per layer, golden's work counts summed over samples and steps (the numbers the core's
    counters report; co-simulation compares the two), with the layer's accumulator width."""
    work = step_work(net, res, p.lanes)
    return [{"layer": lp.index, "kind": lp.kind, "acc_width": lp.acc_width,
             "synaptic_ops": int(w["synaptic_ops"].sum()),
             "neuron_updates": int(w["neuron_updates"].sum()),
             "events": int(w["events"].sum())} for lp, w in zip(p.layers, work)]


def energy(p: CoreParams, rows: list, traffic: dict, samples: int) -> dict:
    """The access model (45 nm) and Eq. 31 at 7 nm and at 45 nm, per inference (pJ)."""
    eq31 = {node: snn_energy(rows, samples, lanes=p.lanes, node=node)["total_pj"]
            for node in ("7nm", "45nm")}
    return {"access_45nm": access_energy(rows, traffic, samples, lanes=p.lanes),
            "eq31_pj": eq31,
            "eq31_source": {node: EQ31_SOURCE[node] for node in eq31},
            "eq31_int8_add_pj": {node: ENERGY_PJ[node]["int8"].add for node in eq31}}


def fits(kind: str, memory_bits: dict) -> str | None:
    """Why the core cannot fit the ``kind`` device's block RAM (None if its SRAM bits do)."""
    total = sum(memory_bits.values())
    if total <= DEVICE_BRAM_BITS[kind]:
        return None
    return (f"{total:,} SRAM bits (weights {memory_bits['weights']:,}) exceed the "
            f"{DEVICE_NAME[kind]}'s {DEVICE_BRAM_BITS[kind]:,} block-RAM bits")


def implementation(cfg: Config, plan: dict, synth: bool, pnr: bool, log,
                   work: Path = WORK) -> dict:
    """Generic synthesis of the config's core and place and route of ``plan``'s copies;
    one ``synthesize`` call per lane count."""
    lanes = cfg.hardware["lanes"]
    out = {"generic": None, "targets": {}}
    if not synth:
        out["generic"] = {"skipped": "--no-synth"}
    wanted = {}                                   # lanes -> targets to place
    for kind, counts in (plan.items() if pnr and synth else ()):
        for n in counts:
            wanted.setdefault(n, []).append(kind)
    if synth:
        wanted.setdefault(lanes, [])
    for n, kinds in sorted(wanted.items()):
        c = cfg if n == lanes else with_lanes(cfg, n)
        mem = CoreParams(c).memory_bits()
        todo = [k for k in kinds if fits(k, mem) is None]
        for k in kinds:
            if k not in todo:
                out["targets"][f"{k}@{n}"] = {"kind": k, "lanes": n, "fits": False,
                                              "blocked_by": fits(k, mem),
                                              "device": DEVICE_NAME[k]}
        log(f"[datasheet] {cfg.name}: synthesis at {n} lanes"
            + (f", place and route on {', '.join(todo)}" if todo else ""))
        t0 = time.time()
        rep = synthesize(c, out=work / cfg.name / f"synth_{n}lanes",
                         ice40="ice40" in todo, ecp5="ecp5" in todo)
        log(f"[datasheet] {cfg.name}: {n} lanes done in {time.time() - t0:.0f} s")
        if n == lanes:
            out["generic"] = {k: rep[k] for k in ("tool", "totals", "sram_blackboxes", "seconds")}
        for k in todo:
            out["targets"][f"{k}@{n}"] = {"kind": k, "lanes": n, **rep[k]}
    for kind in ("ice40", "ecp5"):
        if not any(t["kind"] == kind for t in out["targets"].values()):
            out["targets"][kind] = {"kind": kind, "lanes": None, "fits": False,
                                    "device": DEVICE_NAME[kind],
                                    "blocked_by": fits(kind, CoreParams(cfg).memory_bits())
                                    or ("--no-synth" if not synth else "--no-pnr" if not pnr
                                        else "not in PNR_PLAN (reports/datasheet.py)")}
    return out


def measure(cfg: Config, samples: int | None = None, seed: int = 7, synth: bool = True,
            pnr: bool = True, log=print, work: Path = WORK) -> dict:
    """Every measurement of one config's datasheet entry (JSON-able)."""
    t0 = time.time()
    p = CoreParams(cfg)
    case = make_case(cfg, samples or cfg.sim["samples"], seed=seed, log=log)
    net, inputs = case.net, case.inputs
    p.check_export(net, where=str(case.export_dir))
    res = golden.run(net, inputs)
    n = len(inputs)
    rows = count_rows(p, net, res)
    log(f"[datasheet] {cfg.name}: golden on {n} samples; cycle model and traffic")
    perf = {p.lanes: lane_report(p, net, res)}
    traffic = memory_traffic(p, net, res)
    impl = implementation(cfg, PNR_PLAN.get(cfg.name, {}), synth, pnr, log, work)
    for t in impl["targets"].values():
        if t.get("fits") and t["lanes"] not in perf:
            pc = CoreParams(dataclasses.replace(cfg, hardware={**cfg.hardware,
                                                               "lanes": t["lanes"]}))
            perf[t["lanes"]] = lane_report(pc, net, res)
    return {
        "config": cfg.path, "name": cfg.name, "lanes": p.lanes, "timesteps": cfg.timesteps,
        "samples": n, "network": ("random (calibrated)" if cfg.sim["network"] == "random"
                                  else "trained"),
        "memory_bits": p.memory_bits(),
        "cycles": {str(k): {"cycles_per_inference": v["cycles_per_inference"],
                            "cycles_per_sample": v["cycles_per_sample"],
                            "utilization": v["utilization"]} for k, v in perf.items()},
        "counts": rows, "traffic": traffic, "energy": energy(p, rows, traffic, n),
        "implementation": impl, "wall_s": round(time.time() - t0, 1),
    }


# --- writing ------------------------------------------------------------------------------

def _num(v, digits=0) -> str:
    return f"{v:,.{digits}f}"


def _si(pj: float) -> str:
    """Energy in the largest unit that keeps the number at least 1 (pJ, nJ, uJ, mJ)."""
    for unit, scale in (("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if pj >= scale:
            return f"{pj / scale:,.3g} {unit}"
    return f"{pj:,.3g} pJ"


def _rate(cycles: float, mhz: float) -> tuple[str, str]:
    """(inferences per second, latency) at ``mhz``."""
    seconds = cycles / (mhz * 1e6)
    lat = f"{seconds * 1e3:,.3g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:,.3g} us"
    ips = 1 / seconds
    return (f"{ips:,.0f}" if ips >= 100 else f"{ips:.3g}"), lat


def placed(entry: dict) -> list:
    """(kind, target report) of the config's placed and routed cores."""
    return [(t["kind"], t) for t in entry["implementation"]["targets"].values()
            if t.get("fits") and t.get("fmax_mhz")]


def summary_rows(entry: dict) -> list:
    """Rows of the performance table: one per placed core, or one at the nominal clock."""
    rows = []
    for kind, t in placed(entry):
        cyc = entry["cycles"][str(t["lanes"])]["cycles_per_inference"]
        ips, lat = _rate(cyc, t["fmax_mhz"])
        rows.append([entry["name"], str(t["lanes"]), _num(cyc),
                     f"{t['fmax_mhz']} MHz ({t['device']}, placed and routed)", ips, lat])
    if not rows or all(t["lanes"] != entry["lanes"] for _, t in placed(entry)):
        cyc = entry["cycles"][str(entry["lanes"])]["cycles_per_inference"]
        ips, lat = _rate(cyc, NOMINAL_MHZ)
        rows.append([entry["name"], str(entry["lanes"]), _num(cyc),
                     f"{NOMINAL_MHZ:g} MHz nominal (not placed: no measured fmax)", ips, lat])
    return rows


def _table(head: list, rows: list) -> list:
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(r) + " |" for r in rows])


def _resources(t: dict, kind: str) -> str:
    if kind == "ice40":
        u = t.get("utilization", {})
        parts = [f"{t['luts']:,} SB_LUT4", f"{t['block_rams']} SB_RAM40_4K"]
        parts += [f"{k} {a}/{b}" for k, (a, b) in u.items() if k in ("ICESTORM_LC", "ICESTORM_RAM")]
        return ", ".join(parts)
    return ", ".join(f"{name} {u:,}/{a:,}" for name, (u, a) in
                     ((n, t[n]) for n in ("luts", "comb_cells", "flip_flops", "block_rams", "dsps")))


def implementation_rows(entry: dict) -> list:
    rows = []
    g = entry["implementation"]["generic"]
    if g and "totals" in g:
        rows.append([entry["name"], str(entry["lanes"]), "generic gates (Yosys `synth`, no device)",
                     f"{g['totals']['cells']:,} cells, {g['totals']['flip_flops']:,} flip-flops; "
                     f"SRAM macros (black boxes) {g['sram_blackboxes']['bits_total']:,} bits",
                     "-", f"{g['seconds']['yosys']:.0f} s"])
    else:
        rows.append([entry["name"], str(entry["lanes"]), "generic gates", "not synthesized "
                     f"({(g or {}).get('skipped', '?')}); SRAM bits "
                     f"{sum(entry['memory_bits'].values()):,}", "-", "-"])
    for t in entry["implementation"]["targets"].values():
        kind = t["kind"]
        if t.get("fits"):
            secs = sum(t["seconds"].values())
            rows.append([entry["name"], str(t["lanes"]), t["device"], _resources(t, kind),
                         f"{t['fmax_mhz']} MHz", f"{secs:.0f} s"])
        else:
            lanes = str(t["lanes"]) if t.get("lanes") else "-"
            rows.append([entry["name"], lanes, t["device"], f"**not placed**: {t['blocked_by']}",
                         "-", "-"])
    return rows


def traffic_rows(entry: dict) -> list:
    tr = entry["traffic"]
    rows = [[entry["name"], name, _num(t["reads"]), _num(t["writes"]), _num(t["bits_read"]),
             _num(t["bits_written"])] for name, t in tr["totals"].items()]
    rows.append([entry["name"], "**total**", "", "", f"**{_num(tr['bits_read'])}**",
                 f"**{_num(tr['bits_written'])}**"])
    ec = tr["every_cycle"]
    rows.append([entry["name"], "every memory reads every cycle (as generated: no read enable)",
                 "", "", f"{_num(ec['bits_read'])} ({_num(ec['cycles'])} cycles x "
                 f"{ec['read_port_bits']:,} bits)", ""])
    return rows


def energy_rows(entry: dict) -> list:
    a = entry["energy"]["access_45nm"]
    e31 = entry["energy"]["eq31_pj"]
    lo, hi = a["total_weights_dram_pj"]
    return [[entry["name"], _si(a["arithmetic_pj"]), _si(a["sram_pj"]), _si(a["total_pj"]),
             _si(a["total_size_scaled_pj"]), f"{_si(lo)} - {_si(hi)}",
             _si(a["every_cycle_sram_pj"] + a["arithmetic_pj"]), _si(e31["7nm"]),
             _si(e31["45nm"])]]


def render(entries: list, meta: dict) -> str:
    """docs/DATASHEET.md from the measured entries."""
    md = ["# Datasheet", "",
          "Generated by `make datasheet` (`python -m reports.datasheet`) from the measurements "
          "of that run; do not edit by hand.", "",
          f"- Run: {meta['date']}, commit `{meta['commit']}`, {meta['machine']}; "
          f"{meta['wall_s']:.0f} s in all ({meta['per_config_s']}).",
          f"- Tools: {meta['yosys']}; place and route: YoWASP nextpnr-ice40 and nextpnr-ecp5 "
          "(PyPI), one seed, `--timing-allow-fail`; fmax is nextpnr's achieved clock.",
          "- Cycles: `hw.perf`, the exact cycle model of the RTL (equal to the RTL's "
          "stall-free count), averaged over the config's inputs; a placed copy with fewer "
          "lanes than the config is timed at its own lane count.",
          "- Inputs: each config's own network and inputs (`make sim`'s: the trained slice, "
          "the calibrated random VGG-9 networks), `sim.samples` of them.", "",
          "## Performance", ""]
    md += _table(["config", "lanes", "cycles / inference", "clock", "inferences / s",
                  "latency"], [r for e in entries for r in summary_rows(e)])
    md += ["", "## Resources and fmax", "",
           "Place and route runs inside a pin harness (inputs from a serial shift chain, "
           "outputs XOR-folded into one pin), so the numbers include it. Only small cores are "
           "placed (the budget of this command is 30 min on 2 cores).", ""]
    md += _table(["config", "lanes", "target", "resources", "fmax", "tool time"],
                 [r for e in entries for r in implementation_rows(e)])
    md += ["", "## Memory traffic per inference", "",
           "Words and bits per inference by memory (`hw.traffic`): the useful accesses of the "
           "schedule, from golden's work counts (the counts the core's counters report) and "
           "the layer geometry; a model of the RTL, not counted by it. The generated SRAM "
           "macro has no read enable, so as generated every memory reads each cycle: the "
           "last row of each config is that bound.", ""]
    md += _table(["config", "memory", "reads", "writes", "bits read", "bits written"],
                 [r for e in entries for r in traffic_rows(e)])
    md += ["", "## Energy per inference", "",
           f"Arithmetic and SRAM accesses at **45 nm**, {HOROWITZ_SOURCE}: 8-bit add 0.03 pJ, "
           "32-bit add 0.1 pJ, a 64-bit access to an 8 KB SRAM 10 pJ, DRAM 1.3-2.6 nJ per "
           "64 bits. Rules (assumptions) that carry them to this core:", ""]
    md += [f"- {rule}" for rule in SCALING_RULES]
    md += ["", "Eq. 31 (the paper's: additions only, every addition an INT8 add) at **7 nm**, "
           f"{EQ31_SOURCE['7nm']}: INT8 add 0.007 pJ; and at **45 nm**, INT8 add 0.03 pJ "
           f"({EQ31_SOURCE['45nm']}), for a like-for-like comparison with the access model. Counts: golden's "
           "work counts (synaptic ops; membrane updates: 2 adds per computed neuron, 1 per "
           "classifier output and step).", ""]
    md += _table(["config", "arithmetic (45 nm)", "SRAM, flat (45 nm)", "**total** (45 nm)",
                  "total, size-scaled SRAM (45 nm)", "total, weights from DRAM (45 nm)",
                  "bound: every memory every cycle (45 nm)", "Eq. 31 (7 nm, BitNet)",
                  "Eq. 31 (45 nm)"], [r for e in entries for r in energy_rows(e)])
    md += ["", "SRAM energy by memory (45 nm, flat):", ""]
    md += _table(["config"] + ["memory", "energy", "share"],
                 [[e["name"], m, _si(v), f"{v / e['energy']['access_45nm']['sram_pj']:.1%}"]
                  for e in entries for m, v in sorted(
                      e["energy"]["access_45nm"]["sram_by_memory"].items(), key=lambda kv: -kv[1])])
    md += ["", "## Configurations", ""]
    md += _table(["config", "lanes", "T", "network", "samples", "SRAM bits"],
                 [[_relative(e["config"]), str(e["lanes"]), str(e["timesteps"]), e["network"],
                   str(e["samples"]), _num(sum(e["memory_bits"].values()))] for e in entries])
    return "\n".join(md) + "\n"


def _relative(path: str) -> str:
    """``path`` relative to the working directory where it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return head + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def main(argv=None):
    ap = parser("python -m reports.datasheet", __doc__)
    ap.add_argument("--configs", type=comma_list(str), default=list(CONFIGS),
                    help="comma list of config YAMLs (default " + ",".join(CONFIGS) + ")")
    ap.add_argument("--out", default="docs/DATASHEET.md", help="the datasheet (Markdown)")
    ap.add_argument("--json", default=str(WORK / "datasheet.json"),
                    help="every measured number as JSON")
    ap.add_argument("--work", default=str(WORK), help="folder for the tools' files")
    ap.add_argument("--samples", type=bounded_int(1, SAMPLES_MAX),
                    help="inputs per config (default sim.samples)")
    ap.add_argument("--seed", type=seed, default=7, help="seed of a random network")
    ap.add_argument("--no-synth", action="store_true", help="no Yosys, no place and route")
    ap.add_argument("--no-pnr", action="store_true", help="generic synthesis only")
    args = ap.parse_args(argv)
    configs = [load_config(c) for c in args.configs]      # all checked before any work
    check_output_file(args.out, "--out")
    check_output_file(args.json, "--json")
    check_output_dir(args.work, "--work")
    t0 = time.time()
    entries, per = [], []
    for cfg in configs:
        entries.append(measure(cfg, args.samples, args.seed, synth=not args.no_synth,
                               pnr=not args.no_pnr, work=Path(args.work)))
        per.append(f"{cfg.name} {entries[-1]['wall_s']:.0f} s")
    gen = [e["implementation"]["generic"] for e in entries]
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": _commit(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "wall_s": time.time() - t0, "per_config_s": ", ".join(per),
            "yosys": next((g["tool"] for g in gen if g and "tool" in g), "Yosys not run")}
    write_json_report(args.json, {"meta": meta, "configs": entries})
    atomic_write(args.out, render(entries, meta))
    print(f"[datasheet] wrote {args.out} and {args.json} ({meta['wall_s']:.0f} s: "
          f"{meta['per_config_s']})")
    return 0


def cli():
    """Console-script entry point (pyproject [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
