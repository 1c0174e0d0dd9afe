"""Memory images: an export's parameters as ``$readmemh`` files, in the core's memory map.

One file per preloadable SRAM (weights, thresholds, channel masks, position masks): one
word per line, address 0 first, hexadecimal, most significant digit first, every word
written (padding lanes as 0). The words are those the parameter stream would write
(``sim.host.param_transfers``, hw.params' memory map), so a core whose ``spquant_sram``
instances name these files as ``INIT_FILE`` starts with the export loaded.

    images = write_images(params, net, out_dir)     # {sram name: path}
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from project_config.files import atomic_write
from .params import (CoreParams, TARGET_CHANNEL_MASK, TARGET_POSITION_MASK, TARGET_THRESHOLDS,
                     TARGET_WEIGHTS)

PRELOADED = ("weight_sram", "threshold_sram", "channel_mask_sram", "position_mask_sram")
# The param-stream targets those memories hold; runtime-pruning settings always stream.
PRELOADED_TARGETS = (TARGET_WEIGHTS, TARGET_THRESHOLDS, TARGET_CHANNEL_MASK, TARGET_POSITION_MASK)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_CHUNK = 8192          # words per conversion step (bounds the temporary bit matrix)


def _twos(v: np.ndarray, width: int) -> np.ndarray:
    return (np.asarray(v, dtype=np.int64) & ((1 << width) - 1)).astype(np.uint64)


def _pad_channels(a: np.ndarray, channels: int) -> np.ndarray:
    """Pad axis 0 with zeros to ``channels`` (a group's padding lanes)."""
    return np.pad(a, [(0, channels - a.shape[0])] + [(0, 0)] * (a.ndim - 1))


def memory_fields(p: CoreParams, net) -> dict:
    """Per preloadable SRAM: (fields [depth, F] uint64, field width). Word ``a`` of the
    memory is ``sum_i fields[a, i] << (i * field width)``."""
    p.check_export(net)
    L, W = p.lanes, p.acc_width
    weights, thresholds, cmasks, pmasks = [], [], [], []
    for lp, le in zip(p.layers, net.layers):
        n = lp.groups * L
        codes = _pad_channels(le.w_code.reshape(le.out_channels, le.in_channels, lp.taps), n)
        # Address order (group, tap, input channel); lane j = channel group * L + j.
        codes = codes.reshape(lp.groups, L, lp.in_channels, lp.taps).transpose(0, 3, 2, 1)
        weights.append(codes.reshape(-1, L).astype(np.uint64))
        if lp.kind == "conv":
            lane = _twos(le.thresholds.reshape(le.out_channels, -1), W)   # F, P, N per level
        else:
            lane = np.zeros((le.out_channels, p.levels * 3), np.uint64)
            lane[:, 0] = _twos(le.bias, W)
        thresholds.append(_pad_channels(lane, n).reshape(lp.groups, -1))
        cmasks.append(_pad_channels(le.channel_mask.astype(np.uint64), n).reshape(lp.groups, L))
        if lp.kind == "conv":
            pmasks.append(le.position_mask.reshape(-1, 1).astype(np.uint64))
    return {
        "weight_sram": (np.concatenate(weights), p.weight_bits),
        "threshold_sram": (np.concatenate(thresholds), W),
        "channel_mask_sram": (np.concatenate(cmasks), 1),
        "position_mask_sram": (np.concatenate(pmasks), 1),
    }


def _hex_lines(fields: np.ndarray, field_width: int) -> bytes:
    """Rows of fields -> hex words, one per line (vectorized: VGG-9 has 150k weight words)."""
    n, F = fields.shape
    width = F * field_width
    digits = -(-width // 4)
    shifts = np.arange(field_width, dtype=np.uint64)
    out = []
    for lo in range(0, n, _CHUNK):
        chunk = fields[lo:lo + _CHUNK]
        bits = ((chunk[:, :, None] >> shifts) & np.uint64(1)).astype(np.uint8)
        bits = bits.reshape(len(chunk), width)                    # bit i of the word at [:, i]
        bits = np.pad(bits, ((0, 0), (0, digits * 4 - width))).reshape(len(chunk), digits, 4)
        nibbles = bits[..., 0] | (bits[..., 1] << 1) | (bits[..., 2] << 2) | (bits[..., 3] << 3)
        text = _HEX[nibbles[:, ::-1]]                             # most significant first
        out.append(np.concatenate([text, np.full((len(chunk), 1), ord("\n"), np.uint8)], axis=1)
                   .tobytes())
    return b"".join(out)


def image_bytes(p: CoreParams, net) -> dict:
    """Per preloadable SRAM: the contents of its image file."""
    return {name: _hex_lines(fields, fw) for name, (fields, fw) in memory_fields(p, net).items()}


def write_images(p: CoreParams, net, out_dir, export_dir=None) -> dict:
    """Write ``<name>.hex`` for every preloadable SRAM into ``out_dir`` (atomically), plus
    ``images.json`` naming the export (its manifest hash) when ``export_dir`` is given.
    Returns {sram name: absolute path}."""
    out_dir = Path(out_dir).resolve()
    paths = {}
    for name, text in image_bytes(p, net).items():
        paths[name] = out_dir / f"{name}.hex"
        atomic_write(paths[name], text)
    info = {"memories": {k: v.name for k, v in paths.items()}}
    if export_dir is not None:
        info["export"] = str(Path(export_dir).resolve())
        info["export_sha256"] = export_sha256(export_dir)
    atomic_write(out_dir / "images.json", json.dumps(info, indent=1) + "\n")
    return paths


def read_image(path) -> list:
    """An image file -> its words (ints), address 0 first."""
    return [int(line, 16) for line in Path(path).read_text().split()]


def export_sha256(export_dir) -> str:
    """The export's content hash (``manifest.json``'s ``sha256``, over every array)."""
    return json.loads((Path(export_dir) / "manifest.json").read_text())["sha256"]
