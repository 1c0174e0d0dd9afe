"""Build and run the cocotb testbench on Icarus or Verilator through cocotb_tools.runner."""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from cocotb_tools.runner import Verilator, get_results, get_runner

from hw.build import AXI_TOP, TOP, build
from hw.toolchain import LINT_WAIVERS, apply_verilator_env, note_simulator
from project_config import Config, UserError, load_config
from project_config.schema import SIMULATORS


# The testbench module of each top module (sim.tb_axi drives the AXI wrapper's buses).
TESTBENCHES = {TOP: "sim.tb_core", AXI_TOP: "sim.tb_axi"}


@contextlib.contextmanager
def output_to(log_path: Path | None):
    """Send this process's stdout/stderr (the simulators write there) to ``log_path``."""
    if log_path is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _top_ports(verilog: Path, top: str = TOP) -> list[str]:
    """Port names of the top module, from its header (which Yosys wraps when it is long)."""
    mo = re.search(rf"^module {top}\(([^;]*)\);", Path(verilog).read_text(), re.M)
    if not mo:
        raise RuntimeError(f"{verilog}: no module {top}")
    return [name.strip() for name in mo.group(1).split(",")]


class PortsOnlyVerilator(Verilator):
    """cocotb's Verilator runner with only the top module's ports visible to cocotb.

    cocotb builds with ``--public-flat-rw``, which keeps every internal signal of the design
    in the model; the testbench reads and writes ports only, and without it the VGG-9 core
    simulates about 3.5x faster. ``ports_vlt`` (a Verilator config file) marks the ports
    public instead.
    """

    def __init__(self, ports_vlt: Path):
        super().__init__()
        self.ports_vlt = ports_vlt

    def _build_command(self):
        cmds = super()._build_command()
        cmds[0] = [c for c in cmds[0] if c != "--public-flat-rw"] + [str(self.ports_vlt)]
        return cmds


# Icarus: dump every signal when +waves=PATH is given (Verilog-2005, which the core is read
# as; cocotb's own dump module needs SystemVerilog). vvp writes FST with its -fst flag.
_ICARUS_WAVES = """module spquant_waves;
  reg [8*1024-1:0] path;
  initial if ($value$plusargs("waves=%s", path)) begin
    $dumpfile(path);
    $dumpvars(0, {top});
  end
endmodule
"""


def waves_format(simulator: str) -> str:
    """The waveform format a ``waves`` build writes: "fst", or on Verilator "vcd" where the
    C++ compiler has no lz4.h (Verilator's FST writer needs it: apt-get install liblz4-dev)."""
    if simulator != "verilator":
        return "fst"
    try:
        r = subprocess.run(["c++", "-E", "-x", "c++", "-"], input="#include <lz4.h>\n",
                           capture_output=True, text=True)
    except OSError:                # no compiler: Verilator's build will say so
        return "vcd"
    return "fst" if r.returncode == 0 else "vcd"


def build_simulator(simulator: str, hw_dir: Path, build_dir: Path, waves: bool = False,
                    code_coverage: bool = False):
    """Compile the generated Verilog for ``simulator`` once; returns the runner. ``waves``:
    build with signal tracing (Verilator ``--trace-fst``, Icarus a dump module), for
    :func:`run_case`'s ``waves``; use another ``build_dir`` than a build without it.
    ``code_coverage`` (Verilator only): build with line and toggle coverage; each
    :func:`run_case` then leaves ``coverage.dat`` in its case folder (sim.code_coverage)."""
    if simulator not in SIMULATORS:
        raise UserError(f"simulator {simulator!r} is not one of {list(SIMULATORS)}")
    if code_coverage and simulator != "verilator":
        raise UserError(f"code coverage needs verilator, not {simulator}")
    note_simulator(f"{simulator} build")
    build_dir, hw_dir = Path(build_dir).resolve(), Path(hw_dir).resolve()
    top = build_top(hw_dir)
    sources = [hw_dir / f"{top}.v", hw_dir / "spquant_sram.v"]
    if simulator == "verilator":
        apply_verilator_env()
        build_dir.mkdir(parents=True, exist_ok=True)
        ports_vlt = build_dir / "ports.vlt"
        ports_vlt.write_text("`verilator_config\n" + "".join(
            f'public_flat_rw -module "{top}" -var "{port}"\n' for port in _top_ports(sources[0], top)))
        runner = PortsOnlyVerilator(ports_vlt)
    else:
        runner = get_runner(simulator)
    # Yosys' Verilog wakes every `always @*` block at time 0 through a variable declared
    # with an initializer (`reg \$auto... = 0;`). That initializer is an event under
    # Verilog-2005 but not under SystemVerilog, so Icarus (which cocotb starts in -g2012)
    # must read the file as Verilog-2005: otherwise constant-driven comb logic stays X.
    build_args = ["-g2005"]
    if simulator == "verilator":
        build_args = [str(LINT_WAIVERS), "-Wno-fatal", "-O3"]
        if code_coverage:
            build_args += ["--coverage-line", "--coverage-toggle"]
        if waves:                  # after the runner's --trace (VCD): FST where it builds
            build_args += ["--trace-structs"] + (["--trace-fst"] if waves_format(simulator) == "fst" else [])
    elif waves:
        build_dir.mkdir(parents=True, exist_ok=True)
        dump = build_dir / "spquant_waves.v"
        dump.write_text(_ICARUS_WAVES.format(top=top))
        sources = [*sources, dump]
        build_args += ["-s", "spquant_waves"]
    runner.build(sources=sources, hdl_toplevel=top, build_dir=str(build_dir),
                 timescale=("1ns", "1ps"), build_args=build_args, always=False,
                 waves=waves and simulator == "verilator")
    return runner


