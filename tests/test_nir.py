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


# --- import -------------------------------------------------------------------------------

def _config_file(tmp_path):
    path = tmp_path / "nirslice.yaml"
    path.write_text(yaml.safe_dump(RAW))
    return path


def nir_graph(seed=0, sum_pool=False, per_channel=False, dt=1e-4):
    """The slice's geometry built with nir's own API: random weights, LIF neurons at the
    core's leak; ``per_channel``: thresholds and input gains that differ by channel;
    ``sum_pool``: layer 0 sum-pools (the next layer's weights absorb the 1/4)."""
    rng = np.random.default_rng(seed)
    f32 = lambda a: np.asarray(a, np.float32)
    nodes = {"input": nir.Input(input_type=np.array([1, 8, 8]))}

    def lif(c, h, w):
        thr = rng.uniform(0.5, 1.5, (c, 1, 1)) if per_channel else np.ones((c, 1, 1))
        gain = rng.uniform(0.5, 2.0, (c, 1, 1)) if per_channel else np.ones((c, 1, 1))
        tau = np.full((c, h, w), 2 * dt)
        return nir.LIF(tau=f32(tau), r=f32(gain * tau / dt), v_leak=f32(np.zeros((c, h, w))),
                       v_threshold=f32(np.broadcast_to(thr, (c, h, w))),
                       v_reset=f32(np.zeros((c, h, w))))

    def pool(kind):
        return kind(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))

    nodes["conv0"] = nir.Conv2d(input_shape=(8, 8), weight=f32(rng.normal(0, 0.08, (8, 1, 3, 3))),
                                stride=1, padding=(1, 1), dilation=1, groups=1,
                                bias=f32(rng.normal(0, 0.1, 8)))
    nodes["lif0"] = lif(8, 8, 8)
    nodes["pool0"] = pool(nir.SumPool2d if sum_pool else nir.AvgPool2d)
    scale = 0.25 if sum_pool else 1.0
    nodes["conv1"] = nir.Conv2d(input_shape=(4, 4),
                                weight=f32(rng.normal(0, 0.6, (16, 8, 3, 3)) * scale),
                                stride=1, padding=(1, 1), dilation=1, groups=1,
                                bias=f32(rng.normal(0, 0.1, 16)))
    nodes["lif1"] = lif(16, 4, 4)
    nodes["pool1"] = pool(nir.AvgPool2d)
    nodes["flatten"] = nir.Flatten(input_type={"input": np.array([16, 2, 2])}, start_dim=0,
                                   end_dim=-1)
    nodes["fc"] = nir.Affine(weight=f32(rng.normal(0, 0.5, (10, 64))), bias=f32(rng.normal(0, 0.1, 10)))
    nodes["output"] = nir.Output(output_type=np.array([10]))
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])), metadata={"dt": dt})


def test_roundtrip_export_is_identical(trained, tmp_path, capsys):
    """Out to NIR and back in: the export equals the original checkpoint's, both from the
    checkpoint carried in the metadata and from the NIR parameters alone."""
    from model_export.__main__ import main as export_main
    from train.nir_import import main as import_main
    cfg = str(_config_file(tmp_path))
    assert export_main(["--checkpoint", str(trained / "run" / "model.pt"),
                        "--out", str(tmp_path / "orig")]) == 0
    ref = np.load(tmp_path / "orig" / "export.npz")
    for flag in ([], ["--ignore-metadata"]):
        out = tmp_path / ("meta" if not flag else "params")
        assert import_main([str(trained / "model.nir"), "--config", cfg, "--out", str(out),
                            "--eval-samples", "100", *flag]) == 0
        assert "accuracy + 4-bit PoT weights" in capsys.readouterr().out
        assert export_main(["--checkpoint", str(out / "model.pt"), "--out", str(out / "export")]) == 0
        got = np.load(out / "export" / "export.npz")
        assert sorted(got.files) == sorted(ref.files)
        for k in ref.files:
            np.testing.assert_array_equal(got[k], ref[k], err_msg=f"{flag} {k}")


