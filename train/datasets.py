"""Readers for dataset files a user already has (nothing is downloaded).

- CIFAR-10 / CIFAR-100, "python version": pickled dicts with ``data`` uint8 [N, 3072]
  (1024 red, 1024 green, 1024 blue values, rows top to bottom) and ``labels`` (CIFAR-10)
  or ``fine_labels`` (CIFAR-100). Files ``data_batch_1`` .. ``data_batch_5`` and
  ``test_batch`` (CIFAR-10) or ``train`` and ``test`` (CIFAR-100), in ``root`` or in its
  ``cifar-10-batches-py`` / ``cifar-100-python`` subfolder.
- DVS-CIFAR10: ``root/<class>/*.aedat``, AEDAT 2.0 as jAER writes it for the DVS128: header
  lines starting with ``#``, then events of two big-endian uint32, address then timestamp
  (microseconds). Address bits (DVS128 layout): bit 0 polarity (the channel index),
  bits 1..7 x, bits 8..14 y, higher bits ignored. Sensor 128 x 128.
- N-Caltech101: ``root/<class>/*.bin``, 5 bytes per event: byte 0 x, byte 1 y, then 24 bits
  big-endian whose top bit is the polarity (1 = ON) and whose low 23 bits are the
  timestamp (microseconds). Sensor 240 wide x 180 high.

Event files become T equal-time-bin count frames [T, 2, H, W] (``events.events_to_frames``);
class labels are the indices of the sorted class-folder names.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from project_config import UserError

from .events import events_to_frames

DVS128_SENSOR = (128, 128)     # (height, width)
NCALTECH_SENSOR = (180, 240)


# --- CIFAR ------------------------------------------------------------------------------

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a data file must not run code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _get(d: dict, key: str):
    """CIFAR dicts were pickled by Python 2: keys come back as bytes, or str if re-pickled."""
    if key in d:
        return d[key]
    return d.get(key.encode())


def read_cifar_batch(path: Path, label_key: str):
    """(x uint8 [N, 3, 32, 32], y int64 [N]) from one CIFAR pickle file."""
    if not path.is_file():
        raise UserError(f"{path}: CIFAR file not found")
    try:
        d = _ArrayUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as e:   # any unpickling failure means a damaged or foreign file
        raise UserError(f"{path}: not a readable CIFAR pickle ({type(e).__name__})") from None
    if not isinstance(d, dict):
        raise UserError(f"{path}: not a CIFAR batch (expected a dict, got {type(d).__name__})")
    data, labels = _get(d, "data"), _get(d, label_key)
    if data is None or labels is None:
        raise UserError(f"{path}: not a CIFAR batch (needs 'data' and {label_key!r})")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise UserError(f"{path}: 'data' must be uint8 [N, 3072], got {data.dtype} {list(data.shape)}")
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{path}: {label_key!r} must be {len(data)} integers, got "
                        f"{labels.dtype} {list(labels.shape)}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar(root, which: str, where: str = "<config>"):
    """(x_train, y_train, x_test, y_test) of CIFAR-10 (``which`` "cifar10") or CIFAR-100.

    ``where`` (the config file) prefixes errors about ``data.root`` itself.
    """
    root = _folder(root, which, where)
    if which == "cifar10":
        sub, train_files, test_files, key = ("cifar-10-batches-py",
                                             [f"data_batch_{i}" for i in range(1, 6)],
                                             ["test_batch"], "labels")
    else:
        sub, train_files, test_files, key = "cifar-100-python", ["train"], ["test"], "fine_labels"
    if not (root / test_files[0]).exists() and (root / sub).is_dir():
        root = root / sub

    def read(names):
        parts = [read_cifar_batch(root / n, key) for n in names]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    x_tr, y_tr = read(train_files)
    x_te, y_te = read(test_files)
    return x_tr, y_tr, x_te, y_te


# --- event files -------------------------------------------------------------------------

def read_aedat2(path: Path):
    """(x, y, p, t) int64 arrays from a DVS128 AEDAT 2.0 file (layout in the module doc)."""
    data = _read_bytes(path)
    pos = 0
    while data.startswith(b"#", pos):
        end = data.find(b"\n", pos)
        if end < 0:
            raise UserError(f"{path}: header line without an end (not an AEDAT 2.0 file?)")
        pos = end + 1
    body = len(data) - pos
    if body % 8:
        raise UserError(f"{path}: truncated: {body} bytes of events is not a multiple of 8")
    ev = np.frombuffer(data, dtype=">u4", offset=pos).reshape(-1, 2).astype(np.int64)
    addr, t = ev[:, 0], ev[:, 1]
    return (addr >> 1) & 0x7F, (addr >> 8) & 0x7F, addr & 1, t


def read_ncaltech_bin(path: Path):
    """(x, y, p, t) int64 arrays from an N-Caltech101 .bin file (layout in the module doc)."""
    data = _read_bytes(path)
    if len(data) % 5:
        raise UserError(f"{path}: truncated: {len(data)} bytes is not a multiple of 5")
    ev = np.frombuffer(data, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    x, y = ev[:, 0], ev[:, 1]
    p = ev[:, 2] >> 7
    t = ((ev[:, 2] & 0x7F) << 16) | (ev[:, 3] << 8) | ev[:, 4]
    h, w = NCALTECH_SENSOR
    bad = (x >= w) | (y >= h)
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"{path}: event {i} at x={int(x[i])}, y={int(y[i])} is outside the "
                        f"{w}x{h} sensor")
    return x, y, p, t


EVENT_FORMATS = {
    "dvs_cifar10": (".aedat", read_aedat2, DVS128_SENSOR),
    "ncaltech101": (".bin", read_ncaltech_bin, NCALTECH_SENSOR),
}


def load_event_folder(root, which: str, timesteps: int, height: int, width: int,
                      max_count: int, where: str = "<config>"):
    """(x uint8 [N, T, 2, H, W], y int64 [N], class names) from ``root/<class>/*<ext>``."""
    ext, reader, sensor = EVENT_FORMATS[which]
    root = _folder(root, which, where)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and any(d.glob(f"*{ext}")))
    if not classes:
        raise UserError(f"{where}: data.root: {str(root)!r} has no class folders with {ext} "
                        f"files (expected <root>/<class>/*{ext})")
    xs, ys = [], []
    for label, name in enumerate(classes):
        for f in sorted((root / name).glob(f"*{ext}")):
            ex, ey, ep, et = reader(f)
            xs.append(events_to_frames(ex, ey, ep, et, timesteps, sensor, (height, width),
                                       max_count))
            ys.append(label)
    return np.stack(xs), np.asarray(ys, np.int64), classes


def _folder(root, which, where) -> Path:
    if not str(root):
        raise UserError(f"{where}: data.root: empty; {which} is read from local files, "
                        "set data.root to their folder")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise UserError(f"{where}: data.root: folder {str(root)!r} for {which} not found")
    return path


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
