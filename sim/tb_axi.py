"""cocotb testbench of the AXI wrapper (hw.axi, ``hw.build --bus axi``) with cocotbext-axi.

The bus models, as a SoC would drive the core:
- an :class:`AxiLiteMaster` on ``s_axil``: reads the identity block and checks it against
  the parameters (hw.regmap.identity_values), sets ``SPIKE_RECORDS`` and the interrupt
  enable, starts each inference, waits for ``irq``, reads the status, the cycle and the work
  counters and clears the interrupt;
- :class:`AxiStreamSource` on ``s_axis_param`` and ``s_axis_frame`` with random idle
  cycles (TVALID low), an :class:`AxiStreamSink` on ``m_axis_record`` with random
  backpressure (TREADY low); each inference is one record frame that ends with TLAST.

The scoreboard is the bare core's (sim.host.compare): every record against golden, bit
exact; and the register block's counters against golden's work counts
(golden.step_work) and the number of records. Register offsets and fields come from
hw.regmap, the one table the RTL decode is generated from.

The case comes from the JSON file named by ``SPQ_CASE`` (written by sim.runner.run_case,
``test_module="sim.tb_axi"``); the results file has the bare testbench's keys.
"""
import json
import logging
import os
import random
import warnings

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, RisingEdge, SimTimeoutError, Timer, with_timeout
from cocotbext.axi import (AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame,
                           AxiStreamSink, AxiStreamSource)

import golden
from golden.model import step_work
from hw import regmap
from hw.params import PACK_GROUPS, CoreParams
from hw.protocol import COUNTERS, RecordDecoder, frame_words
from model_export import load_export
from project_config import load_config
from sim.host import compare
from sim.tb_core import _param_stream

CLOCK_NS = 10
R = regmap.OFFSETS


def _pauses(rng, probability):
    """cocotbext-axi pause generator: True (pause) with ``probability`` each cycle."""
    while True:
        yield probability > 0 and rng.random() < probability


class Bus:
    """The wrapper's bus models (cocotbext-axi), with 32-bit register helpers."""

    def __init__(self, dut, rng, stall):
        clk, rst = dut.clk, dut.rst
        self.dut = dut
        self.lite = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), clk, rst)
        # byte_lanes=1: one stream word per transfer, however wide (no TKEEP).
        self.param = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_param"), clk, rst,
                                     byte_lanes=1)
        self.frame = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_frame"), clk, rst,
                                     byte_lanes=1)
        self.record = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_record"), clk, rst,
                                    byte_lanes=1)
        if stall:
            for port in (self.param, self.frame, self.record):
                port.set_pause_generator(_pauses(random.Random(rng.random()), stall))

    async def read(self, name: str) -> int:
        r = await self.lite.read(R[name], 4)
        if int(r.resp) != regmap.RESP_OKAY:
            raise AssertionError(f"read {name}: response {r.resp}")
        return int.from_bytes(r.data, "little")

    async def read64(self, name: str) -> int:
        return await self.read(f"{name}_LO") | (await self.read(f"{name}_HI")) << 32

    async def write(self, name: str, value: int):
        r = await self.lite.write(R[name], int(value).to_bytes(4, "little"))
        if int(r.resp) != regmap.RESP_OKAY:
            raise AssertionError(f"write {name}: response {r.resp}")


async def _reset(dut, cycles=3):
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


