"""Tiny end-to-end training, checkpoint round trip, CLI and checkpoint errors."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from project_config import UserError, load_config
from train.__main__ import main
from train.data import load_dataset, to_time_major
from train.trainer import load_checkpoint, train

ROOT = Path(__file__).resolve().parent.parent



@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cfg = load_config("slice_digits.yaml")
    text = Path(cfg.path).read_text()
    out = tmp_path_factory.mktemp("run")
    model, metrics = train(cfg, text, epochs=2, out_dir=out, max_train=400, max_test=150,
                           progress=False, log=None, threads=1)
    return cfg, out, model, metrics


def test_training_learns(trained):
    _, out, _, metrics = trained
    ep = metrics["epochs"]
    assert len(ep) == 2
    assert ep[1]["loss"] < ep[0]["loss"] or metrics["final_test_accuracy"] > 0.2
    assert metrics["final_test_accuracy"] > 0.1
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["final_test_accuracy"] == metrics["final_test_accuracy"]
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model.pt"]   # no temp files


def test_checkpoint_round_trip(trained):
    cfg, out, model, _ = trained
    loaded, cfg2 = load_checkpoint(out / "model.pt")
    assert not loaded.training
    assert cfg2.layers == cfg.layers and cfg2.quant == cfg.quant
    x_te = load_dataset(cfg)[2][:32]
    x = to_time_major(x_te, cfg.timesteps)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    for a, b in zip(model.blocks, loaded.blocks):
        assert torch.equal(a.conv.pot_codes()[1], b.conv.pot_codes()[1])
        assert torch.equal(a.neuron.vth.detach(), b.neuron.vth.detach())
    assert torch.equal(model.classifier.bias_int(), loaded.classifier.bias_int())


def test_checkpoint_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="bad.pt"):
        load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(UserError, match="other.pt"):
        load_checkpoint(other)


def test_cli_in_process(tmp_path, capsys):
    before = torch.get_num_threads()
    assert main(["--config", "slice_digits.yaml", "--epochs", "1", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    assert torch.get_num_threads() == before      # the run restores the thread count
    assert "final test accuracy" in capsys.readouterr().out
    ck = torch.load(tmp_path / "model.pt", weights_only=True)
    assert set(ck) >= {"config", "state_dict", "metrics"}
    with pytest.raises(SystemExit) as e:      # argparse rejects it (positive_int): exit 2
        main(["--config", "slice_digits.yaml", "--epochs", "0", "--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--epochs: 0 is not at least 1" in err
    cfg = load_config("slice_digits.yaml")
    with pytest.raises(UserError, match="--epochs"):      # the API checks it too
        train(cfg, "", epochs=0, out_dir=tmp_path)


def test_cli_user_error_exit_code(tmp_path):
    r = subprocess.run([sys.executable, "-m", "train", "--config", str(tmp_path / "missing.yaml")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing.yaml" in lines[0]


def test_no_hardware_imports():
    code = ("import sys, train, train.trainer, train.__main__; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('amaranth', 'cocotb')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
