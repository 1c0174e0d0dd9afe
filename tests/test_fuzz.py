"""Property-based bad-input fuzzing of every CLI (Hypothesis), in-process through cli_main,
plus a few true subprocess cases per CLI.

Each case mutates a valid config, export manifest or npz, input array, checkpoint, argument
list or output location, runs a CLI's ``main`` and checks the promise: the CLI either
accepts the input (exit 0) or refuses it with exit 2, exactly one ``error:`` line on
stderr, no traceback, and nothing new or changed in its output location. A mutation that
is invalid by construction (NaN, inf, a wrong type, an unknown or duplicate key, a bad
number) must be refused. ``make test`` runs the ``ci`` profile (fixed seed, about 200
cases); ``make fuzz`` sets ``SPQUANT_FUZZ=long`` (40 times as many: 2,724 cases) and
``SPQUANT_FUZZ_SUMMARY`` to a file that receives the case count per CLI.
"""
import copy
import json
import math
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

import golden.__main__ as golden_cli
import hw.build as hw_build
import hw.memory_report as hw_memory
import hw.perf as hw_perf
import hw.synth as hw_synth
import model_export.__main__ as export_cli
import reports.efficiency as report_cli
import sim.agreement as agreement_cli
import sim.flow as flow_cli
import sim.regress as regress_cli
import train.__main__ as train_cli
from benchmarks import table5 as table5_cli, vgg9_ladder as ladder_cli, weight_pruning_study as study_cli
import hw.perf_explore as perf_explore_cli
from cli_harness import Outcome, run_main, snapshot
from model_export import save_export
from model_export.random_net import random_export, random_inputs
from project_config import load_config
from train.trainer import train
from conftest import ROOT, run_cli

LONG = os.environ.get("SPQUANT_FUZZ") == "long"
SCALE = 40 if LONG else 1
COMMON = dict(derandomize=True, deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
COUNTS = Counter()
SLICE_TEXT = (ROOT / "configs" / "slice_digits.yaml").read_text()
SLICE = yaml.safe_load(SLICE_TEXT)


def examples(n):
    # The long run reports a failing case unshrunk: shrinking slow CLI cases took minutes.
    phases = [p for p in Phase if p is not Phase.shrink] if LONG else list(Phase)
    return settings(max_examples=n * SCALE, phases=phases, **COMMON)


@pytest.fixture(scope="module", autouse=True)
def _summary():
    t0 = time.time()
    yield
    text = (f"fuzz: {sum(COUNTS.values())} cases, {time.time() - t0:.0f} s: "
            + ", ".join(f"{k} {v}" for k, v in sorted(COUNTS.items())))
    print("\n" + text)
    if os.environ.get("SPQUANT_FUZZ_SUMMARY"):
        Path(os.environ["SPQUANT_FUZZ_SUMMARY"]).write_text(text + "\n")


def check(name, main, argv, out_roots, must_refuse) -> Outcome:
    """Run one case and assert the promise (module docstring)."""
    COUNTS[name] += 1
    before = snapshot(*out_roots)
    r = run_main(main, argv)            # an exception here is a traceback: a broken promise
    assert r.returncode in (0, 2), (argv, r)
    if must_refuse:
        assert r.returncode == 2, ("accepted a bad input", argv, r)
    if r.returncode == 2:
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, r)
        assert snapshot(*out_roots) == before, ("output changed on a refusal", argv)
    assert "Traceback" not in r.stderr, (argv, r)
    return r


# --- values ------------------------------------------------------------------------------

BAD_NUMBERS = [math.nan, math.inf, -math.inf]
WRONG_TYPES = [True, False, "4", "x", [], {}, None, [1, 2]]
ODD_VALUES = [0, -1, 1, 2, 3, 4.5, -0.0, 1e308, 10 ** 12, -10 ** 9, 2 ** 63, "", "../x",
              "a\nb", "\x00", 0.5, 1.0]


