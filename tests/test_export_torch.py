"""PyTorch -> export -> golden -> RTL on a quickly trained slice model."""
import numpy as np
import pytest

from conftest import ROOT, run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("torch")
    from project_config import load_config
    from train.trainer import train
    cfg = load_config("slice_digits.yaml")
    out = tmp_path_factory.mktemp("trained")
    train(cfg, (ROOT / "configs" / "slice_digits.yaml").read_text(), epochs=8, out_dir=str(out),
          max_train=800, progress=False, log=lambda *a, **k: None, threads=1)
    return out


def test_export_cli_and_golden_agreement(trained):
    r = run_cli("model_export", "--checkpoint", str(trained / "model.pt"))
    assert r.returncode == 0, r.stderr
    from model_export import load_export
    from sim.agreement import measure
    from train.data import load_dataset
    from train.trainer import load_checkpoint
    model, cfg = load_checkpoint(trained / "model.pt")
    net = load_export(trained / "export")
    _, _, x_test, y_test = load_dataset(cfg)
    rep = measure(model, cfg, net, x_test, y_test)
    assert rep["torch_accuracy"] > 0.5                      # it learned something
    assert rep["prediction_agreement"] >= 0.995, rep
    assert min(rep["spike_agreement"]) >= 0.999, rep
    # Signs were flipped for channels with a negative folded scale; thresholds stay in range.
    for layer in net.spiking_layers:
        lim = 1 << (layer.acc_width - 1)
        assert layer.thresholds.min() >= -lim and layer.thresholds.max() < lim


@pytest.mark.sim
def test_trained_model_on_the_rtl(trained, tmp_path):
    from model_export import load_export
    from model_export.format import save_export
    from model_export.from_torch import export_model
    from sim.runner import cosimulate
    from train.data import load_dataset
    from train.trainer import load_checkpoint
    model, cfg = load_checkpoint(trained / "model.pt")
    save_export(export_model(model, cfg), tmp_path / "export")
    _, _, x_test, _ = load_dataset(cfg)
    x = np.repeat(x_test[:3, None].astype(np.int64), cfg.timesteps, axis=1)
    r = cosimulate("slice_digits.yaml", tmp_path / "export", x, "verilator", tmp_path / "work",
                   stall_probability=0.3, seed=2)
    assert r["mismatches"] == 0, r["details"]
    import golden
    assert r["predictions"] == golden.run(load_export(tmp_path / "export"), x).predictions.tolist()


def test_export_of_full_precision_config_is_refused(trained, tmp_path):
    import yaml
    from model_export.from_torch import export_model
    from project_config import UserError, config_from_dict
    from train.model import SpikingConvNet
    raw = yaml.safe_load((ROOT / "configs" / "slice_digits.yaml").read_text())
    raw["quant"]["membrane"] = "float"
    cfg = config_from_dict(raw, where="fp.yaml")
    with pytest.raises(UserError, match="quant.membrane"):
        export_model(SpikingConvNet(cfg), cfg)


def test_missing_checkpoint_one_line_exit_2(tmp_path):
    r = run_cli("model_export", "--checkpoint", str(tmp_path / "none.pt"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_negative_batchnorm_scales_flip_signs(trained, tmp_path):
    """Channels whose folded scale is negative: weight signs flip, comparisons keep direction."""
    import torch
    from sim.agreement import measure
    from model_export.from_torch import export_model
    from train.data import load_dataset
    from train.trainer import load_checkpoint
    model, cfg = load_checkpoint(trained / "model.pt")
    with torch.no_grad():
        for block in model.blocks:
            block.bn.weight[::2] *= -1            # every other channel negative
    net = export_model(model, cfg)
    ref, _ = load_checkpoint(trained / "model.pt")
    flipped = export_model(ref, cfg)
    l0, l0_ref = net.layers[0], flipped.layers[0]
    sign = l0.w_code >> 3
    assert (sign[0::2] != (l0_ref.w_code >> 3)[0::2])[l0.w_code[0::2] & 7 != 0].all()
    _, _, x_test, y_test = load_dataset(cfg)
    rep = measure(model, cfg, net, x_test[:200], y_test[:200])
    assert rep["prediction_agreement"] >= 0.995 and min(rep["spike_agreement"]) >= 0.999, rep
