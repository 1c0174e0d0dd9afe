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
