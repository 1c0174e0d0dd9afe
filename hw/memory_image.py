"""Memory images: an export's parameters as ``$readmemh`` files, in the core's memory map.

One file per preloadable SRAM (weights, thresholds, channel masks, position masks): one
word per line, address 0 first, hexadecimal, most significant digit first, every word
written (padding lanes as 0). The words come from hw.protocol's word packer, the same one
the parameter stream uses (``hw.protocol.param_transfers``, hw.params' memory map), so a core whose ``spquant_sram``
instances name these files as ``INIT_FILE`` starts with the export loaded.

    images = write_images(params, net, out_dir)     # {sram name: path}
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from project_config.files import atomic_write
from .params import CoreParams
from .protocol import memory_fields

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_CHUNK = 8192          # words per conversion step (bounds the temporary bit matrix)


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
    # A memory no layer uses (the odd weight bank of one-group layers) gets no image.
    return {name: _hex_lines(fields, fw) for name, (fields, fw) in memory_fields(p, net).items()
            if len(fields)}


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
