"""Randomized differential regression: golden vs RTL over random networks and inputs.

    python -m sim.regress --simulator verilator --cases 1000 --workers 2
    python -m sim.regress --simulator both --cases 40 --per-shape 10
    python -m sim.regress --simulator icarus --repro SHAPE_SEED CASE_SEED [--waves]
    python -m sim.regress --cases 100000 --scheduler tcp://head:8786
    python -m sim.regress --cases 100 --per-shape 25 --code-coverage

Cases are grouped by shape (one generated core per shape, ``--per-shape`` cases each: every
case loads its own export into the same core, so parameter reloading is exercised too);
shapes run in parallel as tasks of an engine (sim.engine): a local Dask cluster by default,
a Dask scheduler's workers with ``--scheduler``, or the standard library's process pool
(``--engine processes``, and the default when Dask is not installed). Prints the pass
count, the activity the cases reached (golden: cases without a spike anywhere, cases whose
last spiking layer is silent), the seeds of every failing case and a one-line command that
reproduces it. ``both`` runs each shape on Icarus and Verilator and also requires identical
predictions and cycle counts from the two.
Also writes the functional coverage merged over every simulation (sim.coverage):
``coverage.json`` and ``coverage.md`` in ``--out``, listing the bins never hit.
Exit code 1 if any case fails. ``--waves`` writes each shape's waveform (FST; VCD on a
Verilator without lz4) into its folder, kept, and prints the path; a failing ``--repro``
is run again with waves automatically (a ``--repro`` runs in this process, on no engine).
``--code-coverage`` builds the Verilator cores with line and toggle coverage and writes
``code_coverage.json`` and ``code_coverage.md`` (sim.code_coverage): the figures pooled over
the shapes, and each shape's uncovered lines and untoggled signals.
"""
from __future__ import annotations

import json
import shutil
import time
import traceback
from pathlib import Path

import yaml

from hw.build import build
from model_export import save_export
from project_config import UserError, cli_main, load_config
from project_config.cli import add_out, bounded_int, parser, seed, stall_probability
from project_config.files import atomic_write, check_output_dir, write_json_report
from project_config.schema import SIMULATORS
from sim import code_coverage as code_cov
from sim import coverage
from sim.engine import ENGINES, resolve, run_tasks
from sim.random_cases import activity_summary, case_activity, random_case, random_shape
from sim.runner import build_simulator, build_top, output_to, run_case, waves_format


def coverage_file(out_dir, shape_seed: int, simulator: str) -> Path:
    """Where a shape's run on ``simulator`` leaves its functional coverage (sim.coverage);
    outside the shape's folder, which is removed when the shape passes."""
    return Path(out_dir) / "coverage" / f"shape{shape_seed}_{simulator}.json"


def code_coverage_file(out_dir, shape_seed: int, suffix: str = "json") -> Path:
    """Where a shape's Verilator run leaves its line and toggle coverage (sim.code_coverage):
    ``.dat`` the points as Verilator wrote them, ``.json`` their summary against the
    shape's Verilog (which is removed with the shape's folder when it passes)."""
    return Path(out_dir) / "code_coverage" / f"shape{shape_seed}.{suffix}"


