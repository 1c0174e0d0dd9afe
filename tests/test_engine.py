"""sim.regress on its engines (sim.engine): a local Dask cluster, a Dask scheduler of the
test's own (as a farm would be), and the process pool give the same results from the same
seeds; a task that kills its worker is reported; without Dask the process pool runs."""
import json
import os

import pytest

import sim.engine as engine
from project_config import UserError
from conftest import run_cli


def _comparable(out):
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("seconds")
    return summary, json.loads((out / "coverage.json").read_text())


@pytest.mark.sim
def test_engines_give_the_same_results_from_the_same_seeds(tmp_path):
    pytest.importorskip("distributed")
    from distributed import LocalCluster
    args = ["sim.regress", "--simulator", "icarus", "--cases", "6", "--per-shape", "2",
            "--seed", "5", "--workers", "2"]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as farm:
        runs = {"processes": ["--engine", "processes"], "local": [],
                "farm": ["--scheduler", farm.scheduler_address]}
        got = {}
        for name, extra in runs.items():
            r = run_cli(*args, *extra, "--out", str(tmp_path / name))
            assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
            assert "6 passed, 0 failed" in r.stdout
            got[name] = _comparable(tmp_path / name)
    assert "dask, local cluster of 2 worker processes" in run_cli(
        *args[:-2], "--cases", "1", "--engine", "dask", "--out", str(tmp_path / "x")).stdout
    summary, cov = got["processes"]
    assert len(summary["results"]) == 6 and all(r["ok"] for r in summary["results"])
    assert all(len(r["outcome"]["icarus"]["cycles"]) > 0 for r in summary["results"])
    assert cov["summary"]["hit"] > 0
    assert got["local"] == got["processes"]
    assert got["farm"] == got["processes"]


def _kill_worker(i):
    if i == 1:
        os._exit(3)
    return i * 10


@pytest.mark.parametrize("name", ["dask", "processes"])
def test_a_task_that_kills_its_worker_is_reported(name):
    if name == "dask":
        pytest.importorskip("distributed")
    got = {i: (result, error) for i, result, error in
           engine.run_tasks(_kill_worker, [(0,), (1,), (2,)], name, workers=1)}
    assert set(got) == {0, 1, 2}
    assert got[1][0] is None and got[1][1] is not None
    if name == "dask":      # a process pool breaks as a whole; a Dask cluster loses one task
        assert got[0] == (0, None) and got[2] == (20, None)


def test_without_dask_the_process_pool_is_the_default(monkeypatch):
    monkeypatch.setattr(engine, "dask_installed", lambda: False)
    assert engine.resolve("auto") == "processes"
    with pytest.raises(UserError, match="--engine dask: Dask's 'distributed' package"):
        engine.resolve("dask")
    with pytest.raises(UserError, match="--scheduler"):
        engine.resolve("processes", "tcp://127.0.0.1:1")


def test_an_unreachable_scheduler_is_one_line_and_exit_2(tmp_path):
    pytest.importorskip("distributed")
    r = run_cli("sim.regress", "--cases", "1", "--scheduler", "tcp://127.0.0.1:9",
                "--out", str(tmp_path / "r"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().count("\n") == 0 and "--scheduler tcp://127.0.0.1:9" in r.stderr
    assert not (tmp_path / "r" / "summary.json").exists()
