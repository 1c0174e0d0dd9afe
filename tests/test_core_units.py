"""The core's signature unit and pool counter, in Amaranth's simulator, against reference
functions (hw.signature's CRC, integer sums), with idle cycles and clears between."""
import random

import pytest
from amaranth.lib import data
from amaranth.sim import Simulator

from hw.param_loader import LANE_TARGETS, WORD_TARGETS, ParamLoader
from hw.pool_counter import PoolCounter
from hw.protocol import TARGET_WEIGHTS
from hw.signature import crc32_stream
from hw.signature_unit import SignatureUnit


def _run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def _fields(value, widths):
    out = []
    for w in widths:
        out.append(value & ((1 << w) - 1))
        value >>= w
    return out


@pytest.mark.parametrize("lanes", [8, 5])
def test_signature_unit_matches_crc32_and_counts(lanes):
    widths = (32, 6, 7, 9, 5)              # CRC, spikes, events, synaptic ops, updates
    dut = SignatureUnit(lanes=lanes, spike_count_width=widths[1], event_count_width=widths[2],
                        synaptic_count_width=widths[3], update_count_width=widths[4],
                        synaptic_width=4)
    rng = random.Random(lanes)

    async def bench(ctx):
        for trial in range(4):
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            records, events, synaptic = [], 0, 0
            # Trial 0: all-ones spike words, so the counters wrap.
            for _ in range(40):
                update, event = rng.random() < 0.6, rng.random() < 0.5
                word = (1 << lanes) - 1 if trial == 0 else rng.randrange(1 << lanes)
                add = rng.randrange(16)
                ctx.set(dut.update, update)
                ctx.set(dut.spikes, word)
                ctx.set(dut.event, event)
                ctx.set(dut.synaptic, add)
                await ctx.tick()
                if update:
                    records.append(word)
                if event:
                    events, synaptic = events + 1, synaptic + add
                got = _fields(ctx.get(dut.fields), widths)
                want = [crc32_stream(lanes, records),
                        sum(bin(w).count("1") for w in records) % (1 << widths[1]),
                        events % (1 << widths[2]), synaptic % (1 << widths[3]),
                        len(records) % (1 << widths[4])]
                assert got == want, (trial, len(records))
            ctx.set(dut.update, 0)
            ctx.set(dut.event, 0)

    _run(dut, bench)


def test_signature_unit_clear_wins_and_preset():
    dut = SignatureUnit(lanes=8, spike_count_width=4, event_count_width=4,
                        synaptic_count_width=4, update_count_width=4, synaptic_width=2)

    async def bench(ctx):
        # After reset: the CRC of no records (zlib.crc32(b"") = 0) and zero counts.
        assert ctx.get(dut.fields) == 0
        ctx.set(dut.update, 1)
        ctx.set(dut.spikes, 0xA5)
        await ctx.tick()
        assert _fields(ctx.get(dut.fields), (32,))[0] == crc32_stream(8, [0xA5])
        ctx.set(dut.clear, 1)                  # with update and event still high
        ctx.set(dut.event, 1)
        await ctx.tick()
        assert ctx.get(dut.fields) == 0

    _run(dut, bench)


@pytest.mark.parametrize("channels,count_bits", [(6, 3), (3, 1)])
def test_pool_counter_counts_in_bit_planes(channels, count_bits):
    dut = PoolCounter(channels=channels, count_bits=count_bits)
    rng = random.Random(channels)

    async def bench(ctx):
        for window in range(8):
            counts = [0] * channels
            for _ in range(rng.randrange(0, 6)):          # up to a 2x2 window and more
                spikes = rng.randrange(1 << channels)
                ctx.set(dut.add, 1)
                ctx.set(dut.spikes, spikes)
                await ctx.tick()
                counts = [(c + ((spikes >> j) & 1)) % (1 << count_bits)
                          for j, c in enumerate(counts)]
                ctx.set(dut.add, 0)
                for _ in range(rng.randrange(0, 2)):      # idle cycles hold the counts
                    await ctx.tick()
                planes = ctx.get(dut.planes)
                got = [sum(((planes >> (k * channels + j)) & 1) << k for k in range(count_bits))
                       for j in range(channels)]
                assert got == counts, window
            ctx.set(dut.clear, 1)
            ctx.set(dut.add, 1)                           # clear drops a same-cycle add
            await ctx.tick()
            ctx.set(dut.clear, 0)
            ctx.set(dut.add, 0)
            assert ctx.get(dut.planes) == 0

    _run(dut, bench)


def test_units_check_parameters():
    with pytest.raises(ValueError, match="lanes"):
        SignatureUnit(lanes=0, spike_count_width=1, event_count_width=1,
                      synaptic_count_width=1, update_count_width=1, synaptic_width=1)
    with pytest.raises(ValueError, match="count_bits"):
        PoolCounter(channels=4, count_bits=True)


def test_param_loader_decodes_every_target_a_cycle_later():
    lanes = 4
    layout = data.StructLayout({"target": 3, "addr": 6, "lane": 2, "data": 8})
    dut = ParamLoader(layout=layout, lanes=lanes)
    rng = random.Random(3)

    def want(t):
        """The strobes of transfer ``t`` (None: no transfer), by the protocol's targets."""
        out = {"weights": 0, **{n: 0 for n in LANE_TARGETS}, **{n: 0 for n in WORD_TARGETS}}
        if t is not None:
            target, addr, lane, _ = t
            if target == TARGET_WEIGHTS:
                out["weights"] = 1 << (addr & 1)
            for n, tg in WORD_TARGETS.items():
                out[n] = int(target == tg)
            for n, tg in LANE_TARGETS.items():
                out[n] = (1 << lane) if target == tg else 0
        return out

    async def bench(ctx):
        assert ctx.get(dut.param.ready) == 1
        for _ in range(200):
            valid = rng.random() < 0.7
            t = (rng.randrange(8), rng.randrange(64), rng.randrange(lanes), rng.randrange(256))
            ctx.set(dut.param.valid, valid)
            ctx.set(dut.param.payload, {"target": t[0], "addr": t[1], "lane": t[2], "data": t[3]})
            await ctx.tick()
            got = {n: ctx.get(getattr(dut, n)) for n in want(None)}
            assert got == want(t if valid else None), t
            if valid:
                assert (ctx.get(dut.addr), ctx.get(dut.lane), ctx.get(dut.data)) == t[1:]

    _run(dut, bench)
    with pytest.raises(ValueError, match="lane"):
        ParamLoader(layout=data.StructLayout({"target": 3, "addr": 6, "data": 8}), lanes=4)
