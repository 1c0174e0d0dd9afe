"""benchmarks.golden_speed: the side-by-side timing of golden and PyTorch, on the slice."""
import json

from benchmarks.golden_speed import main
from cli_harness import run_main


def test_side_by_side_on_the_slice(tmp_path):
    out = tmp_path / "speed.json"
    r = run_main(main, ["--config", "slice_digits.yaml", "--repeat", "1", "--check",
                        "--json", str(out)])
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())
    assert got["identical_to_stepwise"] is True
    assert got["pytorch_forward_s"] > 0 and got["golden_s"] > 0
    # The times are stored to the millisecond: allow the ratio that rounding can move.
    p, g = got["pytorch_forward_s"], got["golden_s"]
    slack = 0.0005 * (1 + g / p) / p + 0.01
    assert abs(got["golden_over_pytorch"] - g / p) <= slack
    assert "golden / PyTorch" in r.stdout


def test_bad_threads_is_one_line_exit_2(tmp_path):
    r = run_main(main, ["--threads", "0", "--json", str(tmp_path / "x.json")])
    assert r.returncode == 2 and r.stderr.count("error:") == 1
    assert not (tmp_path / "x.json").exists()
