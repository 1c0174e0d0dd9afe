"""The AXI4-Lite register map of the bus wrapper (hw.axi), in one place.

One table, :data:`REGISTERS`, describes every register: its byte offset, its access, its
fields (bit position, width, reset or generated value) and what it means. Three things are
generated from it, so that they cannot disagree:

- the RTL decode: :class:`hw.axi.SnnCoreAxi` walks the table to build the read multiplexer,
  the writable storage, the write-1-to-clear bits and the write strobes;
- the documentation: :func:`markdown` renders the table that docs/HARDWARE.md holds between
  the ``regmap`` markers (``python -m hw.regmap --docs docs/HARDWARE.md`` rewrites it; a test
  checks it is current);
- the testbench's constants: :data:`OFFSETS`, :func:`field_mask`, :func:`field_value` and
  :func:`identity_values` (sim.tb_axi).

No Amaranth: the testbench and the documentation import it.

Access kinds
------------
``RO``
    Read only; writes are ignored. A field either has a ``value`` generated from the
    core's parameters (the identity block) or is driven by the wrapper's logic.
``RW``
    Read and write, honouring the byte strobes; starts at ``reset``.
``W1C``
    Set by the wrapper's logic, cleared by writing 1 (strobes honoured); reads its state.
``WO``
    A write of 1 pulses the field for one cycle; reads as 0.

Every register is 32 bits wide; an access to an offset not in the table reads 0 and gets
the SLVERR response; a write there changes nothing and gets SLVERR too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ACCESS = ("RO", "RW", "W1C", "WO")
DATA_WIDTH = 32
ADDR_WIDTH = 12          # one 4 KiB page, as an interconnect usually gives a peripheral
ID_MAGIC = 0x53514E4E    # "SQNN" in ASCII
VERSION_MAJOR, VERSION_MINOR = 1, 0
RESP_OKAY, RESP_SLVERR = 0, 2


@dataclass(frozen=True)
class Field:
    """One field of a register.

    Parameters
    ----------
    name : str
    lsb, width : int
        Bit position and width inside the 32-bit register.
    doc : str
    reset : int
        Reset value (RW and W1C fields).
    value : callable, optional
        ``CoreParams -> int``: a read-only field generated from the core's parameters.
    """
    name: str
    lsb: int
    width: int
    doc: str
    reset: int | Callable = 0
    value: Callable | None = None


@dataclass(frozen=True)
class Register:
    name: str
    offset: int
    access: str
    doc: str
    fields: tuple = field(default_factory=tuple)


def _ceil8(n: int) -> int:
    return -(-n // 8) * 8


def _counter(name: str, offset: int, what: str) -> list:
    """A 64-bit counter as two 32-bit read-only registers (low word first)."""
    return [Register(f"{name}_LO", offset, "RO", f"{what}, bits 31:0",
                     (Field("value", 0, 32, f"{what}, bits 31:0"),)),
            Register(f"{name}_HI", offset + 4, "RO", f"{what}, bits 63:32",
                     (Field("value", 0, 32, f"{what}, bits 63:32"),))]


def _param(name: str, offset: int, doc: str, fn: Callable) -> Register:
    return Register(name, offset, "RO", doc, (Field("value", 0, 32, doc, value=fn),))


def _stream_widths():
    # Local import: hw.protocol needs NumPy; the table itself does not.
    from .protocol import param_fields, record_fields
    return (lambda p: _ceil8(p.input_channels * p.input_bits),
            lambda p: _ceil8(sum(w for _, w in param_fields(p))),
            lambda p: _ceil8(sum(w for _, w in record_fields(p))))


_frame_w, _param_w, _record_w = _stream_widths()

REGISTERS: tuple = tuple([
    Register("ID", 0x000, "RO", "Identifies the block", (
        Field("magic", 0, 32, 'ASCII "SQNN"', value=lambda p: ID_MAGIC),)),
    Register("VERSION", 0x004, "RO", "Register map version", (
        Field("minor", 0, 8, "minor version (compatible additions)", value=lambda p: VERSION_MINOR),
        Field("major", 8, 8, "major version (incompatible changes)", value=lambda p: VERSION_MAJOR))),
    Register("CTRL", 0x008, "WO", "Control", (
        Field("start", 0, 1, "write 1: start an inference (ignored while busy); the frame "
                             "stream is accepted from then until the inference's TLAST"),)),
    Register("STATUS", 0x00C, "RO", "Status", (
        Field("busy", 0, 1, "an inference was started and its last record not yet taken"),
        Field("done", 1, 1, "the last inference has finished (cleared by the next start)"))),
    Register("IRQ_ENABLE", 0x010, "RW", "Interrupt enable", (
        Field("done", 0, 1, "raise irq while IRQ_STATUS.done is set"),)),
    Register("IRQ_STATUS", 0x014, "W1C", "Interrupt status (write 1 to clear)", (
        Field("done", 0, 1, "set when an inference's last record is taken"),)),
    Register("SPIKE_RECORDS", 0x018, "RW", "Record mode per spiking layer", (
        Field("layers", 0, 0, "bit l: layer l sends its kind-0 spike records (full-record "
                              "mode); clear: only its signatures. Read at start"),)),
    Register("INFERENCES", 0x01C, "RO", "Inferences completed since reset", (
        Field("value", 0, 32, "inferences completed since reset"),)),
    *_counter("CYCLES", 0x020, "Clock cycles of the last inference, start to its last record"),
    *_counter("EVENTS", 0x028, "Nonzero inputs issued in the last inference (signature "
                               "records' events, summed)"),
    *_counter("SYNAPTIC_OPS", 0x030, "Synaptic operations of the last inference "
                                     "(signature records' synaptic_ops, summed)"),
    *_counter("NEURON_UPDATES", 0x038, "Neuron-group updates of the last inference "
                                       "(signature records' neuron_updates, summed)"),
    # The identity block: the parameters the core was generated with.
    _param("P_LANES", 0x080, "output-channel lanes", lambda p: p.lanes),
    _param("P_WEIGHT_BITS", 0x084, "weight code bits", lambda p: p.weight_bits),
    _param("P_MEMBRANE_BITS", 0x088, "membrane bits per neuron (2: ternary, 1: binary)",
           lambda p: p.membrane_bits),
    _param("P_TIMESTEPS", 0x08C, "timesteps per inference", lambda p: p.timesteps),
    _param("P_LAYERS", 0x090, "layers (spiking layers and the classifier)",
           lambda p: len(p.layers)),
    _param("P_INPUT_CHANNELS", 0x094, "input channels", lambda p: p.input_channels),
    _param("P_INPUT_HEIGHT", 0x098, "input height", lambda p: p.input_height),
    _param("P_INPUT_WIDTH", 0x09C, "input width", lambda p: p.input_width),
    _param("P_INPUT_BITS", 0x0A0, "bits per input value", lambda p: p.input_bits),
    _param("P_CLASSES", 0x0A4, "classifier outputs", lambda p: p.classifier.out_channels),
    _param("P_LOGIT_WIDTH", 0x0A8, "bits per logit in a record", lambda p: p.logit_width),
    Register("P_FEATURES", 0x0AC, "RO", "Generated features", (
        Field("skipping", 0, 1, "zero and mask skipping", value=lambda p: int(p.skipping)),
        Field("spatial_pruning", 1, 1, "runtime spatial pruning",
              value=lambda p: int(p.spatial_pruning)),
        Field("channel_gating", 2, 1, "runtime channel gating",
              value=lambda p: int(p.channel_gating)))),
    _param("P_FRAME_TDATA", 0x0B0, "s_axis_frame TDATA width (bits)", _frame_w),
    _param("P_PARAM_TDATA", 0x0B4, "s_axis_param TDATA width (bits)", _param_w),
    _param("P_RECORD_TDATA", 0x0B8, "m_axis_record TDATA width (bits)", _record_w),
])

OFFSETS = {r.name: r.offset for r in REGISTERS}
BY_NAME = {r.name: r for r in REGISTERS}


def field_width(f: Field, p=None) -> int:
    """A field's width; SPIKE_RECORDS.layers is as wide as the core has spiking layers."""
    if f.width:
        return f.width
    if p is None:
        raise ValueError(f"{f.name}: its width depends on the core's parameters")
    return len(p.spiking_layers)