def _wrong_type(value):
    """Values of another type than ``value``'s (None excepted: some keys take it)."""
    if isinstance(value, bool):
        return [1, "true", 1.5, []]
    if isinstance(value, int):
        return ["4", 4.5, True, [], {}]
    if isinstance(value, float):
        return ["1.0", True, [], {}]
    if isinstance(value, str):
        return [3, True, [], {}, 1.5]
    return ["x", 3, True]


def _leaves(d, prefix=()):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _leaves(v, prefix + (k,))
    elif isinstance(d, list) and d and isinstance(d[0], dict):
        for i, v in enumerate(d):
            yield from _leaves(v, prefix + (i,))
    else:
        yield prefix, d


def _get_parent(d, path):
    for p in path[:-1]:
        d = d[p]
    return d


CONFIG_LEAVES = list(_leaves(SLICE))


@st.composite
def config_mutation(draw):
    """(YAML text, invalid by construction)."""
    raw = copy.deepcopy(SLICE)
    kind = draw(st.sampled_from(["nan", "type", "odd", "delete", "extra", "dup", "truncate",
                                 "bytes"]))
    path, value = draw(st.sampled_from(CONFIG_LEAVES))
    if kind in ("nan", "type", "odd"):
        if kind == "nan":
            if not isinstance(value, float):
                kind, new = "type", draw(st.sampled_from(_wrong_type(value)))
            else:
                new = draw(st.sampled_from(BAD_NUMBERS))
        elif kind == "type":
            new = draw(st.sampled_from(_wrong_type(value)))
        else:
            new = draw(st.sampled_from(ODD_VALUES) | st.integers() | st.floats() | st.text(max_size=4))
        _get_parent(raw, path)[path[-1]] = new
        text = yaml.safe_dump(raw)
        return text, kind == "nan" or kind == "type"
    if kind == "delete":
        del _get_parent(raw, path)[path[-1]]
        return yaml.safe_dump(raw), False
    if kind == "extra":
        _get_parent(raw, path)[draw(st.sampled_from(["extra", "lanes2", "Name", "1"]))] = 1
        return yaml.safe_dump(raw), True
    if kind == "dup":
        line = draw(st.sampled_from([l for l in SLICE_TEXT.splitlines() if l.startswith("  ")
                                     and ":" in l and not l.strip().startswith(("-", "#"))]))
        return SLICE_TEXT.replace(line + "\n", line + "\n" + line + "\n", 1), True
    if kind == "truncate":
        return SLICE_TEXT[:draw(st.integers(0, len(SLICE_TEXT) - 1))], False
    i = draw(st.integers(0, len(SLICE_TEXT) - 1))
    return SLICE_TEXT[:i] + draw(st.sampled_from(["\t", ":", "{", "\x00", "&a *a", "]"])) + SLICE_TEXT[i + 1:], False


# The config CLIs. Those whose work is slow run only inputs that are invalid by construction.
CONFIG_CLIS = {
    "hw.memory_report": (hw_memory.main, lambda c, o: ["--config", c, "--json", o / "m.json"], True),
    "hw.build": (hw_build.main, lambda c, o: ["--config", c, "--out", o / "hw", "--no-lint"], False),
    "hw.synth": (hw_synth.main, lambda c, o: ["--config", c, "--out", o / "s"], False),
    "hw.perf": (hw_perf.main, lambda c, o: ["--config", c, "--json", o / "p.json"], False),
    "hw.perf_explore": (perf_explore_cli.main, lambda c, o: ["--config", c, "--json", o / "p.json"], False),
    "train": (train_cli.main, lambda c, o: ["--config", c, "--out", o / "run", "--epochs", "1"], False),
    "sim.flow": (flow_cli.main, lambda c, o: ["--config", c], False),
    "reports.efficiency": (report_cli.main, lambda c, o: ["--config", c, "--docs", o], False),
    "benchmarks.table5": (table5_cli.main, lambda c, o: ["--config", c, "--out", o / "t5", "--quick"], False),
    "benchmarks.weight_pruning_study": (study_cli.main, lambda c, o: ["--config", c, "--out", o / "w",
                                                                      "--quick"], False),
    "benchmarks.vgg9_ladder": (ladder_cli.main, lambda c, o: ["--config", c, "--out", o / "l"], False),
}


