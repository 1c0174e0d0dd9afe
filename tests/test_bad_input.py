"""Bad input to the CLIs and loaders: one clear line, non-zero exit, no partial output."""
import copy
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import golden.__main__ as golden_cli
import hw.perf as hw_perf
import hw.perf_explore as perf_explore_cli
import hw.build as hw_build
import hw.memory_report as hw_memory
import hw.synth as hw_synth
import model_export.__main__ as export_cli
import reports.efficiency as report_cli
import sim.flow as flow_cli
import sim.regress as regress_cli
import train.__main__ as train_cli
from benchmarks import table5 as table5_cli, vgg9_ladder as ladder_cli, weight_pruning_study as study_cli
from cli_harness import assert_refused, run_main, snapshot
from hw.build import generate_verilog
from hw.params import CoreParams
from model_export import save_export
from model_export.random_net import random_export
from model_export.from_torch import export_model
from project_config import ConfigError, UserError, config_from_dict, load_config
from train.trainer import load_checkpoint, train
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


# --- issue 17: one test per failure class (in-process through cli_main unless noted) ------

SLICE = yaml.safe_load((ROOT / "configs" / "slice_digits.yaml").read_text())


def _config(tmp_path, edit, name="bad.yaml"):
    raw = copy.deepcopy(SLICE)
    edit(raw)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("section,key,value", [
    ("model.input", "scale", float("nan")), ("model.input", "scale", float("inf")),
    ("quant", "vth_init", float("nan")), ("train", "lr", float("nan")),
    ("pruning", "spatial_ratio", float("nan")), ("sim", "stall_probability", float("nan")),
    ("train", "tet_target", float("-inf")),
])
def test_nan_and_inf_in_the_config_are_refused(tmp_path, section, key, value):
    def edit(raw):
        d = raw
        for part in section.split("."):
            d = d[part]
        d[key] = value
    cfg = _config(tmp_path, edit)
    out = tmp_path / "out"
    assert_refused(run_main(hw_build.main, ["--config", cfg, "--out", out, "--no-lint"]),
                   f"{section}.{key}", "finite")
    assert not out.exists()
    assert_refused(run_main(hw_memory.main, ["--config", cfg, "--json", out / "m.json"]), key)
    assert_refused(run_main(train_cli.main, ["--config", cfg, "--out", out]), key)
    assert not out.exists()


def test_duplicate_yaml_key_is_refused(tmp_path):
    text = (ROOT / "configs" / "slice_digits.yaml").read_text()
    bad = tmp_path / "dup.yaml"
    bad.write_text(text.replace("  lanes: 8\n", "  lanes: 8\n  lanes: 16\n"))
    assert_refused(run_main(hw_memory.main, ["--config", bad]), "dup.yaml", "duplicate key 'lanes'")


