"""The paper's pruning workflow: fine-tuning from a checkpoint (train.init_from), the
operations budget (pruning.target_kept, ramped), the frozen recovery phase
(train.recovery_epochs), layer 0 without spatial pruning by default, and the thresholds'
own learning rate (train.vth_lr). Each test fails if its feature is removed."""
from pathlib import Path

import pytest
import torch
import yaml

from project_config import UserError, config_from_dict, load_config
from project_config.schema import load_raw_config
from train.finetune import budget_target, make_optimizer, pruning_penalty
from train.model import SpikingConvNet, build_model
from train.pruning import ChannelGate
from train.trainer import load_checkpoint, train

KW = dict(max_train=128, max_test=32, progress=False, threads=1, log=None)


def _raw(**sections):
    _, raw = load_raw_config("slice_digits.yaml")
    raw = yaml.safe_load(yaml.safe_dump(raw))
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return raw


def _cfg(raw):
    return config_from_dict(raw), yaml.safe_dump(raw)


@pytest.fixture(scope="module")
def quant_ckpt(tmp_path_factory):
    """A Quant-SNN run (no pruning): the checkpoint the SpQuant runs start from."""
    out = tmp_path_factory.mktemp("quant")
    cfg, text = _cfg(_raw(pruning={"spatial_ratio": 0.0, "channel_gate_threshold": 0.0,
                                   "gate_penalty": 0.0}))
    train(cfg, text, epochs=1, out_dir=out, **KW)
    return out / "model.pt"


def _conv_weights(model):
    return {k: v for k, v in model.state_dict().items() if ".conv." in k or ".bn." in k
            or k.startswith("classifier.")}


def test_init_from_starts_from_the_checkpoint(quant_ckpt, tmp_path):
    src, _ = load_checkpoint(quant_ckpt)
    raw = _raw(train={"init_from": str(quant_ckpt), "lr": 1e-9})
    cfg, text = _cfg(raw)
    model, metrics = train(cfg, text, epochs=1, out_dir=tmp_path, **KW)
    new = metrics["init_from"]["new"]
    assert new and all(".gate." in k or ".spatial." in k for k in new)
    ref = _conv_weights(src)
    got = _conv_weights(model)
    for k in ("blocks.0.conv.weight", "blocks.1.conv.weight", "classifier.weight"):
        assert torch.allclose(got[k], ref[k], atol=1e-5), k   # lr 1e-9: unchanged
    # Without init_from the same run starts from fresh weights (they differ).
    cfg0, text0 = _cfg(_raw(train={"lr": 1e-9}))
    model0, _ = train(cfg0, text0, epochs=1, out_dir=tmp_path / "scratch", **KW)
    assert not torch.allclose(model0.state_dict()["blocks.1.conv.weight"],
                              ref["blocks.1.conv.weight"], atol=1e-3)


def test_init_from_errors(tmp_path, quant_ckpt):
    cfg, text = _cfg(_raw(train={"init_from": str(tmp_path / "none.pt")}))
    with pytest.raises(UserError, match="checkpoint not found"):
        train(cfg, text, epochs=1, out_dir=tmp_path / "a", **KW)
    raw = _raw(train={"init_from": str(quant_ckpt)})
    raw["model"]["layers"][1]["channels"] = 12
    cfg, text = _cfg(raw)
    with pytest.raises(UserError, match="init_from"):
        train(cfg, text, epochs=1, out_dir=tmp_path / "b", **KW)


def test_budget_target_ramps_then_holds():
    p = {"target_kept": 0.25, "budget_ramp_epochs": 2}
    assert budget_target(p, 0.0) == 1.0
    assert budget_target(p, 1.0) == pytest.approx(0.625)
    assert budget_target(p, 2.0) == 0.25 and budget_target(p, 5.0) == 0.25
    assert budget_target({"target_kept": 0.4, "budget_ramp_epochs": 0}, 0.0) == 0.4


def _pruned_forward(raw):
    cfg = config_from_dict(raw)
    torch.manual_seed(0)
    model = SpikingConvNet(cfg).train()
    x = torch.randint(0, 17, (cfg.timesteps, 16, 1, 8, 8)).float()
    _, records = model(x, record=True)
    return cfg, model, records


def test_ops_kept_fraction_is_the_new_count_of_the_records():
    cfg, model, records = _pruned_forward(_raw())
    frac = model.ops_kept_fraction()
    specs = cfg.spiking_layers
    num = den = 0.0
    prev = None
    for rec, spec, block in zip(records, specs, model.blocks):
        pos = rec["spatial_keep"].float().mean(dim=(-2, -1))
        ch = rec["channel_keep"].float().mean(-1)
        f = pos * ch * (prev if prev is not None else 1.0)
        num += block.dense_ops * float(f.mean())
        den += block.dense_ops
        prev = ch
    fc = model.classifier.weight.numel()
    num += fc * float(prev.mean())
    den += fc
    assert float(frac.detach()) == pytest.approx(num / den, rel=1e-6)
    assert float(frac) < 1.0


def test_budget_penalty_acts_only_above_target_and_trains_the_gates():
    raw = _raw(pruning={"target_kept": 0.05, "gate_penalty": 1.0})
    cfg, model, _ = _pruned_forward(raw)
    pen = pruning_penalty(model, cfg.pruning, 10.0, recovery=False)
    assert float(pen) > 0
    pen.backward()
    gate = model.blocks[1].gate
    assert gate.bias.grad is not None and float(gate.bias.grad.abs().sum()) > 0
    # Met budget: no penalty; recovery phase: no penalty.
    cfg2 = config_from_dict(_raw(pruning={"target_kept": 1.0, "gate_penalty": 1.0}))
    assert float(pruning_penalty(model, cfg2.pruning, 10.0, recovery=False)) == 0.0
    assert pruning_penalty(model, cfg.pruning, 10.0, recovery=True) is None


