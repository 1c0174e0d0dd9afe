"""Bad input to the CLIs and loaders: one clear line, non-zero exit, no partial output."""
import numpy as np
import pytest
import yaml

from hw.params import CoreParams
from model_export import save_export
from model_export.random_net import random_export
from project_config import ConfigError, config_from_dict, load_config
from conftest import ROOT, run_cli


def _one_line_exit_2(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_impossible_hardware_is_refused_before_writing(tmp_path):
    raw = yaml.safe_load((ROOT / "configs" / "slice_digits.yaml").read_text())
    raw["quant"]["weight_bits"] = 8          # K = 126: a 140-bit accumulator
    bad = tmp_path / "wide.yaml"
    bad.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    _one_line_exit_2(run_cli("hw.build", "--config", str(bad), "--out", str(out)),
                     "quant.weight_bits", "accumulator")
    assert not out.exists()


def test_float_membrane_has_no_hardware(tmp_path):
    raw = yaml.safe_load((ROOT / "configs" / "slice_digits.yaml").read_text())
    raw["quant"]["membrane"] = "float"
    with pytest.raises(ConfigError, match="quant.membrane"):
        CoreParams(config_from_dict(raw, where="fp.yaml"))


def test_export_for_another_network_is_refused(tmp_path):
    cfg = load_config("slice_digits.yaml")
    raw = yaml.safe_load((ROOT / "configs" / "slice_digits.yaml").read_text())
    raw["model"]["layers"][1]["channels"] = 12
    other = config_from_dict(raw, where="other.yaml")
    with pytest.raises(ConfigError, match="out_channels is 12"):
        CoreParams(cfg).check_export(random_export(other, 1), where="theirs")
    raw["model"]["timesteps"] = 7
    with pytest.raises(ConfigError, match="timesteps 7"):
        CoreParams(cfg).check_export(random_export(config_from_dict(raw), 1))


def test_golden_cli_wrong_input_shape(tmp_path):
    save_export(random_export(load_config("slice_digits.yaml"), 1), tmp_path / "e")
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 8, 8), dtype=np.int64))
    _one_line_exit_2(run_cli("golden", "--export", str(tmp_path / "e"), "--inputs",
                             str(tmp_path / "x.npy")), "x.npy", "expected")
    (tmp_path / "junk.npy").write_bytes(b"\x00garbage")
    _one_line_exit_2(run_cli("golden", "--export", str(tmp_path / "e"), "--inputs",
                             str(tmp_path / "junk.npy")), "junk.npy")


def test_export_from_another_schema_version(tmp_path):
    import json
    save_export(random_export(load_config("slice_digits.yaml"), 1), tmp_path / "e")
    m = json.loads((tmp_path / "e" / "manifest.json").read_text())
    m["schema"] = "someone-else"
    (tmp_path / "e" / "manifest.json").write_text(json.dumps(m))
    _one_line_exit_2(run_cli("golden", "--export", str(tmp_path / "e")), "manifest.json")


def test_regress_and_flow_reject_bad_arguments(tmp_path):
    _one_line_exit_2(run_cli("sim.regress", "--cases", "0", "--out", str(tmp_path / "r")),
                     "--cases")
    _one_line_exit_2(run_cli("sim.flow", "--config", "slice_digits.yaml", "--simulators",
                             "modelsim"), "modelsim")
