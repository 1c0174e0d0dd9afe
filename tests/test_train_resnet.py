"""ResNet-19 (training only): config keys, structure, forward/backward, checkpoint, no hardware."""

import pytest
import torch
import yaml

from project_config import ConfigError, config_from_dict, load_config
from train.data import load_dataset, to_time_major
from train.model import SpikingConvNet, SpikingResNet19, build_model
from train.neuron import QLIF
from train.quant import PoTConv2d, PoTLinear
from conftest import ROOT



def _raw():
    return yaml.safe_load((ROOT / "configs" / "resnet19_tiny.yaml").read_text())


def _tiny(**model):
    raw = _raw()
    raw["model"].update({"width_scale": 0.0625, "timesteps": 2, **model})
    return config_from_dict(raw, where="r.yaml")


def test_config_keys():
    cfg = load_config("resnet19_tiny.yaml")
    assert cfg.model["arch"] == "resnet19" and cfg.layers == [] and cfg.spiking_layers == []
    slice_cfg = load_config("slice_digits.yaml")
    assert slice_cfg.model["arch"] == "convnet" and slice_cfg.layers[-1].kind == "fc"
    for mutate, key in [
        (lambda r: r["model"].update(layers=[{"channels": 4}]), "model.layers"),
        (lambda r: r["model"].update(planes=[8, 8, 8]), "model.planes"),
        (lambda r: r["model"].update(planes=[8, 8, 8, 0]), "model.planes"),
        (lambda r: r["model"].update(width_scale=0.0), "model.width_scale"),
        (lambda r: r["model"].update(stem="conv5"), "model.stem"),
        (lambda r: r["model"].update(arch="vgg"), "model.arch"),
    ]:
        raw = _raw()
        mutate(raw)
        with pytest.raises(ConfigError) as e:
            config_from_dict(raw, where="bad.yaml")
        assert str(e.value).startswith(f"bad.yaml.{key}"), str(e.value)
    raw = yaml.safe_load((ROOT / "configs" / "slice_digits.yaml").read_text())
    raw["model"]["width_scale"] = 0.5
    with pytest.raises(ConfigError, match=r"bad\.yaml\.model\.width_scale: only used by arch"):
        config_from_dict(raw, where="bad.yaml")


def test_structure():
    cfg = _tiny()
    m = build_model(cfg)
    assert isinstance(m, SpikingResNet19) and isinstance(build_model(load_config("slice_digits.yaml")),
                                                         SpikingConvNet)
    assert m.widths == [8, 8, 16, 32]
    assert len(m.layers) == 8                       # BasicBlocks [3, 3, 2]
    strides = [b.conv1.stride[0] for b in m.layers]
    assert strides == [1, 1, 1, 2, 1, 1, 2, 1]
    assert [b.shortcut is not None for b in m.layers] == [False] * 3 + [True, False, False, True, False]
    convs = [mod for mod in m.modules() if isinstance(mod, PoTConv2d)]
    assert len(convs) == 1 + 16 + 2 and all(c.weight_bits == 4 for c in convs)
    assert m.stem_conv.kernel_size == (3, 3) and m.stem_conv.stride == (1, 1)
    assert (m.fc1.in_features, m.fc1.out_features, m.classifier.out_features) == (32, 16, 10)
    assert isinstance(m.classifier, PoTLinear) and m.fc_lif.membrane == "float"
    lifs = [mod for mod in m.modules() if isinstance(mod, QLIF)]
    assert len(lifs) == 1 + 16 + 1 and all(l.membrane == "ternary" for l in lifs[:-1])
    big = build_model(_tiny(stem="conv7s2", width_scale=1.0, planes=[128, 64, 256, 512]))
    assert big.stem_conv.kernel_size == (7, 7) and big.stem_conv.stride == (2, 2)
    assert big.widths == [128, 64, 256, 512] and big.fc1.out_features == 256


@pytest.mark.parametrize("stem, hw", [("conv3", 8), ("conv7s2", 16)])
def test_forward_backward_shapes(stem, hw):
    raw = _raw()
    raw["model"].update(width_scale=0.0625, timesteps=3, stem=stem)
    raw["model"]["input"].update(channels=3, height=hw, width=hw)
    cfg = config_from_dict(raw, where="r.yaml")
    torch.manual_seed(0)
    m = build_model(cfg)
    x = torch.randint(0, 17, (3, 5, 3, hw, hw)).float()
    logits, rec = m(x, record=True)
    assert logits.shape == (3, 5, 10)
    assert len(rec) == 1 + 16 + 1
    assert rec[0]["spikes"].shape == (3, 5, 8, 8, 8)          # stem output is 8x8 in both cases
    assert rec[-2]["spikes"].shape == (3, 5, 32, 2, 2)        # last block: 2x2
    assert rec[-1]["spikes"].shape == (3, 5, 16)              # hidden LIF
    for r in rec[:-1]:
        assert set(r["spikes"].unique().tolist()) <= {0.0, 1.0}
        assert set(r["membranes"].unique().tolist()) <= {-1.0, 0.0, 1.0}
    tet = logits.square().mean()
    tet.backward()
    grads = {n: p.grad for n, p in m.named_parameters()}
    assert grads["stem_conv.weight"] is not None and grads["stem_conv.weight"].abs().sum() > 0
    assert grads["layers.0.conv1.weight"].abs().sum() > 0 and grads["classifier.weight"].abs().sum() > 0
    assert m.predict(logits).shape == (5,)


def test_train_checkpoint_round_trip(tmp_path):
    from train.trainer import load_checkpoint, train
    cfg = _tiny()
    text = yaml.safe_dump({**_raw(), "model": {**_raw()["model"], "width_scale": 0.0625,
                                               "timesteps": 2}})
    model, metrics = train(cfg, text, epochs=1, out_dir=tmp_path, max_train=64, max_test=32,
                           progress=False, log=None, threads=1)
    assert metrics["arch"] == "resnet19" and len(metrics["epochs"][0]["vth"]) == 18
    loaded, cfg2 = load_checkpoint(tmp_path / "model.pt")
    assert isinstance(loaded, SpikingResNet19) and cfg2.model == cfg.model
    x = to_time_major(load_dataset(cfg)[2][:8], 2)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_no_hardware_form():
    from hw.params import CoreParams
    with pytest.raises(ConfigError, match=r"r\.yaml: model\.arch: 'resnet19' has no hardware form"):
        CoreParams(_tiny())
    CoreParams(load_config("slice_digits.yaml"))        # convnet chains still build
