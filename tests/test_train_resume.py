"""--resume: an interrupted or finished run continues exactly; old checkpoints still load;
no distributed setup without torchrun's environment."""
from pathlib import Path

import pytest
import torch
import yaml

from project_config import UserError, config_from_dict, load_config
from train.__main__ import main
from train.trainer import distributed_world_size, load_checkpoint, train

KW = dict(max_train=192, max_test=64, progress=False, threads=1)



@pytest.fixture(scope="module")
def cfg():
    return load_config("slice_digits.yaml")


@pytest.fixture(scope="module")
def text(cfg):
    return Path(cfg.path).read_text()


@pytest.fixture(scope="module")
def straight(cfg, text, tmp_path_factory):
    """Three epochs in one go: the reference for the resumed runs."""
    out = tmp_path_factory.mktemp("straight")
    model, metrics = train(cfg, text, epochs=3, out_dir=out, log=None, **KW)
    return model, metrics


class _Stop(Exception):
    pass


def _stop_after(epoch):
    def log(line):
        if line.startswith(f"epoch {epoch:3d}/"):
            raise _Stop
    return log


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_interrupted_run_resumes_exactly(cfg, text, straight, tmp_path):
    with pytest.raises(_Stop):
        train(cfg, text, epochs=3, out_dir=tmp_path, log=_stop_after(2), **KW)
    ck = torch.load(tmp_path / "model.pt", weights_only=True)
    assert ck["complete"] is False and ck["train_state"]["epoch"] == 2
    assert not (tmp_path / "metrics.json").exists()
    partial, _ = load_checkpoint(tmp_path / "model.pt")       # a mid-run checkpoint loads
    assert not partial.training
    model, metrics = train(cfg, text, epochs=3, out_dir=tmp_path, log=None, resume=True, **KW)
    ref_model, ref = straight
    _same_weights(model, ref_model)
    assert metrics["resumed_from_epoch"] == 2 and [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]
    assert metrics["epochs"] == ref["epochs"]
    assert metrics["final_test_accuracy"] == ref["final_test_accuracy"]
    assert torch.load(tmp_path / "model.pt", weights_only=True)["complete"] is True


def test_finished_run_resumes_to_more_epochs(cfg, text, tmp_path):
    _, first = train(cfg, text, epochs=2, out_dir=tmp_path, log=None, **KW)
    _, metrics = train(cfg, text, epochs=3, out_dir=tmp_path, log=None, resume=True, **KW)
    assert metrics["epochs"][:2] == first["epochs"] and metrics["epochs_run"] == 3
    # The cosine is stretched to the new total from where it stopped (it had reached 0).
    lr0 = cfg.train["lr"]
    assert metrics["epochs"][2]["lr"] == pytest.approx(lr0 * 0.25, rel=1e-9)
    assert metrics["wall_time_s"] > first["wall_time_s"]
    with pytest.raises(UserError, match=r"--epochs: 3: .*already run 3 epochs"):
        train(cfg, text, epochs=3, out_dir=tmp_path, log=None, resume=True, **KW)


def test_resume_errors(cfg, text, tmp_path):
    with pytest.raises(UserError, match=r"model\.pt: --resume needs a checkpoint"):
        train(cfg, text, epochs=2, out_dir=tmp_path, log=None, resume=True, **KW)
    train(cfg, text, epochs=1, out_dir=tmp_path, log=None, **KW)
    raw = yaml.safe_load(text)
    raw["model"]["layers"][0]["channels"] = 4
    other = config_from_dict(raw, where="other.yaml")
    with pytest.raises(UserError, match=r"other\.yaml: model: differs from the config"):
        train(other, yaml.safe_dump(raw), epochs=2, out_dir=tmp_path, log=None, resume=True, **KW)
    with pytest.raises(UserError, match=r"--seed: 5 differs from the seed 0"):
        train(cfg, text, epochs=2, out_dir=tmp_path, seed=5, log=None, resume=True, **KW)
    # A checkpoint from before --resume (no training state) still loads, but cannot resume.
    ck = torch.load(tmp_path / "model.pt", weights_only=True)
    for key in ("train_state", "complete"):
        del ck[key]
    ck["metrics"] = {k: v for k, v in ck["metrics"].items()
                     if k not in ("arch", "dataset", "resumed_from_epoch", "world_size")}
    torch.save(ck, tmp_path / "model.pt")
    model, cfg2 = load_checkpoint(tmp_path / "model.pt")
    assert cfg2.layers == cfg.layers
    with pytest.raises(UserError, match=r"has no training state"):
        train(cfg, text, epochs=2, out_dir=tmp_path, log=None, resume=True, **KW)


def test_cli_resume(tmp_path, capsys):
    args = ["--config", "slice_digits.yaml", "--out", str(tmp_path), "--no-progress"]
    assert main(args + ["--epochs", "1"]) == 0
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "epoch   2/2" in out and "epoch   1/2" not in out
    with pytest.raises(SystemExit) as refused:          # the option's type refuses it
        main(args + ["--epochs", "3", "--resume", "--device", "tpu"])
    assert refused.value.code == 2 and "--device: 'tpu'" in capsys.readouterr().err


def test_no_distributed_without_torchrun_env(cfg, text, tmp_path, monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    assert distributed_world_size() == 1
    assert distributed_world_size({"WORLD_SIZE": "1"}) == 1
    assert distributed_world_size({"WORLD_SIZE": "4"}) == 4
    with pytest.raises(UserError, match="WORLD_SIZE: 'two'"):
        distributed_world_size({"WORLD_SIZE": "two"})
    _, metrics = train(cfg, text, epochs=1, out_dir=tmp_path, log=None, **KW)
    assert metrics["world_size"] == 1
    assert not (torch.distributed.is_available() and torch.distributed.is_initialized())
