"""Atomic file output shared by every stage: a temp file in the same folder, then rename."""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import numpy as np

from .cli import UserError


def atomic_write(path, data):
    """Write ``data`` (bytes, str, or a callable given the temp path) to ``path`` atomically.

    Readers see the old file or the complete new one, never a half-written file; on any
    error the temp file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 mode would stick to the final file; a plain open honours umask.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        if callable(data):
            data(tmp)
        else:
            tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_report(path, report: dict):
    """``report`` as indented JSON at ``path``, atomically; a path that cannot be written is
    a UserError naming it (one line from a CLI)."""
    try:
        atomic_write(path, json.dumps(report, indent=1) + "\n")
    except OSError as e:
        raise UserError(f"{path}: cannot write ({e.strerror or e})") from None


def save_npy(path, array):
    """``array`` as a .npy file at exactly ``path`` (np.save would append ".npy" to a temp
    name); for :func:`atomic_write`'s callable form."""
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