async def _registers_after_reset(bus, params, problems):
    """The identity block against hw.regmap's generated values; the reset values; an
    unmapped offset answers SLVERR; a read-only register ignores writes."""
    for name, want in regmap.identity_values(params).items():
        got = await bus.read(name)
        if got != want:
            problems.append(f"register {name}: {got:#x}, generated value {want:#x}")
    for name in ("STATUS", "IRQ_STATUS", "IRQ_ENABLE", "SPIKE_RECORDS", "INFERENCES"):
        got = await bus.read(name)
        if got != 0:
            problems.append(f"register {name} after reset: {got:#x}, want 0")
    unmapped = max(regmap.OFFSETS.values()) + 4
    r = await bus.lite.read(unmapped, 4)
    if int(r.resp) != regmap.RESP_SLVERR:
        problems.append(f"read of unmapped offset {unmapped:#x}: response {r.resp}, want SLVERR")
    await bus.write("P_LANES", 0)
    if await bus.read("P_LANES") != params.lanes:
        problems.append("P_LANES changed by a write")
    # Byte strobes: a write of byte 1 only leaves byte 0 of SPIKE_RECORDS alone.
    await bus.lite.write(R["SPIKE_RECORDS"] + 1, b"\xff")
    got = await bus.read("SPIKE_RECORDS")
    want = ((0xFF << 8) & regmap.field_mask("SPIKE_RECORDS", "layers", params))
    if got != want:
        problems.append(f"SPIKE_RECORDS after a byte-1 write: {got:#x}, want {want:#x}")
    await bus.write("SPIKE_RECORDS", 0)


async def _wait_irq(dut, max_cycles):
    """Until ``irq`` is high; False if it stays low for ``max_cycles``."""
    if dut.irq.value == 1:
        return True
    fired = await First(RisingEdge(dut.irq), Timer(max_cycles * CLOCK_NS, unit="ns"))
    return fired is not None and dut.irq.value == 1


async def _infer(bus, params, net, x, spike_layers, irq_enabled, max_cycles, problems):
    """One inference over the bus; returns (decoder, cycles register, work counters)."""
    dut = bus.dut
    await bus.write("SPIKE_RECORDS", sum(1 << l for l in spike_layers))
    await bus.write("IRQ_ENABLE", int(irq_enabled))
    words = [w for t in range(params.timesteps) for w in frame_words(params, x[t])]
    # The frame stream waits for the start: words sent before it must not be taken.
    await bus.frame.send(AxiStreamFrame(words))
    await ClockCycles(dut.clk, 20)
    if int(dut.s_axis_frame_tready.value):
        problems.append("s_axis_frame_tready high before CTRL.start")
    await bus.write("CTRL", regmap.field_mask("CTRL", "start"))
    if not regmap.field_value("STATUS", "busy", await bus.read("STATUS")):
        problems.append("STATUS.busy low after CTRL.start")
    if int(dut.s_axis_param_tready.value):
        problems.append("s_axis_param_tready high during an inference")
    try:
        frame = await with_timeout(bus.record.recv(), max_cycles * CLOCK_NS, "ns")
    except SimTimeoutError:
        raise RuntimeError(f"no record frame (TLAST) after {max_cycles} cycles: "
                           "the core hangs") from None
    decoder = RecordDecoder(params, net, spike_layers)
    for i, word in enumerate(frame.tdata):
        decoder.add(int(word), i)
    if not decoder.done:
        problems.append("TLAST before the last logits record")
    if irq_enabled:
        if not await _wait_irq(dut, 100):
            problems.append("irq did not rise after the inference")
    else:
        await ClockCycles(dut.clk, 4)
        if dut.irq.value != 0:
            problems.append("irq high while IRQ_ENABLE.done is clear")
    status = await bus.read("STATUS")
    if (regmap.field_value("STATUS", "busy", status), regmap.field_value("STATUS", "done", status)) != (0, 1):
        problems.append(f"STATUS after the inference: {status:#x}, want done and not busy")
    if not regmap.field_value("IRQ_STATUS", "done", await bus.read("IRQ_STATUS")):
        problems.append("IRQ_STATUS.done clear after the inference")
    if not irq_enabled:       # a pending status raises irq as soon as it is enabled
        await bus.write("IRQ_ENABLE", 1)
        if not await _wait_irq(dut, 10):
            problems.append("irq did not rise when enabled with IRQ_STATUS.done set")
    cycles = await bus.read64("CYCLES")
    work = {name: await bus.read64(reg) for name, reg in
            zip(COUNTERS, ("EVENTS", "SYNAPTIC_OPS", "NEURON_UPDATES"))}
    await bus.write("IRQ_STATUS", regmap.field_mask("IRQ_STATUS", "done"))
    await ClockCycles(dut.clk, 2)
    if dut.irq.value != 0 or await bus.read("IRQ_STATUS") != 0:
        problems.append("irq or IRQ_STATUS still set after the write-1 clear")
    if cycles < len(frame.tdata):
        problems.append(f"CYCLES {cycles} below the {len(frame.tdata)} records it sent")
    return decoder, cycles, work