def run_shape(shape_seed: int, case_seeds: list, simulators: list, out_dir: str,
              stall: float, waves: bool = False, code_coverage: bool = False,
              max_cycles: int = 3_000_000, prebuilt: Path | None = None) -> list:
    """Build one random core and run its cases; returns one result dict per case.
    ``waves``: trace the run on each simulator (``result["waves"]``: simulator -> path) and
    keep the shape's folder. ``max_cycles``: a simulation longer than this is a hang.
    ``prebuilt``: the shape's core, already built (hw.build) for this shape's config."""
    work = Path(out_dir) / f"shape{shape_seed}"
    work.mkdir(parents=True, exist_ok=True)
    # The shape's config as a file: the testbench (another process) loads it, and a failing
    # shape's folder keeps it for the repro.
    config = work / "config.yaml"
    atomic_write(config, yaml.safe_dump(random_shape(shape_seed)))
    cfg = load_config(config)
    results = {s: {"shape": shape_seed, "case": s, "ok": False, "problems": [], "notes": ""}
               for s in case_seeds}
    try:
        jobs = []
        for s in case_seeds:
            net, x, notes = random_case(cfg, s)
            save_export(net, work / f"export{s}")
            results[s]["notes"] = notes
            results[s]["spikes"] = case_activity(net, x)
            jobs.append({"export": work / f"export{s}", "inputs": x, "tag": str(s),
                         "reset_mid_inference": s % 7 == 0,
                         "change_spike_records": s % 5 == 2})
        with output_to(work / "simulator.log"):
            hw = Path(prebuilt) if prebuilt else build(cfg, work / "hw")   # lint included
            runs = {}
            for sim in simulators:
                cov = code_coverage and sim == "verilator"
                sim_dir = work / f"sim_{sim}{'_waves' if waves else ''}{'_cov' if cov else ''}"
                trace = sim_dir / f"waves.{waves_format(sim)}" if waves else None
                runner = build_simulator(sim, hw, sim_dir, waves=waves, code_coverage=cov)
                runs[sim] = run_case(runner, sim, sim_dir, config=cfg,
                                     jobs=jobs, stall_probability=stall, seed=shape_seed,
                                     tag="regress", max_cycles=max_cycles, waves=trace,
                                     coverage=coverage_file(out_dir, shape_seed, sim))
                if cov:
                    points = code_cov.read_dat(sim_dir / "case_regress" / "coverage.dat")
                    code_cov.write_dat(points, code_coverage_file(out_dir, shape_seed, "dat"))
                    top = build_top(hw)
                    atomic_write(code_coverage_file(out_dir, shape_seed), json.dumps(
                        code_cov.summarize(points, hw / f"{top}.v",
                                           code_cov.constant_bits(hw, top))))
                if waves:
                    for s in case_seeds:
                        results[s].setdefault("waves", {})[sim] = str(trace)
        for sim, r in runs.items():
            by_tag = {j["tag"]: j for j in r["jobs"]}
            for s in case_seeds:
                j = by_tag.get(str(s))
                if j is not None:
                    results[s].setdefault("outcome", {})[sim] = {
                        "predictions": j["predictions"], "cycles": j["cycles"]}
                if j is None:
                    results[s]["problems"].append(f"{sim}: case did not run")
                elif j["mismatches"] or j["perf_mismatches"]:
                    details = [d["problems"][:2] for d in r["details"] if d["job"] == str(s)]
                    results[s]["problems"].append(
                        f"{sim}: {j['mismatches']} mismatches, {j['perf_mismatches']} "
                        f"performance-model differences {details[:1]}")
            if r["testbench_failed"]:
                for s in case_seeds:
                    results[s]["problems"].append(f"{sim}: the testbench failed")
        if len(runs) == 2:
            a, b = ({j["tag"]: j for j in r["jobs"]} for r in runs.values())
            for s in case_seeds:
                ja, jb = a.get(str(s)), b.get(str(s))
                if ja and jb and (ja["predictions"] != jb["predictions"] or ja["cycles"] != jb["cycles"]):
                    results[s]["problems"].append("icarus and verilator differ")
    except Exception as e:  # a crash fails every case of the shape, with the reason
        for s in case_seeds:
            results[s]["problems"].append(f"{type(e).__name__}: {e}".splitlines()[0])
        (work / "crash.txt").write_text(traceback.format_exc())
    for r in results.values():
        r["ok"] = not r["problems"]
    if all(r["ok"] for r in results.values()) and not waves:
        shutil.rmtree(work, ignore_errors=True)   # keep only failing shapes on disk
    return list(results.values())