@examples(12)
@given(st.sampled_from(sorted(CONFIG_CLIS)), config_mutation())
def test_fuzz_configs(name, mutation):
    text, invalid = mutation
    main, argv, fast = CONFIG_CLIS[name]
    if not (invalid or fast):
        name, (main, argv, fast) = "hw.memory_report", CONFIG_CLIS["hw.memory_report"]
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        cfg = d / "c.yaml"
        cfg.write_text(text)
        out = d / "out"
        out.mkdir()
        check(name, main, argv(cfg, out), [out], invalid)


# --- exports -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("export") / "e"
    save_export(random_export(load_config("slice_digits.yaml"), 3), d)
    return d


def _manifest_leaves(m):
    out = [((k,), v) for k, v in m.items() if k not in ("layers", "arrays", "input")]
    out += [(("input", k), v) for k, v in m["input"].items()]
    out += [(("layers", i, k), v) for i, l in enumerate(m["layers"]) for k, v in l.items()]
    return out


@st.composite
def export_mutation(draw, manifest):
    """(function(dir) applying the mutation, invalid by construction)."""
    kind = draw(st.sampled_from(["type", "odd", "delete", "extra", "truncate", "npz_flip",
                                 "npz_truncate"]))
    leaves = _manifest_leaves(manifest)
    path, value = draw(st.sampled_from(leaves))
    new = draw(st.sampled_from(_wrong_type(value) + BAD_NUMBERS) if kind == "type" else
               st.sampled_from(ODD_VALUES) | st.integers())
    cut = draw(st.integers(0, 10 ** 6))
    byte = draw(st.integers(0, 255))

    def apply(d: Path):
        mp, npz = d / "manifest.json", d / "export.npz"
        m = copy.deepcopy(manifest)
        if kind in ("type", "odd"):
            _get_parent(m, path)[path[-1]] = new
        elif kind == "delete":
            del _get_parent(m, path)[path[-1]]
        elif kind == "extra":
            m["layers"][0]["extra"] = 1
        if kind == "truncate":
            text = mp.read_text()
            mp.write_text(text[:cut % len(text)])
        elif kind.startswith("npz"):
            data = bytearray(npz.read_bytes())
            if kind == "npz_flip":
                data[cut % len(data)] ^= byte or 1
            else:
                data = data[:cut % len(data)]
            npz.write_bytes(bytes(data))
        else:
            mp.write_text(json.dumps(m, allow_nan=True))
    invalid = kind in ("type", "delete", "truncate", "npz_truncate") and not (
        kind == "delete" and path[-1] in ("max_shift", "acc_width") and False)
    return apply, invalid


def _export_argv(name, d, out, x):
    return {"golden": ["--export", d],
            "hw.memory_report": ["--config", "slice_digits.yaml", "--export", d, "--json", out / "m.json"],
            "hw.build": ["--config", "slice_digits.yaml", "--export", d, "--out", out / "hw", "--no-lint"],
            "hw.perf": ["--config", "slice_digits.yaml", "--export", d, "--inputs", x,
                        "--json", out / "p.json"],
            "hw.perf_explore": ["--config", "slice_digits.yaml", "--export", d, "--inputs", x,
                                "--json", out / "p.json"]}[name]


EXPORT_MAINS = {"golden": golden_cli.main, "hw.memory_report": hw_memory.main,
                "hw.build": hw_build.main, "hw.perf": hw_perf.main,
                "hw.perf_explore": perf_explore_cli.main}


@examples(10)
@given(st.sampled_from(sorted(EXPORT_MAINS)), st.data())
def test_fuzz_exports(export_dir, name, data):
    manifest = json.loads((export_dir / "manifest.json").read_text())
    apply, invalid = data.draw(export_mutation(manifest))
    if name == "hw.build" and not invalid:
        name = "golden"
    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        d = t / "e"
        d.mkdir()
        for f in ("manifest.json", "export.npz"):
            (d / f).write_bytes((export_dir / f).read_bytes())
        apply(d)
        x = t / "x.npy"
        np.save(x, np.zeros((1, 4, 1, 8, 8), np.int64))
        out = t / "out"
        out.mkdir()
        check(name, EXPORT_MAINS[name], _export_argv(name, d, out, x), [out, d], invalid)