def test_budget_training_prunes_to_target(tmp_path):
    """A strong budget closes gates far more than a met one (same seed and data)."""
    res = {}
    for target in (1.0, 0.2):
        cfg, text = _cfg(_raw(pruning={"target_kept": target, "gate_penalty": 5.0},
                              train={"lr": 0.03, "batch_size": 32}))
        model, _ = train(cfg, text, epochs=2, out_dir=tmp_path / str(target),
                         **dict(KW, max_train=512))
        x = torch.randint(0, 17, (cfg.timesteps, 64, 1, 8, 8)).float()
        with torch.no_grad():
            model.eval()
            _, rec = model(x, record=True)
        res[target] = float(rec[1]["channel_keep"].mean())
    assert res[0.2] < res[1.0] - 0.1, res


def _gate_state(model):
    return {k: v.clone() for k, v in model.state_dict().items()
            if ".gate." in k or ".spatial." in k}


def test_recovery_phase_freezes_the_masks(tmp_path):
    raw = _raw(pruning={"gate_penalty": 5.0}, train={"recovery_epochs": 1, "lr": 0.01})
    cfg, text = _cfg(raw)
    torch.manual_seed(cfg.train["seed"])
    fresh = build_model(cfg)
    model, metrics = train(cfg, text, epochs=1, out_dir=tmp_path / "rec", **KW)
    assert metrics["epochs"][0]["recovery"] is True
    before, after = _gate_state(fresh), _gate_state(model)
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert not torch.equal(fresh.state_dict()["blocks.1.conv.weight"],
                           model.state_dict()["blocks.1.conv.weight"])
    # Without the recovery phase the same epoch moves the gates and spatial thresholds.
    cfg2, text2 = _cfg(_raw(pruning={"gate_penalty": 5.0}, train={"lr": 0.01}))
    model2, _ = train(cfg2, text2, epochs=1, out_dir=tmp_path / "norec", **KW)
    moved = _gate_state(model2)
    assert any(not torch.equal(before[k], moved[k]) for k in before)


def test_layer0_has_no_spatial_pruning_unless_asked():
    off = config_from_dict(_raw(pruning={"spatial_first_layer": False}))
    m = SpikingConvNet(off)
    assert m.blocks[0].spatial is None and m.blocks[1].spatial is not None
    on = config_from_dict(_raw(pruning={"spatial_first_layer": True}))
    assert SpikingConvNet(on).blocks[0].spatial is not None
    _, raw = load_raw_config("event_digits.yaml")
    raw = yaml.safe_load(yaml.safe_dump(raw))
    raw["pruning"] = {"spatial_ratio": 0.35}
    assert SpikingConvNet(config_from_dict(raw)).blocks[0].spatial is None   # the default


def test_vth_lr_is_its_own_group():
    cfg = config_from_dict(_raw(train={"vth_lr": 0.05}))
    model = build_model(cfg)
    opt = make_optimizer(model, cfg.train)
    assert [g["lr"] for g in opt.param_groups] == [cfg.train["lr"], 0.05]
    vth = {id(p) for n, p in model.named_parameters() if n.endswith("vth")}
    assert {id(p) for p in opt.param_groups[1]["params"]} == vth and vth
    one = make_optimizer(model, config_from_dict(_raw()).train)
    assert len(one.param_groups) == 1
    cfg3 = config_from_dict(_raw(train={"vth_lr": 0.05, "mask_lr": 0.02}))
    opt3 = make_optimizer(model, cfg3.train)
    assert [g["lr"] for g in opt3.param_groups] == [cfg.train["lr"], 0.05, 0.02]
    gates = {id(p) for p in model.blocks[1].gate.parameters()}
    assert {id(p) for p in opt3.param_groups[2]["params"]} == gates
    assert sum(len(g["params"]) for g in opt3.param_groups) == len(list(model.parameters()))


def test_gates_learn_from_their_own_parameters_and_freeze_in_recovery():
    """The gate's prior (the previous layer's membranes) is an input, not a gradient path:
    the operations budget trains the gate's weights and bias, not the network (with that
    path, event digits' kept operations rose from 0.29 to 0.39 once the penalty stopped).
    In the recovery phase the gate is a hard mask with no gradient at all."""
    from train.finetune import set_recovery
    cfg = config_from_dict(_raw())
    torch.manual_seed(0)
    gate = SpikingConvNet(cfg).blocks[1].gate
    prior = torch.randint(-1, 2, (cfg.timesteps, 4, gate.in_channels, 4, 4)).float()
    prior.requires_grad_(True)
    gate(prior).sum().backward()
    assert prior.grad is None or float(prior.grad.abs().sum()) == 0.0
    assert float(gate.bias.grad.abs().sum()) > 0 and float(gate.weight.grad.abs().sum()) > 0
    hard_train = gate(prior).detach()
    model = torch.nn.Module()
    model.gate = gate
    set_recovery(model, True)
    out = gate(prior)
    assert torch.equal(out, hard_train)               # the same decisions, exactly
    assert not out.requires_grad and gate.last_probability is None
    set_recovery(model, False)
    assert gate(prior).requires_grad
