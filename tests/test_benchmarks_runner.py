"""The benchmarks' shared runner (presets, guarded jobs, progress, result storage) and the
table5 pieces that need no training: the memory formula against the stored results, and the
stored results re-rendered."""
import json
from argparse import Namespace
from pathlib import Path

import pytest

from benchmarks.runner import (apply_preset, build_config, guarded, job_config, progress_line,
                               read_json, read_result, reusable_result, run_all, write_json)
from benchmarks.table5_plan import LABELS, memory_report, rung_overrides
from benchmarks.table5_report import HEADER, format_markdown
from benchmarks.weight_pruning_report import flat_points
from benchmarks.weight_pruning_report import format_markdown as study_markdown
from hw.memory_report import formula_section, network_counts
from project_config import ConfigError, UserError
from project_config.cli import comma_list
from project_config.schema import load_raw_config

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
PRESETS = {"quick": {"epochs": 1, "max_train": 8}, "default": {"epochs": 5},
           "full": {"epochs": 9}}


def test_presets_fill_only_unset_options():
    args = Namespace(quick=True, epochs=None, max_train=3, out=None)
    assert apply_preset(args, PRESETS, "bench") == "quick"
    assert (args.epochs, args.max_train, args.out) == (1, 3, "runs/bench_quick")
    args = Namespace(quick=False, full=True, epochs=None, out="x")
    assert apply_preset(args, PRESETS, "bench") == "full"
    assert (args.epochs, args.out) == (9, "x")
    args = Namespace(quick=False, epochs=None, out=None)           # no --full option
    assert apply_preset(args, PRESETS, "bench") == "default" and args.out == "runs/bench"
    with pytest.raises(UserError, match="exclude"):
        apply_preset(Namespace(quick=True, full=True, out=None), PRESETS, "bench")


def test_comma_list():
    assert comma_list(int)("2,4,") == (2, 4)
    assert comma_list(float).__name__ == "comma-separated float"


def _work(job):
    if job["fail"]:
        raise ValueError("boom")
    return {"value": job["n"] * 2}


def test_guarded_jobs_keep_the_callers_key_order_and_never_raise():
    ok = guarded(_work, {"fail": False, "n": 2}, {"name": "a", "ok": False, "wall_s": 0.0},
                 time_key="wall_s")
    assert list(ok) == ["name", "ok", "wall_s", "value"] and ok["ok"] and ok["value"] == 4
    bad = guarded(_work, {"fail": True, "n": 2}, {"name": "b"})
    assert list(bad) == ["name", "ok", "error", "traceback", "elapsed_s"]
    assert bad["error"] == "ValueError: boom" and not bad["ok"]
    assert progress_line(1, 2, "a", ok, lambda r: f"value {r['value']}") == "[1/2] a: value 4"
    assert progress_line(2, 2, "b", bad, None) == "[2/2] b: FAILED ValueError: boom"


def _run(job):
    return guarded(_work, job, {"n": job["n"]})


def test_run_all_in_process_in_job_order():
    lines = []
    jobs = [{"fail": n == 1, "n": n} for n in range(3)]
    results = run_all(jobs, _run, 1,
                      lambda i, n, r: progress_line(i, n, str(r["n"]), r, lambda r: "ok"),
                      log=lines.append)
    assert [r["n"] for r in results] == [0, 1, 2] and [r["ok"] for r in results] == [
        True, False, True]
    assert lines == ["[1/3] 0: ok", "[2/3] 1: FAILED ValueError: boom", "[3/3] 2: ok"]


def test_benchmark_configs_refuse_a_duplicate_key(tmp_path, monkeypatch):
    # The base config and each job's text are parsed as every config is (PyYAML alone
    # would keep the last of the two keys).
    text = (ROOT / "configs" / "event_digits.yaml").read_text()
    dup = text.replace("\n  lr:", "\n  lr: 0.5\n  lr:", 1)
    assert dup != text
    with pytest.raises(ConfigError, match="duplicate key 'lr'"):
        job_config(dup, "job")
    (tmp_path / "dup.yaml").write_text(dup)
    with pytest.raises(ConfigError, match="dup.yaml.*duplicate key 'lr'"):
        load_raw_config(tmp_path / "dup.yaml")


def test_result_storage(tmp_path):
    write_json(tmp_path / "r.json", {"a": Path("x")}, indent=1)
    assert (tmp_path / "r.json").read_text() == '{\n "a": "x"\n}\n'
    assert read_json(tmp_path / "r.json") == {"a": "x"} and read_json(tmp_path / "no") is None
    assert reusable_result(tmp_path, {"seed": 0}) is None               # nothing trained
    with pytest.raises(UserError, match="FileNotFoundError"):
        read_result(tmp_path / "missing.json", "a result")
    with pytest.raises(UserError, match="KeyError"):
        read_result(tmp_path / "r.json", "a result", keys=("meta",))


def test_table5_memory_is_hw_memory_reports_formula():
    """The memory of every rung, by hw.memory_report's formula, equals what the stored
    results (computed by table5's former copy of the formula) hold."""
    stored = json.loads((RESULTS / "table5.json").read_text())["summary"]
    path, raw = load_raw_config("event_digits.yaml")
    for rung, overrides in rung_overrides(0.5).items():
        if rung not in stored:          # a stored run without the Figure 4 sweep
            continue
        cfg, _ = build_config(raw, overrides, where=f"{path} [{rung}]")
        mem = memory_report(cfg)
        assert mem == stored[rung]["memory"], rung
        f = formula_section(network_counts(cfg.layers, cfg.timesteps), cfg.quant["weight_bits"],
                            cfg.quant["membrane"])
        assert mem["total_bits"] == f["configured"][0]["total_bits"]
    assert set(stored) <= set(LABELS)


def test_stored_results_render():
    p = json.loads((RESULTS / "table5.json").read_text())
    meta = dict(p["meta"], runs=len(p["runs"]), train_wall_s=0)
    md = format_markdown(p["summary"], p["targets"], meta)
    assert "| " + " | ".join(HEADER) + " |" in md and "### Figure 4" in md
    p = json.loads((RESULTS / "weight_pruning_study.json").read_text())
    rows = flat_points(p["details"])
    assert rows == p["points"]
    assert study_markdown(rows, p["details"], p["meta"]).startswith("# Weight pruning")
