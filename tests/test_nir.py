"""NIR export and import (model_export.nir, train.nir_import): snnTorch loads the export
and reproduces the float-membrane network's spikes; a graph built with nir's own API
imports, quantizes and exports; what the core cannot run is one line and exit code 2."""
import numpy as np
import pytest
import yaml

from conftest import ROOT, run_cli

nir = pytest.importorskip("nir")
torch = pytest.importorskip("torch")

# The slice without runtime pruning: NIR has no form for it (it rides in metadata only).
RAW = {"model": {"name": "nirslice",
                 "input": {"channels": 1, "height": 8, "width": 8, "bits": 5, "scale": 0.0625},
                 "timesteps": 4, "classes": 10,
                 "layers": [{"channels": 8, "kernel": 3, "padding": 1, "pool": 2},
                            {"channels": 16, "kernel": 3, "padding": 1, "pool": 2}]},
       "quant": {"membrane": "ternary", "weight_bits": 4, "vth_init": 1.0, "learnable_vth": True},
       "hardware": {"lanes": 8},
       "data": {"dataset": "digits", "test_fraction": 0.25, "seed": 0},
       "train": {"epochs": 2, "batch_size": 64, "lr": 0.003, "seed": 0}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from project_config import load_config
    from train.trainer import train
    out = tmp_path_factory.mktemp("nir")
    cfg_path = out / "nirslice.yaml"
    cfg_path.write_text(yaml.safe_dump(RAW))
    train(load_config(cfg_path), cfg_path.read_text(), epochs=2, out_dir=str(out / "run"),
          max_train=400, progress=False, log=lambda *a, **k: None, threads=1)
    r = run_cli("model_export.nir", "--checkpoint", str(out / "run" / "model.pt"),
                "--out", str(out / "model.nir"))
    assert r.returncode == 0, r.stderr
    return out


def _inputs(cfg, n):
    from train.data import load_dataset
    _, _, x, _ = load_dataset(cfg)
    return torch.tensor(x[:n], dtype=torch.float32)


def _float_membrane(model):
    for b in model.blocks:
        b.neuron.membrane = "float"
    return model


def test_export_writes_the_nodes_and_the_continuous_time_neuron(trained):
    from train.trainer import load_checkpoint
    g = nir.read(str(trained / "model.nir"))
    kinds = [type(g.nodes[n]).__name__ for n in ("conv0", "lif0", "pool0", "conv1", "lif1",
                                                 "pool1", "flatten", "fc")]
    assert kinds == ["Conv2d", "LIF", "AvgPool2d", "Conv2d", "LIF", "AvgPool2d", "Flatten",
                     "Affine"]
    model, cfg = load_checkpoint(trained / "run" / "model.pt")
    dt = float(g.metadata["dt"])
    lif = g.nodes["lif1"]
    # v <- v/2 + I: 1 - dt/tau = 1/2, input gain r dt / tau = 1, threshold Vth, reset 0.
    assert np.all(1 - dt / lif.tau == 0.5) and np.all(lif.r * dt / lif.tau == 1.0)
    assert np.all(lif.v_threshold == np.float32(model.blocks[1].neuron.vth.item()))
    assert np.all(lif.v_reset == 0) and np.all(lif.v_leak == 0)
    meta = lif.metadata["spquant"]
    assert meta["membrane"] == "ternary" and meta["integer_thresholds"].shape == (16, 3, 3)
    # The classifier's weights are exact powers of two (or 0); the conv's PoT codes are in
    # metadata, and the written weight is that PoT weight times the folded channel scale.
    w = g.nodes["fc"].weight
    nz = w[w != 0]
    assert np.all(np.exp2(np.round(np.log2(np.abs(nz)))) == np.abs(nz))
    c = g.nodes["conv1"]
    pot = c.metadata["spquant"]["pot_weight"]
    scale = c.metadata["spquant"]["channel_scale"]
    np.testing.assert_array_equal(c.weight, (scale[:, None, None, None] * pot).astype(np.float32))
    assert g.metadata["spquant"]["config_text"].startswith("data:")


def test_snntorch_import_reproduces_the_float_membrane_spikes(trained):
    pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch")
    import snntorch.utils
    from snntorch.import_nir import import_from_nir
    from train.trainer import load_checkpoint
    model, cfg = load_checkpoint(trained / "run" / "model.pt")
    _float_membrane(model)
    x = _inputs(cfg, 16)
    T = cfg.timesteps
    net = import_from_nir(nir.read(str(trained / "model.nir")))
    spikes = {"lif0": [], "lif1": []}
    for name, store in spikes.items():
        getattr(net, name).register_forward_hook(lambda m, i, o, s=store: s.append(o.clone()))
    logits = []
    with torch.no_grad():
        ours, rec = model(x[None].repeat(T, 1, 1, 1, 1), record=True)
        for n in range(len(x)):                 # snnTorch's graph runs one sample per call
            snntorch.utils.reset(net)
            logits.append(torch.stack([net(x[n])[0] for _ in range(T)]))
    theirs = torch.stack(logits, 1)
    for i, name in enumerate(spikes):
        s = torch.stack(spikes[name]).reshape(len(x), T, *spikes[name][0].shape).transpose(0, 1)
        assert rec[i]["spikes"].sum() > 0
        assert torch.equal(s, rec[i]["spikes"]), name
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)


def test_export_cli_errors(trained, tmp_path):
    r = run_cli("model_export.nir", "--checkpoint", str(tmp_path / "none.pt"),
                "--out", str(tmp_path / "m.nir"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "none.pt" in r.stderr
    (tmp_path / "dir.nir").mkdir()
    r = run_cli("model_export.nir", "--checkpoint", str(trained / "run" / "model.pt"),
                "--out", str(tmp_path / "dir.nir"))
    assert r.returncode == 2 and "--out" in r.stderr and r.stderr.count("\n") == 1
