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
