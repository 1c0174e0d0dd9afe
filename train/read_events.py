"""``python -m train.read_events FILE [--format auto|aedat2|aedat31|aedat4|ncaltech101|nmnist] [--out events.npy]``

Decodes one event recording with the project's readers (train.datasets) and prints its
event count, time span, coordinate ranges and ON fraction; ``--out`` writes the events as
a structured ``.npy`` (fields x, y, t, p: tonic's layout). A truncated or damaged file is
one error line naming it, exit code 2.
"""
from __future__ import annotations

from project_config import cli_main
from project_config.cli import parser
from project_config.files import atomic_write, check_output_file, save_npy

from .datasets import (read_aedat, read_aedat2, read_aedat4, read_aedat31, read_ncaltech_bin,
                       read_nmnist_bin)

READERS = {"auto": None, "aedat2": read_aedat2, "aedat31": read_aedat31, "aedat4": read_aedat4,
           "ncaltech101": read_ncaltech_bin, "nmnist": read_nmnist_bin}


def _auto(path):
    """``.bin`` files are N-Caltech101's layout (the wider sensor); others AEDAT by version."""
    return read_ncaltech_bin(path) if str(path).endswith(".bin") else read_aedat(path)


def main(argv=None):
    ap = parser("python -m train.read_events", __doc__)
    ap.add_argument("file", help="the recording")
    ap.add_argument("--format", choices=list(READERS), default="auto",
                    help="auto: .bin = N-Caltech101, else AEDAT by its version line")
    ap.add_argument("--out", help="write the events here as a structured .npy")
    args = ap.parse_args(argv)
    if args.out:
        check_output_file(args.out, "--out")       # before the work: nothing written on error
    ev = (READERS[args.format] or _auto)(args.file)
    if len(ev):
        print(f"{args.file}: {len(ev)} events, t {int(ev['t'].min())}..{int(ev['t'].max())} us, "
              f"x {int(ev['x'].min())}..{int(ev['x'].max())}, "
              f"y {int(ev['y'].min())}..{int(ev['y'].max())}, ON {float(ev['p'].mean()):.3f}")
    else:
        print(f"{args.file}: 0 events")
    if args.out:
        atomic_write(args.out, lambda tmp: save_npy(tmp, ev))
    return 0


def cli():
    """Console-script entry point (pyproject [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