def build_top(hw_dir: Path) -> str:
    """The top module of the build in ``hw_dir``: snn_core, or snn_core_axi (--bus axi)."""
    return json.loads((Path(hw_dir) / "report.json").read_text()).get("top", TOP)


def preloaded_sha256(hw_dir: Path) -> str | None:
    """The export hash a core in ``hw_dir`` was built to preload (hw.build --export), or None."""
    rep = json.loads((Path(hw_dir) / "report.json").read_text())
    return (rep.get("preloaded") or {}).get("export_sha256")


def _config_file(config: Config | str | os.PathLike) -> str:
    """The config file the testbench process loads (it runs in the simulator, in another
    process): a path or name as given, or the file a loaded Config came from."""
    path = config.path if isinstance(config, Config) else os.fspath(config)
    if isinstance(config, Config) and not Path(path).is_file():
        raise UserError(f"{path}: the testbench loads its config from a file, and this "
                        "config has none")
    return str(Path(path).resolve()) if Path(path).exists() else path


def run_case(runner, simulator: str, build_dir: Path, *, config: Config | str, jobs: list,
             stall_probability: float, seed: int, tag: str, max_cycles: int = 2_000_000,
             fault: str | None = None, records: str = "full",
             preloaded: str | None = None, debug_rerun: bool = True,
             skipping: bool | None = None, keep_records: bool = False,
             top: str = TOP, test_module: str = "sim.tb_core",
             waves: str | os.PathLike | None = None,
             coverage: Path | None = None) -> dict:
    """Run one simulation over ``jobs``: dicts with ``export`` (a directory), ``inputs``
    (integers [B, T, C, H, W]) and optionally ``tag``, ``reset_mid_inference`` and
    ``change_spike_records`` (the input changes after each inference's first frame word; the
    core must keep the selection it sampled at the start). Each job
    loads its export's parameters into the core (not if the core already holds them:
    ``preloaded`` is the hash of the export its images hold, :func:`preloaded_sha256`), then
    runs its inputs. ``config``: the loaded config, or its file's path or name (the
    testbench loads the file). ``records``: "full" or "signature" (sim.tb_core).
    ``skipping``: how the core was built, if not as its config says (hw.build
    ``skipping``). ``keep_records``: also return every record word, per job and sample.
    ``top``, ``test_module``: the AXI wrapper's (snn_core_axi, sim.tb_axi) or the core's.
    ``waves``: write the run's waveform (FST) to this path (a runner built with ``waves``).
    ``coverage``: a file the testbench writes its functional coverage to (sim.coverage).
    Returns results. Raises RuntimeError if the testbench did not get through every job
    (a crash or a hang), ran fewer samples than given, or failed without a mismatch: its
    results would read as a pass."""
    build_dir = Path(build_dir).resolve()
    case_dir = build_dir / f"case_{tag}"
    case_dir.mkdir(parents=True, exist_ok=True)
    job_specs = []
    for i, job in enumerate(jobs):
        inputs_path = case_dir / f"inputs_{i}.npy"
        np.save(inputs_path, np.ascontiguousarray(job["inputs"], dtype=np.int64))
        job_specs.append({"export": str(Path(job["export"]).resolve()),
                          "inputs": str(inputs_path), "tag": job.get("tag", str(i)),
                          "reset_mid_inference": bool(job.get("reset_mid_inference")),
                          "change_spike_records": bool(job.get("change_spike_records"))})
    results = case_dir / "results.json"
    results.unlink(missing_ok=True)
    case = {"config": _config_file(config),
            "jobs": job_specs, "stall_probability": stall_probability, "seed": seed,
            "results": str(results), "max_cycles": max_cycles, "fault": fault,
            "records": records, "preloaded_sha256": preloaded, "debug_rerun": debug_rerun,
            "skipping": skipping, "keep_records": keep_records,
            "coverage": str(Path(coverage).resolve()) if coverage else None}
    (case_dir / "case.json").write_text(json.dumps(case, indent=1))
    note_simulator(f"{simulator} run")
    env = {"SPQ_CASE": str(case_dir / "case.json"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent),
                                          os.environ.get("PYTHONPATH", "")])}
    try:
        trace = {}
        if waves is not None:
            waves = Path(waves).resolve()
            waves.unlink(missing_ok=True)
            trace = (dict(waves=True, test_args=["--trace-file", str(waves)])
                     if simulator == "verilator" else dict(waves=True, plusargs=[f"+waves={waves}"]))
        runner.test(hdl_toplevel=top, test_module=test_module, build_dir=str(build_dir),
                    test_dir=str(case_dir), extra_env=env,
                    results_xml=str(case_dir / "results.xml"), **trace)
    except SystemExit as e:        # cocotb_tools exits non-zero on a failing test under pytest
        if not results.exists():
            raise RuntimeError(f"{simulator}: testbench failed without results (exit {e.code}); "
                               f"see {case_dir}") from None
    if not results.exists():
        raise RuntimeError(f"{simulator}: testbench wrote no results; see {case_dir}")
    out = json.loads(results.read_text())
    out["simulator"] = simulator
    _, failed = get_results(case_dir / "results.xml")
    out["testbench_failed"] = bool(failed)
    if not out.get("completed"):
        raise RuntimeError(f"{simulator}: the testbench stopped after {out.get('samples', 0)} "
                           f"samples ({out.get('error') or 'no reason recorded'}); see {case_dir}")
    want = sum(len(job["inputs"]) for job in jobs)
    if out["samples"] != want:
        raise RuntimeError(f"{simulator}: the testbench ran {out['samples']} of {want} samples; "
                           f"see {case_dir}")
    if failed and not (out["mismatches"] or out["perf_mismatches"]):
        # The testbench fails only on a mismatch; failing without one is a broken testbench.
        raise RuntimeError(f"{simulator}: the testbench failed with 0 mismatches; see "
                           f"{case_dir / 'results.xml'}")
    return out


