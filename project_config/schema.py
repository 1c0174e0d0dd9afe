"""Configuration schema: sections, keys, types, ranges and defaults, checked on load.

A config has the sections ``model``, ``quant``, ``pruning``, ``hardware``, ``data``,
``train`` and ``sim`` (all but ``model`` optional). Unknown keys are errors, so a typo
never silently falls back to a default.
"""
from __future__ import annotations

import copy
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .cli import EPOCHS_MAX, SAMPLES_MAX, SEED_MAX, UserError
from .geometry import WEIGHT_BITS, LayerGeometry

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(UserError):
    """A config file that cannot be used; the message names the file and the key."""


# --- small typed-key helpers ------------------------------------------------------------

_REQUIRED = object()


@dataclass(frozen=True)
class Key:
    kind: type | tuple
    default: object = _REQUIRED
    lo: float | None = None
    hi: float | None = None
    choices: tuple | None = None
    pattern: str | None = None      # a str must match it in full (names used in paths)


# A name used as a file or folder name (build/<model name>): no separators, no "..",
# no leading dot or dash, printable ASCII.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}"


def check_name(text, where: str) -> str:
    """``text`` if it is a safe file or folder name (:data:`NAME_PATTERN`, no ".."), else a
    ConfigError naming ``where`` and the value."""
    if not isinstance(text, str) or not re.fullmatch(NAME_PATTERN, text) or ".." in text:
        raise ConfigError(f"{where}: {text!r} is not a safe name for files and folders "
                          "(letters, digits, '_', '.', '+', '-'; no path separators or '..')")
    return text


def _type_name(kind):
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return kind.__name__


def _check(where, key, spec: Key, value):
    kind = spec.kind
    # bool is an int in Python; never accept it where a number is meant, or vice versa.
    if isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{where}.{key}: expected {_type_name(kind)}, got bool {value!r}")
    if kind is float and isinstance(value, int):
        if abs(value) > 1e300:
            raise ConfigError(f"{where}.{key}: {value!r} is out of range")
        value = float(value)
    if not isinstance(value, kind):
        raise ConfigError(f"{where}.{key}: expected {_type_name(kind)}, got "
                          f"{type(value).__name__} {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}.{key}: {value!r} is not a finite number")
    if isinstance(value, str) and "\x00" in value:
        raise ConfigError(f"{where}.{key}: {value!r} contains a NUL character")
    if spec.pattern is not None:
        check_name(value, f"{where}.{key}")
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"{where}.{key}: {value!r} is not one of {list(spec.choices)}")
    if spec.lo is not None and value < spec.lo:
        raise ConfigError(f"{where}.{key}: {value!r} is below the minimum {spec.lo}")
    if spec.hi is not None and value > spec.hi:
        raise ConfigError(f"{where}.{key}: {value!r} is above the maximum {spec.hi}")
    return value


def _section(where, raw, schema: dict[str, Key]):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in schema:
            raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(schema)})")
    out = {}
    for key, spec in schema.items():
        if key in raw:
            out[key] = _check(where, key, spec, raw[key])
        elif spec.default is _REQUIRED:
            raise ConfigError(f"{where}.{key}: missing required key")
        else:
            out[key] = spec.default
    return out


# --- the schema -------------------------------------------------------------------------

