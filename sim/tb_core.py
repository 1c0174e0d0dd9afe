"""cocotb testbench: drive snn_core with an export and inputs, compare with golden.

Driver -> core -> monitor -> scoreboard, as in cocotb's examples:
- the parameter stream loads the export (random idle cycles between transfers);
- the frame driver sends each step's input with random idle cycles (valid low);
- the record monitor applies random backpressure (ready low) and decodes every record;
- the scoreboard compares every layer's spikes and membranes at every step, the classifier
  currents and the logits with the golden model, and records cycles per inference.

The case comes from the JSON file named by ``SPQ_CASE`` (written by sim.runner).
"""
import json
import os
import random

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import First, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_time

import golden
from hw.params import CoreParams, TARGET_WEIGHTS, pack_fields, param_fields, unpack_fields
from model_export import load_export
from project_config import load_config
from sim.host import RecordDecoder, compare, frame_words, param_transfers


def _load_case():
    with open(os.environ["SPQ_CASE"]) as f:
        case = json.load(f)
    return case, CoreParams(load_config(case["config"]))


async def _drive(dut, port, words, rng, stall):
    """Send ``words`` on stream ``port`` with random idle cycles."""
    valid = getattr(dut, f"{port}__valid")
    payload = getattr(dut, f"{port}__payload")
    ready = getattr(dut, f"{port}__ready")
    for w in words:
        while stall and rng.random() < stall:
            valid.value = 0
            await RisingEdge(dut.clk)
        valid.value = 1
        payload.value = w
        while True:
            await ReadOnly()                  # ready as the clock edge will see it
            accepted = ready.value == 1
            await RisingEdge(dut.clk)
            if accepted:
                break
    valid.value = 0


CLOCK_NS = 10


async def _monitor(dut, decoder, rng, stall, cycles, max_cycles):
    """Collect records until the logits have arrived; ``cycles[0]`` counts clock edges."""
    if stall:
        await _monitor_with_backpressure(dut, decoder, rng, stall, cycles, max_cycles)
    else:
        await _monitor_always_ready(dut, decoder, cycles, max_cycles)


async def _monitor_with_backpressure(dut, decoder, rng, stall, cycles, max_cycles):
    """Random ``ready`` every cycle; one Python step per clock cycle."""
    while not decoder.done:
        ready = 0 if rng.random() < stall else 1
        dut.record__ready.value = ready
        await ReadOnly()
        if ready and dut.record__valid.value == 1:
            decoder.add(int(dut.record__payload.value), cycles[0])
        await RisingEdge(dut.clk)
        cycles[0] += 1
        if cycles[0] > max_cycles:
            raise RuntimeError(f"no logits after {max_cycles} cycles: the core hangs")


