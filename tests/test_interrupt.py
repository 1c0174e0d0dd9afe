"""Interrupted writers never leave an output that fails to load.

Each trial starts a writer (model_export, hw.build with lint, train) as a subprocess whose
imports are done, over an output that a first run wrote, and sends it SIGTERM, SIGINT or
SIGKILL at a random moment of its run. Afterwards the output location must load (the old
complete output or the new complete one); after SIGTERM or SIGINT no temp sibling and no
child process (Verilator) may be left. ``make test`` runs 3 trials per writer with fixed
seeds; ``SPQUANT_INTERRUPT_TRIALS=20`` (``make fuzz``) runs 20.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

import hw.build as hb
import model_export.format as fmt
from cli_harness import snapshot
from hw.build import read_build
from model_export import load_export, save_export
from model_export.random_net import random_export
from project_config import load_config
from train.trainer import load_checkpoint
from conftest import ROOT

TRIALS = int(os.environ.get("SPQUANT_INTERRUPT_TRIALS", "3"))
SENT = {}           # writer -> [(signal, exit code)], for the summary line
DRIVER = """
import sys
from project_config import cli_main
import {module} as m
print("ready", flush=True)
cli_main(m.main, sys.argv[1:])
"""


def _start(module, argv, cwd):
    return subprocess.Popen([sys.executable, "-c", DRIVER.format(module=module), *map(str, argv)],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def _run_once(module, argv, cwd) -> float:
    """Run the writer to completion; seconds from its 'ready' to its exit."""
    p = _start(module, argv, cwd)
    assert p.stdout.readline().strip() == "ready"
    t0 = time.time()
    out, err = p.communicate()
    assert p.returncode == 0, err
    return time.time() - t0


def _leftovers(out: Path) -> list:
    siblings = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    procs = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if f"/.{out.name}.tmp-" in cmd:
                procs.append(cmd[:120])
    return siblings + procs


@pytest.fixture(scope="module", autouse=True)
def _summary():
    """One line of the random trials per writer (printed with -s; appended to
    ``SPQUANT_FUZZ_SUMMARY``, the file make fuzz prints)."""
    t0 = time.time()
    yield
    if not SENT:
        return
    text = f"interrupts: {time.time() - t0:.0f} s: " + "; ".join(
        f"{m} {len(s)} trials ({', '.join(f'{n} {k}' for n, k in sorted(Counter(x for x, _ in s).items()))})"
        for m, s in SENT.items())
    print("\n" + text)
    if os.environ.get("SPQUANT_FUZZ_SUMMARY"):
        with open(os.environ["SPQUANT_FUZZ_SUMMARY"], "a") as f:
            f.write(text + "\n")


def _interrupt_trials(module, argv, out, cwd, loads, seed):
    """TRIALS interrupted runs; returns the signals sent."""
    dur = _run_once(module, argv, cwd)          # the previous output (and the run's length)
    loads()
    rng = random.Random(seed)
    sent = []
    for _ in range(TRIALS):
        sig = rng.choice([signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
        p = _start(module, argv, cwd)
        assert p.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0, dur * 1.1))
        p.send_signal(sig)
        _, err = p.communicate()
        sent.append((sig.name, p.returncode))
        loads()                                  # the old or the new output, complete
        if sig != signal.SIGKILL:
            # -sig: the signal came before cli_main took it over (or after it gave it back),
            # when there is nothing to clean up; 130/143: cli_main unwound the work.
            assert p.returncode in (0, 130, 143, -sig), (sig, p.returncode, err)
            if p.returncode > 0:
                assert err.strip().splitlines()[-1] in ("error: interrupted", "error: terminated"), err
            assert not _leftovers(out), (sig, _leftovers(out))
    # A run after SIGKILLs removes what they left and still writes a complete output.
    _run_once(module, argv, cwd)
    loads()
    assert not _leftovers(out)
    SENT[module.removesuffix(".__main__")] = sent
    return sent


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    raw = yaml.safe_load((ROOT / "configs" / "slice_digits.yaml").read_text())
    raw["data"]["test_fraction"] = 0.9
    raw["train"].update(epochs=2, out_dir="run")
    d = tmp_path_factory.mktemp("interrupt_train")
    (d / "tiny.yaml").write_text(yaml.safe_dump(raw))
    _run_once("train.__main__", ["--config", "tiny.yaml", "--no-progress"], d)
    return d


def test_interrupted_model_export_leaves_a_loadable_export(checkpoint):
    out = checkpoint / "export"
    _interrupt_trials("model_export.__main__", ["--checkpoint", "run/model.pt", "--out", "export"],
                      out, checkpoint, lambda: load_export(out), seed=1)


@pytest.mark.sim
def test_interrupted_hw_build_leaves_a_complete_build(tmp_path):
    out = tmp_path / "hw"
    _interrupt_trials("hw.build", ["--config", "slice_digits.yaml", "--out", out], out, tmp_path,
                      lambda: read_build(out), seed=2)


def test_interrupted_train_leaves_a_loadable_checkpoint(checkpoint):
    out = checkpoint / "run"

    def loads():
        load_checkpoint(out / "model.pt")
        json.loads((out / "metrics.json").read_text())
    _interrupt_trials("train.__main__", ["--config", "tiny.yaml", "--no-progress"], out,
                      checkpoint, loads, seed=3)


# --- deterministic: an interruption at the worst moment of each multi-file writer ----------

def test_export_interrupted_between_its_two_files_keeps_the_old_one(tmp_path, monkeypatch):
    cfg = load_config("slice_digits.yaml")
    save_export(random_export(cfg, 1), tmp_path / "e")
    before = snapshot(tmp_path)
    real, calls = fmt.atomic_write, []

    def interrupted(path, data):
        calls.append(path)
        if len(calls) == 2:                  # the npz is written, the manifest is next
            raise KeyboardInterrupt
        real(path, data)
    monkeypatch.setattr(fmt, "atomic_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_export(random_export(cfg, 2), tmp_path / "e")
    assert snapshot(tmp_path) == before      # the old export, whole; no temp folder
    load_export(tmp_path / "e")


def test_build_interrupted_during_lint_keeps_the_old_build(tmp_path, monkeypatch):
    cfg = load_config("slice_digits.yaml")
    hb.build(cfg, tmp_path / "hw", do_lint=False)
    before = snapshot(tmp_path)

    def lint(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(hb, "lint", lint)
    cfg.hardware["lanes"] = 4                # a different core: other Verilog
    with pytest.raises(KeyboardInterrupt):
        hb.build(cfg, tmp_path / "hw")
    assert snapshot(tmp_path) == before
    read_build(tmp_path / "hw")


def test_a_writer_removes_what_a_killed_one_left_and_keeps_a_live_ones(tmp_path):
    # SIGKILL runs no cleanup: the next writer removes temp siblings whose process is gone.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = [tmp_path / f".e.tmp-{dead.pid}-0bad", tmp_path / f".e.old-{dead.pid}-0bad"]
    live = tmp_path / f".e.tmp-{os.getpid()}-0001"
    for d in stale + [live]:
        d.mkdir()
        (d / "manifest.json").write_text("half")
    save_export(random_export(load_config("slice_digits.yaml"), 1), tmp_path / "e")
    assert not any(d.exists() for d in stale) and live.exists()
    load_export(tmp_path / "e")


# --- deterministic: the signal handling itself -------------------------------------------

UNWIND = """
import sys, time
from pathlib import Path
from project_config import cli_main
from hw.toolchain import run_group

