import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def slice_cfg():
    from project_config import load_config
    return load_config(ROOT / "configs" / "slice_digits.yaml")


def assert_clean(r: dict, samples: int):
    """A co-simulation result (sim.runner) that really ran ``samples`` samples to the end and
    matched golden: nothing a crashed or hung testbench could fake."""
    assert r["completed"] and r["samples"] == samples, (r["samples"], r.get("error"))
    assert sum(j["samples"] for j in r["jobs"]) == samples and len(r["cycles"]) == samples
    assert r["mismatches"] == 0, r["details"]
    assert r["perf_mismatches"] == 0, r["details"]
    assert not r["testbench_failed"]


def run_cli(*args, cwd=None):
    """Run ``python -m ...`` in a subprocess; returns CompletedProcess (text)."""
    import subprocess
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd or ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep the test's call-phase report on the item (for :func:`_sim_marker_is_true`)."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item._call_report = rep


@pytest.fixture(autouse=True)
def _sim_marker_is_true(request, tmp_path_factory):
    """A test carries the ``sim`` marker exactly when it starts a simulator (Verilator's lint
    included), in this process or in any child: so ``-m "not sim"`` runs without one.
    hw.toolchain.note_simulator logs every start to the file named by SPQ_SIMULATOR_LOG."""
    from hw.toolchain import SIMULATOR_LOG
    log = tmp_path_factory.mktemp("simlog", numbered=True) / "started"
    saved = os.environ.get(SIMULATOR_LOG)
    os.environ[SIMULATOR_LOG] = str(log)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(SIMULATOR_LOG, None)
        else:
            os.environ[SIMULATOR_LOG] = saved
    started = sorted(set(log.read_text().split("\n")) - {""}) if log.exists() else []
    marked = request.node.get_closest_marker("sim") is not None
    call = getattr(request.node, "_call_report", None)
    if started and not marked:
        pytest.fail(f"{request.node.nodeid} starts a simulator ({', '.join(started)}) but has "
                    "no sim marker (@pytest.mark.sim)", pytrace=False)
    if marked and not started and call is not None and call.passed:   # not skipped or failed
        pytest.fail(f"{request.node.nodeid} has the sim marker but starts no simulator: "
                    "remove the marker", pytrace=False)


@pytest.fixture(autouse=True, scope="session")
def _torch_one_thread():
    """Tiny nets train fastest on 1 thread and do not stall when the machine is busy."""
    try:
        import torch
    except ImportError:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