def test_imported_float_forward_equals_snntorch_import(tmp_path):
    pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch")
    import snntorch.utils
    from snntorch.import_nir import import_from_nir
    from project_config import load_config
    from train.nir_import import build_from_graph, set_quantization
    cfg = load_config(_config_file(tmp_path))
    graph = nir_graph(seed=1)
    model = build_from_graph(graph, cfg, "g.nir")
    set_quantization(model, None, "float")
    x = _inputs(cfg, 12)
    T = cfg.timesteps
    net = import_from_nir(graph)
    spikes = []
    net.lif1.register_forward_hook(lambda m, i, o: spikes.append(o.clone()))
    with torch.no_grad():
        ours, rec = model(x[None].repeat(T, 1, 1, 1, 1), record=True)
        theirs = []
        for n in range(len(x)):
            snntorch.utils.reset(net)
            theirs.append(torch.stack([net(x[n])[0] for _ in range(T)]))
    s = torch.stack(spikes).reshape(len(x), T, 16, 4, 4).transpose(0, 1)
    assert 0.02 < float(s.mean()) < 0.9                         # the layer is active
    # Same network, float32 rounding in a different order (the channel scale is a batch
    # norm here): spikes agree but for values within rounding of the threshold.
    assert float((s == rec[1]["spikes"]).float().mean()) >= 0.999
    torch.testing.assert_close(torch.stack(theirs, 1), ours, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("sum_pool, per_channel", [(False, False), (True, True)])
def test_nir_graph_float_mapping(tmp_path, sum_pool, per_channel):
    """Per-channel gains and thresholds and sum pooling fold into the channel scale: the
    imported float model's spikes equal a direct float simulation of the NIR graph."""
    from project_config import load_config
    from train.nir_import import build_from_graph, set_quantization
    cfg = load_config(_config_file(tmp_path))
    graph = nir_graph(seed=2, sum_pool=sum_pool, per_channel=per_channel)
    model = build_from_graph(graph, cfg, "g.nir")
    set_quantization(model, None, "float")
    x = _inputs(cfg, 8).double()
    T = cfg.timesteps
    # Reference: the NIR graph's discrete-time semantics at dt, written out in float64.
    F = torch.nn.functional
    n = graph.nodes
    v = [None, None]
    ref_spikes = []
    for t in range(T):
        h = x
        for i in range(2):
            c, lif = n[f"conv{i}"], n[f"lif{i}"]
            cur = F.conv2d(h, torch.tensor(c.weight).double(), torch.tensor(c.bias).double(), padding=1)
            gain = torch.tensor(lif.r * 1e-4 / lif.tau).double()
            u = (0.5 * v[i] if v[i] is not None else 0) + gain * cur
            s = (u > torch.tensor(lif.v_threshold).double()).double()
            v[i] = u * (1 - s)
            if i == 1:
                ref_spikes.append(s)
            pool = n[f"pool{i}"]
            h = F.avg_pool2d(s, 2) * (4 if isinstance(pool, nir.SumPool2d) else 1)
    with torch.no_grad():
        _, rec = model(x.float()[None].repeat(T, 1, 1, 1, 1), record=True)
    ref = torch.stack(ref_spikes).float()
    assert 0.02 < float(ref.mean()) < 0.9
    assert float((rec[1]["spikes"] == ref).float().mean()) >= 0.999


@pytest.mark.sim
def test_nir_built_graph_imports_exports_and_cosimulates(tmp_path):
    from model_export import load_export
    from sim.runner import cosimulate
    from train.data import load_dataset
    cfg = _config_file(tmp_path)
    nir.write(str(tmp_path / "g.nir"), nir_graph(seed=3, per_channel=True))
    r = run_cli("train.nir_import", str(tmp_path / "g.nir"), "--config", str(cfg),
                "--out", str(tmp_path / "run"), "--eval-samples", "50")
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stdout.splitlines() if l.startswith("accuracy")]
    assert len(lines) == 3 and "float" in lines[0] and "ternary" in lines[2]
    r = run_cli("model_export", "--checkpoint", str(tmp_path / "run" / "model.pt"),
                "--out", str(tmp_path / "export"))
    assert r.returncode == 0, r.stderr
    from project_config import load_config
    _, _, x_test, _ = load_dataset(load_config(cfg))
    x = np.repeat(x_test[:2, None].astype(np.int64), 4, axis=1)
    res = cosimulate(str(cfg), tmp_path / "export", x, "icarus", tmp_path / "work",
                     stall_probability=0.3, seed=5)
    assert res["samples"] == 2 and res["mismatches"] == 0, res["details"]
    net = load_export(tmp_path / "export")
    assert net.layers[0].thresholds.shape == (8, 3, 3)