# --- inputs ------------------------------------------------------------------------------

@st.composite
def input_array(draw):
    """(array or raw bytes, invalid by construction)."""
    kind = draw(st.sampled_from(["int", "float", "complex", "bool", "unicode", "shape", "raw"]))
    shape = draw(st.sampled_from([(2, 1, 8, 8), (1, 4, 1, 8, 8), (0, 1, 8, 8), (1, 8, 8), (3, 2, 8, 8),
                                  (1, 5, 1, 8, 8), (1, 1, 1, 1, 8, 8), ()]))
    valid_shape = shape in ((2, 1, 8, 8), (1, 4, 1, 8, 8))
    if kind == "raw":
        a = np.zeros((1, 1, 8, 8), np.int64)
        import io  # noqa: PLC0415  (only this strategy builds npy bytes)
        buf = io.BytesIO()
        np.save(buf, a)
        cut = draw(st.integers(0, len(buf.getvalue()) - 1))
        return buf.getvalue()[:cut], True
    if kind == "int":
        dtype = draw(st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint64]))
        hi = int(np.iinfo(dtype).max)
        v = draw(st.integers(int(np.iinfo(dtype).min), hi))
        a = np.full(shape, v, dtype)
        return a, not valid_shape or not 0 <= v < 32
    if kind == "float":
        v = draw(st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.5, 1.0, 31.0, 32.0]))
        return np.full(shape, v), not (valid_shape and math.isfinite(v) and v == int(v) and 0 <= v < 32)
    if kind == "complex":
        return np.ones(shape, complex), True
    if kind == "bool":
        return np.ones(shape, bool), not valid_shape
    if kind == "unicode":
        return np.full(shape, draw(st.text(min_size=1, max_size=3))), True
    return np.zeros(shape, np.int64), not valid_shape


@examples(12)
@given(input_array())
def test_fuzz_inputs(export_dir, case):
    a, invalid = case
    with tempfile.TemporaryDirectory() as t:
        x = Path(t) / "x.npy"
        if isinstance(a, bytes):
            x.write_bytes(a)
        else:
            np.save(x, a)
        check("golden", golden_cli.main, ["--export", export_dir, "--inputs", x], [export_dir], invalid)


# --- checkpoints -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    train(load_config("slice_digits.yaml"), SLICE_TEXT, epochs=1, out_dir=out, max_train=64,
          max_test=32, progress=False, log=lambda *a: None)
    return out / "model.pt"


@st.composite
def checkpoint_mutation(draw, keys):
    """(function(ckpt dict) -> ckpt or raw bytes, invalid by construction)."""
    kind = draw(st.sampled_from(["nan", "non_tensor", "delete_key", "shape", "config_text",
                                 "top_delete", "truncate"]))
    key = draw(st.sampled_from(keys))
    value = draw(st.sampled_from(BAD_NUMBERS))
    top = draw(st.sampled_from(["format", "version", "config", "state_dict", "metrics",
                                "train_state"]))
    cut = draw(st.integers(0, 10 ** 6))
    texts = [SLICE_TEXT.replace("  lanes: 8\n", "  lanes: 8\n  lanes: 8\n"),
             SLICE_TEXT.replace("lr: 0.003", "lr: .nan"),
             SLICE_TEXT.replace("name: slice_digits", "name: ../../x"),
             SLICE_TEXT[:cut % len(SLICE_TEXT)]]
    text_index = draw(st.integers(0, len(texts) - 1))
    bad_text = texts[text_index]
    draw_value = draw(st.sampled_from([1, "x", None, [1.0]]))

    def apply(ckpt):
        sd = ckpt["state_dict"]
        if kind == "nan":
            if sd[key].is_floating_point():
                sd[key].view(-1)[0] = value
            else:
                sd[key] = 3
        elif kind == "non_tensor":
            sd[key] = draw_value
        elif kind == "delete_key":
            del sd[key]
        elif kind == "shape":
            sd[key] = torch.zeros(sd[key].numel() + 1)
        elif kind == "config_text":
            ckpt["config"]["text"] = bad_text
        elif kind == "top_delete":
            del ckpt[top]
        return ckpt
    # torch's batch norm loads without num_batches_tracked (older checkpoints lack it).
    optional = kind == "delete_key" and key.endswith("num_batches_tracked")
    invalid = kind in ("nan", "non_tensor", "delete_key", "shape") and not optional or (
        kind == "top_delete" and top in ("format", "version", "config", "state_dict")) or (
        kind == "config_text" and text_index < 3)
    apply.case = (kind, key, top, text_index)
    return apply, kind == "truncate", cut, invalid


