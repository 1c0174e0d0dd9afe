"""The command-line conventions every tool shares.

- A user error (bad file, key or value) is one line on stderr and exit code 2
  (:class:`UserError`, :func:`cli_main`).
- The options several tools take are declared once here: :func:`add_config`,
  :func:`add_out`, :func:`add_json`, :func:`add_export`, and the argparse types
  :func:`positive_int`, :func:`nonnegative_int`, :func:`bounded_int`, :func:`seed`,
  :func:`bounded_float`, :func:`probability`, :func:`torch_device` and :func:`comma_list` (every
  number finite and in its range).
- SIGTERM is handled like Ctrl-C (SIGINT): it unwinds the program, so temp files are removed
  and child processes stopped by the code that owns them; exit code 130 (143 for SIGTERM).

    ap = parser("python -m hw.build", __doc__)
    add_config(ap)
    add_out(ap, "output directory (default build/<model name>)")
"""
from __future__ import annotations

import argparse
import math
import re
import signal
import sys
import threading
import warnings


class UserError(Exception):
    """An error caused by the user's input (file, key, value): reported in one line, exit 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that cleanup runs as for Ctrl-C."""


def _stop(signum, frame):
    # The first SIGINT or SIGTERM unwinds the program; later ones are ignored, so that they
    # cannot cut the cleanup short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _quiet_exit(code: int):
    """Exit after the one error line: work abandoned mid-way (an elaboration cut short)
    must not add warnings at shutdown, such as Amaranth's UnusedElaboratable."""
    warnings.simplefilter("ignore")
    sys.exit(code)


def cli_main(main, argv=None):
    """Run ``main(argv)``; turn :class:`UserError` (and its subclasses) into one line + exit 2.

    SIGINT and SIGTERM unwind ``main`` (``finally`` blocks and ``except BaseException``
    cleanups run: temp files, temp folders, child processes), then exit 130 / 143."""
    saved = None
    if threading.current_thread() is threading.main_thread():
        saved = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        rc = main(argv)
    except UserError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        _quiet_exit(2)
    except KeyboardInterrupt as e:
        print("error: terminated" if isinstance(e, Terminated) else "error: interrupted",
              file=sys.stderr)
        _quiet_exit(143 if isinstance(e, Terminated) else 130)
    finally:
        for s, handler in (saved or {}).items():
            signal.signal(s, handler)
    sys.exit(rc or 0)


def one_line(e: UserError) -> str:
    """The message of ``e`` on one line (line breaks in a quoted value shown as ``\\n``),
    unless ``e`` carries a log on purpose (its ``multiline`` attribute is true)."""
    text = str(e)
    if getattr(e, "multiline", False):
        return text
    return text.replace("\r", "\\r").replace("\n", "\\n")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's error convention: a bad option is one ``error:`` line on
    stderr naming the option and the value, and exit code 2 (``--help`` for the usage)."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message}\n")


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """An argument parser for ``prog`` whose help is the module docstring, kept as written."""
    return ArgumentParser(prog=prog, description=doc,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


SEED_MAX = 2 ** 32 - 1        # NumPy's legacy seeding and most RNGs take 32-bit seeds
EPOCHS_MAX = 100_000          # train.epochs' bound (project_config.schema), for every epochs option
SAMPLES_MAX = 100_000         # sim.samples' bound, for every option that counts samples to run


def _int(text: str, lo: int, what: str, hi: int | None = None) -> int:
    try:
        value = int(text, 10)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{str(text)[:40]!r} is not an integer") from None
    if value < lo:
        raise argparse.ArgumentTypeError(f"{value} is not {what}")
    if hi is not None and value > hi:
        raise argparse.ArgumentTypeError(f"{value} is above the maximum {hi}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int(text, 1, "a positive integer (>= 1)")


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int(text, 0, "a non-negative integer (>= 0)")


def bounded_int(lo: int, hi: int):
    """argparse type factory: an integer in [lo, hi]."""
    def parse(text: str) -> int:
        return _int(text, lo, f"at least {lo}", hi)
    parse.__name__ = f"integer in [{lo}, {hi}]"
    return parse


def seed(text: str) -> int:
    """argparse type: a seed, an integer in [0, 2**32 - 1]."""
    return _int(text, 0, "a non-negative integer (>= 0)", SEED_MAX)


def probability(text: str, hi: float = 1.0) -> float:
    """argparse type: a finite float in [0, 1) (``hi``: a smaller upper bound, inclusive)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{str(text)[:40]!r} is not a number") from None
    if not (math.isfinite(value) and 0.0 <= value < 1.0 and value <= hi):
        bound = "[0, 1)" if hi >= 1.0 else f"[0, {hi}]"
        raise argparse.ArgumentTypeError(f"{text} is not a probability in {bound}")
    return value


def bounded_float(lo: float, hi: float):
    """argparse type factory: a finite float in [lo, hi] (NaN and inf refused)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{str(text)[:40]!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{str(text)[:40]} is not a finite number")
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is not in [{lo}, {hi}]")
        return value
    parse.__name__ = f"number in [{lo}, {hi}]"
    return parse


def stall_probability(text: str) -> float:
    """argparse type: a random-stall probability in [0, 0.95] (the config's bound:
    sim.stall_probability; near 1 a simulation runs for millions of idle cycles)."""
    return probability(text, 0.95)


def torch_device(text: str) -> str:
    """argparse type: a torch device name, ``cpu``, ``cuda`` or ``cuda:N`` (checked here
    without torch; whether CUDA is there is the trainer's check)."""
    if not re.fullmatch(r"cpu|cuda(:[0-9]{1,3})?", str(text)):
        raise argparse.ArgumentTypeError(f"{str(text)[:40]!r} is not cpu, cuda or cuda:N")
    return text


def comma_list(kind):
    """argparse type factory: comma-separated values of ``kind`` (another argparse type or
    ``int``, ``float``, ``str``; empty items dropped), a tuple."""
    def convert(text: str) -> tuple:
        return tuple(kind(v) for v in text.split(",") if v)
    convert.__name__ = f"comma-separated {kind.__name__}"     # argparse's error names it
    return convert


def add_config(ap: argparse.ArgumentParser, required: bool = True, default: str | None = None,
               help: str = "config YAML (path, or a name in configs/)"):
    """``--config NAME.yaml``: resolved by project_config.resolve_config_path."""
    ap.add_argument("--config", required=required and default is None, default=default,
                    help=help + (f" (default {default})" if default else ""))


def add_out(ap: argparse.ArgumentParser, help: str, default: str | None = None):
    """``--out DIR``: where the tool writes its outputs."""
    ap.add_argument("--out", default=default, help=help)


def add_json(ap: argparse.ArgumentParser, help: str = "also write the report as JSON here (atomically)"):
    """``--json OUT``: a machine-readable copy of the printed report."""
    ap.add_argument("--json", help=help)


def add_export(ap: argparse.ArgumentParser, required: bool = False,
               help: str = "integer export directory (manifest.json + export.npz)"):
    """``--export DIR``: an integer export written by python -m model_export."""
    ap.add_argument("--export", required=required, help=help)
