"""cocotb testbench of hw.weight_fetch.WeightFetch against cocotbext-axi's AXI RAM model.

The case comes from the JSON file named by ``SPQ_CASE`` (tests/test_weight_fetch.py writes
it): the unit's parameters, the memory settings to run (``latency``: cycles from a burst's
acceptance to its first beat, fixed or drawn per burst; ``ar_pause``, ``r_pause``: the
probability that the RAM holds ARREADY or RVALID low in a cycle), the number of blocks and a
seed, and where to write the results. For each setting the RAM is filled with random bytes,
and random blocks (word counts from 0 to a bank, addresses aligned to the bus, some just
below a 4 KB boundary) are requested with random idle cycles, while a consumer reads every
filled bank word by word, compares it with the RAM's bytes, holds it a random while and
releases it. The RAM model itself asserts that no burst crosses 4 KB.
"""
import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiRamRead, AxiReadBus

from sim.tb_axi import _pauses

CLOCK_NS = 10
RAM_BYTES = 1 << 16


class LatencyRam(AxiRamRead):
    """The AXI RAM with a latency before each burst's first beat (``latency()`` cycles)."""

    def __init__(self, *args, latency, **kwargs):
        super().__init__(*args, **kwargs)
        self.latency, self.new_burst = latency, False
        recv = self.ar_channel.recv

        async def recv_and_mark():
            ar = await recv()
            self.new_burst = True
            return ar
        self.ar_channel.recv = recv_and_mark

    async def _read(self, address, length):
        if self.new_burst:
            self.new_burst = False
            n = self.latency()
            if n:
                await ClockCycles(self.clock, n)
        return await super()._read(address, length)


async def _reset(dut):
    dut.rst.value = 1
    dut.fetch__valid.value = 0
    dut.release.value = 0
    dut.rd_bank.value, dut.rd_addr.value = 0, 0   # the SRAM model rereads on a change only
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


async def _count_outstanding(dut, seen):
    """Bursts in flight (AR transferred, last beat not yet): the largest count in ``seen``."""
    n = 0
    while True:
        await RisingEdge(dut.clk)
        await ReadOnly()
        n += int(dut.m_axi_arvalid.value) & int(dut.m_axi_arready.value)
        if dut.m_axi_rvalid.value == 1 and dut.m_axi_rready.value == 1:   # rlast X otherwise
            n -= int(dut.m_axi_rlast.value)
        seen[0] = max(seen[0], n)


async def _run_setting(dut, ram, case, setting, rng):
    p = case["params"]
    word_bytes = -(-p["word_width"] // p["data_width"]) * p["data_width"] // 8
    bus_bytes = p["data_width"] // 8
    ram.latency = ((lambda: setting["latency"]) if isinstance(setting["latency"], int)
                   else (lambda: rng.randint(*setting["latency"])))
    ram.ar_channel.set_pause_generator(_pauses(rng, setting["ar_pause"]))
    ram.r_channel.set_pause_generator(_pauses(rng, setting["r_pause"]))
    ram.write(0, bytes(rng.getrandbits(8) for _ in range(RAM_BYTES)))
    await _reset(dut)
    blocks = []
    for i in range(case["blocks"]):
        words = rng.choice([0, 1, p["bank_words"], rng.randint(1, p["bank_words"])])
        span = max(words, 1) * word_bytes
        if rng.random() < 0.3:            # end just past a 4 KB boundary
            page = rng.randrange(1, RAM_BYTES // 4096 - 1) * 4096
            addr = page - rng.randrange(1, min(span, 4096) // bus_bytes + 1) * bus_bytes
        else:
            addr = rng.randrange(0, (RAM_BYTES - span) // bus_bytes) * bus_bytes
        blocks.append((addr, words))
    outstanding = [0]
    counter = cocotb.start_soon(_count_outstanding(dut, outstanding))
    problems, start = [], get_sim_time(unit="ns")

    async def consume():
        for k, (addr, words) in enumerate(blocks):
            bank = k % p["banks"]
            while True:
                await RisingEdge(dut.clk)
                await ReadOnly()
                if (int(dut.filled.value) >> bank) & 1:
                    break
            await RisingEdge(dut.clk)
            for w in range(words):
                dut.rd_bank.value, dut.rd_addr.value = bank, w
                await RisingEdge(dut.clk)
                await ReadOnly()
                value = dut.rd_data.value
                got = int(value) if value.is_resolvable else str(value)
                raw = ram.read(addr + w * word_bytes, word_bytes)
                want = int.from_bytes(raw, "little") & ((1 << p["word_width"]) - 1)
                if got != want and len(problems) < 5:
                    problems.append(f"block {k} ({words} words at {addr:#x}) word {w}: "
                                    f"{got}, memory holds {want:#x}")
                await RisingEdge(dut.clk)
            await ClockCycles(dut.clk, rng.randint(0, 30))
            dut.release.value = 1 << bank
            await RisingEdge(dut.clk)
            dut.release.value = 0

    consumer = cocotb.start_soon(consume())
    for addr, words in blocks:
        while rng.random() < 0.3:
            await RisingEdge(dut.clk)
        dut.fetch__payload.value = addr | (words << p["addr_width"])
        dut.fetch__valid.value = 1
        while True:
            await ReadOnly()
            ready = int(dut.fetch__ready.value)
            await RisingEdge(dut.clk)
            if ready:
                break
        dut.fetch__valid.value = 0
    await consumer
    counter.cancel()
    if int(dut.error.value):
        problems.append("error set (a read response was not OKAY)")
    cycles = int((get_sim_time(unit="ns") - start) // CLOCK_NS)
    return {"setting": setting["name"], "blocks": len(blocks),
            "words": sum(w for _, w in blocks), "problems": problems, "cycles": cycles,
            "max_outstanding_seen": outstanding[0]}


@cocotb.test()
async def weight_fetch_matches_memory(dut):
    """Every setting of the case: random blocks, each filled bank read back and compared."""
    with open(os.environ["SPQ_CASE"]) as f:
        case = json.load(f)
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    rng = random.Random(case["seed"])
    dut.rst.value = 1
    ram = LatencyRam(AxiReadBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=RAM_BYTES,
                     latency=lambda: 0)
    results = [await _run_setting(dut, ram, case, s, rng) for s in case["settings"]]
    with open(case["results"], "w") as f:
        json.dump(results, f, indent=1)
    bad = [r for r in results if r["problems"]]
    assert not bad, bad