def field_mask(reg: str, name: str, p=None) -> int:
    """The bits of field ``name`` of register ``reg``, in place."""
    f = next(f for f in BY_NAME[reg].fields if f.name == name)
    return ((1 << field_width(f, p)) - 1) << f.lsb


def field_value(reg: str, name: str, word: int, p=None) -> int:
    """Field ``name`` of register ``reg`` from the register's value ``word``."""
    f = next(f for f in BY_NAME[reg].fields if f.name == name)
    return (word >> f.lsb) & ((1 << field_width(f, p)) - 1)


def identity_values(p) -> dict:
    """Register name -> value of every register whose fields are all generated from the
    parameters (ID, VERSION, the P_* block), for a core with ``CoreParams`` ``p``."""
    out = {}
    for r in REGISTERS:
        if r.fields and all(f.value is not None for f in r.fields):
            out[r.name] = sum((f.value(p) & ((1 << f.width) - 1)) << f.lsb for f in r.fields)
    return out


def check_table(registers=REGISTERS):
    """Raise ValueError if the table is not a valid map (checked at import and in tests):
    aligned, unique, inside the address space, fields inside 32 bits and not overlapping."""
    seen = {}
    for r in registers:
        if r.access not in ACCESS:
            raise ValueError(f"{r.name}: access {r.access!r} not one of {ACCESS}")
        if r.offset % 4 or not 0 <= r.offset < 1 << ADDR_WIDTH:
            raise ValueError(f"{r.name}: offset {r.offset:#x} not word-aligned inside the page")
        if r.offset in seen or r.name in seen.values():
            raise ValueError(f"{r.name}: offset {r.offset:#x} or name used twice")
        seen[r.offset] = r.name
        used = 0
        for f in r.fields:
            if r.access == "WO" and f.width != 1:
                raise ValueError(f"{r.name}.{f.name}: a write-only field is a 1-bit pulse")
            width = f.width or 32           # a parameter-sized field: at most the register
            bits = ((1 << width) - 1) << f.lsb
            if bits >> DATA_WIDTH or used & bits:
                raise ValueError(f"{r.name}.{f.name}: outside the register or overlapping")
            used |= bits


