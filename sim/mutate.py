"""Mutation testing of the core: mutants of the RTL generator, each run against a fast
regression subset; the report gives killed / total and every survivor with its argument.

    python -m sim.mutate                          # 64 mutants, seed 1 (make mutate)
    python -m sim.mutate --mutants 120 --seed 2 --workers 2
    python -m sim.mutate --list                   # every mutation site, nothing run
    python -m sim.mutate --only ID[,ID] [--keep]  # these mutants, their folders kept

A *mutant* is one edit of the generator's source (``hw/``), in the code that builds the
RTL: the ``elaborate`` methods of the core and its units and the helpers they call
(:data:`RTL_SOURCES`). The edits (:data:`OPERATORS`):

- ``comparison``: ``==``/``!=`` swapped, ``<``/``<=`` and ``>``/``>=`` moved by one;
- ``operator``: ``+``/``-`` and ``&``/``|`` swapped, ``^`` made ``|``;
- ``mask ignored``: ``a & b`` made ``a``;
- ``inversion dropped``: ``~a`` made ``a``;
- ``off by one``: an integer constant in an expression made one larger;
- ``transition dropped``: an ``m.next = ...`` state transition removed;
- ``assignment dropped``: an ``m.d.sync += ...`` or ``m.d.comb += ...`` removed;
- ``stuck at zero``: ``x.eq(v)`` made ``x.eq(0)``;
- ``condition negated``: ``m.If(c)`` or ``m.Elif(c)`` made to test ``not c``.

Every site has an id, a hash of its file, function, edit and source text (so it survives
edits elsewhere). ``--mutants N`` samples N sites by ``--seed``, spread over the edits and
files. Each mutant is a copy of ``hw/`` with the one edit, imported in a process of its own
ahead of the checkout's. For every shape of the subset that process generates the core (Yosys
and the Verilator lint included) and, where the Verilog differs from the unmutated core's,
co-simulates the shape's cases on Icarus against golden (sim.regress.run_shape: records,
signatures, performance counters, idle cycles and backpressure). A mutant is

- **killed** by a mismatch, a hang (``4x`` the unmutated subset's cycles, or a generator or
  simulation past ``--timeout``) or a testbench error;
- **killed at build** when the generator, Yosys or the lint rejects it (counted apart: the
  target is met or not on the simulated mutants alone);
- **not exercised** when no subset core's Verilog changed (the edit is dead for these
  configurations), and **survived** otherwise.

The *subset* is a few random shapes (sim.random_cases) chosen greedily from the first
:data:`CANDIDATE_SHAPES` seeds to cover the core's features: both membranes, pooling,
spatial and channel pruning, one and several lanes, 1x1 and larger kernels with padding,
several layers, one and several steps. The unmutated subset must pass first.

Survivors and unexercised mutants are listed with the argument kept for their id in
:data:`SURVIVORS_FILE` (equivalent, and why; or the test that now kills it), or as
unexplained. Writes ``mutants.json`` and ``mutants.md`` in ``--out``. Exit code 1 if any
survivor is unexplained or the subset fails unmutated.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path

import yaml

from project_config import UserError, cli_main
from project_config.cli import add_out, bounded_int, parser, seed
from project_config.files import atomic_write, check_output_dir, write_json_report
from sim.engine import ENGINES, resolve, run_tasks
from sim.mutants import OPERATORS, ROOT, RTL_SOURCES, Site, apply, sample, sites  # noqa: F401
from sim.random_cases import random_shape
SURVIVORS_FILE = ROOT / "docs" / "results" / "mutation_survivors.yaml"

CANDIDATE_SHAPES = range(1000, 1060)   # sim.regress --seed 1's shapes
SUBSET_SHAPES = 4                      # at most
SUBSET_CASES = 6                       # cases per shape


def _features(seed_: int) -> set:
    s = random_shape(seed_)
    layers = s["model"]["layers"]
    f = {s["quant"]["membrane"], f"w{s['quant']['weight_bits']}",
         "lanes 1" if s["hardware"]["lanes"] == 1 else "lanes >1",
         "pruning" if "pruning" in s else "no pruning",
         "layers >1" if len(layers) > 1 else "layers 1",
         "T 1" if s["model"]["timesteps"] == 1 else "T >1"}
    f |= {"pool" for l in layers if l["pool"] == 2}
    f |= {"kernel 1" for l in layers if l["kernel"] == 1}
    f |= {"padding" for l in layers if l["padding"] > 0}
    return f


def choose_subset() -> list[int]:
    """The subset's shape seeds: greedy cover of :func:`_features` over the candidates,
    cheaper shapes first on ties (fewer layers, fewer steps)."""
    shapes = {s: random_shape(s) for s in CANDIDATE_SHAPES}
    cost = {s: len(shape["model"]["layers"]) * shape["model"]["timesteps"]
            for s, shape in shapes.items()}
    features = {s: _features(s) for s in CANDIDATE_SHAPES}
    want = set().union(*features.values())
    chosen = []
    while want and len(chosen) < SUBSET_SHAPES:
        best = max(CANDIDATE_SHAPES, key=lambda s: (len(features[s] & want), -cost[s], -s))
        chosen.append(best)
        want -= features[best]
    return sorted(chosen)


def subset_plan() -> list:
    """[(shape seed, case seeds)] of the subset: :func:`choose_subset`'s shapes, each with
    :data:`SUBSET_CASES` cases."""
    return [(s, [s * 1000 + i for i in range(SUBSET_CASES)]) for s in choose_subset()]


# The program a mutant's process runs (cwd: the mutant's folder, its hw/ first on the path).
_RUN_SUBSET = """
import hashlib, json, sys
spec = json.loads(sys.argv[1])
import hw
assert hw.__file__.startswith(spec["hw_root"]), hw.__file__
from hw.build import build
from sim.random_cases import shape_config
from sim.regress import run_shape
out = {"shapes": {}}
for shape, cases in spec["plan"]:
    try:
        hw_dir = build(shape_config(shape), f"build_{shape}")
        verilog = (hw_dir / "snn_core.v").read_bytes()
    except Exception as e:
        out["build_error"] = f"shape {shape}: {type(e).__name__}: {e}".splitlines()[0]
        break
    sha = hashlib.sha256(verilog).hexdigest()
    entry = {"verilog_sha256": sha, "simulated": False, "problems": [], "cycles": 0}
    out["shapes"][str(shape)] = entry
    if sha == spec["baseline"].get(str(shape)):
        continue
    entry["simulated"] = True
    results = run_shape(shape, cases, ["icarus"], "regress", spec["stall"],
                        max_cycles=spec["max_cycles"], prebuilt=hw_dir)
    problems = [p for r in results for p in r["problems"]]
    entry["problems"] = sorted(problems, key=lambda p: "mismatch" not in p)[:3]
    cycles = [c for r in results for c in r.get("outcome", {}).get("icarus", {}).get("cycles", [])]
    entry["cycles"] = max(cycles, default=0)
    if entry["problems"]:
        break
