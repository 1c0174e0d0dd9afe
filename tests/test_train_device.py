"""The GPU recipe's path on CPU: the same commands take --device and --amp (mixed
precision); a tiny bfloat16 run on CPU exercises it. No test needs a GPU."""
from pathlib import Path

import pytest
import torch
import yaml

from benchmarks import vgg9_ladder
from benchmarks.table5 import parse_args
from project_config import UserError, config_from_dict, load_config
from project_config.schema import load_raw_config
from train.__main__ import main as train_main
from train import trainer
from train.model import build_model
from train.trainer import load_checkpoint, train


def test_amp_training_runs_on_cpu(tmp_path, monkeypatch):
    _, raw = load_raw_config("slice_digits.yaml")
    cfg = config_from_dict(raw)
    text = yaml.safe_dump(raw)
    seen = []

    def build(c):
        m = build_model(c)
        m.blocks[0].conv.register_forward_hook(
            lambda mod, inp, out: seen.append((mod.training, out.dtype)))
        return m

    monkeypatch.setattr(trainer, "build_model", build)
    model, metrics = train(cfg, text, epochs=1, out_dir=tmp_path, max_train=64, max_test=32,
                           progress=False, log=None, threads=1, device="cpu", amp=True)
    assert (True, torch.bfloat16) in seen                 # training ran in mixed precision
    assert (False, torch.float32) in seen                 # evaluation in float32
    assert metrics["epochs"][0]["loss"] == metrics["epochs"][0]["loss"]     # finite, not NaN
    loaded, _ = load_checkpoint(tmp_path / "model.pt")
    # The checkpoint is float32 whatever the training precision.
    assert all(v.dtype == torch.float32 for k, v in loaded.state_dict().items()
               if v.is_floating_point())


def test_train_cli_takes_amp(tmp_path, capsys):
    assert train_main(["--config", "slice_digits.yaml", "--epochs", "1", "--out", str(tmp_path),
                       "--no-progress", "--amp"]) == 0
    assert (tmp_path / "model.pt").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_a_gpu_is_one_clear_error(tmp_path):
    cfg = load_config("slice_digits.yaml")
    with pytest.raises(UserError, match="no CUDA device"):
        train(cfg, "", epochs=1, out_dir=tmp_path, device="cuda", progress=False, log=None)


def test_benchmarks_pass_the_device_to_every_job():
    args = parse_args(["--quick", "--device", "cuda", "--amp"])
    assert args.device == "cuda" and args.amp
    base_path, base_raw = load_raw_config("vgg9_events48.yaml")
    jobs = vgg9_ladder.plan(base_path, base_raw, Path("runs/vgg9_events48_ladder"),
                            quant_epochs=30)
    quant = next(j for j in jobs if j["rung"] == "quant")
    assert quant["settings"]["epochs"] == 30
    assert yaml.safe_load(quant["settings"]["config_text"])["model"]["input"]["height"] == 48
