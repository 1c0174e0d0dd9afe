"""Config schema: the shipped configs load; every kind of bad config is one clear line, exit 2."""
import pytest
import yaml

from project_config import ConfigError, config_from_dict, load_config
from conftest import ROOT, run_cli


def test_shipped_configs_load():
    for name in ("slice_digits.yaml", "vgg9.yaml"):
        cfg = load_config(name)
        assert cfg.layers[-1].kind == "fc"


def test_vgg9_is_the_papers_network():
    cfg = load_config("vgg9.yaml")
    convs = cfg.spiking_layers
    assert [l.out_channels for l in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert [l.out_height for l in convs] == [48, 48, 24, 24, 12, 12, 6, 6]
    assert [l.pool for l in convs] == [1, 2] * 4
    assert all(l.kernel == (3, 3) and l.padding == 1 for l in convs)
    fc = cfg.layers[-1]
    assert (fc.in_channels, fc.in_height, fc.in_width, fc.out_channels) == (512, 3, 3, 10)
    assert cfg.timesteps == 10 and cfg.model["input"]["channels"] == 2
    assert (cfg.pruning["spatial_ratio"], cfg.pruning["channel_gate_threshold"]) == (0.35, 0.47)


def test_config_found_in_configs_dir_and_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config("slice_digits.yaml").name == "slice_digits"
    local = tmp_path / "mine.yaml"
    raw = yaml.safe_load((ROOT / "configs" / "slice_digits.yaml").read_text())
    raw["model"]["name"] = "mine"
    local.write_text(yaml.safe_dump(raw))
    assert load_config("mine.yaml").name == "mine"


def _raw():
    return yaml.safe_load((ROOT / "configs" / "slice_digits.yaml").read_text())


@pytest.mark.parametrize("mutate, key", [
    (lambda r: r["hardware"].update(lanes=0), "hardware.lanes"),
    (lambda r: r["hardware"].update(lanes="8"), "hardware.lanes"),
    (lambda r: r["hardware"].update(lane=8), "hardware.lane"),
    (lambda r: r["quant"].update(weight_bits=3), "quant.weight_bits"),
    (lambda r: r["quant"].update(membrane="quaternary"), "quant.membrane"),
    (lambda r: r["model"].pop("timesteps"), "model.timesteps"),
    (lambda r: r["model"]["layers"][0].update(pool=3), "model.layers[0].pool"),
    (lambda r: r["model"]["layers"][1].update(kernel=9, padding=0), "model.layers[1].kernel"),
    (lambda r: r["sim"].update(simulators=["modelsim"]), "sim.simulators"),
    (lambda r: r.update(extra={}), "extra"),
    (lambda r: r["quant"].update(learnable_vth=1), "quant.learnable_vth"),
    (lambda r: r["quant"].update(vth_grad="exact"), "quant.vth_grad"),
])
def test_bad_config_names_the_key(mutate, key):
    raw = _raw()
    mutate(raw)
    with pytest.raises(ConfigError) as e:
        config_from_dict(raw, where="bad.yaml")
    assert str(e.value).startswith(f"bad.yaml.{key}"), str(e.value)


def test_bad_config_cli_one_line_exit_2(tmp_path):
    raw = _raw()
    raw["hardware"]["lanes"] = -3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    for cmd in (["hw.build", "--config", str(bad), "--out", str(out)],
                ["sim.flow", "--config", str(bad)],
                ["train", "--config", str(bad)]):
        r = run_cli(*cmd)
        assert r.returncode == 2, (cmd, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "hardware.lanes" in lines[0] and str(bad) in lines[0], r.stderr
    assert not out.exists()


def test_missing_and_unparsable_config(tmp_path):
    r = run_cli("hw.build", "--config", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "not found" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    r = run_cli("hw.build", "--config", str(broken))
    assert r.returncode == 2 and "not valid YAML" in r.stderr


def test_accumulator_width_bound():
    cfg = load_config("slice_digits.yaml")
    l0 = cfg.layers[0]
    assert l0.weight_bits == 4 and l0.max_shift == 6
    assert l0.accumulator_bound == 1 * 9 * 31 * 64
    w = l0.acc_width
    assert (1 << (w - 1)) >= l0.accumulator_bound + 2
    assert (1 << (w - 2)) < l0.accumulator_bound + 2   # not wider than needed
    assert l0.with_weight_bits(2).accumulator_bound == 1 * 9 * 31 * 1