def shape_task(shape_seed: int, case_seeds: list, simulators: list, out_dir: str,
               stall: float, waves: bool, code_coverage: bool) -> dict:
    """:func:`run_shape` as an engine task: its results, and the coverage files it wrote
    (their contents, for a driver on another machine than the worker)."""
    results = run_shape(shape_seed, case_seeds, simulators, out_dir, stall, waves, code_coverage)
    files = [coverage_file(out_dir, shape_seed, sim) for sim in simulators]
    if code_coverage:
        files.append(code_coverage_file(out_dir, shape_seed))
    return {"results": results,
            "files": {str(f.relative_to(out_dir)): f.read_text() for f in files if f.exists()}}


def _store_reports(out_dir, done: dict) -> None:
    """Write a task's coverage files here, where the worker's may not be (another machine)."""
    for name, text in done.get("files", {}).items():
        path = Path(out_dir) / name
        if not path.exists() or path.read_text() != text:
            atomic_write(path, text)


def _code_coverage_report(out_dir, plan: list, title: str) -> None:
    """Pool the shapes' code coverage (sim.code_coverage) into ``code_coverage.json`` and
    ``.md`` in ``out_dir``, and print the figures."""
    designs = {f"shape{shape}": json.loads(code_coverage_file(out_dir, shape).read_text())
               for shape, _ in plan if code_coverage_file(out_dir, shape).exists()}
    code = code_cov.write_report(designs, Path(out_dir) / "code_coverage.json",
                                 Path(out_dir) / "code_coverage.md", title)
    k = code["kinds"]
    print(f"code coverage ({code['designs']} designs, Verilator): lines "
          f"{k['line']['percent']}%, branches {k['branch']['percent']}%, toggle "
          f"{k['toggle']['percent']}% of named signals ({k['toggle_all']['percent']}% of "
          f"every net); {Path(out_dir) / 'code_coverage.md'}")


def describe_engine(engine: str, workers: int, scheduler: str | None) -> str:
    if engine == "dask":
        return f"dask, scheduler {scheduler}" if scheduler else \
            f"dask, local cluster of {workers} worker processes"
    return f"process pool of {workers} workers"


