"""The sim marker is true (tests/conftest.py): a test without it that starts a simulator
fails, and so does a test with it that starts none, so ``pytest -m "not sim"`` is a run that
needs no simulator."""
import os
import subprocess
import sys

from conftest import ROOT

INNER = '''
import pytest
from hw.toolchain import note_simulator

def test_unmarked_starts_one():
    note_simulator("verilator lint")

def test_unmarked_starts_none():
    pass

@pytest.mark.sim
def test_marked_starts_one():
    note_simulator("icarus run")

@pytest.mark.sim
def test_marked_starts_none():
    pass

@pytest.mark.sim
def test_marked_but_skipped():
    pytest.skip("no simulator here")
'''


def test_the_sim_marker_must_match_what_the_test_starts(tmp_path):
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_inner.py").write_text(INNER)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                        "-W", "ignore::pytest.PytestUnknownMarkWarning", str(tmp_path)],
                       cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = r.stdout.splitlines()

    def outcome(name):
        return {l.split()[0] for l in lines if l.split()[1:2] and
                l.split()[1].endswith(f"::{name}")}

    assert "ERROR" in outcome("test_unmarked_starts_one"), r.stdout
    assert "ERROR" in outcome("test_marked_starts_none"), r.stdout
    for name in ("test_unmarked_starts_none", "test_marked_starts_one"):
        assert outcome(name) == {"PASSED"}, (name, r.stdout)
    assert not outcome("test_marked_but_skipped") and "1 skipped" in r.stdout, r.stdout
    assert "(verilator lint) but has no sim marker" in r.stdout
    assert "has the sim marker but starts no simulator" in r.stdout
    assert r.returncode == 1