def main(argv):
    tmp = Path(argv[0]) / "partial.tmp"
    tmp.write_text("x")
    try:
        print("ready", flush=True)
        run_group(["sh", "-c", "echo $$ > " + argv[0] + "/group; sleep 60 & sleep 60; wait"])
    finally:
        tmp.unlink()           # the cleanup a writer does on the way out
cli_main(main, sys.argv[1:])
"""


def _live_members(group: int) -> list:
    """Pids in process group ``group`` that still run (a killed child reparented to a pid 1
    that does not reap stays a zombie: dead, so not counted)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_unwinds_the_cleanup_and_kills_the_child_group(tmp_path, sig):
    # SIGTERM is raised like Ctrl-C (cli_main), so finally blocks run; run_group kills the
    # child's whole process group (Verilator's wrapper and its compilers), none is orphaned.
    p = subprocess.Popen([sys.executable, "-c", UNWIND, str(tmp_path)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.readline().strip() == "ready"
    deadline = time.time() + 20
    while not (tmp_path / "group").is_file() or not (tmp_path / "group").read_text().strip():
        assert time.time() < deadline, "the child never started"
        time.sleep(0.05)
    group = int((tmp_path / "group").read_text())
    p.send_signal(sig)
    _, err = p.communicate(timeout=30)
    try:
        assert p.returncode == (143 if sig == signal.SIGTERM else 130), (p.returncode, err)
        assert err.strip().splitlines() == [
            "error: terminated" if sig == signal.SIGTERM else "error: interrupted"], err
        assert not (tmp_path / "partial.tmp").exists()
        time.sleep(0.2)
        assert not _live_members(group), "processes of the child's group are left"
    finally:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
