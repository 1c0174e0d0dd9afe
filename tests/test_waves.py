"""Waveforms on request (--waves) and on a failing sim.regress --repro.

Icarus writes FST; Verilator FST where its FST writer builds (lz4.h), else VCD
(sim.runner.waves_format). A waveform is checked by its header: FST files start with a
header block (type 0), VCD files with a ``$`` section and name the design's signals.
"""
import pytest
import yaml

from model_export import save_export
from model_export.random_net import random_export, random_inputs
from project_config import load_config
from test_cosim import TINY

pytestmark = pytest.mark.sim


def _check_waves(path, fmt):
    data = path.read_bytes()
    assert len(data) > 1000
    if fmt == "fst":
        assert data[0] == 0                       # FST_BL_HDR
    else:
        text = data.decode(errors="replace")
        assert text.startswith("$") and "$enddefinitions" in text and " rst " in text


def test_verilator_run_case_writes_waves(tmp_path):
    from hw.build import build
    from sim.runner import build_simulator, run_case, waves_format
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    cfg = load_config(config)
    net = random_export(cfg, 71)
    save_export(net, tmp_path / "export")
    hw = build(cfg, tmp_path / "hw", do_lint=False)
    runner = build_simulator("verilator", hw, tmp_path / "sim", waves=True)
    fmt = waves_format("verilator")
    trace = tmp_path / f"waves.{fmt}"
    r = run_case(runner, "verilator", tmp_path / "sim", config=str(config),
                 jobs=[{"export": tmp_path / "export",
                        "inputs": random_inputs(net, 1, 72, density=0.4)}],
                 stall_probability=0.2, seed=73, tag="w", waves=trace)
    assert r["mismatches"] == 0, r["details"]
    _check_waves(trace, fmt)


def test_a_failing_repro_is_rerun_with_waves(tmp_path, monkeypatch, capsys):
    """A real failure (zero weights loaded behind golden's back, the scoreboard's fault
    injection) in a --repro without --waves: the case runs again with waves, and the
    printed path holds an FST file."""
    import sim.regress as regress
    real = regress.run_case
    monkeypatch.setattr(regress, "run_case",
                        lambda *a, **k: real(*a, fault="drop_layer0_weights", **k))
    rc = regress.main(["--simulator", "icarus", "--repro", "1000", "1000000",
                       "--out", str(tmp_path / "rr")])
    out = capsys.readouterr().out
    assert rc == 1 and "running it again with waves" in out
    line = next(l for l in out.splitlines() if l.startswith("waves (icarus"))
    path = tmp_path / "rr" / "shape1000" / "sim_icarus_waves" / "waves.fst"
    assert line.endswith(str(path))
    _check_waves(path, "fst")
