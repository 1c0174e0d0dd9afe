"""Readers for dataset files a user already has (nothing is downloaded).

- CIFAR-10 / CIFAR-100, "python version": pickled dicts with ``data`` uint8 [N, 3072]
  (1024 red, 1024 green, 1024 blue values, rows top to bottom) and ``labels`` (CIFAR-10)
  or ``fine_labels`` (CIFAR-100). Files ``data_batch_1`` .. ``data_batch_5`` and
  ``test_batch`` (CIFAR-10) or ``train`` and ``test`` (CIFAR-100), in ``root`` or in its
  ``cifar-10-batches-py`` / ``cifar-100-python`` subfolder.
- DVS-CIFAR10: ``root/<class>/*.aedat``: AEDAT 2.0 as jAER wrote it for the DVS128, decoded
  as jAER decodes it (:func:`read_aedat2`: p = 1 - bit 0, x mirrored, special events
  skipped, 32-bit timestamp wraps unwrapped), or the AEDAT 4 re-release (``*.aedat4`` or
  ``*.aedat`` starting ``#!AER-DAT4.0``; :func:`read_aedat4`, optional ``aedat`` package).
  Sensor 128 x 128.
- N-Caltech101 / N-MNIST: ``root/<class>/*.bin``, 5 bytes per event with timestamp-overflow
  markers (:func:`read_atis_bin`). Sensors 240 wide x 180 high / 34 x 34.
- AEDAT 3.1 (DVS Gesture's container): :func:`read_aedat31`; :func:`read_aedat` picks the
  reader by the file's version line.

Every reader returns events as a structured array with fields x, y, t, p
(:data:`EVENT_DTYPE`, tonic's layout), so tonic's transforms apply to them.
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

# Events as tonic holds them (tonic.io.make_structured_array): one record per event, so
# tonic's transforms (ToFrame, Denoise, ...) apply to what these readers return.
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])

# jAER (net.sf.jaer: DVS128.Extractor, BasicEvent): an address with either bit set is a
# special event (0x8000: the DVS128's sync / external input; 0x80000000: special event).
DVS128_SPECIAL_BITS = 0x8000 | 0x80000000
# N-MNIST / N-Caltech101 (Orchard et al. 2015; tonic.io.read_mnist_file): a record with
# y = 240 marks a timestamp overflow; every later timestamp is 2**13 us later.
ATIS_OVERFLOW_Y = 240
ATIS_OVERFLOW_US = 1 << 13
NMNIST_SENSOR = (34, 34)
# AEDAT 3.1 (iniVation file-format documentation): packet header fields, little-endian.
AEDAT3_PACKET = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"),
                          ("ts_offset", "<i4"), ("ts_overflow", "<i4"), ("capacity", "<i4"),
                          ("number", "<i4"), ("valid", "<i4")])
AEDAT3_POLARITY = 1        # eventType of polarity events (type 0 = special events)


def make_events(x, y, t, p) -> np.ndarray:
    """A structured array (:data:`EVENT_DTYPE`, fields x, y, t, p) of equal-length arrays."""
    ev = np.zeros(len(t), EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = x, y, t, p
    return ev


def unwrap_timestamps(t, bits: int = 32) -> np.ndarray:
    """``bits``-bit timestamps with their wraps undone (int64).

    A wrap is a step back by more than half the counter range: the counter passed
    2**bits - 1 and restarted from 0. Smaller steps back (out-of-order events) are kept.
    """
    t = np.asarray(t, np.int64)
    if len(t) < 2:
        return t
    wraps = np.concatenate([[0], np.cumsum(np.diff(t) < -(1 << (bits - 1)))])
    return t + (wraps << bits)


def _aedat_header(data: bytes, path) -> tuple:
    """(version line, offset of the first byte after the header) of an AEDAT file.

    Header lines start with ``#`` and end with ``\\n``; AEDAT 3.1 and 4.0 end the header
    with ``#!END-HEADER``. No header: (b"", 0), read as AEDAT 2.0 (jAER wrote such files).
    """
    pos, version = 0, b""
    while data.startswith(b"#", pos):
        end = data.find(b"\n", pos)
        if end < 0:
            raise UserError(f"{path}: header line without an end (truncated header)")
        line = data[pos:end].rstrip(b"\r")
        if pos == 0 and line.startswith(b"#!AER-DAT"):
            version = line[len(b"#!AER-DAT"):]
        pos = end + 1
        if line == b"#!END-HEADER":
            break
    if version in (b"3.1", b"4.0") and not data[:pos].rstrip().endswith(b"#!END-HEADER"):
        raise UserError(f"{path}: AEDAT {version.decode()} header has no #!END-HEADER line "
                        "(truncated header)")
    return version, pos


def read_aedat2(path: Path) -> np.ndarray:
    """Events (:data:`EVENT_DTYPE`) of a DVS128 AEDAT 2.0 file, decoded as jAER does.

    Format (jAER's AEDAT 2.0, ``net.sf.jaer.eventio.AEFileInputStream``): header lines
    starting with ``#``, then events of two big-endian uint32, address then timestamp (us).
    Decoding (jAER ``ch.unizh.ini.jaer.chip.retina.DVS128.Extractor``): addresses with
    0x8000 or 0x80000000 set are special events and are skipped; otherwise
    p = 1 - (bit 0) (1 = ON), x = 127 - (bits 1..7) (jAER mirrors x), y = bits 8..14.
    32-bit timestamp wraps are unwrapped (:func:`unwrap_timestamps`).
    """
    data = _read_bytes(path)
    version, pos = _aedat_header(data, path)
    if version not in (b"", b"2.0"):
        raise UserError(f"{path}: AEDAT {version.decode(errors='replace')} file where "
                        "AEDAT 2.0 was expected")
    body = len(data) - pos
    if body % 8:
        raise UserError(f"{path}: truncated: {body} bytes of events is not a multiple of 8")
    ev = np.frombuffer(data, dtype=">u4", offset=pos).reshape(-1, 2).astype(np.int64)
    addr, t = ev[:, 0], unwrap_timestamps(ev[:, 1])   # unwrapped over all events, in order
    keep = (addr & DVS128_SPECIAL_BITS) == 0
    addr, t = addr[keep], t[keep]
    return make_events(127 - ((addr >> 1) & 0x7F), (addr >> 8) & 0x7F, t, 1 - (addr & 1))


def read_atis_bin(path: Path, sensor=None) -> np.ndarray:
    """Events (:data:`EVENT_DTYPE`) of an N-MNIST / N-Caltech101 ``.bin`` file.

    Format (Orchard et al. 2015, as tonic.io.read_mnist_file reads it): 5 bytes per
    event: byte 0 x, byte 1 y, then 24 bits big-endian whose top bit is the polarity
    (1 = ON) and whose low 23 bits are the timestamp (us). A record with y = 240 is a
    timestamp-overflow marker, not an event: it adds 2**13 us to every later timestamp.
    ``sensor`` (height, width): events outside it are an error (default N-Caltech101's).
    """
    data = _read_bytes(path)
    if len(data) % 5:
        raise UserError(f"{path}: truncated: {len(data)} bytes is not a multiple of 5")
    ev = np.frombuffer(data, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    x, y = ev[:, 0], ev[:, 1]
    p = ev[:, 2] >> 7
    t = ((ev[:, 2] & 0x7F) << 16) | (ev[:, 3] << 8) | ev[:, 4]
    marker = y == ATIS_OVERFLOW_Y
    t = t + np.cumsum(marker) * ATIS_OVERFLOW_US      # each marker shifts itself and later ones
    x, y, p, t = x[~marker], y[~marker], p[~marker], t[~marker]
    h, w = sensor or NCALTECH_SENSOR
    bad = (x >= w) | (y >= h)
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"{path}: event {i} at x={int(x[i])}, y={int(y[i])} is outside the "
                        f"{w}x{h} sensor")
    return make_events(x, y, t, p)


def read_ncaltech_bin(path: Path) -> np.ndarray:
    """Events of an N-Caltech101 ``.bin`` file (240 x 180 sensor; :func:`read_atis_bin`)."""
    return read_atis_bin(path, NCALTECH_SENSOR)


def read_nmnist_bin(path: Path) -> np.ndarray:
    """Events of an N-MNIST ``.bin`` file (34 x 34 sensor; :func:`read_atis_bin`)."""
    return read_atis_bin(path, NMNIST_SENSOR)


def read_aedat31(path: Path) -> np.ndarray:
    """Polarity events (:data:`EVENT_DTYPE`) of an AEDAT 3.1 file (DVS Gesture's format).

    Format (iniVation, "AEDAT 3.1" file-format documentation): header lines starting with
    ``#``, the first ``#!AER-DAT3.1``, the last ``#!END-HEADER``; then packets, each a
    28-byte little-endian header (:data:`AEDAT3_PACKET`) and ``number x size`` bytes of
    events. Polarity packets (type 1) hold 8-byte events: uint32 data (bit 0 valid,
    bit 1 polarity, bits 2..16 y, bits 17..31 x) and an int32 timestamp (us) whose full
    value is ``ts_overflow << 31 | timestamp``. Other packet types and invalid events
    are skipped.
    """
    data = _read_bytes(path)
    version, pos = _aedat_header(data, path)
    if version != b"3.1":
        raise UserError(f"{path}: not an AEDAT 3.1 file (version line "
                        f"{version.decode(errors='replace')!r})")
    parts = []
    n_packets = 0
    while pos < len(data):
        if len(data) - pos < AEDAT3_PACKET.itemsize:
            raise UserError(f"{path}: truncated: packet {n_packets} header has "
                            f"{len(data) - pos} of {AEDAT3_PACKET.itemsize} bytes")
        head = np.frombuffer(data, AEDAT3_PACKET, count=1, offset=pos)[0]
        size, number = int(head["size"]), int(head["number"])
        if size < 8 or number < 0:
            raise UserError(f"{path}: packet {n_packets}: event size {size} or count {number} "
                            "is not valid")
        start = pos + AEDAT3_PACKET.itemsize
        end = start + size * number
        if end > len(data):
            raise UserError(f"{path}: truncated: packet {n_packets} needs {size * number} bytes "
                            f"of events, {len(data) - start} left")
        if int(head["type"]) == AEDAT3_POLARITY:
            raw = np.frombuffer(data[start:end], "<u4").reshape(number, size // 4)
            word = raw[:, 0].astype(np.int64)
            ts = raw[:, 1].astype(np.int64) | (int(head["ts_overflow"]) << 31)
            ok = (word & 1) == 1
            word, ts = word[ok], ts[ok]
            parts.append(make_events((word >> 17) & 0x7FFF, (word >> 2) & 0x7FFF, ts,
                                     (word >> 1) & 1))
        pos = end
        n_packets += 1
    return np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE)


def read_aedat4(path: Path) -> np.ndarray:
    """Events (:data:`EVENT_DTYPE`) of an AEDAT 4 file, decoded by the ``aedat`` package.

    Format: iniVation's AEDAT 4.0 (flatbuffers packets, LZ4/Zstd compressed), which the
    DVS-CIFAR10 re-release uses. Needs the optional extra ``pip install .[events]``; the
    polarity field ``on`` becomes p (1 = ON).
    """
    try:
        import aedat          # optional: a compiled decoder, only for AEDAT 4 files
    except ImportError:
        raise UserError(f"{path}: AEDAT 4 needs the 'aedat' package "
                        "(pip install 'spquant-rtl[events]')") from None
    if not Path(path).is_file():
        raise UserError(f"{path}: cannot read (no such file)")
    parts = []
    try:
        for packet in aedat.Decoder(str(path)):
            if "events" in packet:
                e = packet["events"]
                parts.append(make_events(e["x"], e["y"], e["t"], e["on"].astype(np.int8)))
    except Exception as e:    # the decoder raises plain exceptions on damaged files
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path}: not a readable AEDAT 4 file ({why})") from None
    return np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE)


def read_aedat(path: Path) -> np.ndarray:
    """Events of an AEDAT file of any version, by its first line: ``#!AER-DAT4.0``
    (:func:`read_aedat4`), ``#!AER-DAT3.1`` (:func:`read_aedat31`), else 2.0 as jAER
    wrote DVS-CIFAR10 (:func:`read_aedat2`)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    if head.startswith(b"#!AER-DAT4"):
        return read_aedat4(path)
    if head.startswith(b"#!AER-DAT3"):
        return read_aedat31(path)
    return read_aedat2(path)


EVENT_FORMATS = {     # dataset: (file name endings, reader, sensor (height, width))
    "dvs_cifar10": ((".aedat", ".aedat4"), read_aedat, DVS128_SENSOR),
    "ncaltech101": ((".bin",), read_ncaltech_bin, NCALTECH_SENSOR),
    "nmnist": ((".bin",), read_nmnist_bin, NMNIST_SENSOR),
}


def load_event_folder(root, which: str, timesteps: int, height: int, width: int,
                      max_count: int, where: str = "<config>"):
    """(x uint8 [N, T, 2, H, W], y int64 [N], class names) from ``root/<class>/*<ext>``."""
    exts, reader, sensor = EVENT_FORMATS[which]

    def files(d):
        return sorted(f for f in d.iterdir() if f.is_file() and f.suffix in exts)

    root = _folder(root, which, where)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and files(d))
    if not classes:
        ext = "|".join(exts)
        raise UserError(f"{where}: data.root: {str(root)!r} has no class folders with {ext} "
                        f"files (expected <root>/<class>/*{ext})")
    xs, ys = [], []
    for label, name in enumerate(classes):
        for f in files(root / name):
            ev = reader(f)
            xs.append(events_to_frames(ev["x"], ev["y"], ev["p"], ev["t"], timesteps, sensor,
                                       (height, width), max_count))
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