@examples(6)
@given(st.sampled_from(["model_export", "sim.agreement"]), st.data())
def test_fuzz_checkpoints(checkpoint, name, data):
    ckpt0 = torch.load(checkpoint, weights_only=True)
    apply, truncate, cut, invalid = data.draw(checkpoint_mutation(sorted(ckpt0["state_dict"])))
    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        bad = t / "model.pt"
        if truncate:
            raw = checkpoint.read_bytes()
            bad.write_bytes(raw[:cut % len(raw)])
            invalid = True
        else:
            torch.save(apply(ckpt0), bad)
        if name == "sim.agreement" and not invalid:
            name = "model_export"           # a valid checkpoint: the fast one runs it
        main, argv = {"model_export": (export_cli.main, ["--checkpoint", bad, "--out", t / "e"]),
                      "sim.agreement": (agreement_cli.main, ["--checkpoint", bad, "--export", t / "e"])}[name]
        try:
            check(name, main, argv, [t], invalid)
        except AssertionError as e:
            raise AssertionError(f"checkpoint mutation {apply.case}: {e}") from None


# --- arguments ---------------------------------------------------------------------------

# {cli: (main, base argv, {option: values of it that must be refused})}
ARGV_CLIS = {
    "golden": (golden_cli.main, ["--export", "{e}"],
               {"--random": ["0", "-1", "100001", "nan", "4.5", ""], "--seed": ["-1", str(2 ** 32), "x"]}),
    "train": (train_cli.main, ["--config", "slice_digits.yaml", "--out", "{o}/r"],
              {"--epochs": ["0", "-1", "100001", "1.5"], "--seed": ["-1", str(2 ** 32)],
               "--threads": ["0", "1025", "nan"], "--device": ["tpu", "cuda:x", ""]}),
    "sim.regress": (regress_cli.main, ["--out", "{o}/r"],
                    {"--stall": ["1", "0.96", "nan", "-0.1", "inf"], "--workers": ["0", "65", "-3"],
                     "--cases": ["0", "1000001"], "--per-shape": ["0", "1001"],
                     "--simulator": ["modelsim", ""]}),
    "sim.flow": (flow_cli.main, ["--config", "slice_digits.yaml"],
                 {"--samples": ["0", "-2", "x", "100001"], "--seed": ["-1", "x", str(2 ** 32)],
                  "--simulators": ["modelsim", ","], "--records": ["partial"]}),
    "reports.efficiency": (report_cli.main, ["--docs", "{o}"],
                           {"--samples": ["0", "100001"], "--seed": ["-1", str(2 ** 32)],
                            "--config": ["no-such.yaml"]}),
    "hw.build": (hw_build.main, ["--config", "slice_digits.yaml", "--out", "{o}/hw", "--no-lint"],
                 {"--config": ["no-such.yaml", ""], "--export": ["{o}/none"]}),
    "hw.perf": (hw_perf.main, ["--config", "slice_digits.yaml", "--export", "{e}"],
                {"--lanes": ["0", "-1", "x", "8,,", "nan"], "--inputs": ["{o}/none.npy"],
                 "--json": ["{o}", "{o}/none/"]}),
    "hw.perf_explore": (perf_explore_cli.main, ["--config", "slice_digits.yaml", "--export", "{e}"],
                        {"--json": ["{o}", "/proc/spquant/p.json"], "--export": ["{o}/none"]}),
    "hw.synth": (hw_synth.main, ["--config", "slice_digits.yaml", "--out", "{o}/s"],
                 {"--config": ["no-such.yaml"], "--json": ["{o}"]}),
    "hw.memory_report": (hw_memory.main, ["--config", "slice_digits.yaml"],
                         {"--export": ["{o}/none"], "--json": ["{o}"]}),
    "model_export": (export_cli.main, [], {"--checkpoint": ["{o}/none.pt", "{o}"]}),
    "sim.agreement": (agreement_cli.main, [], {"--checkpoint": ["{o}/none.pt", "{o}"]}),
    # The benchmarks refuse every bad option before they plan a single training.
    "benchmarks.table5": (table5_cli.main, ["--out", "{o}/t5"],
                          {"--gate-penalty": ["100.5"], "--epochs": ["0", "100001"],
                           "--seeds": ["0", "101"], "--sweep-seeds": ["101"],
                           "--recordings": ["0", "65"], "--finetune-epochs": ["0"],
                           "--recovery-epochs": ["100001"], "--budget-ramp-epochs": ["100001"],
                           "--target-kept": ["1", "1.5"], "--workers": ["0", "65"],
                           "--max-train": ["0", "-1", "x", "4.5"], "--device": ["tpu", "cuda:x", ""],
                           "--only": ["fp,nope"]}),
    "benchmarks.weight_pruning_study": (study_cli.main, ["--out", "{o}/w"],
                                        {"--finetune-lr": ["0", "11"], "--epochs": ["0"],
                                         "--finetune-epochs": ["100001"], "--seed": [str(2 ** 32)],
                                         "--bits": ["3", "4.5", "x"], "--sparsities": ["0.9,0.5", "1.5"],
                                         "--joint": ["4:nan", "4", "3:0.5"], "--count-samples": ["0", "-1", "x"],
                                         "--device": ["tpu"], "--workers": ["65"]}),
    "benchmarks.vgg9_ladder": (ladder_cli.main, ["--out", "{o}/l"],
                               {"--quant-epochs": ["0", "100001"], "--device": ["cuda:", "x"],
                                "--only": ["nope"]}),
}
MAINS = {k: v[0] for k, v in ARGV_CLIS.items()}