def cosimulate(config: Config | str, export: Path, inputs: np.ndarray, simulator: str,
               work_dir: Path, stall_probability: float = 0.25, seed: int = 1,
               hw_dir: Path | None = None, tag: str = "main", fault: str | None = None,
               preload: bool = False, records: str = "full", skipping: bool | None = None,
               max_cycles: int = 2_000_000, keep_records: bool = False, bus: str = "none") -> dict:
    """Generate (unless ``hw_dir`` given; preloading ``export`` if ``preload``), build and
    run one co-simulation (``max_cycles``: per inference, before the testbench calls it a hang).
    ``bus``: "axi" builds the core in its AXI wrapper and runs sim.tb_axi (cocotbext-axi).
    ``config``: the loaded config, or its file's path or name (the testbench loads the file)."""
    _config_file(config)                       # no file for the testbench: say so before building
    work_dir = Path(work_dir)
    if hw_dir is None:
        cfg = config if isinstance(config, Config) else load_config(config)
        hw_dir = build(cfg, work_dir / "hw", do_lint=False,
                       export=export if preload else None, skipping=skipping, bus=bus)
    sim_dir = work_dir / f"sim_{simulator}"
    top = build_top(hw_dir)
    runner = build_simulator(simulator, hw_dir, sim_dir)
    return run_case(runner, simulator, sim_dir, config=config,
                    jobs=[{"export": export, "inputs": inputs, "tag": tag}],
                    stall_probability=stall_probability, seed=seed, tag=tag, fault=fault,
                    records=records, preloaded=preloaded_sha256(hw_dir), skipping=skipping,
                    max_cycles=max_cycles, keep_records=keep_records, top=top,
                    test_module=TESTBENCHES[top])