# --- what the core cannot run: one line naming the node, exit code 2 ----------------------

def _edit(graph, **nodes):
    g = nir.NIRGraph(nodes={**graph.nodes, **nodes}, edges=list(graph.edges),
                     metadata=graph.metadata, type_check=False)
    return g


def _unsupported():
    g = nir_graph()
    c0 = g.nodes["conv0"]
    lif0 = g.nodes["lif0"]
    thr = np.array(lif0.v_threshold)
    thr[0, 0, 1] += 0.25
    branch = nir_graph()
    branch.edges.append(("lif0", "output"))
    rec = nir_graph()
    rec.nodes["w_rec"] = nir.Linear(weight=np.eye(8 * 8 * 8, dtype=np.float32))
    rec.edges += [("lif0", "w_rec"), ("w_rec", "lif0")]
    delay = nir_graph()
    delay.nodes["delay"] = nir.Delay(delay=np.ones(8, np.float32))
    delay.edges = [e for e in delay.edges if e != ("lif0", "pool0")] + [("lif0", "delay"),
                                                                       ("delay", "pool0")]
    tau = np.full((8, 8, 8), 1e-3, np.float32)
    return [
        ("branch", branch, r"node 'lif0': branches to \['output', 'pool0'\]"),
        ("recurrence", rec, r"node 'lif0': recurrence \(lif0 -> w_rec -> lif0\)"),
        ("delay", delay, r"node 'delay' \(Delay\): delays are not supported"),
        ("stride", _edit(g, conv0=nir.Conv2d(input_shape=(8, 8), weight=c0.weight, stride=2,
                                             padding=(1, 1), dilation=1, groups=1, bias=c0.bias)),
         r"node 'conv0': stride \[2, 2\] where model.layers\[0\] needs \[1, 1\]"),
        ("per-position threshold", _edit(g, lif0=nir.LIF(tau=lif0.tau, r=lif0.r, v_leak=lif0.v_leak,
                                                          v_threshold=thr, v_reset=lif0.v_reset)),
         r"node 'lif0': v_threshold varies over the positions of channel 0"),
        ("leak", _edit(g, lif0=nir.LIF(tau=tau, r=tau / 1e-4, v_leak=lif0.v_leak,
                                       v_threshold=lif0.v_threshold, v_reset=lif0.v_reset)),
         r"node 'lif0': leak 1 - dt/tau = 0.9 "),
        ("IF", _edit(g, lif0=nir.IF(r=np.ones((8, 8, 8), np.float32),
                                    v_threshold=np.ones((8, 8, 8), np.float32))),
         r"node 'lif0' \(IF\): an IF neuron has no leak"),
    ]


@pytest.mark.parametrize("case", range(7), ids=["branch", "recurrence", "delay", "stride",
                                                "per-position threshold", "leak", "IF"])
def test_unsupported_graphs_are_one_error_naming_the_node(tmp_path, case):
    from project_config import UserError, load_config
    from train.nir_import import build_from_graph
    name, graph, message = _unsupported()[case]
    cfg = load_config(_config_file(tmp_path))
    with pytest.raises(UserError, match=message):
        build_from_graph(graph, cfg, "g.nir")