INPUT_KEYS = {
    "channels": Key(int, lo=1, hi=4096),
    "height": Key(int, lo=1, hi=4096),
    "width": Key(int, lo=1, hi=4096),
    "bits": Key(int, lo=1, hi=16),          # unsigned integer input values 0 .. 2**bits - 1
    "scale": Key(float, 1.0, lo=1e-12),      # PyTorch sees integer * scale
}
LAYER_KEYS = {
    "type": Key(str, "conv", choices=("conv",)),
    "channels": Key(int, lo=1, hi=65536),
    "kernel": Key(int, 3, lo=1, hi=15),
    "padding": Key(int, 1, lo=0, hi=7),
    "pool": Key(int, 1, choices=(1, 2)),     # sum-pool of the spikes (k x k) before the next layer
}
MODEL_KEYS = {
    "name": Key(str, "snn", pattern=NAME_PATTERN),   # build/<name>: a safe folder name
    "input": Key(dict),
    "timesteps": Key(int, lo=1, hi=1024),
    "layers": Key(list),
    "classes": Key(int, lo=2, hi=65536),
    # "convnet": the chain of ``layers`` (the form the hardware runs); "resnet19": training only,
    # shaped by ``planes``, ``width_scale`` and ``stem`` instead of ``layers``.
    "arch": Key(str, "convnet", choices=("convnet", "resnet19")),
    "planes": Key(list, [128, 128, 256, 512]),   # resnet19: stem, stage 1, 2, 3 widths
    "width_scale": Key(float, 1.0, lo=1e-3, hi=16.0),   # resnet19: multiplies every width
    "stem": Key(str, "conv3", choices=("conv3", "conv7s2")),  # resnet19: 3x3/1 or 7x7/2 stem
}
RESNET_ONLY_KEYS = ("planes", "width_scale", "stem")
QUANT_KEYS = {
    "membrane": Key(str, "ternary", choices=("ternary", "binary", "int2", "int3", "int4", "float")),
    "weight_bits": Key((int, type(None)), 4),   # null = full precision (training only)
    "vth_init": Key(float, 1.0, lo=1e-6, hi=1e6),
    "learnable_vth": Key(bool, True),
    "surrogate_temp": Key(float, 2.0, lo=1e-3, hi=1e3),    # stacked-sigmoid temperature
    "spike_width": Key(float, 1.0, lo=1e-3, hi=1e3),       # triangle surrogate half-width
    # the threshold's backward rule (train.neuron.vth_surrogate; "fired": the earlier one)
    "vth_grad": Key(str, "output",
                    choices=("surrogate", "output", "normalized", "sigmoid", "fired")),
}
# Runtime pruning from the membrane prior (docs/INTEGER_SPEC.md section 5); 0 = off.
PRUNING_KEYS = {
    "spatial_ratio": Key(float, 0.0, lo=0.0, hi=0.99),     # target fraction of positions pruned
    "channel_gate_threshold": Key(float, 0.0, lo=0.0, hi=0.99),  # gate opens above this score
    "gate_penalty": Key(float, 0.0, lo=0.0, hi=100.0),     # loss weight of the gates' open rate
    # spatial pruning of layer 0 too (its input is the sensor: off unless asked for)
    "spatial_first_layer": Key(bool, False),
    # operations budget: > 0 = the gate penalty pushes the kept fraction of the operations
    # (train.budget) down to this target instead of the gates' open rate to 0
    "target_kept": Key(float, 0.0, lo=0.0, hi=1.0),
    "budget_ramp_epochs": Key(int, 0, lo=0, hi=EPOCHS_MAX),   # target ramps from 1 over these
}
HARDWARE_KEYS = {
    "lanes": Key(int, 8, lo=1, hi=1024),     # PoT shift-add lanes = output channels per group
    "weight_latency": Key(int, 1, lo=1, hi=1),  # weight SRAM read latency (cycles)
    # false: issue every input, position and group (a reference for the cycles skipping saves)
    "skipping": Key(bool, True),
    # window fetch: a conv layer with kernel taps x input channels at most this reads its
    # whole kernel window in one cycle, from one copy of its input map per tap (0: never)
    "window_pairs": Key(int, 32, lo=0, hi=256),
}
DATA_KEYS = {
    "dataset": Key(str, "digits", choices=("digits", "event_digits", "cifar10", "cifar100",
                                            "dvs_cifar10", "ncaltech101", "nmnist")),
    "test_fraction": Key(float, 0.25, lo=0.05, hi=0.9),   # not used by cifar10/100 (fixed split)
    "seed": Key(int, 0, lo=0, hi=SEED_MAX),   # the RNGs take 32-bit seeds
    "root": Key(str, ""),                   # folder of the dataset files (cifar*, dvs_*, ncaltech101, nmnist)
    "event_size": Key(int, 16, lo=8, hi=256),             # event_digits: frame height = width
    "event_threshold": Key(float, 0.15, lo=0.01, hi=4.0), # event_digits: log-contrast step C
    "event_motion": Key(float, 1.5, lo=0.0, hi=16.0),     # event_digits: saccade size in pixels
    # event_digits: recordings per digit image (distinct saccades); the split is by image
    "event_recordings": Key(int, 1, lo=1, hi=64),
}
TRAIN_KEYS = {
    "epochs": Key(int, 20, lo=1, hi=EPOCHS_MAX),
    "batch_size": Key(int, 64, lo=1, hi=65536),
    "lr": Key(float, 2e-3, lo=1e-9, hi=10.0),
    "tet_lambda": Key(float, 0.05, lo=0.0, hi=1.0),
    "tet_target": Key(float, 1.0, lo=-1e3, hi=1e3),   # the logits' MSE target (TET): 1e300 overflows
    "seed": Key(int, 0, lo=0, hi=SEED_MAX),   # the RNGs take 32-bit seeds
    "out_dir": Key(str, "runs/default"),
    "init_from": Key(str, ""),              # checkpoint whose weights start the run (fine-tuning)
    "vth_lr": Key(float, 0.0, lo=0.0, hi=10.0),   # learnable thresholds' lr (0 = train.lr)
    "mask_lr": Key(float, 0.0, lo=0.0, hi=10.0),  # channel gates' lr (0 = train.lr)
    "recovery_epochs": Key(int, 0, lo=0, hi=EPOCHS_MAX),  # last epochs: masks frozen, no penalty
}
SIM_KEYS = {
    "samples": Key(int, 20, lo=1, hi=SAMPLES_MAX),
    "simulators": Key(list, ["icarus", "verilator"]),
    "stall_probability": Key(float, 0.25, lo=0.0, hi=0.95),  # random idle/backpressure per cycle
    "seed": Key(int, 1, lo=0, hi=SEED_MAX),
    "network": Key(str, "trained", choices=("trained", "random")),   # random: no training
    # full: one record per (layer, step, position, group); signature: CRC-32 and spike count
    # per (layer, step) only (large networks)
    "records": Key(str, "full", choices=("full", "signature")),
    "preload": Key(bool, False),            # parameter SRAMs start from image files
}
TOP_KEYS = ("model", "quant", "pruning", "hardware", "data", "train", "sim")
SIMULATORS = ("icarus", "verilator")


