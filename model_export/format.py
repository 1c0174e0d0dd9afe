"""The integer export: ``export.npz`` + ``manifest.json`` (docs/INTEGER_SPEC.md, section 7).

Reading needs only NumPy: golden, hw and sim load exports without torch.

The two files are one unit. :func:`save_export` writes both into a temp sibling
``.<dir name>.tmp-XXXX`` of the export folder and commits it with
project_config.files.commit_entries: a folder holding only an export is swapped with the
new one in one atomic exchange; a folder that also holds other files gets the new npz and
then the manifest, with SIGINT and SIGTERM held back in between. The manifest carries the
arrays' sha256, so a mixed pair never loads: :func:`load_export` reads both files and, if
they are missing or do not match (a swap in progress), reads again for up to a second
before it reports the export as corrupted or incomplete.
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
from project_config.files import Inconsistent, atomic_dir, atomic_write, read_consistent
from project_config.geometry import (MAX_ACC_WIDTH, MAX_SHIFT_SUPPORTED, WEIGHT_BITS, GeometryView,
                                     LayerGeometry, check_chain, max_shift)

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
    """Write ``export.npz`` and ``manifest.json`` as one unit (module docstring)."""
    validate(net)
    out = Path(out_dir)
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
    with atomic_dir(out, (NPZ_NAME, MANIFEST_NAME)) as tmp:
        atomic_write(tmp / NPZ_NAME, buf.getvalue())
        atomic_write(tmp / MANIFEST_NAME, (json.dumps(manifest, indent=1) + "\n").encode())
    return out


def load_export(path: str | os.PathLike) -> NetworkExport:
    """Load and verify an export directory (or its manifest.json): every manifest field
    typed and in range, the layers chained, the arrays those the manifest names (sha256)."""
    p = Path(path)
    d = p.parent if p.name in (MANIFEST_NAME, NPZ_NAME) else p
    mpath, npath = d / MANIFEST_NAME, d / NPZ_NAME
    try:
        manifest, arrays = read_consistent(lambda: _read_pair(mpath, npath))
    except FileNotFoundError as e:
        raise ExportError(f"{e.filename or d}: export file not found") from None
    except Inconsistent as e:
        raise ExportError(str(e)) from None
    try:
        net = _network(manifest, arrays, mpath)
    except (KeyError, TypeError, AttributeError) as e:
        raise ExportError(f"{mpath}: malformed manifest (missing or bad {e})") from None
    validate(net, where=str(d))
    return net


def _read_pair(mpath: Path, npath: Path) -> tuple[dict, dict]:
    """(manifest, arrays) read from the two files; Inconsistent if they do not belong
    together (read again: a commit may be swapping the folder), ExportError if unusable."""
    for f in (mpath, npath):
        if not f.is_file():
            raise FileNotFoundError(2, "not found", str(f))
    try:
        manifest = json.loads(mpath.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ExportError(f"{mpath}: corrupted manifest ({type(e).__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise ExportError(f"{mpath}: not a {SCHEMA} manifest")
    if manifest.get("version") not in READABLE_VERSIONS or type(manifest.get("version")) is not int:
        raise ExportError(f"{mpath}: version: schema version {manifest.get('version')!r}, "
                          f"this reader supports {list(READABLE_VERSIONS)}")
    expected, digest = manifest.get("arrays"), manifest.get("sha256")
    if not isinstance(expected, dict) or not isinstance(digest, str):
        raise ExportError(f"{mpath}: arrays, sha256: missing or not a mapping and a string")
    try:
        with np.load(io.BytesIO(npath.read_bytes()), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise ExportError(f"{npath}: corrupted or truncated ({type(e).__name__}: {e})") from None
    if sorted(expected) != sorted(arrays):
        raise Inconsistent(f"{npath}: arrays {sorted(arrays)[:6]} do not match {mpath}")
    if arrays_sha256(arrays) != digest:
        raise Inconsistent(f"{npath}: sha256 does not match {mpath} (corrupted or mismatched)")
    return manifest, arrays


def _header_int(manifest: dict, key: str, lo: int, hi: int, mpath, section=None) -> int:
    src = manifest if section is None else manifest.get(section)
    name = key if section is None else f"{section}.{key}"
    if not isinstance(src, dict) or key not in src:
        raise ExportError(f"{mpath}: {name}: missing")
    v = src[key]
    if type(v) is not int or not lo <= v <= hi:
        raise ExportError(f"{mpath}: {name}: {v!r} is not an integer in [{lo}, {hi}]")
    return v


def _network(manifest: dict, arrays: dict, mpath: Path) -> NetworkExport:
    """The NetworkExport a verified manifest and its arrays describe (header fields typed
    and in the config schema's ranges, layers chained)."""
    name = manifest.get("name")
    if not isinstance(name, str) or not name or len(name) > 128 or any(c in name for c in "/\\\0\n"):
        raise ExportError(f"{mpath}: name: {name!r} is not a network name")
    timesteps = _header_int(manifest, "timesteps", 1, 1024, mpath)
    dims = [_header_int(manifest, k, 1, hi, mpath, "input")
            for k, hi in (("channels", 4096), ("height", 4096), ("width", 4096), ("bits", 16))]
    entries = manifest["layers"]
    if not isinstance(entries, list):
        raise ExportError(f"{mpath}: layers: expected a list, got {type(entries).__name__}")
    try:
        geoms = [LayerGeometry.from_manifest(e, f"{mpath}: layers[{n}]") for n, e in enumerate(entries)]
        check_chain(geoms, *dims, where=str(mpath))
    except ValueError as e:
        raise ExportError(str(e)) from None
    layers = []
    for geom in geoms:
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
    return NetworkExport(name, timesteps, manifest.get("membrane"), *dims, layers)
