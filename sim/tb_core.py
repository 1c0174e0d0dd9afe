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
from cocotb.triggers import ReadOnly, RisingEdge

import golden
from hw.params import CoreParams, TARGET_WEIGHTS, pack_fields, param_fields, unpack_fields
from model_export import load_export
from project_config import load_config
from sim.host import RecordDecoder, compare, frame_words, param_transfers


def _load_case():
    with open(os.environ["SPQ_CASE"]) as f:
        case = json.load(f)
    params = CoreParams(load_config(case["config"]))
    net = load_export(case["export"])
    inputs = np.load(case["inputs"])
    return case, params, net, inputs


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


async def _monitor(dut, decoder, rng, stall, cycles, max_cycles):
    """Collect records under random backpressure until the logits have arrived."""
    while not decoder.done:
        ready = 0 if (stall and rng.random() < stall) else 1
        dut.record__ready.value = ready
        await ReadOnly()
        if ready and dut.record__valid.value == 1:
            decoder.add(int(dut.record__payload.value))
        await RisingEdge(dut.clk)
        cycles[0] += 1
        if cycles[0] > max_cycles:
            raise RuntimeError(f"no logits after {max_cycles} cycles: the core hangs")


@cocotb.test()
async def core_matches_golden(dut):
    case, params, net, inputs = _load_case()
    rng = random.Random(case["seed"])
    stall = case["stall_probability"]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.frame__valid.value = 0
    dut.param__valid.value = 0
    dut.record__ready.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)

    transfers = param_transfers(params, net)
    if case.get("fault") == "drop_layer0_weights":
        # Self-check of the scoreboard: load zero weights into layer 0 behind golden's back.
        fields = param_fields(params)
        end = params.layers[1].weight_base
        transfers = [pack_fields(fields, **{**f, "data": 0})
                     if f["target"] == TARGET_WEIGHTS and f["addr"] < end else w
                     for w, f in ((w, unpack_fields(fields, w)) for w in transfers)]
    await _drive(dut, "param", transfers, rng, stall)

    ref = golden.run(net, inputs)
    results = {"samples": 0, "mismatches": 0, "cycles": [], "details": [], "predictions": []}
    for i in range(inputs.shape[0]):
        decoder = RecordDecoder(params, net)
        cycles = [0]
        monitor = cocotb.start_soon(_monitor(dut, decoder, rng, stall, cycles, case.get("max_cycles", 10_000_000)))
        for t in range(params.timesteps):
            await _drive(dut, "frame", frame_words(params, inputs[i, t]), rng, stall)
        await monitor
        dut.record__ready.value = 0
        count, details = compare(ref, i, decoder)
        results["samples"] += 1
        results["mismatches"] += count
        results["cycles"].append(cycles[0])
        results["predictions"].append(int(np.argmax(decoder.logits)))
        if details:
            results["details"].append({"sample": i, "problems": details})
            dut._log.error(f"sample {i}: {count} mismatches; first: {details[:3]}")
        await RisingEdge(dut.clk)
        assert dut.busy.value == 0, "core still busy after the logits"
    with open(case["results"], "w") as f:
        json.dump(results, f, indent=1)
    assert results["mismatches"] == 0, f"{results['mismatches']} mismatches against golden"
