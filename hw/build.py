"""``python -m hw.build --config NAME.yaml [--out DIR] [--no-lint] [--export EXPORT] [--no-skipping] [--bus {none,axi}]``

Writes ``DIR/snn_core.v`` (the generated core), ``DIR/spquant_sram.v`` (the SRAM
macro's behavioural model) and ``DIR/report.json`` (memory bits by
kind, accumulator widths, lanes, memory map), then lints the Verilog with Verilator.
Default ``DIR`` is ``build/<model name>``. ``--bus axi`` writes ``DIR/snn_core_axi.v``
instead of ``snn_core.v``: the core inside its AXI4-Stream / AXI4-Lite wrapper (hw.axi,
register map hw.regmap); ``report.json`` then names ``snn_core_axi`` as its ``top``.

The build is one unit: everything is generated and linted in a temp sibling
``.<DIR name>.tmp-XXXX`` and then committed (project_config.files.commit_entries): a
``DIR`` that holds only these outputs is swapped with the new one in one atomic exchange;
one that also holds other files (``build/<model name>`` after ``make sim``) gets the new
``images/``, Verilog and ``report.json`` (last) with SIGINT and SIGTERM held back until
all have moved. ``report.json`` records each source's sha256, so a reader can check that
the files it finds belong to the report (:func:`read_build`). An error, SIGINT or SIGTERM
leaves ``DIR`` as it was (temp folder removed, Verilator stopped).

``--export EXPORT`` also writes the export's parameters as memory images
(``DIR/images/<sram>.hex``, hw.memory_image) and names them as the ``INIT_FILE`` of the
weight, threshold and mask SRAMs, so simulation starts with the parameters loaded (the
Verilog holds the images' absolute paths, not their contents). ``--no-skipping`` builds
the reference core that issues every input, position and group (``hardware.skipping``).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from amaranth.back import verilog

from model_export import load_export
from project_config import Config, UserError, cli_main, load_config
from project_config.cli import add_config, add_export, add_out, parser
from project_config.files import Inconsistent, atomic_dir, atomic_write, check_output_dir, read_consistent
from .core import SnnCore
from .memory_image import export_sha256, write_images
from .memory_report import build_report_fields
from .params import CoreParams
from .sram import SRAM_MODULE, SRAM_VERILOG
from .toolchain import lint

TOP = "snn_core"
AXI_TOP = "snn_core_axi"
BUSES = {"none": TOP, "axi": AXI_TOP}      # --bus -> top module (and file) name
# The entries of a build folder that hw.build writes (and replaces as one unit), report last.
OUTPUTS = ("images", f"{TOP}.v", f"{AXI_TOP}.v", f"{SRAM_MODULE}.v", "report.json")


# Yosys' Verilog backend writes a comb signal whose bits are constant as
# `always @* x = CONST;`. IEEE 1364 gives such a block no event to run on, so Icarus never
# executes it and x stays X (amaranth-lang/amaranth#1629). An `initial` with the same
# assignment gives four-state simulators the value; synthesis keeps the `always`.
_CONSTANT_ALWAYS = re.compile(r"^(  always @\*\n    (.+?) = (\d+'[bhd][0-9a-fA-F_]+);\n)", re.M)


def _initialise_constant_processes(text: str) -> str:
    return _CONSTANT_ALWAYS.sub(lambda mo: f"{mo.group(1)}  initial {mo.group(2)} = {mo.group(3)};\n", text)


def generate_verilog(params: CoreParams, init_files: dict | None = None, bus: str = "none") -> str:
    """Verilog of the core (``bus`` "none", module ``snn_core``) or of the core in its AXI
    wrapper (``bus`` "axi", module ``snn_core_axi``, hw.axi)."""
    try:
        if bus == "axi":
            from .axi import SnnCoreAxi     # only an AXI build needs the wrapper (it imports hw.core)
            text = verilog.convert(SnnCoreAxi(params, init_files), name=AXI_TOP, emit_src=False)
        else:
            text = verilog.convert(SnnCore(params, init_files), name=TOP, emit_src=False)
    except RecursionError:
        # A safety net: the generator builds log-depth trees (hw.logic.tree_sum), so no
        # config inside the schema is known to get here.
        raise UserError(f"{params.config_path}: hardware.lanes: {params.lanes}: the generator "
                        "cannot build this core (expression too deep)") from None
    return _initialise_constant_processes(text)


def report(params: CoreParams) -> dict:
    return {
        "top": TOP,
        "config": params.config_path,
        "lanes": params.lanes,
        "weight_bits": params.weight_bits,
        "max_shift": params.max_shift,
        "membrane": params.membrane,
        "membrane_bits_per_neuron": params.membrane_bits,
        "timesteps": params.timesteps,
        "lane_accumulator_width": params.acc_width,
        "logit_width": params.logit_width,
        **build_report_fields(params),   # memory_bits, memory_bits_total, total_memory_formula
        "layers": [{
            "index": lp.index, "kind": lp.kind,
            "shape": [lp.in_channels, lp.in_height, lp.in_width, lp.out_channels,
                      lp.out_height, lp.out_width],
            "kernel": list(lp.kernel), "padding": lp.padding, "pool": lp.pool,
            "groups": lp.groups, "accumulator_width": lp.acc_width, "input_bits": lp.x_bits,
            "weight_base": lp.weight_base, "group_base": lp.group_base,
            "membrane_base": lp.membrane_base, "position_base": lp.position_base,
        } for lp in params.layers],
    }


def build(cfg: Config, out: str | Path | None = None, do_lint: bool = True, export=None,
          skipping: bool | None = None, bus: str = "none") -> Path:
    """Generate (and lint) the core for the validated config ``cfg`` into ``out`` (default
    ``build/<model name>``); ``export``: an export directory to preload from image files;
    ``skipping``: override ``hardware.skipping``; ``bus``: "none" (the bare core) or "axi"
    (the core in its AXI wrapper, hw.axi). Returns the output directory, committed as one
    unit (module docstring)."""
    if not isinstance(cfg, Config):
        raise TypeError(f"hw.build.build takes a project_config.Config (load_config(path)), "
                        f"not {type(cfg).__name__}")
    if bus not in BUSES:
        raise UserError(f"--bus: {bus!r} is not one of {sorted(BUSES)}")
    top = BUSES[bus]
    params = CoreParams(cfg, skipping=skipping)
    out_dir = check_output_dir(Path(out) if out else Path("build") / cfg.name,
                               "--out" if out else f"{cfg.path}: model.name")
    net = None
    if export is not None:
        net = load_export(export)
        params.check_export(net, where=str(export))
    final = out_dir.resolve()
    with atomic_dir(out_dir, OUTPUTS) as tmp:
        init_files, preloaded = None, None
        if net is not None:
            written = write_images(params, net, tmp / "images", export)
            # The Verilog names the images where they will be once committed.
            init_files = {k: final / "images" / Path(v).name for k, v in written.items()}
            preloaded = {"export": str(Path(export).resolve()), "export_sha256": export_sha256(export),
                         "images": {k: str(v) for k, v in init_files.items()}}
        text = generate_verilog(params, init_files, bus)
        rep = report(params)
        rep["top"], rep["bus"] = top, bus
        rep["skipping"] = params.skipping
        rep["preloaded"] = preloaded
        vpath, spath = tmp / f"{top}.v", tmp / f"{SRAM_MODULE}.v"
        atomic_write(vpath, text)
        atomic_write(spath, SRAM_VERILOG)
        rep["sources"] = [vpath.name, spath.name]
        rep["sources_sha256"] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                                 for p in (vpath, spath)}
        if do_lint:
            ok, log = lint([vpath, spath], top)
            rep["lint"] = "clean" if ok else "failed"
            if not ok:
                err = UserError(f"{out_dir / vpath.name}: verilator lint failed:\n{log}")
                err.multiline = True       # the lint log, as Verilator wrote it
                raise err
        atomic_write(tmp / "report.json", json.dumps(rep, indent=1) + "\n")
    return out_dir


def read_build(out_dir) -> dict:
    """A build folder's ``report.json``, checked against the sources it lists (their
    sha256); read again while a commit is swapping the folder. UserError if the folder is
    not a complete build."""
    out_dir = Path(out_dir)

    def read():
        try:
            rep = json.loads((out_dir / "report.json").read_text())
            for name, digest in rep.get("sources_sha256", {}).items():
                if hashlib.sha256((out_dir / name).read_bytes()).hexdigest() != digest:
                    raise Inconsistent(name)
        except (ValueError, UnicodeDecodeError, AttributeError) as e:
            raise UserError(f"{out_dir / 'report.json'}: not a hw.build report ({e})") from None
        return rep

    try:
        return read_consistent(read)
    except FileNotFoundError as e:
        raise UserError(f"{e.filename}: not found: {out_dir} is not a complete build") from None
    except Inconsistent as e:
        raise UserError(f"{out_dir / str(e)}: does not match {out_dir / 'report.json'} "
                        "(an incomplete or mixed build)") from None


def main(argv=None):
    ap = parser("python -m hw.build", __doc__)
    add_config(ap)
    add_out(ap, "output directory (default build/<model name>)")
    ap.add_argument("--no-lint", action="store_true", help="skip verilator --lint-only")
    add_export(ap, help="export directory: write its memory images and preload them")
    ap.add_argument("--no-skipping", action="store_true",
                    help="issue every input, position and group (cycle reference)")
    ap.add_argument("--bus", choices=sorted(BUSES), default="none",
                    help="none: the bare core (default); axi: the core in its AXI4-Stream / "
                         "AXI4-Lite wrapper (snn_core_axi.v)")
    args = ap.parse_args(argv)
    out_dir = build(load_config(args.config), args.out, not args.no_lint, export=args.export,
                    skipping=False if args.no_skipping else None, bus=args.bus)
    rep = read_build(out_dir)
    mem = rep["memory_bits"]
    print(f"hw.build: {out_dir / (rep['top'] + '.v')} ({rep['lanes']} lanes, "
          f"{rep['lane_accumulator_width']}-bit accumulators, lint {rep.get('lint', 'skipped')})")
    print("  memory bits: " + ", ".join(f"{k} {v:,}" for k, v in mem.items())
          + f"; total {rep['memory_bits_total']:,}")
    if rep.get("preloaded"):
        print(f"  preloaded from {rep['preloaded']['export']}: "
              + ", ".join(Path(v).name for v in rep["preloaded"]["images"].values()))
    return 0


def cli():
    """Console-script entry point (pyproject [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