@cocotb.test()
async def axi_core_matches_golden(dut):
    """Every job of the case over the AXI buses; records and counters against golden."""
    with open(os.environ["SPQ_CASE"]) as f:
        case = json.load(f)
    params = CoreParams(load_config(case["config"]), skipping=case.get("skipping"))
    rng = random.Random(case["seed"])
    stall, max_cycles = case["stall_probability"], case.get("max_cycles", 10_000_000)
    logging.getLogger("cocotb").setLevel(logging.WARNING)     # the bus models log every beat
    # cocotbext-axi 0.1.28 still uses cocotb 1.x calls that cocotb 2 marks as deprecated.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.")
    dut.rst.value = 1
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    bus = Bus(dut, rng, stall)
    await _reset(dut)
    results = {"samples": 0, "mismatches": 0, "perf_mismatches": 0, "cycles": [],
               "details": [], "predictions": [], "jobs": [], "completed": False}
    try:
        problems = []
        await _registers_after_reset(bus, params, problems)
        if problems:
            results["mismatches"] += len(problems)
            results["details"].append({"job": "registers", "problems": problems})
        inferences = 0
        for job in case["jobs"]:
            net = load_export(job["export"])
            inputs = np.load(job["inputs"])
            # A fault (the scoreboard's self-check) loads what golden does not see.
            await bus.param.send(AxiStreamFrame(_param_stream(params, net, case.get("fault"),
                                                              False)))
            await bus.param.wait()
            ref = golden.run(net, inputs)
            work = step_work(net, ref, params.lanes, PACK_GROUPS)
            job_result = {"tag": job.get("tag", ""), "samples": 0, "mismatches": 0,
                          "cycles": [], "predictions": [], "counters": []}
            spiking = list(range(len(params.spiking_layers)))
            for i in range(inputs.shape[0]):
                problems = []
                # Alternate full records and signatures only, interrupt enabled or not.
                layers = spiking if i % 2 == 0 else []
                decoder, cycles, counts = await _infer(bus, params, net, inputs[i], layers,
                                                       i % 2 == 0, max_cycles, problems)
                count, details = compare(ref, i, decoder)
                if params.skipping:
                    for k in COUNTERS:
                        want = int(sum(work[lp.index][k][i].sum() for lp in params.spiking_layers))
                        if counts[k] != want:
                            problems.append(f"{k} register {counts[k]}, golden {want}")
                inferences += 1
                if await bus.read("INFERENCES") != inferences:
                    problems.append(f"INFERENCES is not {inferences}")
                count += len(problems)
                details += problems
                job_result["samples"] += 1
                job_result["mismatches"] += count
                job_result["cycles"].append(cycles)
                job_result["predictions"].append(int(np.argmax(decoder.logits)))
                job_result["counters"].append(counts)
                if details:
                    results["details"].append({"job": job_result["tag"], "sample": i,
                                               "problems": details})
                    dut._log.error(f"sample {i}: {count} mismatches; first: {details[:3]}")
            results["jobs"].append(job_result)
            for key in ("samples", "mismatches"):
                results[key] += job_result[key]
            for key in ("cycles", "predictions"):
                results[key] += job_result[key]
        results["completed"] = True
    except BaseException as e:
        results["error"] = f"{type(e).__name__}: {e}".splitlines()[0]
        raise
    finally:
        with open(case["results"], "w") as f:
            json.dump(results, f, indent=1)
    assert results["mismatches"] == 0, f"{results['mismatches']} mismatches against golden"
