"""What the benchmarks share: derived configs, presets, the common command-line options,
runs in parallel that never stop each other, progress lines, resumable training runs and
JSON result storage.

A benchmark plans a list of *jobs* (plain, picklable dicts) and hands them to
:func:`run_all` with its worker function (module-level, so that a spawned process can
import it); every job trains on one thread in its own process, ``workers`` at a time, and
the results come back in job order. A worker wraps its work in :func:`guarded`, so that a
failed job is a result (``ok`` False, the error and traceback), not an exception.

A training run that stores its checkpoint in its own folder is resumable
(:func:`reusable_result`, :func:`train_run`): a finished run trained with the same settings
is reused, an interrupted one resumes, one with other settings trains again.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import textwrap
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import yaml

from project_config import UserError, config_from_dict
from project_config.cli import (add_config, add_out, bounded_int, parser, positive_int,
                                torch_device)
from project_config.files import atomic_write
from project_config.schema import deep_merge, load_raw_config, parse_yaml
from train.trainer import checkpoint_complete, train

BASE_CONFIG = "event_digits.yaml"
DEFAULT_WORKERS = 2
MAX_WORKERS = 64              # as sim.regress: each worker is a process with its own torch
EPILOG_WIDTH = 88


# --- configs ------------------------------------------------------------------------------

def load_base_config(name) -> tuple[Path, dict]:
    """(path, mapping as written) of a benchmark's base config, validated as it stands: a
    bad key is refused before any run is planned, also where a rung's overrides would have
    replaced it (``quant.membrane: 3`` under rungs that each set a membrane)."""
    path, raw = load_raw_config(name)
    config_from_dict(raw, where=str(path))
    return path, raw


def build_config(base_raw: dict, overrides: dict, where: str):
    """(validated Config, its YAML text) for ``base_raw`` with ``overrides``.

    The text is what a checkpoint embeds and what a job carries, so every run can be
    reloaded on its own (:func:`job_config`).
    """
    raw = deep_merge(base_raw, overrides)
    text = yaml.safe_dump(raw, sort_keys=False)
    return job_config(text, where), text


def job_config(config_text: str, where: str):
    """The validated Config of a job's YAML text (parsed as every config is: a duplicate key
    is refused, not silently the last one)."""
    return config_from_dict(parse_yaml(config_text, where), where=where)


# --- command line -------------------------------------------------------------------------

def benchmark_parser(prog: str, doc: str, epilog: str) -> argparse.ArgumentParser:
    """The shared parser (help: the module docstring as written, then ``epilog`` wrapped)."""
    ap = parser(prog, doc)
    ap.epilog = textwrap.fill(epilog, EPILOG_WIDTH)
    return ap


def add_common_options(ap: argparse.ArgumentParser, name: str, quick_help: str,
                       workers_help: str):
    """--config, --out, --quick, --workers, --max-train and --max-test, as every benchmark
    takes them (``name``: the default output folder, runs/<name>[_quick])."""
    add_config(ap, default=BASE_CONFIG, help="base config")
    add_out(ap, f"output folder (default runs/{name}; runs/{name}_quick with --quick)")
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--workers", type=bounded_int(1, MAX_WORKERS), default=DEFAULT_WORKERS,
                    help=workers_help)
    ap.add_argument("--max-train", type=positive_int, default=None,
                    help="use only this many training samples")
    ap.add_argument("--max-test", type=positive_int, default=None,
                    help="use only this many test samples")
    add_device_options(ap)


def add_device_options(ap: argparse.ArgumentParser):
    """--device and --amp, passed to every training (not part of a run's settings)."""
    ap.add_argument("--device", type=torch_device, default="cpu",
                    help="torch device of the trainings: cpu (default), cuda or cuda:N")
    ap.add_argument("--amp", action="store_true",
                    help="mixed precision training (float16 on cuda; on cpu bfloat16, a test)")


def apply_preset(args, presets: dict, name: str) -> str:
    """Fills every option left unset (None) from the chosen preset; returns its name.

    ``presets`` maps "quick", "default" (and "full", where the benchmark has ``--full``)
    to {option: value}; --quick and --full exclude each other. ``args.out`` defaults to
    runs/<name>, runs/<name>_quick with --quick.
    """
    full = getattr(args, "full", False)
    if args.quick and full:
        raise UserError("--quick and --full exclude each other")
    chosen = "quick" if args.quick else "full" if full else "default"
    for key, value in presets[chosen].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.out is None:
        args.out = f"runs/{name}_quick" if args.quick else f"runs/{name}"
    return chosen


# --- running jobs -------------------------------------------------------------------------

def guarded(work, job: dict, result: dict, time_key: str = "elapsed_s") -> dict:
    """``result`` updated with ``work(job)`` and ``ok`` True, or, if it raises, with ``ok``
    False, ``error`` and ``traceback``; then ``time_key`` = the seconds it took. Never
    raises (one failed job must not stop the others). Keys already in ``result`` keep
    their place, so a stored result's key order is the caller's."""
    t0 = time.time()
    try:
        result.update(work(job))
        result["ok"] = True
    except Exception as e:   # a failed job is a result, not the end of the benchmark
        result.update(ok=False, error=f"{type(e).__name__}: {e}",
                      traceback=traceback.format_exc(limit=8))
    result[time_key] = time.time() - t0
    return result


def progress_line(i: int, n: int, name: str, result: dict, detail) -> str:
    """``[i/n] name: detail(result)``, or ``[i/n] name: FAILED error`` for a failed job."""
    if not result.get("ok"):
        return f"[{i}/{n}] {name}: FAILED {result.get('error')}"
    return f"[{i}/{n}] {name}: {detail(result)}"


def run_all(jobs: list, run, workers: int, progress, log=print) -> list:
    """``run(job)`` for every job, ``workers`` at a time (in this process when one), logging
    ``progress(i, n, result)`` as each finishes; returns the results in job order."""
    n = len(jobs)
    workers = max(1, min(workers, n))
    if workers == 1:
        results = []
        for i, job in enumerate(jobs, 1):
            results.append(run(job))
            log(progress(i, n, results[-1]))
        return results
    # spawn: each worker starts a fresh interpreter (no forked torch thread pools).
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    results = [None] * n
    try:
        futures = {pool.submit(run, job): k for k, job in enumerate(jobs)}
        for i, fut in enumerate(as_completed(futures), 1):
            results[futures[fut]] = fut.result()
            log(progress(i, n, results[futures[fut]]))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


# --- result storage -----------------------------------------------------------------------

def read_json(path: Path):
    """The JSON at ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, obj, indent: int = 2):
    """``obj`` as indented JSON (values JSON cannot hold as their ``str``) at ``path``,
    atomically."""
    atomic_write(path, json.dumps(obj, indent=indent, default=str) + "\n")


def read_result(path: Path, what: str, keys=()) -> dict:
    """A stored benchmark result (JSON with ``keys``); a missing or unreadable one, or one
    without these keys, is a UserError."""
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read {what} ({type(e).__name__})") from None
    if not isinstance(payload, dict) or any(key not in payload for key in keys):
        raise UserError(f"{path}: cannot read {what} (KeyError)")
    return payload


# --- resumable training runs --------------------------------------------------------------
# A run's folder: model.pt (the trainer's checkpoint), run.json (the settings it was
# trained with), train.log, metrics.json (the trainer's) and result.json (the benchmark's).

def _run_files(out: Path):
    return out / "model.pt", out / "run.json", out / "result.json"


def _same_settings(out: Path, settings: dict) -> bool:
    return (read_json(out / "run.json") or {}).get("settings") == settings


def reusable_result(out: Path, settings: dict) -> dict | None:
    """The stored result of a finished run in ``out`` (``ok``, complete checkpoint) trained
    with ``settings``, else None."""
    ckpt, _, result_file = _run_files(out)
    prev = read_json(result_file)
    if (_same_settings(out, settings) and prev and prev.get("ok") and ckpt.is_file()
            and checkpoint_complete(ckpt)):
        return prev
    return None


def store_result(out: Path, result: dict):
    """A finished run's result, as :func:`reusable_result` reads it back."""
    write_json(_run_files(out)[2], result)


def train_run(cfg, settings: dict, out: Path, name: str, device: str = "cpu",
              amp: bool = False) -> str:
    """Make ``out``'s checkpoint a complete training of ``cfg`` with ``settings``
    (config_text, epochs, seed, max_train, max_test): kept if complete, resumed if
    interrupted, trained from scratch otherwise (or when resuming fails). Drops any stored
    result; logs to ``out/train.log``; returns what it did. ``device`` and ``amp`` (the
    trainer's) are not settings: a run may resume on another device."""
    ckpt, run_file, result_file = _run_files(out)
    same = _same_settings(out, settings)
    out.mkdir(parents=True, exist_ok=True)
    result_file.unlink(missing_ok=True)
    with open(out / "train.log", "a") as logf:
        def log(msg):
            logf.write(msg + "\n")
            logf.flush()

        kwargs = dict(epochs=settings["epochs"], out_dir=str(out), seed=settings["seed"],
                      max_train=settings["max_train"], max_test=settings["max_test"],
                      progress=False, log=log, threads=1, device=device, amp=amp)
        if same and ckpt.is_file() and checkpoint_complete(ckpt):
            return "skipped (complete checkpoint)"
        if same and ckpt.is_file():
            log("resuming the interrupted run")
            try:
                train(cfg, settings["config_text"], resume=True, **kwargs)
                return "resumed"
            except UserError as e:
                log(f"cannot resume ({e}); training from scratch")
                train(cfg, settings["config_text"], **kwargs)
                return "trained"
        for stale in (ckpt, out / "metrics.json"):
            stale.unlink(missing_ok=True)
        write_json(run_file, {"settings": settings})
        log(f"training {name} seed {settings['seed']}")
        train(cfg, settings["config_text"], **kwargs)
        return "trained"