@dataclass
class Config:
    path: str
    model: dict
    quant: dict
    pruning: dict
    hardware: dict
    data: dict
    train: dict
    sim: dict
    layers: list = field(default_factory=list)   # list[LayerGeometry], the classifier last

    @property
    def name(self) -> str:
        return self.model["name"]

    @property
    def timesteps(self) -> int:
        return self.model["timesteps"]

    @property
    def spiking_layers(self):
        return [l for l in self.layers if l.kind == "conv"]


def _derive_layers(where, model, weight_bits) -> list[LayerGeometry]:
    inp = model["input"]
    c, h, w = inp["channels"], inp["height"], inp["width"]
    x_max = (1 << inp["bits"]) - 1
    layers = []
    raw_layers = model["layers"]
    if not raw_layers:
        raise ConfigError(f"{where}.model.layers: needs at least one layer")
    for i, raw in enumerate(raw_layers):
        lw = f"{where}.model.layers[{i}]"
        spec = _section(lw, raw, LAYER_KEYS)
        k, p = spec["kernel"], spec["padding"]
        oh, ow = h + 2 * p - k + 1, w + 2 * p - k + 1
        if oh < 1 or ow < 1:
            raise ConfigError(f"{lw}.kernel: {k} with padding {p} does not fit a {h}x{w} input")
        pool = spec["pool"]
        if oh % pool or ow % pool:
            raise ConfigError(f"{lw}.pool: {pool} does not divide the {oh}x{ow} output")
        layers.append(LayerGeometry(i, "conv", c, h, w, spec["channels"], (k, k), p, oh, ow, pool,
                                    x_max, weight_bits))
        c, h, w = spec["channels"], oh // pool, ow // pool
        x_max = pool * pool   # sum-pooled binary spikes
    layers.append(LayerGeometry(len(layers), "fc", c, h, w, model["classes"], (h, w), 0, 1, 1, 1,
                                x_max, weight_bits))
    return layers


