"""The integer export: ``export.npz`` + ``manifest.json`` (docs/INTEGER_SPEC.md, section 7).

Reading needs only NumPy: golden, hw and sim load exports without torch.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from project_config import UserError
from project_config.files import atomic_write
from project_config.geometry import (MAX_ACC_WIDTH, MAX_SHIFT_SUPPORTED, WEIGHT_BITS, GeometryView,
                                     LayerGeometry, max_shift)

SCHEMA = "spquant-export"
VERSION = 2
READABLE_VERSIONS = (1, 2)   # version 1 has no runtime-pruning arrays
NPZ_NAME = "export.npz"
MANIFEST_NAME = "manifest.json"


class ExportError(UserError):
    """An export that cannot be used (missing, corrupted, truncated, mismatched)."""


@dataclass(eq=False)
class LayerExport(GeometryView):
    """One layer of the integer network: its geometry (as derived from the config) and its
    arrays. Geometry fields read as attributes (``layer.out_channels``)."""
    geometry: LayerGeometry
    w_code: np.ndarray = field(repr=False)
    channel_mask: np.ndarray = field(repr=False)
    position_mask: np.ndarray = field(repr=False)
    thresholds: np.ndarray | None = field(default=None, repr=False)   # conv: [C_out, levels, 3]
    bias: np.ndarray | None = field(default=None, repr=False)         # fc: [C_out]
    # Runtime pruning (section 5); None = off.
    spatial_threshold: np.ndarray | None = field(default=None, repr=False)  # int64 [1]
    gate_weights: np.ndarray | None = field(default=None, repr=False)       # int8 [C_out, C_in]
    gate_thresholds: np.ndarray | None = field(default=None, repr=False)    # int64 [C_out]

    @property
    def spatial_pruning(self) -> bool:
        return self.spatial_threshold is not None

    @property
    def gated(self) -> bool:
        return self.gate_weights is not None

    def gate_bound(self, prev: "LayerExport") -> int:
        """Largest |z| of this layer's gate: C_in x the previous layer's output positions."""
        return self.in_channels * prev.out_height * prev.out_width

    def signed_weights(self) -> np.ndarray:
        """The integer weight of each code: s * 2^(K - k), 0 for a zero code (int64)."""
        return decode_weights(self.w_code, self.weight_bits)

    def arrays(self) -> dict:
        out = {"w_code": self.w_code, "channel_mask": self.channel_mask,
               "position_mask": self.position_mask}
        if self.kind == "conv":
            out["thresholds"] = self.thresholds
        else:
            out["bias"] = self.bias
        for name in self.PRUNING_ARRAYS:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    PRUNING_ARRAYS = ("spatial_threshold", "gate_weights", "gate_thresholds")


@dataclass
class NetworkExport:
    name: str
    timesteps: int
    membrane: str             # "ternary" | "binary"
    input_channels: int
    input_height: int
    input_width: int
    input_bits: int
    layers: list

    @property
    def levels(self) -> int:
        return 3 if self.membrane == "ternary" else 2

    @property
    def classifier(self) -> LayerExport:
        return self.layers[-1]

    @property
    def spiking_layers(self) -> list:
        return self.layers[:-1]


def decode_weights(w_code, bits):
    """b-bit PoT codes -> their integer weights ``s * 2^(K - (e - 1))``, 0 for e = 0 (int64)."""
    K = max_shift(bits)
    if K > MAX_SHIFT_SUPPORTED:
        raise ExportError(f"{bits}-bit PoT weights shift by up to {K}: beyond the "
                          f"integer datapath (K <= {MAX_SHIFT_SUPPORTED})")
    code = w_code.astype(np.int64)
    e = code & ((1 << (bits - 1)) - 1)
    neg = (code >> (bits - 1)) & 1
    mag = np.where(e == 0, 0, np.left_shift(1, np.clip(K - (e - 1), 0, None)))
    return np.where(neg == 1, -mag, mag)


def encode_weights(sign, k, bits):
    """(sign in {-1,0,1}, k) -> uint8 codes; the inverse of decode_weights."""
    sign = np.asarray(sign)
    k = np.asarray(k)
    e = np.where(sign == 0, 0, k + 1)
    return (((sign < 0).astype(np.int64) << (bits - 1)) | e).astype(np.uint8)


def _array_expectations(net: NetworkExport, layer: LayerExport) -> dict:
    shapes = {
        "w_code": ((layer.out_channels, layer.in_channels) + tuple(layer.kernel), np.uint8),
        "channel_mask": ((layer.out_channels,), np.uint8),
        "position_mask": ((layer.out_height, layer.out_width), np.uint8),
    }
    if layer.kind == "conv":
        shapes["thresholds"] = ((layer.out_channels, net.levels, 3), np.int64)
        if layer.spatial_pruning:
            shapes["spatial_threshold"] = ((1,), np.int64)
        if layer.gated or layer.gate_thresholds is not None:
            shapes["gate_weights"] = ((layer.out_channels, layer.in_channels), np.int8)
            shapes["gate_thresholds"] = ((layer.out_channels,), np.int64)
    else:
        shapes["bias"] = ((layer.out_channels,), np.int64)
    return shapes


def arrays_sha256(arrays: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _flat_arrays(net: NetworkExport) -> dict:
    return {f"L{layer.index}.{k}": v for layer in net.layers for k, v in layer.arrays().items()}


def validate(net: NetworkExport, where: str = "export"):
    """Check shapes, dtypes and value ranges; raise ExportError naming the array."""
    if net.membrane not in ("ternary", "binary"):
        raise ExportError(f"{where}: membrane {net.membrane!r} is not 'ternary' or 'binary'")
    if not net.layers or net.layers[-1].kind != "fc":
        raise ExportError(f"{where}: the last layer must be the classifier ('fc')")
    for layer in net.layers:
        for name, (shape, dtype) in _array_expectations(net, layer).items():
            a = getattr(layer, name)
            label = f"{where}: L{layer.index}.{name}"
            if a is None or a.shape != shape or a.dtype != dtype:
                got = None if a is None else f"{a.dtype}{list(a.shape)}"
                raise ExportError(f"{label}: expected {np.dtype(dtype)}{list(shape)}, got {got}")
        if layer.kind == "fc" and not layer.channel_mask.all():
            raise ExportError(f"{where}: L{layer.index}.channel_mask: the classifier is never masked")
        bits = layer.weight_bits
        if bits not in WEIGHT_BITS:
            raise ExportError(f"{where}: L{layer.index}.weight_bits: {bits!r} is not one of "
                              f"{list(WEIGHT_BITS)}")
        if layer.max_shift > MAX_SHIFT_SUPPORTED or layer.acc_width > MAX_ACC_WIDTH:
            raise ExportError(f"{where}: L{layer.index}: {bits}-bit PoT needs a {layer.acc_width}-bit "
                              f"accumulator; the integer datapath supports at most {MAX_ACC_WIDTH}")
        if int(layer.w_code.max(initial=0)) >= (1 << bits):
            raise ExportError(f"{where}: L{layer.index}.w_code: code out of {bits}-bit range")
        for name in ("channel_mask", "position_mask"):
            if int(getattr(layer, name).max(initial=0)) > 1:
                raise ExportError(f"{where}: L{layer.index}.{name}: values must be 0 or 1")
        if layer.kind == "fc" and any(getattr(layer, n) is not None for n in layer.PRUNING_ARRAYS):
            raise ExportError(f"{where}: L{layer.index}: the classifier has no runtime pruning")
        if layer.spatial_pruning:
            th = int(layer.spatial_threshold[0])
            if not -layer.out_channels <= th <= 0:
                raise ExportError(f"{where}: L{layer.index}.spatial_threshold: {th} is outside "
                                  f"[-{layer.out_channels}, 0] (a positive one prunes every "
                                  "position from step 0 on)")
        if layer.gated:
            if layer.index == 0:
                raise ExportError(f"{where}: L0.gate_weights: the first layer has no gate "
                                  "(no membrane prior before it)")
            if int(np.abs(layer.gate_weights.astype(np.int64)).max(initial=0)) > 1:
                raise ExportError(f"{where}: L{layer.index}.gate_weights: values must be -1, 0 or 1")
            bound = layer.gate_bound(net.layers[layer.index - 1])
            g = layer.gate_thresholds
            if g.size and (int(g.min()) < -bound or int(g.max()) > bound + 1):
                raise ExportError(f"{where}: L{layer.index}.gate_thresholds: outside "
                                  f"[-{bound}, {bound + 1}]")
        lo, hi = -(1 << (layer.acc_width - 1)), (1 << (layer.acc_width - 1)) - 1
        vals = layer.thresholds if layer.kind == "conv" else layer.bias
        if vals.size and (int(vals.min()) < lo or int(vals.max()) > hi):
            raise ExportError(f"{where}: L{layer.index}: thresholds/bias outside the {layer.acc_width}-bit range")


def save_export(net: NetworkExport, out_dir: str | os.PathLike) -> Path:
    """Write ``export.npz`` and ``manifest.json`` atomically (temp files, then rename)."""
    validate(net)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = _flat_arrays(net)
    manifest = {
        "schema": SCHEMA,
        "version": VERSION,
        "name": net.name,
        "timesteps": net.timesteps,
        "membrane": net.membrane,
        "input": {"channels": net.input_channels, "height": net.input_height,
                  "width": net.input_width, "bits": net.input_bits},
        "layers": [layer.geometry.to_manifest() for layer in net.layers],
        "arrays": {k: {"shape": list(v.shape), "dtype": v.dtype.str} for k, v in arrays.items()},
        "sha256": arrays_sha256(arrays),
    }
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write(out / NPZ_NAME, buf.getvalue())
    atomic_write(out / MANIFEST_NAME, (json.dumps(manifest, indent=1) + "\n").encode())
    return out


def load_export(path: str | os.PathLike) -> NetworkExport:
    """Load and verify an export directory (or its manifest.json)."""
    p = Path(path)
    d = p.parent if p.name in (MANIFEST_NAME, NPZ_NAME) else p
    mpath, npath = d / MANIFEST_NAME, d / NPZ_NAME
    for f in (mpath, npath):
        if not f.is_file():
            raise ExportError(f"{f}: export file not found")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportError(f"{mpath}: corrupted manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise ExportError(f"{mpath}: not a {SCHEMA} manifest")
    if manifest.get("version") not in READABLE_VERSIONS:
        raise ExportError(f"{mpath}: schema version {manifest.get('version')!r}, "
                          f"this reader supports {list(READABLE_VERSIONS)}")
    try:
        with np.load(npath, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ExportError(f"{npath}: corrupted or truncated ({type(e).__name__}: {e})") from None
    try:
        expected = manifest["arrays"]
        if sorted(expected) != sorted(arrays):
            raise ExportError(f"{npath}: arrays {sorted(arrays)} do not match the manifest")
        if arrays_sha256(arrays) != manifest["sha256"]:
            raise ExportError(f"{npath}: sha256 does not match {mpath} (corrupted or mismatched)")
        inp = manifest["input"]
        layers = []
        for n, entry in enumerate(manifest["layers"]):
            try:
                geom = LayerGeometry.from_manifest(entry, f"{mpath}: layers[{n}]")
            except ValueError as e:
                raise ExportError(str(e)) from None
            i = geom.index
            layers.append(LayerExport(
                geom,
                w_code=arrays[f"L{i}.w_code"],
                channel_mask=arrays[f"L{i}.channel_mask"],
                position_mask=arrays[f"L{i}.position_mask"],
                thresholds=arrays.get(f"L{i}.thresholds"),
                bias=arrays.get(f"L{i}.bias"),
                **{n: arrays.get(f"L{i}.{n}") for n in LayerExport.PRUNING_ARRAYS},
            ))
        net = NetworkExport(manifest["name"], manifest["timesteps"], manifest["membrane"],
                            inp["channels"], inp["height"], inp["width"], inp["bits"], layers)
    except (KeyError, TypeError) as e:
        raise ExportError(f"{mpath}: malformed manifest (missing or bad {e})") from None
    validate(net, where=str(d))
    return net
