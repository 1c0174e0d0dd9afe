"""cocotb testbench: drive snn_core with an export and inputs, compare with golden.

Driver -> core -> monitor -> scoreboard, as in cocotb's examples:
- the parameter stream loads the export (random idle cycles between transfers), unless
  the core was built with this export preloaded from image files (``preloaded_sha256``);
- the frame driver sends each step's input with random idle cycles (valid low);
- the record monitor applies random backpressure (ready low) and decodes every record;
- the scoreboard compares every layer's signatures (CRC-32 and spike count per step) and,
  in full-record mode, every layer's spikes and membranes at every step, then the
  classifier currents and the logits with the golden model, and records cycles per
  inference. In signature mode (``records: signature``) a signature mismatch reruns the
  sample with full records for the first mismatching layer and reports its first
  differing neuron (``debug_rerun``).

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
from hw.memory_image import export_sha256
from hw.params import CoreParams
from hw.perf import core_cycles
from hw.protocol import (KIND_SPIKES, PRELOADED_TARGETS, TARGET_WEIGHTS, RecordDecoder,
                         frame_words, pack_fields, param_fields, param_transfers, unpack_fields)
from model_export import load_export
from project_config import load_config
from sim.host import (compare, expected_keys, first_difference, perf_differences,
                      signature_mismatches)


def _load_case():
    with open(os.environ["SPQ_CASE"]) as f:
        case = json.load(f)
    return case, CoreParams(load_config(case["config"]), skipping=case.get("skipping"))


async def _drive(dut, port, words, rng, stall, max_cycles, on_transfer=None):
    """Send ``words`` on stream ``port`` with random idle cycles. A transfer that waits
    ``max_cycles`` cycles for ``ready`` is a hang (the core never takes the word).
    ``on_transfer(k)``: called as word ``k`` transfers (in that cycle's read-only phase)."""
    valid = getattr(dut, f"{port}__valid")
    payload = getattr(dut, f"{port}__payload")
    ready = getattr(dut, f"{port}__ready")
    for k, w in enumerate(words):
        while stall and rng.random() < stall:
            valid.value = 0
            await RisingEdge(dut.clk)
        valid.value = 1
        payload.value = w
        while True:
            await ReadOnly()                  # ready as the clock edge will see it
            if ready.value == 1:
                if on_transfer:
                    on_transfer(k)
                await RisingEdge(dut.clk)
                break
            # Not ready (the frame stream waits while the core computes a step): sleep until
            # it is, rather than waking up every cycle.
            deadline = Timer(max_cycles * CLOCK_NS, unit="ns")
            if await First(RisingEdge(ready), deadline) is deadline:
                raise _hang(f"the {port} stream's ready stayed low for {max_cycles} cycles: "
                            "the core hangs")
    valid.value = 0


CLOCK_NS = 10
# Why the testbench stopped early, for the results file: a monitor task's exception ends
# the test from outside the job loop (as a cancellation), so it is noted here first.
_STOPPED = []


def _hang(message: str) -> RuntimeError:
    _STOPPED.append(message)
    return RuntimeError(message)


async def _monitor(dut, decoder, rng, stall, cycles, max_cycles):
    """Collect records until the logits have arrived; ``cycles[0]`` counts clock edges."""
    if stall:
        await _monitor_with_backpressure(dut, decoder, rng, stall, cycles, max_cycles)
    else:
        await _monitor_always_ready(dut, decoder, cycles, max_cycles)


async def _monitor_with_backpressure(dut, decoder, rng, stall, cycles, max_cycles):
    """Random ``ready`` every cycle; one Python step per clock cycle. Also counts the cycles
    the environment holds the core (``decoder.held``, by layer and step): a record shown but
    not taken, and a cycle the core waits for a frame word (layer 0 of the step loading)."""
    frame_words_per_step = decoder.p.input_height * decoder.p.input_width
    frames_taken = 0
    decoder.waits, wait = [], 0       # cycles each record waited for ready (coverage)
    while not decoder.done:
        ready = 0 if rng.random() < stall else 1
        dut.record__ready.value = ready
        await ReadOnly()
        if dut.record__valid.value == 1:
            word = int(dut.record__payload.value)
            if ready:
                decoder.add(word, cycles[0])
                decoder.waits.append(wait)
                wait = 0
            else:
                decoder.hold(word)
                wait += 1
        if dut.frame__ready.value == 1:
            if dut.frame__valid.value == 1:
                frames_taken += 1
            else:
                decoder.hold_frame(min(frames_taken // frame_words_per_step,
                                       decoder.p.timesteps - 1))
        await RisingEdge(dut.clk)
        cycles[0] += 1
        if cycles[0] > max_cycles:
            raise _hang(f"no logits after {max_cycles} cycles: the core hangs")


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
                raise _hang(f"no record for {max_cycles} cycles: the core hangs")
    cycles[0] = int((get_sim_time(unit="ns") - start) // CLOCK_NS)


def _layer_bits(layers) -> int:
    return sum(1 << l for l in layers)


async def _reset(dut, cycles=3):
    dut.rst.value = 1
    dut.frame__valid.value = 0
    dut.param__valid.value = 0
    dut.record__ready.value = 0
    dut.spike_records.value = (1 << len(dut.spike_records)) - 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def _param_stream(params, net, fault, loaded: bool):
    """The param transfers for ``net``: all of them, or only those the images do not hold
    if the core already holds it (preloaded images); a fault's replacement words either way."""
    transfers = param_transfers(params, net)
    fields = param_fields(params)
    if loaded:
        streamed = [w for w in transfers
                    if unpack_fields(fields, w)["target"] not in PRELOADED_TARGETS]
    else:
        streamed = transfers
    if fault != "drop_layer0_weights":
        return streamed
    # Self-check of the scoreboard: load zero weights into layer 0 behind golden's back.
    # Weight transfer address: 2 * (word in its bank) + bank.
    ends = (params.layers[1].weight_base, params.layers[1].weight_base_odd)
    out = []
    for w, f in ((w, unpack_fields(fields, w)) for w in transfers):
        if f["target"] == TARGET_WEIGHTS and f["addr"] >> 1 < ends[f["addr"] & 1]:
            out.append(pack_fields(fields, **{**f, "data": 0}))
        elif not loaded or f["target"] not in PRELOADED_TARGETS:
            out.append(w)
    return out


# Faults that corrupt the record stream between the core and the scoreboard, once per
# inference, each of a kind that exactly one checker is meant to catch (sim.host.compare):
# a spike bit, a membrane field, a dropped spike-free record, a record sent twice, a record
# for work the core must not do. "busy_after_logits" instead starts a frame after the last
# sample's logits, so the core is busy when the testbench checks it is idle.
RECORD_FAULTS = ("flip_spike", "flip_membrane", "drop_record", "duplicate_record",
                 "extra_record")
FAULTS = ("drop_layer0_weights", *RECORD_FAULTS, "busy_after_logits")


class _FaultyDecoder(RecordDecoder):
    """A RecordDecoder that sees the core's records with one fault (:data:`RECORD_FAULTS`)
    applied to the first spike record it can apply it to. ``expected``: the record keys the
    core must send (sim.host.expected_keys), from which an extra record is picked."""

    def __init__(self, *args, fault: str, expected: set, **kw):
        super().__init__(*args, **kw)
        self.fault, self.expected, self.injected = fault, expected, False

    def add(self, word: int, cycle: int = 0):
        r = unpack_fields(self.fields, word)
        if self.injected or r["kind"] != KIND_SPIKES or r["layer"] not in self.spike_layers:
            return super().add(word, cycle)
        L = self.p.lanes
        if self.fault == "flip_spike":
            word = pack_fields(self.fields, **{**r, "data": r["data"] ^ 1})   # lane 0's spike
        elif self.fault == "flip_membrane":
            word = pack_fields(self.fields, **{**r, "data": r["data"] ^ (1 << L)})  # lane 0's q
        elif self.fault == "drop_record":
            if r["data"] & ((1 << L) - 1):
                return super().add(word, cycle)     # a record with spikes: the spike check too
            self.injected = True
            return None
        elif self.fault == "duplicate_record":
            super().add(word, cycle)
        elif self.fault == "extra_record":
            # A (layer, step, valid unmasked position, group) the core must not record.
            lp = self.p.layers[r["layer"]]
            mask = self.net.layers[lp.index].position_mask.reshape(-1)
            for key in ((KIND_SPIKES, lp.index, t, pos, g) for t in range(self.p.timesteps)
                        for pos in np.flatnonzero(mask) for g in range(lp.groups)):
                if key not in self.expected:
                    super().add(pack_fields(self.fields, kind=KIND_SPIKES, layer=key[1],
                                            step=key[2], pos=int(key[3]), group=key[4]), cycle)
                    break
            else:
                raise RuntimeError("extra_record fault: layer "
                                   f"{lp.index} must record every position and group")
        self.injected = True
        return super().add(word, cycle)


async def _abort_inference(dut, params, x, rng, stall, max_cycles, cov=None):
    """Start an inference, then assert reset at a random point in it (``cov``: sim.coverage,
    or None)."""
    decoder = RecordDecoder(params, None)
    monitor = cocotb.start_soon(_monitor(dut, decoder, rng, stall, [0], max_cycles))

    async def frames():
        for t in range(params.timesteps):
            await _drive(dut, "frame", frame_words(params, x[t]), rng, stall, max_cycles)

    driver = cocotb.start_soon(frames())
    frame_len = params.input_height * params.input_width
    # Half the resets while the first frame loads, half in the computation after it (the
    # coverage's two reset bins; a uniform draw rarely lands in a short frame).
    at = (rng.randint(1, frame_len) if rng.random() < 0.5
          else rng.randint(frame_len, frame_len + 400))
    for _ in range(at):
        await RisingEdge(dut.clk)
    if cov:
        cov.sample_reset(at, frame_len)
    driver.cancel()
    monitor.cancel()
    await _reset(dut)
    return decoder.records


async def _change_selection(dut, selection: int, layers: int):
    """Started as the inference's first frame word transfers: from the next cycle, drive
    ``spike_records`` to the other layers. The core must keep the selection it sampled
    when the inference started."""
    await RisingEdge(dut.clk)
    dut.spike_records.value = ~selection & ((1 << layers) - 1)


async def _infer(dut, params, net, x, spike_layers, rng, stall, max_cycles, keep_records=False,
                 fault=None, expected=None, change_selection=False):
    """One inference of input ``x`` [T, C, H, W]; returns (decoder, cycles). ``fault``: one
    of :data:`RECORD_FAULTS` (``expected``: the record keys golden expects), or None.
    ``change_selection``: change ``spike_records`` once the first frame word is taken
    (:func:`_change_selection`)."""
    dut.spike_records.value = _layer_bits(spike_layers)
    if fault in RECORD_FAULTS:
        decoder = _FaultyDecoder(params, net, spike_layers, keep_words=keep_records,
                                 fault=fault, expected=expected)
    else:
        decoder = RecordDecoder(params, net, spike_layers, keep_words=keep_records)
    cycles = [0]
    monitor = cocotb.start_soon(_monitor(dut, decoder, rng, stall, cycles, max_cycles))
    # busy is high from the first frame word's transfer to the logits (docs/HARDWARE.md,
    # "Interfaces"): checked at every later frame word.
    decoder.busy_low = []
    for t in range(params.timesteps):
        def on_word(k, t=t):
            if not (t or k):
                if change_selection:
                    cocotb.start_soon(_change_selection(dut, _layer_bits(spike_layers),
                                                        len(params.spiking_layers)))
            elif dut.busy.value != 1:
                decoder.busy_low.append((t, k))
        await _drive(dut, "frame", frame_words(params, x[t]), rng, stall, max_cycles, on_word)
    await monitor
    dut.record__ready.value = 0
    return decoder, cycles[0]


def _perf_check(params, net, ref, index, decoder, cycles, job_result, results) -> int:
    """hw.perf's cycles for this sample against the measured ones (sim.host.perf_differences);
    returns the number of differing values, described in ``results["details"]``."""
    count, problems = perf_differences(core_cycles(params, net, ref, index), decoder, cycles)
    if problems:
        results["details"].append({"job": job_result["tag"], "sample": index,
                                   "problems": problems})
    return count


async def _run_job(dut, params, job, case, rng, results, loaded, cov=None):
    """Load one export's parameters (unless ``loaded["sha256"]`` says the core holds them)
    and run its inputs; add to ``results``. ``cov``: sim.coverage to sample, or None."""
    net = load_export(job["export"])
    if cov:
        cov.sample_export(net)
        cov.sample_lanes(params.lanes)
    inputs = np.load(job["inputs"])
    stall, max_cycles = case["stall_probability"], case.get("max_cycles", 10_000_000)
    sha = export_sha256(job["export"])
    fault = case.get("fault")
    if fault not in (None, *FAULTS):
        raise ValueError(f"unknown fault {fault!r}: one of {FAULTS}")
    transfers = _param_stream(params, net, fault, loaded["sha256"] == sha)
    loaded["sha256"] = None if fault else sha
    await _drive(dut, "param", transfers, rng, stall, max_cycles)
    if job.get("reset_mid_inference"):
        await _abort_inference(dut, params, inputs[0], rng, stall, max_cycles, cov)
    ref = golden.run(net, inputs)
    all_layers = range(len(params.spiking_layers))
    signature_only = case.get("records", "full") == "signature"
    job_result = {"tag": job.get("tag", ""), "samples": 0, "mismatches": 0, "cycles": [],
                  "predictions": [], "layer_cycles": [0] * len(params.layers),
                  "params_streamed": len(transfers), "debug": [],
                  # Per sample: measured cycles per [layer][step], and the cycles the
                  # environment held the core (stalls), from which hw.perf is checked.
                  "step_cycles": [], "held_cycles": [], "perf_mismatches": 0,
                  # Per sample: the core's work counters {"layer,step": [COUNTERS]}.
                  "counters": []}
    for i in range(inputs.shape[0]):
        layers = [] if signature_only else all_layers
        expected = (expected_keys(RecordDecoder(params, net, layers), ref, i)
                    if fault == "extra_record" else None)
        decoder, cycles = await _infer(dut, params, net, inputs[i], layers, rng, stall,
                                       max_cycles, keep_records=case.get("keep_records", False),
                                       fault=fault, expected=expected,
                                       change_selection=job.get("change_spike_records", False))
        count, details = compare(ref, i, decoder)
        if decoder.busy_low:
            t, k = decoder.busy_low[0]
            count += 1
            details.append(f"busy low during the inference: {len(decoder.busy_low)} frame "
                           f"words, first step {t} word {k}")
        if cov:
            cov.sample_inference(net, ref, i)
            cov.sample_backpressure(getattr(decoder, "waits", [0]))
        bad = signature_mismatches(ref, i, decoder)
        if bad and signature_only and case.get("debug_rerun", True):
            # Rerun with full records for the first mismatching layer: name the neuron.
            layer = bad[0][0][0]
            rerun, _ = await _infer(dut, params, net, inputs[i], [layer], rng, stall, max_cycles)
            first = first_difference(ref, i, rerun, layer)
            note = (f"debug rerun, full records for layer {layer}: first differing neuron "
                    + (first or "none (the layer's records match; the signature logic differs)"))
            details.append(note)
            job_result["debug"].append({"sample": i, "layer": layer, "first_difference": first})
            dut._log.error(note)
        job_result["samples"] += 1
        job_result["mismatches"] += count
        job_result["cycles"].append(cycles)
        job_result["layer_cycles"] = [a + b for a, b in zip(job_result["layer_cycles"],
                                                            decoder.layer_cycles())]
        job_result["step_cycles"].append(decoder.step_cycles())
        if decoder.words is not None:
            job_result.setdefault("records", []).append(decoder.words)
        job_result["held_cycles"].append(decoder.held_cycles())
        if not count:        # a sample that differs from golden ran other work
            job_result["perf_mismatches"] += _perf_check(params, net, ref, i, decoder, cycles,
                                                         job_result, results)
        job_result["predictions"].append(int(np.argmax(decoder.logits)))
        job_result["counters"].append({f"{l},{t}": list(v)
                                       for (l, t), v in sorted(decoder.counters.items())})
        if details:
            results["details"].append({"job": job_result["tag"], "sample": i, "problems": details})
            dut._log.error(f"{job_result['tag']} sample {i}: {count} mismatches; first: {details[:3]}")
        if fault == "busy_after_logits" and i == inputs.shape[0] - 1:
            # One frame word after the logits: the core starts loading a step.
            await _drive(dut, "frame", frame_words(params, inputs[i][0])[:1], rng, 0, max_cycles)
            await RisingEdge(dut.clk)
        await RisingEdge(dut.clk)
        if dut.busy.value != 0:
            job_result["mismatches"] += 1
            results["details"].append({"job": job_result["tag"], "sample": i,
                                       "problems": ["core still busy after the logits"]})
    results["jobs"].append(job_result)
    for key in ("samples", "mismatches", "perf_mismatches"):
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
    results = {"samples": 0, "mismatches": 0, "perf_mismatches": 0, "cycles": [],
               "details": [], "predictions": [], "jobs": []}
    loaded = {"sha256": case.get("preloaded_sha256")}      # what the parameter SRAMs hold
    # "completed" tells the runner every job ran: a crash or a hang leaves it False, so
    # partial results never read as a pass.
    results["completed"] = False
    cov = None
    if case.get("coverage"):
        from sim import coverage as cov       # functional coverage (cocotb-coverage)
    try:
        for job in case["jobs"]:
            await _run_job(dut, params, job, case, rng, results, loaded, cov)
        results["completed"] = True
    except BaseException as e:      # a failing monitor task arrives as a cancellation
        results["error"] = (_STOPPED[-1] if _STOPPED
                            else f"{type(e).__name__}: {e}".splitlines()[0])
        raise
    finally:
        if cov:
            cov.save(case["coverage"])
        with open(case["results"], "w") as f:
            json.dump(results, f, indent=1)
    assert results["mismatches"] == 0, f"{results['mismatches']} mismatches against golden"
    assert results["perf_mismatches"] == 0, (f"{results['perf_mismatches']} differences from "
                                             "the performance model")