def config_from_dict(raw, where="<config>") -> Config:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    for key in raw:
        if key not in TOP_KEYS:
            raise ConfigError(f"{where}.{key}: unknown section (known: {', '.join(TOP_KEYS)})")
    if "model" not in raw:
        raise ConfigError(f"{where}.model: missing required section")
    raw_model = raw["model"]
    resnet = False
    if isinstance(raw_model, dict):
        # The arch decides which keys are required, so it is checked first.
        arch = _check(f"{where}.model", "arch", MODEL_KEYS["arch"], raw_model.get("arch", "convnet"))
        resnet = arch == "resnet19"
        if resnet:
            if "layers" in raw_model:
                raise ConfigError(f"{where}.model.layers: not used by arch 'resnet19' (its shape "
                                  "comes from model.planes, model.width_scale and model.stem)")
            raw_model = dict(raw_model, layers=[])
        for key in RESNET_ONLY_KEYS:
            if key in raw_model and not resnet:
                raise ConfigError(f"{where}.model.{key}: only used by arch 'resnet19'")
    model = _section(f"{where}.model", raw_model, MODEL_KEYS)
    model["input"] = _section(f"{where}.model.input", model["input"], INPUT_KEYS)
    planes = model["planes"] = list(model["planes"])   # never share the default list
    if (len(planes) != 4 or any(isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 65536
                                for p in planes)):
        raise ConfigError(f"{where}.model.planes: {planes!r} is not 4 widths in 1..65536 "
                          "(stem, stage 1, stage 2, stage 3)")
    quant = _section(f"{where}.quant", raw.get("quant"), QUANT_KEYS)
    wb = quant["weight_bits"]
    if wb is not None and wb not in WEIGHT_BITS:
        raise ConfigError(f"{where}.quant.weight_bits: {wb!r} is not one of "
                          f"[{', '.join(map(str, WEIGHT_BITS))}, null]")
    cfg = Config(
        path=where,
        model=model,
        quant=quant,
        pruning=_section(f"{where}.pruning", raw.get("pruning"), PRUNING_KEYS),
        hardware=_section(f"{where}.hardware", raw.get("hardware"), HARDWARE_KEYS),
        data=_section(f"{where}.data", raw.get("data"), DATA_KEYS),
        train=_section(f"{where}.train", raw.get("train"), TRAIN_KEYS),
        sim=_section(f"{where}.sim", raw.get("sim"), SIM_KEYS),
    )
    for s in cfg.sim["simulators"]:
        if s not in SIMULATORS:
            raise ConfigError(f"{where}.sim.simulators: {s!r} is not one of {list(SIMULATORS)}")
    # A resnet19 has no chain geometry: it exists only in training (no export, no hardware).
    cfg.layers = [] if resnet else _derive_layers(where, model, wb)
    return cfg


def deep_merge(base: dict, overrides: dict) -> dict:
    """A copy of the raw config ``base`` with ``overrides`` merged in, section by section
    (for configs derived from another, e.g. the rungs of a benchmark)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_config_path(name: str | os.PathLike) -> Path:
    """``name`` as given (relative to the working directory), else ``configs/<name>``."""
    p = Path(name)
    if p.is_file():
        return p
    cands = [CONFIG_DIR / p, CONFIG_DIR / p.name]
    if not p.suffix:                     # `make sim CONFIG=vgg9`
        cands += [Path(f"{p}.yaml"), CONFIG_DIR / f"{p.name}.yaml"]
    for cand in cands:
        if cand.is_file():
            return cand
    raise ConfigError(f"{name}: config file not found (looked in {Path.cwd()} and {CONFIG_DIR})")


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the
    last one silently)."""


def _construct_unique_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            dup = key in seen
            seen.add(key)
        except TypeError:        # an unhashable key: the constructor reports it
            continue
        if dup:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 _construct_unique_mapping)


def parse_yaml(text: str, where) -> object:
    """YAML ``text`` (safe constructors only, duplicate keys refused) -> Python objects; a
    ConfigError naming ``where``, the line and the problem otherwise."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None)
        raise ConfigError(f"{where}: not valid YAML{at}" + (f" ({problem})" if problem else "")) from None
    except (RecursionError, ValueError, OverflowError) as e:
        raise ConfigError(f"{where}: not valid YAML ({type(e).__name__})") from None


def load_raw_config(name: str | os.PathLike) -> tuple[Path, dict]:
    """(path, the config file's mapping as written), before validation: for configs derived
    from another by :func:`deep_merge`."""
    path = resolve_config_path(name)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    raw = parse_yaml(text, path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return path, raw


def load_config(name: str | os.PathLike) -> Config:
    path, raw = load_raw_config(name)
    return config_from_dict(raw, where=str(path))
