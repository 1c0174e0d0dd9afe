"""Atomic output shared by every stage.

- :func:`atomic_write`: one file, through a temp file in the same folder and a rename.
- :func:`atomic_dir`: a folder of several files that belong together (an export, a hardware
  build), written into a temp sibling ``.<name>.tmp-XXXX`` and committed as a unit by
  :func:`commit_dir`, which swaps it in with one ``renameat2(RENAME_EXCHANGE)`` where the
  kernel and file system have it (else two renames, with SIGINT and SIGTERM held back in
  between). A reader therefore sees the old complete folder or the new complete one; one
  that finds the folder missing or inconsistent during the swap reads it again
  (:func:`read_consistent`).
- :func:`check_output_dir`, :func:`check_output_file`: output locations checked before the
  work starts (an existing file, a path under a file, a folder that cannot be written).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import secrets
import shutil
import signal
import threading
import time
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


# --- output locations, checked before the work ----------------------------------------

def _existing_ancestor(p: Path) -> Path:
    anc = p.absolute()
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    return anc


def check_output_dir(path, what: str) -> Path:
    """``path`` as a Path if it is, or can be created as, a folder this process can write;
    else a UserError naming ``what`` (the option or config key) and the path. Nothing is
    created (a probe file is created and removed in the nearest existing folder)."""
    p = Path(path)
    try:
        if p.exists() and not p.is_dir():
            raise UserError(f"{what}: {p}: exists and is not a folder")
        anc = _existing_ancestor(p)
        if not anc.is_dir():
            raise UserError(f"{what}: {p}: {anc} is a file, not a folder")
        _probe(anc, what, p)
    except (OSError, ValueError) as e:
        raise UserError(f"{what}: {str(p)[:200]!r}: not a usable output folder "
                        f"({getattr(e, 'strerror', None) or e})") from None
    return p


def check_output_file(path, what: str) -> Path:
    """``path`` as a Path if a file can be written there (atomically: its folder must be
    writable); else a UserError naming ``what`` and the path."""
    p = Path(path)
    try:
        if p.is_dir() or str(path).endswith(os.sep):
            raise UserError(f"{what}: {p}: is a folder, not a file")
        check_output_dir(p.parent, what)
    except (OSError, ValueError) as e:
        raise UserError(f"{what}: {str(p)[:200]!r}: not a usable output file "
                        f"({getattr(e, 'strerror', None) or e})") from None
    return p


def _probe(folder: Path, what: str, target: Path):
    probe = folder / f".write-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as e:
        raise UserError(f"{what}: {target}: cannot write in {folder} "
                        f"({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


# --- folders committed as a unit ------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_libc = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the kernel,
    the C library or the file system lacks it."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.renameat2           # glibc >= 2.28
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return False
    rc = _libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM held back (delivered on exit) in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def temp_sibling(path: Path, kind: str) -> Path:
    """``<parent>/.<name>.<kind>-<pid>-<random>``: a hidden sibling of ``path``."""
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


def commit_dir(tmp: Path, final: Path):
    """Make the complete folder ``tmp`` the folder ``final``, as one step for readers: the
    old ``final`` (if any) is swapped out with one atomic exchange and then removed."""
    if not final.exists():
        os.rename(tmp, final)
        return
    if _exchange(tmp, final):
        shutil.rmtree(tmp, ignore_errors=True)      # tmp now holds the old folder
        return
    old = temp_sibling(final, "old")
    with _signals_held():
        os.rename(final, old)
        os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def commit_entries(tmp: Path, final: Path, owned: tuple):
    """Commit the complete folder ``tmp`` as ``final``, whose entries named in ``owned`` the
    writer owns (``owned[-1]``, the manifest or report, committed last).

    If ``final`` is absent or holds only owned entries, the whole folder is swapped in
    (:func:`commit_dir`). Otherwise ``final`` also holds other files (a build folder that a
    simulation also uses, an export written into a run folder) that must stay: each owned
    entry is moved in with ``os.replace`` (a folder by an exchange), ``owned[-1]`` last,
    with SIGINT and SIGTERM held back until all have moved; owned entries that ``tmp`` lacks
    are removed. ``tmp`` is removed in both cases."""
    tmp, final = Path(tmp), Path(final)
    if not final.exists() or set(os.listdir(final)) <= set(owned):
        commit_dir(tmp, final)
        return
    trash = []
    with _signals_held():
        for name in owned:
            src, dst = tmp / name, final / name
            if src.is_dir() and dst.is_dir() and not dst.is_symlink():
                if not _exchange(src, dst):
                    old = temp_sibling(dst, "old")
                    os.rename(dst, old)
                    os.rename(src, dst)
                    trash.append(old)
            elif src.exists():
                if dst.is_dir() and not dst.is_symlink():
                    old = temp_sibling(dst, "old")
                    os.rename(dst, old)
                    trash.append(old)
                os.replace(src, dst)
            elif dst.is_dir() and not dst.is_symlink():
                old = temp_sibling(dst, "old")
                os.rename(dst, old)
                trash.append(old)
            elif dst.exists() or dst.is_symlink():
                dst.unlink()
    for t in trash:
        shutil.rmtree(t, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(final, owned: tuple | None = None):
    """``with atomic_dir(out, owned) as tmp:`` write the folder's files into ``tmp`` (a fresh,
    empty temp sibling of ``out``); on a clean exit it is committed with
    :func:`commit_entries` (``owned``: the names the writer owns; None: the whole folder,
    :func:`commit_dir`), on any error or signal ``tmp`` is removed and ``out`` is left as
    it was. Temp siblings that killed processes left behind are removed first."""
    final = Path(os.path.abspath(final))
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(final)
    tmp = temp_sibling(final, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        if owned is None:
            commit_dir(tmp, final)
        else:
            commit_entries(tmp, final, owned)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_siblings(final: Path):
    """Remove the temp siblings (``.<name>.tmp-*``, ``.<name>.old-*``) that a process killed
    outright (SIGKILL, power loss) left beside ``final``; those of live processes stay."""
    final = Path(final)
    try:
        entries = list(final.parent.glob(f".{final.name}.*-*-*"))
    except OSError:
        return
    for entry in entries:
        parts = entry.name.rsplit("-", 2)
        if len(parts) != 3 or not parts[1].isdigit() or _alive(int(parts[1])):
            continue
        shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def read_consistent(read, attempts: int = 20, delay: float = 0.05):
    """``read()``, again after a short wait if it fails with FileNotFoundError or
    :class:`Inconsistent` (a folder being swapped by :func:`commit_dir`); the last
    attempt's error is raised."""
    for i in range(attempts):
        try:
            return read()
        except (FileNotFoundError, Inconsistent):
            if i == attempts - 1:
                raise
            time.sleep(delay)


class Inconsistent(Exception):
    """Files of one folder that do not belong together (read during a swap)."""