print("MUTANT-RESULT " + json.dumps(out))
"""


def run_mutant(site: Site | None, work: str, plan: list, baseline: dict, max_cycles: int,
               timeout_s: float, keep: bool = False) -> dict:
    """Run the subset on ``site``'s mutant (None: the unmutated generator); returns its
    outcome: ``status`` (killed, killed at build, survived, not exercised, or for the
    unmutated run passed/failed), the shapes' Verilog hashes, problems and cycles.
    ``plan``: [(shape seed, case seeds)] (:func:`subset_plan`). ``baseline``: {shape: the
    unmutated core's Verilog sha256}."""
    name = site.id if site else "unmutated"
    folder = Path(work) / name
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "pkg").mkdir(parents=True)
    shutil.copytree(ROOT / "hw", folder / "pkg" / "hw",
                    ignore=shutil.ignore_patterns("__pycache__"))
    if site:
        path = folder / "pkg" / site.path
        path.write_text(apply(site, (ROOT / site.path).read_text()))
    spec = {"plan": plan,
            "baseline": baseline, "stall": 0.2, "max_cycles": max_cycles,
            "hw_root": str((folder / "pkg").resolve())}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder / "pkg"), str(ROOT)]),
           "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.time()
    # A process group of its own: a timeout kills the simulator it started too (which
    # would otherwise hold the pipes open, and this wait, for ever).
    proc = subprocess.Popen([sys.executable, "-c", _RUN_SUBSET, json.dumps(spec)], cwd=folder,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
        lines = [l for l in stdout.splitlines() if l.startswith("MUTANT-RESULT ")]
        if lines:
            out = json.loads(lines[-1][len("MUTANT-RESULT "):])
        else:
            tail = (stderr or stdout).strip().splitlines()[-1:] or ["no output"]
            out = {"shapes": {}, "build_error": f"the mutant's process failed: {tail[0]}"}
    except subprocess.TimeoutExpired:
        out = {"shapes": {}, "problems": [f"timed out after {timeout_s:.0f} s (a hang)"]}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    out["seconds"] = round(time.time() - t0, 1)
    problems = out.get("problems", []) + [p for s in out["shapes"].values() for p in s["problems"]]
    out["problems"] = problems[:3]
    if site is None:
        out["status"] = "passed" if not problems and "build_error" not in out else "failed"
    elif problems:
        out["status"] = "killed"
    elif "build_error" in out:
        out["status"] = "killed at build"
    elif not any(s["simulated"] for s in out["shapes"].values()):
        out["status"] = "not exercised"
    else:
        out["status"] = "survived"
    if not keep and out["status"] not in ("failed",):
        shutil.rmtree(folder, ignore_errors=True)
    return {"site": asdict(site) if site else None, **out}


def _explanations() -> dict:
    if not SURVIVORS_FILE.exists():
        return {}
    data = yaml.safe_load(SURVIVORS_FILE.read_text()) or {}
    return {str(k): v for k, v in data.items()}


def report(outcomes: list, baseline: dict, out_dir: Path, title: str) -> dict:
    """``mutants.json`` and ``mutants.md``; returns the summary."""
    status = Counter(o["status"] for o in outcomes)
    simulated = status["killed"] + status["survived"]
    explain = _explanations()
    open_ = [o for o in outcomes if o["status"] in ("survived", "not exercised")]
    unexplained = [o["site"]["id"] for o in open_ if o["site"]["id"] not in explain]
    summary = {"mutants": len(outcomes), "status": dict(status),
               "killed_of_simulated": f"{status['killed']}/{simulated}",
               "killed_percent": round(100 * status["killed"] / simulated, 2) if simulated else 0.0,
               "killed_percent_all": round(100 * (status["killed"] + status["killed at build"])
                                           / len(outcomes), 2) if outcomes else 0.0,
               "unexplained": unexplained, "subset": baseline}
    write_json_report(out_dir / "mutants.json", {"summary": summary, "mutants": outcomes})
    by_op = defaultdict(Counter)
    for o in outcomes:
        by_op[o["site"]["operator"]][o["status"]] += 1
    lines = [f"# Mutation testing: {title}", "",
             f"{len(outcomes)} mutants of the generator; subset: shapes "
             f"{', '.join(map(str, baseline['shapes']))}, {SUBSET_CASES} cases each, Icarus.", "",
             f"- killed: {status['killed']} of the {simulated} simulated mutants "
             f"(**{summary['killed_percent']}%**)",
             f"- killed at build (generator, Yosys or lint): {status['killed at build']}",
             f"- not exercised (no subset core's Verilog changed): {status['not exercised']}",
             f"- survived: {status['survived']}", "",
             "| edit | killed | killed at build | survived | not exercised |",
             "|---|---|---|---|---|"]
    for op in OPERATORS:
        c = by_op.get(op, Counter())
        if c:
            lines.append(f"| {op} | {c['killed']} | {c['killed at build']} | {c['survived']} "
                         f"| {c['not exercised']} |")
    if open_:
        lines += ["", "## Survivors and unexercised mutants", ""]
        for o in open_:
            s = o["site"]
            why = explain.get(s["id"], {}).get("argument", "UNEXPLAINED")
            lines.append(f"- `{s['id']}` {o['status']}, {s['path']}:{s['line']} ({s['function']}, "
                         f"{s['operator']}): `{s['original'][:80]}` -> `{s['replacement'][:80]}`. "
                         f"{why}")
    lines += ["", "## Every mutant", "", "| id | site | edit | status | first problem |",
              "|---|---|---|---|---|"]
    for o in outcomes:
        s = o["site"]
        first = (o["problems"] or [o.get("build_error", "")])[0][:100].replace("|", "/")
        lines.append(f"| `{s['id']}` | {s['path']}:{s['line']} | {s['operator']} | {o['status']} "
                     f"| {first} |")
    atomic_write(out_dir / "mutants.md", "\n".join(lines) + "\n")
    return summary


def main(argv=None):
    ap = parser("python -m sim.mutate", __doc__)
    ap.add_argument("--mutants", type=bounded_int(1, 10_000), default=64)
    ap.add_argument("--seed", type=seed, default=1, help="which sites are sampled")
    ap.add_argument("--workers", type=bounded_int(1, 64), default=2)
    ap.add_argument("--engine", default="auto", choices=ENGINES)
    ap.add_argument("--list", action="store_true", help="print every site and exit")
    ap.add_argument("--only", metavar="ID[,ID...]", help="run the mutants of these site ids")
    ap.add_argument("--keep", action="store_true", help="keep each mutant's folder")
    ap.add_argument("--timeout", type=bounded_int(30, 36_000), default=None,
                    help="seconds a mutant's subset may take, more is a hang (default: 10x "
                         "the unmutated subset's, at least 120)")
    add_out(ap, "report folder (default build/mutate)", default="build/mutate")
    args = ap.parse_args(argv)
    all_sites = sites()
    if args.list:
        for s in all_sites:
            print(f"{s.id}  {s.path}:{s.line}  {s.operator:18s} {s.original[:60]!r} -> "
                  f"{s.replacement[:60]!r}")
        print(f"{len(all_sites)} sites; by edit: "
              + ", ".join(f"{op} {n}" for op, n in Counter(s.operator for s in all_sites).items()))
        return 0
    if args.only:
        by_id = {s.id: s for s in all_sites}
        wanted = [i.strip() for i in args.only.split(",") if i.strip()]
        missing = [i for i in wanted if i not in by_id]
        if missing or not wanted:
            raise UserError(f"--only {args.only}: no mutation site has the id "
                            f"{(missing or [''])[0]!r} (see --list)")
        chosen = [by_id[i] for i in wanted]
    else:
        chosen = sample(all_sites, args.mutants, args.seed)
    engine = resolve(args.engine)
    check_output_dir(args.out, "--out")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = tempfile.mkdtemp(prefix="mutants_", dir=out)
    t0 = time.time()
    plan = subset_plan()
    shapes = [shape for shape, _ in plan]
    print(f"subset: shapes {shapes}, {SUBSET_CASES} cases each; unmutated run first", flush=True)
    base = run_mutant(None, work, plan, {}, max_cycles=3_000_000,
                      timeout_s=args.timeout or 3600)
    if base["status"] != "passed":
        print(f"the unmutated subset fails: {(base['problems'] or [base.get('build_error')])[0]}")
        return 1
    hashes = {k: v["verilog_sha256"] for k, v in base["shapes"].items()}
    max_cycles = 4 * max(v["cycles"] for v in base["shapes"].values()) + 1000
    baseline = {"shapes": shapes, "seconds": base["seconds"], "max_cycles": max_cycles}
    print(f"  unmutated: passed in {base['seconds']} s; {len(chosen)} mutants of "
          f"{len(all_sites)} sites, engine {engine}", flush=True)
    outcomes = [None] * len(chosen)
    # A generator edit can loop for ever (a `while` made unending): a hang, killed.
    timeout = args.timeout or max(120.0, 10 * base["seconds"])
    tasks = [(s, work, plan, hashes, max_cycles, timeout, args.keep) for s in chosen]
    for i, done, error in run_tasks(run_mutant, tasks, engine, args.workers):
        if error is not None:
            done = {"site": asdict(chosen[i]), "shapes": {}, "status": "killed at build",
                    "problems": [], "build_error": f"the worker failed: {error}".splitlines()[0]}
        outcomes[i] = done
        n = sum(o is not None for o in outcomes)
        print(f"  {n}/{len(chosen)} {chosen[i].id} {chosen[i].operator}: {done['status']} "
              f"({time.time() - t0:.0f} s)", flush=True)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    s = report(outcomes, baseline, out, f"sim.mutate --mutants {len(chosen)} --seed {args.seed}")
    print(f"killed {s['killed_of_simulated']} simulated mutants ({s['killed_percent']}%); "
          f"status {s['status']}; {out / 'mutants.md'}")
    for sid in s["unexplained"]:
        print(f"  unexplained survivor: {sid} (python -m sim.mutate --only {sid} --keep)")
    return 1 if s["unexplained"] else 0


def cli():
    cli_main(main)


if __name__ == "__main__":
    cli()