NUMERIC_OPTIONS = ("--stall", "--workers", "--samples", "--random", "--epochs", "--threads",
                   "--cases", "--per-shape", "--seed", "--seeds", "--sweep-seeds", "--recordings",
                   "--finetune-epochs", "--recovery-epochs", "--budget-ramp-epochs", "--quant-epochs")
FLOAT_OPTIONS = ("--gate-penalty", "--finetune-lr", "--target-kept")
# Strings that no numeric option takes (each has a bound below 9e24, and every float option a
# lower bound >= 0).
BAD_FOR_ANY_NUMBER = ["-1", "nan", "inf", "-inf", "1e309", "", "9" * 25, "0x10", "\u0663x",
                      "2" * 5000, "-0.5", "1_0e", "--"]
BAD_FOR_ANY_INT = BAD_FOR_ANY_NUMBER + ["4.5"]


@st.composite
def bad_argv(draw):
    name = draw(st.sampled_from(sorted(ARGV_CLIS)))
    _, base, bad = ARGV_CLIS[name]
    option = draw(st.sampled_from(sorted(bad)))
    generic = (BAD_FOR_ANY_INT if option in NUMERIC_OPTIONS else
               BAD_FOR_ANY_NUMBER if option in FLOAT_OPTIONS else [])
    pool = bad[option] + generic
    value = draw(st.sampled_from(pool))
    extra = draw(st.sampled_from([[], ["--bogus"], [option]]))
    return name, base, option, value, extra


@examples(25)
@given(bad_argv())
def test_fuzz_arguments(export_dir, case):
    name, base, option, value, extra = case
    # Every drawn value is out of its option's range or type (bad_argv): all are refused.
    with tempfile.TemporaryDirectory() as o:
        sub = lambda s: s.replace("{o}", o).replace("{e}", str(export_dir))
        argv = [sub(a) for a in base] + [option, sub(value)] + extra
        check(name, MAINS[name], argv, [Path(o)], True)