check_table()

DOC_BEGIN = "<!-- regmap: begin (generated by python -m hw.regmap --docs; do not edit) -->"
DOC_END = "<!-- regmap: end -->"


def markdown() -> str:
    """The register map as the Markdown table docs/HARDWARE.md holds."""
    rows = ["| Offset | Register | Access | Bits | Field | Reset / value | Meaning |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in REGISTERS:
        for i, f in enumerate(r.fields):
            hi = "L-1" if not f.width else str(f.lsb + f.width - 1)
            bits = f"{f.lsb}" if f.width == 1 else f"{hi}:{f.lsb}"
            if f.value is not None:
                reset = "generated"
            elif r.access in ("RW", "W1C", "WO"):
                reset = f"{f.reset:#x}"
            else:
                reset = "0"
            head = (f"0x{r.offset:03X}", f"`{r.name}`", r.access) if i == 0 else ("", "", "")
            rows.append(f"| {head[0]} | {head[1]} | {head[2]} | {bits} | {f.name} | {reset} | "
                        f"{f.doc} |")
    return "\n".join(rows) + "\n\nL: the core's spiking layers (`P_LAYERS` - 1).\n"


def render_into(text: str) -> str:
    """``text`` (a Markdown file) with its regmap section replaced by :func:`markdown`."""
    pattern = re.compile(re.escape(DOC_BEGIN) + r".*?" + re.escape(DOC_END), re.S)
    if not pattern.search(text):
        raise ValueError("no regmap section (its begin and end markers)")
    block = f"{DOC_BEGIN}\n{markdown()}{DOC_END}"
    return pattern.sub(lambda _: block, text)


def main(argv=None):
    # The CLI's helpers load only when the CLI runs: hw.axi and sim.tb_axi import the table.
    from project_config import UserError
    from project_config.files import atomic_write   # (the CLI's helpers, as above)
    from project_config.cli import parser           # (the CLI's helpers, as above)
    ap = parser("python -m hw.regmap", __doc__)
    ap.add_argument("--docs", metavar="FILE", help="rewrite FILE's regmap section")
    args = ap.parse_args(argv)
    if args.docs is None:
        print(markdown(), end="")
        return 0
    path = Path(args.docs)
    try:
        text = path.read_text()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    try:
        new = render_into(text)
    except ValueError as e:
        raise UserError(f"{path}: {e}") from None
    atomic_write(path, new)
    print(f"hw.regmap: {path} ({len(REGISTERS)} registers)")
    return 0


def cli():
    from project_config import cli_main     # as in main: only the CLI needs it
    cli_main(main)


if __name__ == "__main__":
    cli()