def main(argv=None):
    ap = parser("python -m sim.regress", __doc__)
    ap.add_argument("--simulator", default="verilator", choices=[*SIMULATORS, "both"])
    ap.add_argument("--cases", type=bounded_int(1, 1_000_000), default=20)
    ap.add_argument("--per-shape", type=bounded_int(1, 1000), default=10,
                    help="cases sharing one generated core")
    ap.add_argument("--seed", type=seed, default=1, help="first seed of the range")
    ap.add_argument("--workers", type=bounded_int(1, 64), default=2,
                    help="worker processes (at most 64, and at most one per shape)")
    ap.add_argument("--stall", type=stall_probability, default=0.2,
                    help="random idle/backpressure probability, 0 to 0.95")
    add_out(ap, "work and summary folder (default build/regress)", default="build/regress")
    ap.add_argument("--repro", nargs=2, type=bounded_int(0, 2 ** 63 - 1), metavar=("SHAPE_SEED", "CASE_SEED"),
                    help="run one case (again with --waves if it fails)")
    ap.add_argument("--waves", action="store_true",
                    help="write each shape's waveform and keep its folder")
    ap.add_argument("--code-coverage", action="store_true",
                    help="Verilator line and toggle coverage of the core, merged over the run")
    ap.add_argument("--engine", default="auto", choices=ENGINES,
                    help="auto: Dask if installed, else processes (sim.engine)")
    ap.add_argument("--scheduler", metavar="ADDRESS",
                    help="a Dask scheduler to send the shapes to (tcp://host:8786); "
                         "default: a local cluster of --workers processes")
    args = ap.parse_args(argv)
    sims = list(SIMULATORS) if args.simulator == "both" else [args.simulator]
    engine = resolve(args.engine, args.scheduler)
    if args.code_coverage and "verilator" not in sims:
        raise UserError("--code-coverage: code coverage is measured on Verilator; use "
                        "--simulator verilator or both")

    if args.repro:
        plan = [(args.repro[0], [args.repro[1]])]
    else:
        seeds = [args.seed * 1_000_000 + i for i in range(args.cases)]
        plan = [(args.seed * 1_000 + k, seeds[i:i + args.per_shape])
                for k, i in enumerate(range(0, len(seeds), args.per_shape))]
    check_output_dir(args.out, "--out")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results = []
    if args.repro:      # one case, in this process (a debugger or a print reaches it)
        results = run_shape(args.repro[0], [args.repro[1]], sims, args.out, args.stall,
                            args.waves, args.code_coverage)
    else:
        print(f"  engine: {describe_engine(engine, args.workers, args.scheduler)}", flush=True)
        tasks = [(shape, cases, sims, args.out, args.stall, args.waves, args.code_coverage)
                 for shape, cases in plan]
        for i, done, error in run_tasks(shape_task, tasks, engine, args.workers, args.scheduler):
            shape, cases = plan[i]
            if error is not None:       # the worker itself failed (killed, lost, unpicklable)
                done = {"results": [{"shape": shape, "case": c, "ok": False, "notes": "",
                                     "problems": [f"the worker failed: {type(error).__name__}: "
                                                  f"{error}".splitlines()[0]]} for c in cases]}
            results += done["results"]
            _store_reports(args.out, done)
            print(f"  {sum(r['ok'] for r in results)}/{len(results)} passed "
                  f"({time.time() - t0:.0f} s)", flush=True)
    results.sort(key=lambda r: (r["shape"], r["case"]))
    failed = [r for r in results if not r["ok"]]
    if args.repro and failed and not args.waves:
        # A failing repro is for debugging: run it again with waves.
        print("  the case failed: running it again with waves", flush=True)
        results = run_shape(args.repro[0], [args.repro[1]], sims, args.out, args.stall,
                            waves=True)
        failed = [r for r in results if not r["ok"]]
    activity = activity_summary([r["spikes"] for r in results if "spikes" in r])
    write_json_report(Path(args.out) / "summary.json",
                      {"simulators": sims, "cases": len(results),
                       "passed": len(results) - len(failed),
                       "seconds": round(time.time() - t0, 1), "activity": activity,
                       "failed": failed,
                       "results": [{k: r.get(k) for k in ("shape", "case", "ok", "outcome")}
                                   for r in results]})
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed "
          f"({', '.join(sims)}; {len(plan)} shapes; {time.time() - t0:.0f} s)")
    files = [f for shape, _ in plan for f in (coverage_file(args.out, shape, sim) for sim in sims)
             if f.exists()]
    cov = coverage.write_report(coverage.merge(files), Path(args.out) / "coverage.json",
                                Path(args.out) / "coverage.md",
                                f"sim.regress --cases {len(results)} --seed {args.seed} "
                                f"({', '.join(sims)})")
    missed = [f"{item}: {', '.join(b)}" for item, b in cov["never_hit"].items()]
    print(f"functional coverage: {cov['hit']} of {cov['bins']} bins hit ({cov['percent']}%) "
          f"over {len(files)} simulations; {Path(args.out) / 'coverage.md'}")
    for line in missed:
        print(f"  never hit: {line}")
    if args.code_coverage:
        _code_coverage_report(args.out, plan, f"sim.regress --cases {len(results)} "
                              f"--per-shape {args.per_shape} --seed {args.seed}")
    print(f"activity: {activity['no_spike']} of {activity['cases']} cases without a spike "
          f"({100 * activity['no_spike_fraction']:.1f}%), {activity['silent_last_layer']} "
          f"with a silent last spiking layer ({100 * activity['silent_last_layer_fraction']:.1f}%)")
    for r in failed:
        print(f"FAILED shape {r['shape']} case {r['case']} ({r['notes']}): {r['problems'][0]}")
        print(f"  repro: python -m sim.regress --simulator {args.simulator} "
              f"--repro {r['shape']} {r['case']}")
    for r in results:
        for sim, path in r.get("waves", {}).items():
            print(f"waves ({sim}, shape {r['shape']}): {path}")
    return 1 if failed else 0


def cli():
    """Console-script entry point (pyproject [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