def test_unsupported_graph_cli_exit_2(tmp_path):
    cfg = _config_file(tmp_path)
    g = nir_graph()
    g.edges.append(("lif0", "output"))
    nir.write(str(tmp_path / "b.nir"), g)
    out = tmp_path / "run"
    r = run_cli("train.nir_import", str(tmp_path / "b.nir"), "--config", str(cfg), "--out", str(out))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "b.nir: node 'lif0': branches" in r.stderr and not (out / "model.pt").exists()
    (tmp_path / "bad.nir").write_bytes(b"not hdf5")
    r = run_cli("train.nir_import", str(tmp_path / "bad.nir"), "--config", str(cfg), "--out", str(out))
    assert r.returncode == 2 and "bad.nir: not a readable NIR file" in r.stderr


def test_bn_to_data_statistics_keeps_the_function(tmp_path):
    from project_config import load_config
    from train.nir_import import bn_to_data_statistics, build_from_graph
    cfg = load_config(_config_file(tmp_path))
    model = build_from_graph(nir_graph(seed=4, per_channel=True), cfg, "g.nir")
    x = _inputs(cfg, 64)
    xt = x[None].repeat(cfg.timesteps, 1, 1, 1, 1)
    with torch.no_grad():
        before = model(xt)
        bn_to_data_statistics(model, x.to(torch.uint8).numpy(), cfg.timesteps)
        after = model(xt)
    bn = model.blocks[1].bn
    assert float(bn.running_var.min()) != 1.0 or float(bn.running_mean.abs().max()) > 0
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_import_with_qat_epochs(trained, tmp_path, capsys):
    import json
    from train.nir_import import main as import_main
    from train.trainer import load_checkpoint
    out = tmp_path / "ft"
    assert import_main([str(trained / "model.nir"), "--config", str(_config_file(tmp_path)),
                        "--out", str(out), "--epochs", "1", "--eval-samples", "100"]) == 0
    assert "accuracy after 1 QAT epochs" in capsys.readouterr().out
    report = json.loads((out / "nir_import.json").read_text())
    assert report["finetuned"]["epochs"] == 1 and len(report["steps"]) == 3
    model, cfg = load_checkpoint(out / "model.pt")
    assert cfg.quant["membrane"] == "ternary"


def test_full_precision_model_exports_float_parameters(tmp_path):
    """A full-precision model (no integer form) goes out with its float weights and no
    integer metadata; the import's float step reproduces its accuracy."""
    from project_config import config_from_dict
    from train.model import build_model
    from train.nir_import import build_from_graph, save_checkpoint, set_quantization
    from train.trainer import evaluate
    raw = {**RAW, "quant": {**RAW["quant"], "membrane": "float", "weight_bits": None}}
    path = tmp_path / "fp.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = config_from_dict(raw, where=str(path))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    save_checkpoint(model, cfg, path.read_text(), tmp_path / "fp.pt", {})
    r = run_cli("model_export.nir", "--checkpoint", str(tmp_path / "fp.pt"), "--out", str(tmp_path / "fp.nir"))
    assert r.returncode == 0, r.stderr
    g = nir.read(str(tmp_path / "fp.nir"))
    assert "integer_thresholds" not in g.nodes["lif0"].metadata["spquant"]
    np.testing.assert_array_equal(g.nodes["fc"].weight, model.classifier.weight.detach().numpy())
    from project_config import load_config
    qcfg = load_config(_config_file(tmp_path))
    imported = build_from_graph(g, qcfg, "fp.nir", use_metadata=False)
    set_quantization(imported, None, "float")
    from train.data import load_dataset
    _, _, x, y = load_dataset(qcfg)
    assert evaluate(imported, x[:200], y[:200], 4) == evaluate(model, x[:200], y[:200], 4)