def test_model_name_cannot_escape_the_build_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _config(tmp_path, lambda raw: raw["model"].update(name="../../x"))
    before = snapshot(tmp_path.parent)
    assert_refused(run_main(hw_build.main, ["--config", cfg, "--no-lint"]), "model.name", "../../x")
    assert snapshot(tmp_path.parent) == before


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A 1-epoch slice checkpoint (about 3 s)."""
    out = tmp_path_factory.mktemp("ckpt")
    train(load_config("slice_digits.yaml"), (ROOT / "configs" / "slice_digits.yaml").read_text(),
          epochs=1, out_dir=out, max_train=64, max_test=32, progress=False, log=lambda *a: None)
    return out / "model.pt"


@pytest.mark.parametrize("key", ["blocks.0.neuron.vth", "blocks.0.bn.weight", "blocks.1.bn.running_mean",
                                 "blocks.0.bn.running_var", "classifier.bias", "blocks.0.conv.weight"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_checkpoint_with_nan_or_inf_is_refused(tmp_path, checkpoint, key, value):
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["state_dict"][key].view(-1)[0] = value
    bad = tmp_path / "model.pt"
    torch.save(ckpt, bad)
    assert_refused(run_main(export_cli.main, ["--checkpoint", bad]), "model.pt", key, "finite")
    assert not (tmp_path / "export").exists()
    # The loader itself refuses it (sim.agreement, train.init_from and --resume use it too).
    with pytest.raises(UserError, match=f"model.pt: state_dict.{key}: .* is not a finite number"):
        load_checkpoint(bad)


def test_export_of_a_non_finite_model_is_refused(checkpoint):
    model, cfg = load_checkpoint(checkpoint)
    with torch.no_grad():
        model.blocks[0].conv.weight.view(-1)[3] = float("nan")
    with pytest.raises(UserError, match="blocks.0.conv.weight: nan"):
        export_model(model, cfg)


def test_raw_pickle_checkpoint_prints_one_line_and_no_warning(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(pickle.dumps({"format": "x"}))
    _one_line_exit_2(run_cli("model_export", "--checkpoint", str(bad)), "model.pt")   # a subprocess


@pytest.mark.parametrize("where", ["file", "under_file", "read_only"])
def test_unwritable_output_locations_are_refused_before_the_work(tmp_path, checkpoint, where):
    (tmp_path / "f").write_text("x")
    out = {"file": tmp_path / "f", "under_file": tmp_path / "f" / "sub",
           "read_only": Path("/proc/spquant-no-such-dir/out")}[where]   # /proc: read-only even for root
    before = snapshot(tmp_path)
    for main, argv in [
        (hw_build.main, ["--config", "slice_digits.yaml", "--out", out, "--no-lint"]),
        (train_cli.main, ["--config", "slice_digits.yaml", "--out", out]),      # before training
        (export_cli.main, ["--checkpoint", checkpoint, "--out", out]),
        (regress_cli.main, ["--cases", "1", "--out", out]),
        (hw_memory.main, ["--config", "slice_digits.yaml", "--json", out / "m.json"]),
        (hw_synth.main, ["--config", "slice_digits.yaml", "--out", out]),
    ]:
        assert_refused(run_main(main, argv), str(out) if where != "read_only" else "/proc")
    assert snapshot(tmp_path) == before
    if where == "file":
        assert_refused(run_main(hw_memory.main, ["--config", "slice_digits.yaml", "--json", tmp_path]),
                       "--json", "is a folder")


@pytest.fixture()
def export_dir(tmp_path):
    save_export(random_export(load_config("slice_digits.yaml"), 1), tmp_path / "e")
    return tmp_path / "e"


def _edit_manifest(export_dir, edit):
    path = export_dir / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))


def _set(path, value):
    def edit(m):
        d = m
        for part in path[:-1]:
            d = d[part]
        d[path[-1]] = value
    return edit


def _unchain(m):
    # Layer 1 one row taller than layer 0's pooled output, with its output to match: every
    # field is well typed and K and W agree, only the chain breaks.
    m["layers"][1]["in_height"] += 1
    m["layers"][1]["out_height"] += 1


@pytest.mark.parametrize("edit,needle", [
    (_set(["timesteps"], -3), "timesteps"), (_set(["timesteps"], 10 ** 7), "timesteps"),
    (_set(["timesteps"], "4"), "timesteps"), (_set(["timesteps"], True), "timesteps"),
    (_set(["timesteps"], 4.5), "timesteps"), (_set(["timesteps"], 0), "timesteps"),
    (_set(["input", "bits"], -1), "input.bits"), (_set(["input", "bits"], 100), "input.bits"),
    (_set(["layers", 0, "acc_width"], 0), "layers[0].acc_width"),
    (_set(["layers", 0, "acc_width"], "22"), "layers[0].acc_width"),
    (_set(["layers", 0, "x_max"], -5), "layers[0].x_max"),
    (_unchain, "layers[1].in_height"),
])
def test_ill_typed_or_absurd_manifest_fields_are_refused(tmp_path, export_dir, edit, needle):
    _edit_manifest(export_dir, edit)
    assert_refused(run_main(golden_cli.main, ["--export", export_dir]), "manifest.json", needle)
    out = tmp_path / "hw"
    assert_refused(run_main(hw_build.main, ["--config", "slice_digits.yaml", "--export", export_dir,
                                            "--out", out, "--no-lint"]), needle)
    assert not out.exists()


def test_the_generator_builds_384_lanes():
    # Python's sum() of 384 lane terms nested deeper than the recursion limit (RecursionError).
    raw = {"model": {"name": "t", "input": {"channels": 1, "height": 4, "width": 4, "bits": 1},
                     "timesteps": 1, "layers": [{"channels": 2, "kernel": 1, "padding": 0}],
                     "classes": 2}, "hardware": {"lanes": 384}}
    assert "module snn_core" in generate_verilog(CoreParams(config_from_dict(raw)))


@pytest.mark.parametrize("array,needle", [
    (np.full((1, 1, 8, 8), 0.5), "0.5 is not an integer"), (np.full((1, 1, 8, 8), np.nan), "nan is not an integer"),
    (np.ones((1, 1, 8, 8), complex), "complex128 is not an integer type"),
    (np.full((1, 1, 8, 8), "1"), "<U1 is not an integer type"), (np.zeros((0, 1, 8, 8), np.int64), "no samples"),
], ids=["float", "nan", "complex", "unicode", "empty"])
def test_inputs_that_are_not_integers_are_refused(tmp_path, export_dir, array, needle):
    np.save(tmp_path / "x.npy", array)
    assert_refused(run_main(golden_cli.main, ["--export", export_dir, "--inputs", tmp_path / "x.npy"]),
                   "x.npy: inputs: ", needle)


def _no_work(*args, **kwargs):
    raise AssertionError("the work started: the option was not checked first")


@pytest.fixture()
def no_work(monkeypatch):
    """The first step of each CLI's work fails at once: a bad value let through fails the
    test instead of running a flow, a regression (``--stall 1`` never ends), a training or
    a benchmark."""
    for module, name in [(flow_cli, "run"), (table5_cli, "run_all"), (study_cli, "run_all"),
                         (ladder_cli, "run_all"), (train_cli, "train"), (report_cli, "measure"),
                         (regress_cli, "check_output_dir")]:
        monkeypatch.setattr(module, name, _no_work)


@pytest.mark.parametrize("main,argv,needle", [
    (golden_cli.main, ["--random", "0"], "--random"), (golden_cli.main, ["--random", "-1"], "--random"),
    (golden_cli.main, ["--seed", "-1"], "--seed"), (golden_cli.main, ["--seed", str(2 ** 32)], "--seed"),
    (regress_cli.main, ["--stall", "1"], "--stall"), (regress_cli.main, ["--stall", "0.99"], "--stall"),
    (regress_cli.main, ["--stall", "nan"], "--stall"), (regress_cli.main, ["--workers", "65"], "--workers"),
    (regress_cli.main, ["--workers", "0"], "--workers"), (train_cli.main, ["--epochs", "0"], "--epochs"),
    (train_cli.main, ["--seed", "-1"], "--seed"), (flow_cli.main, ["--samples", "0"], "--samples"),
    (report_cli.main, ["--samples", "0"], "--samples"),
])
def test_cli_numbers_are_range_checked(tmp_path, export_dir, no_work, main, argv, needle):
    base = {golden_cli.main: ["--export", export_dir], regress_cli.main: ["--out", tmp_path / "r"],
            train_cli.main: ["--config", "slice_digits.yaml", "--out", tmp_path / "r"],
            flow_cli.main: ["--config", "slice_digits.yaml"],
            report_cli.main: ["--docs", tmp_path / "r"]}[main]
    assert_refused(run_main(main, base + argv), needle)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("main,argv,needle", [
    (flow_cli.main, ["--samples", "100001"], "--samples"),
    (flow_cli.main, ["--seed", str(2 ** 32)], "--seed"),
    (table5_cli.main, ["--gate-penalty", "nan"], "--gate-penalty: nan is not a finite number"),
    (table5_cli.main, ["--gate-penalty", "inf"], "--gate-penalty: inf is not a finite number"),
    (table5_cli.main, ["--gate-penalty", "-1"], "--gate-penalty"),
    (table5_cli.main, ["--seeds", "101"], "--seeds"),
    (table5_cli.main, ["--device", "tpu"], "--device"),
    (table5_cli.main, ["--widths", "0,32,64"], "--widths"),
    (table5_cli.main, ["--widths", "16,32"], "--widths: 2 widths given"),
    (study_cli.main, ["--finetune-lr", "nan"], "--finetune-lr: nan is not a finite number"),
    (study_cli.main, ["--finetune-lr=-inf"], "--finetune-lr: -inf is not a finite number"),
    (study_cli.main, ["--sparsities", "0.5,nan"], "--sparsities"),
    (study_cli.main, ["--seed", str(2 ** 32)], "--seed"),
    (ladder_cli.main, ["--quant-epochs", "100001"], "--quant-epochs"),
    (train_cli.main, ["--config", "slice_digits.yaml", "--device", "cuda:x"], "--device"),
])
def test_every_cli_number_is_finite_and_bounded_before_the_work(tmp_path, no_work, main, argv,
                                                                needle):
    base = ["--config", "slice_digits.yaml"] if main is flow_cli.main else []
    out = [] if main is flow_cli.main else ["--out", tmp_path / "out"]
    assert_refused(run_main(main, base + argv + out), needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("main", [table5_cli.main, study_cli.main, ladder_cli.main],
                         ids=["table5", "weight_pruning_study", "vgg9_ladder"])
@pytest.mark.parametrize("section,key,value", [("quant", "membrane", 3), ("quant", "weight_bits", "4"),
                                               ("train", "epochs", True)])
def test_a_benchmark_refuses_a_bad_base_config_its_rungs_would_mask(tmp_path, no_work, main,
                                                                    section, key, value):
    # Every rung sets its own membrane and weight bits (and epochs): the base config's bad
    # value would never reach the schema, and the benchmark would start training.
    raw = yaml.safe_load((ROOT / "configs" / "event_digits.yaml").read_text())
    raw[section][key] = value
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(raw))
    assert_refused(run_main(main, ["--config", tmp_path / "base.yaml", "--out", tmp_path / "out"]),
                   "base.yaml", f"{section}.{key}")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("main", [hw_perf.main, perf_explore_cli.main], ids=["perf", "perf_explore"])
@pytest.mark.parametrize("where", ["folder", "under_file", "read_only"])
def test_perf_checks_its_json_before_the_work(tmp_path, monkeypatch, main, where):
    monkeypatch.setattr(hw_perf, "_case", _no_work)
    monkeypatch.setattr(perf_explore_cli, "_case", _no_work)
    (tmp_path / "f").write_text("x")
    out = {"folder": tmp_path, "under_file": tmp_path / "f" / "p.json",
           "read_only": Path("/proc/spquant-no-such-dir/p.json")}[where]
    before = snapshot(tmp_path)
    assert_refused(run_main(main, ["--config", "slice_digits.yaml", "--json", out]), "--json")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("section,key,value", [
    ("data", "seed", 2 ** 32), ("train", "seed", 2 ** 40), ("sim", "seed", 2 ** 63),
    ("train", "tet_target", 1e300),
])
def test_schema_bounds_what_used_to_crash_training(tmp_path, section, key, value):
    # Each was schema-valid and then a traceback in train (sklearn's and torch's seeding) or
    # an overflowing loss.
    cfg = _config(tmp_path, lambda raw: raw[section].update({key: value}))
    assert_refused(run_main(hw_memory.main, ["--config", cfg]), f"{section}.{key}", "maximum")
    out = tmp_path / "run"
    assert_refused(run_main(train_cli.main, ["--config", cfg, "--out", out]), f"{section}.{key}")
    assert not out.exists()


def test_report_checks_a_study_before_storing_it(tmp_path):
    docs = tmp_path / "docs"
    (docs / "results").mkdir(parents=True)
    (docs / "figures").mkdir()
    bad = tmp_path / "t5.json"
    bad.write_text(json.dumps({"meta": {}, "summary": "not rows"}))
    before = snapshot(docs)
    assert_refused(run_main(report_cli.main, ["--render-only", "--docs", docs, "--table5", bad]),
                   "--table5", "t5.json")
    assert snapshot(docs) == before


def test_report_refuses_a_corrupt_stored_result_before_rewriting_plots(tmp_path):
    docs = tmp_path / "docs"
    (docs / "figures").mkdir(parents=True)
    (docs / "results").mkdir()
    shutil.copy(ROOT / "docs" / "results" / "table5.json", docs / "results")   # renders a plot
    (docs / "results" / "weight_pruning_study.json").write_text(json.dumps({"meta": {}}))
    (docs / "figures" / "figure4_membrane_precision.png").write_bytes(b"old plot")
    before = snapshot(docs)
    assert_refused(run_main(report_cli.main, ["--render-only", "--docs", docs]),
                   "weight_pruning_study.json")
    assert snapshot(docs) == before
