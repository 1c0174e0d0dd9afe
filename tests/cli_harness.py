"""Running a CLI's ``main(argv)`` in-process, as its console script would, and checking the
bad-input promise: exit 2, exactly one ``error:`` line on stderr, no traceback, nothing
new or changed in the output location."""
import contextlib
import hashlib
import io
import os
from pathlib import Path

from project_config import cli_main

# The CLIs of the README's table, as (module, main); imported by the tests that use them.
CLI_MODULES = ("train.__main__", "model_export.__main__", "sim.agreement", "golden.__main__",
               "hw.build", "hw.perf", "hw.synth", "hw.memory_report", "sim.flow", "sim.regress",
               "reports.efficiency")


class Outcome:
    def __init__(self, rc, out, err):
        self.returncode, self.stdout, self.stderr = rc, out, err

    def __repr__(self):
        return f"Outcome(rc={self.returncode}, stderr={self.stderr[-600:]!r})"


def run_main(main, argv) -> Outcome:
    """``cli_main(main, argv)`` with stdout and stderr captured; any exception other than
    SystemExit propagates (a traceback: a broken promise)."""
    out, err = io.StringIO(), io.StringIO()
    rc = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli_main(main, [str(a) for a in argv])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return Outcome(rc, out.getvalue(), err.getvalue())


def snapshot(*roots) -> dict:
    """{path: (size, sha256)} of every file (and folder, as None) under ``roots``."""
    state = {}
    for root in map(Path, roots):
        if not root.exists():
            continue
        if root.is_file():
            state[str(root)] = (root.stat().st_size, hashlib.sha256(root.read_bytes()).hexdigest())
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            state[dirpath] = None
            for f in filenames:
                p = Path(dirpath) / f
                state[str(p)] = (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    return state


def assert_refused(r: Outcome, *needles, before=None, after=None):
    """Exit 2, one ``error:`` line naming each needle, no traceback; ``before``/``after``:
    snapshots of the output location, which must be equal."""
    assert r.returncode == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r
    assert "Traceback" not in r.stderr, r
    for n in needles:
        assert n in lines[0], (n, lines[0])
    if before is not None:
        assert after == before, "the output location changed"
