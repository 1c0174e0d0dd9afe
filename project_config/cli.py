"""The command-line conventions every tool shares.

- A user error (bad file, key or value) is one line on stderr and exit code 2
  (:class:`UserError`, :func:`cli_main`).
- The options several tools take are declared once here: :func:`add_config`,
  :func:`add_out`, :func:`add_json`, :func:`add_export`, and the argparse types
  :func:`positive_int`, :func:`nonnegative_int` and :func:`probability`.

    ap = parser("python -m hw.build", __doc__)
    add_config(ap)
    add_out(ap, "output directory (default build/<model name>)")
"""
from __future__ import annotations

import argparse
import math
import sys


class UserError(Exception):
    """An error caused by the user's input (file, key, value): reported in one line, exit 2."""


def cli_main(main, argv=None):
    """Run ``main(argv)``; turn :class:`UserError` (and its subclasses) into one line + exit 2."""
    try:
        rc = main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(rc or 0)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's error convention: a bad option is one ``error:`` line on
    stderr naming the option and the value, and exit code 2 (``--help`` for the usage)."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message}\n")


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """An argument parser for ``prog`` whose help is the module docstring, kept as written."""
    return ArgumentParser(prog=prog, description=doc,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _int(text: str, lo: int, what: str) -> int:
    try:
        value = int(text, 10)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < lo:
        raise argparse.ArgumentTypeError(f"{value} is not {what}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int(text, 1, "a positive integer (>= 1)")


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int(text, 0, "a non-negative integer (>= 0)")


def probability(text: str) -> float:
    """argparse type: a finite float in [0, 1)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise argparse.ArgumentTypeError(f"{text} is not a probability in [0, 1)")
    return value


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
