"""sim.mutate: the mutation sites of the RTL generator, their edits, the sampling, and a
mutant of each outcome on a one-shape subset (killed, not exercised) beside the unmutated
run."""
import ast
import tempfile

import pytest

from sim import mutate
from sim.mutate import OPERATORS, Site, apply, run_mutant, sample, sites

ALL = sites()


def test_every_edit_has_sites_and_ids_are_unique():
    assert {s.operator for s in ALL} == set(OPERATORS)
    assert len({s.id for s in ALL}) == len(ALL)
    assert {s.path for s in ALL} == set(mutate.RTL_SOURCES)
    assert not [s for s in ALL if s.operator == "stuck at zero" and s.original.endswith(".eq(0)")]


def test_each_edit_changes_its_span_only_and_still_parses():
    for s in sample(ALL, 90, 7):
        text = (mutate.ROOT / s.path).read_text()
        new = apply(s, text)
        ast.parse(new)
        lines, new_lines = text.splitlines(), new.splitlines()
        after = len(lines) - s.end_line
        assert new_lines[:s.line - 1] == lines[:s.line - 1]
        assert new_lines[len(new_lines) - after:] == lines[len(lines) - after:]
        changed = "\n".join(new_lines[s.line - 1:len(new_lines) - after])
        assert s.replacement in changed and changed.startswith(lines[s.line - 1][:s.col])


def test_apply_refuses_a_site_whose_source_changed():
    s = ALL[0]
    moved = Site(**{**s.__dict__, "original": s.original + "x"})
    with pytest.raises(RuntimeError, match="the source changed"):
        apply(moved, (mutate.ROOT / s.path).read_text())


def test_sampling_is_deterministic_and_spread_over_the_edits():
    a, b = sample(ALL, 27, 1), sample(ALL, 27, 1)
    assert a == b and len(set(a)) == 27
    assert {s.operator for s in a[:len(OPERATORS)]} == set(OPERATORS)
    assert sample(ALL, 27, 2) != a


def test_the_subset_covers_the_features():
    chosen = mutate.choose_subset()
    assert 1 < len(chosen) <= mutate.SUBSET_SHAPES
    got = set().union(*(mutate._features(s) for s in chosen))
    want = set().union(*(mutate._features(s) for s in mutate.CANDIDATE_SHAPES))
    assert got == want


@pytest.mark.sim
def test_a_mutant_of_each_outcome_on_a_small_subset():
    """On shape 1009 (binary membrane, no pruning, 2 cases): a spike output stuck at zero
    is killed by mismatches; a parameter stream whose valid never reaches the loader is
    killed as a hang (the testbench's wait for ready is bounded); an edit of the channel
    gates (built only for pruned layers) leaves the Verilog as it was; and the unmutated
    run passes."""
    plan = [(1009, [1009000, 1009001])]
    by_id = {s.id: s for s in ALL}
    stuck = next(s for s in ALL if s.path == "hw/neuron_unit.py" and s.operator == "stuck at zero"
                 and s.original.startswith("self.spike.eq"))
    gate = next(s for s in ALL if s.path == "hw/channel_gate.py" and s.operator == "condition negated")
    no_valid = next(s for s in ALL if s.path == "hw/core.py" and s.operator == "assignment dropped"
                    and s.original.startswith("m.d.comb += [loader.param.valid.eq(self.param.valid)"))
    with tempfile.TemporaryDirectory() as work:
        base = run_mutant(None, work, plan, {}, 3_000_000, 600)
        assert base["status"] == "passed", base
        hashes = {k: v["verilog_sha256"] for k, v in base["shapes"].items()}
        killed = run_mutant(by_id[stuck.id], work, plan, hashes, 100_000, 600)
        assert killed["status"] == "killed" and "mismatches" in killed["problems"][0], killed
        hang = run_mutant(no_valid, work, plan, hashes, 20_000, 600)
        assert hang["status"] == "killed" and "stayed low for 20000 cycles" in hang["problems"][0], hang
        idle = run_mutant(gate, work, plan, hashes, 100_000, 600)
        assert idle["status"] == "not exercised", idle


@pytest.mark.parametrize("argv,needle", [(["--only", "0123456789"], "--only 0123456789"),
                                         (["--mutants", "0"], "--mutants"),
                                         (["--timeout", "5"], "--timeout")])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, argv, needle):
    from cli_harness import run_main
    r = run_main(mutate.main, [*argv, "--out", str(tmp_path / "m")])
    assert r.returncode == 2, r
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr
    assert not (tmp_path / "m").exists()