# --- output locations --------------------------------------------------------------------

@examples(6)
@given(st.sampled_from(["hw.build", "train", "model_export", "sim.regress", "hw.memory_report",
                        "hw.synth", "reports.efficiency"]),
       st.sampled_from(["file", "under_file", "proc", "long", "folder_for_file"]))
def test_fuzz_output_locations(checkpoint, name, where):
    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        (t / "f").write_text("x")
        out = {"file": t / "f", "under_file": t / "f" / "x", "proc": Path("/proc/spquant/out"),
               "long": t / ("n" * 300), "folder_for_file": t}[where]
        argv = {"hw.build": ["--config", "slice_digits.yaml", "--out", out, "--no-lint"],
                "train": ["--config", "slice_digits.yaml", "--out", out],
                "model_export": ["--checkpoint", checkpoint, "--out", out],
                "sim.regress": ["--cases", "1", "--out", out],
                "hw.memory_report": ["--config", "slice_digits.yaml", "--json",
                                     out if where == "folder_for_file" else out / "m.json"],
                "hw.synth": ["--config", "slice_digits.yaml", "--out", out],
                "reports.efficiency": ["--render-only", "--docs", out]}[name]
        if where == "folder_for_file" and name not in ("hw.memory_report",):
            return            # an existing folder is a fine output folder
        main = {**MAINS, "reports.efficiency": report_cli.main}[name]
        check(name, main, argv, [t], True)


# --- stored benchmark results --------------------------------------------------------------

TABLE5 = json.loads((ROOT / "docs" / "results" / "table5.json").read_text())


@examples(3)
@given(st.sampled_from([("summary",), ("targets",), ("meta",), ("runs",), ("sweep",)]),
       st.sampled_from(["delete", "type"]), st.sampled_from(WRONG_TYPES))
def test_fuzz_stored_study(path, kind, value):
    payload = copy.deepcopy(TABLE5)
    if kind == "delete":
        del payload[path[0]]
    else:
        payload[path[0]] = value
    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        (t / "docs" / "results").mkdir(parents=True)
        (t / "docs" / "figures").mkdir()
        src = t / "t5.json"
        src.write_text(json.dumps(payload))
        check("reports.efficiency", report_cli.main,
              ["--render-only", "--docs", t / "docs", "--table5", src], [t / "docs"], False)


# --- true subprocesses: one line, no traceback, exit 2 ------------------------------------

SUBPROCESS_CASES = [
    ("golden", ["--export", "{o}/none"]), ("hw.build", ["--config", "{o}/bad.yaml"]),
    ("hw.memory_report", ["--config", "{o}/bad.yaml"]), ("hw.synth", ["--config", "{o}/bad.yaml"]),
    ("hw.perf", ["--config", "{o}/bad.yaml"]), ("sim.regress", ["--stall", "1"]),
    ("sim.flow", ["--config", "{o}/bad.yaml"]), ("reports.efficiency", ["--config", "{o}/bad.yaml"]),
    ("train", ["--config", "{o}/bad.yaml"]), ("model_export", ["--checkpoint", "{o}/bad.pt"]),
    ("sim.agreement", ["--checkpoint", "{o}/bad.pt"]), ("hw.perf_explore", ["--config", "{o}/bad.yaml"]),
    ("benchmarks.table5", ["--config", "{o}/bad.yaml"]),
    ("benchmarks.weight_pruning_study", ["--config", "{o}/bad.yaml"]),
    ("benchmarks.vgg9_ladder", ["--config", "{o}/bad.yaml"]),
]


@pytest.mark.parametrize("module,argv", SUBPROCESS_CASES, ids=[c[0] for c in SUBPROCESS_CASES])
def test_subprocess_bad_input_is_one_line(tmp_path, module, argv):
    (tmp_path / "bad.yaml").write_text(SLICE_TEXT.replace("lr: 0.003", "lr: .nan"))
    (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    before = snapshot(tmp_path)
    COUNTS[f"subprocess {module}"] += 1
    r = run_cli(module, *[a.replace("{o}", str(tmp_path)) for a in argv], cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    assert snapshot(tmp_path) == before