async def _monitor_always_ready(dut, decoder, cycles, max_cycles):
    """``ready`` held high; sleep until ``valid`` rises, so idle cycles cost no Python.

    Cycle numbers come from simulation time and equal the per-cycle monitor's count.
    """
    dut.record__ready.value = 1
    start = get_sim_time(unit="ns")
    deadline = Timer(max_cycles * CLOCK_NS, unit="ns")
    while not decoder.done:
        await ReadOnly()
        if dut.record__valid.value == 1:
            now = (get_sim_time(unit="ns") - start) // CLOCK_NS
            decoder.add(int(dut.record__payload.value), int(now))
            await RisingEdge(dut.clk)
        else:
            fired = await First(RisingEdge(dut.record__valid), deadline)
            if fired is deadline:
                raise RuntimeError(f"no record for {max_cycles} cycles: the core hangs")
    cycles[0] = int((get_sim_time(unit="ns") - start) // CLOCK_NS)


async def _reset(dut, cycles=3):
    dut.rst.value = 1
    dut.frame__valid.value = 0
    dut.param__valid.value = 0
    dut.record__ready.value = 0
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def _faulty(params, transfers, fault):
    if fault != "drop_layer0_weights":
        return transfers
    # Self-check of the scoreboard: load zero weights into layer 0 behind golden's back.
    fields = param_fields(params)
    end = params.layers[1].weight_base
    return [pack_fields(fields, **{**f, "data": 0})
            if f["target"] == TARGET_WEIGHTS and f["addr"] < end else w
            for w, f in ((w, unpack_fields(fields, w)) for w in transfers)]


async def _abort_inference(dut, params, x, rng, stall, max_cycles):
    """Start an inference, then assert reset at a random point in it."""
    decoder = RecordDecoder(params, None)
    monitor = cocotb.start_soon(_monitor(dut, decoder, rng, stall, [0], max_cycles))

    async def frames():
        for t in range(params.timesteps):
            await _drive(dut, "frame", frame_words(params, x[t]), rng, stall)

    driver = cocotb.start_soon(frames())
    frame_len = params.input_height * params.input_width
    for _ in range(rng.randint(1, frame_len + 400)):
        await RisingEdge(dut.clk)
    driver.cancel()
    monitor.cancel()
    await _reset(dut)
    return decoder.records


async def _run_job(dut, params, job, case, rng, results):
    """Load one export's parameters and run its inputs; add to ``results``."""
    net = load_export(job["export"])
    inputs = np.load(job["inputs"])
    stall, max_cycles = case["stall_probability"], case.get("max_cycles", 10_000_000)
    transfers = _faulty(params, param_transfers(params, net), case.get("fault"))
    await _drive(dut, "param", transfers, rng, stall)
    if job.get("reset_mid_inference"):
        await _abort_inference(dut, params, inputs[0], rng, stall, max_cycles)
    ref = golden.run(net, inputs)
    job_result = {"tag": job.get("tag", ""), "samples": 0, "mismatches": 0, "cycles": [],
                  "predictions": [], "layer_cycles": [0] * len(params.layers)}
    for i in range(inputs.shape[0]):
        decoder = RecordDecoder(params, net)
        cycles = [0]
        monitor = cocotb.start_soon(_monitor(dut, decoder, rng, stall, cycles, max_cycles))
        for t in range(params.timesteps):
            await _drive(dut, "frame", frame_words(params, inputs[i, t]), rng, stall)
        await monitor
        dut.record__ready.value = 0
        count, details = compare(ref, i, decoder)
        job_result["samples"] += 1
        job_result["mismatches"] += count
        job_result["cycles"].append(cycles[0])
        job_result["layer_cycles"] = [a + b for a, b in zip(job_result["layer_cycles"],
                                                            decoder.layer_cycles())]
        job_result["predictions"].append(int(np.argmax(decoder.logits)))
        if details:
            results["details"].append({"job": job_result["tag"], "sample": i, "problems": details})
            dut._log.error(f"{job_result['tag']} sample {i}: {count} mismatches; first: {details[:3]}")
        await RisingEdge(dut.clk)
        if dut.busy.value != 0:
            job_result["mismatches"] += 1
            results["details"].append({"job": job_result["tag"], "sample": i,
                                       "problems": ["core still busy after the logits"]})
    results["jobs"].append(job_result)
    for key in ("samples", "mismatches"):
        results[key] += job_result[key]
    for key in ("cycles", "predictions"):
        results[key] += job_result[key]


@cocotb.test()
async def core_matches_golden(dut):
    """Every job of the case: load its export, run its inputs, compare with golden."""
    case, params = _load_case()
    rng = random.Random(case["seed"])
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    await _reset(dut)
    results = {"samples": 0, "mismatches": 0, "cycles": [], "details": [], "predictions": [],
               "jobs": []}
    try:
        for job in case["jobs"]:
            await _run_job(dut, params, job, case, rng, results)
    finally:
        with open(case["results"], "w") as f:
            json.dump(results, f, indent=1)
    assert results["mismatches"] == 0, f"{results['mismatches']} mismatches against golden"
