"""The core's signature unit and pool counter, in Amaranth's simulator, against reference
functions (hw.signature's CRC, integer sums), with idle cycles and clears between."""
import random
from types import SimpleNamespace

import pytest
from amaranth import Module, Signal
from amaranth.lib import data
from amaranth.sim import Simulator

from hw.logic import LayerConstants
from hw.param_loader import LANE_TARGETS, WORD_TARGETS, ParamLoader
from hw.perf import accumulate_cycles
from hw.pool_counter import PoolCounter
from hw.protocol import TARGET_WEIGHTS
from hw.signature import crc32_stream
from hw.signature_unit import SignatureUnit
from hw.tap_issue import TapIssue


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


def _tap_issue_reference(words, inside, cin, skipping):
    """The inputs a tap walk issues, in order: (tap, channel, value)."""
    if skipping:
        return [(t, c, v) for t, word in enumerate(words) if inside[t]
                for c, v in enumerate(word[:cin]) if v]
    return [(t, c, word[c] if inside[t] else 0) for t, word in enumerate(words)
            for c in range(cin)]


@pytest.mark.parametrize("skipping", [True, False])
def test_tap_issue_issues_every_input_in_the_cycles_perf_predicts(skipping):
    """Random kernels, words and padding (words of taps outside the map are garbage that
    must not be issued as such); a 1-cycle word read that follows (ky, kx); idle cycles
    between groups. Events against the reference walk, cycles against hw.perf. Kernels as
    wide as ``max_kernel`` (``ky`` and ``kx`` sized to it, ``ky`` at 3 after the last tap)."""
    widths = (6, 4)                        # plane 1 narrower: 2-bit inputs on 4 channels
    dut = TapIssue(channels=6, plane_widths=widths, max_taps=9, max_kernel=3, skipping=skipping)
    assert (len(dut.ky), len(dut.kx), len(dut.kw)) == (2, 2, 2)
    rng = random.Random(int(skipping))

    def planes(word):
        return sum(((v >> k) & 1) << (sum(widths[:k]) + c)
                   for k in range(len(widths)) for c, v in enumerate(word) if c < widths[k])

    async def bench(ctx):
        for trial in range(60):
            kh, kw = rng.choice([(3, 3), (1, 1), (2, 3), (3, 1)])
            cin, x_bits = rng.choice([(4, 2), (6, 1), (1, 2), (3, 1)])
            density = rng.choice([0.0, 0.2, 0.6, 1.0])
            taps = kh * kw
            words = [[rng.randrange(1, 1 << x_bits) if rng.random() < density else 0
                      for _ in range(cin)] for _ in range(taps)]
            inside = [rng.random() < 0.7 for _ in range(taps)]
            window = skipping and taps > 1 and rng.random() < 0.2
            if window:                     # window fetch: the whole window is one word
                cin, taps, kw, x_bits = min(cin * taps, 6), 1, 1, 1
                words = [[rng.randrange(2) for _ in range(cin)]]
                inside = [True]
            for name, v in (("taps", taps), ("kw", kw), ("cin_mask", (1 << cin) - 1),
                            ("x_mask", (1 << x_bits) - 1)):
                ctx.set(getattr(dut, name), v)
            ctx.set(dut.start, 1)
            ctx.set(dut.start_word, window)
            ctx.set(dut.start_planes, planes(words[0]) if window else rng.randrange(1 << 10))
            ctx.set(dut.start_nz, sum(1 << c for c, v in enumerate(words[0]) if v)
                    if window else rng.randrange(1 << 6))
            address = None
            await ctx.tick()
            ctx.set(dut.start, 0)
            for _ in range(rng.randrange(3)):   # idle cycles before the walk runs
                address = ctx.get(dut.ky) * kw + ctx.get(dut.kx)
                await ctx.tick()
            ctx.set(dut.run, 1)
            events, cycles = [], 0
            while True:
                if address is not None and address < taps and inside[address]:
                    word = words[address]
                else:                      # outside the map: whatever the SRAM returns
                    word = [rng.randrange(1 << x_bits) for _ in range(cin)]
                ctx.set(dut.fetched_planes, planes(word))
                ctx.set(dut.fetched_nz, sum(1 << c for c, v in enumerate(word) if v))
                address = ctx.get(dut.ky) * kw + ctx.get(dut.kx)
                ctx.set(dut.tap_inside, address < taps and inside[address])
                cycles += 1
                if ctx.get(dut.issue):
                    events.append((ctx.get(dut.tap), ctx.get(dut.channel), ctx.get(dut.x)))
                done = ctx.get(dut.done)
                await ctx.tick()
                assert cycles < 200, trial
                if done:
                    break
            ctx.set(dut.run, 0)
            assert events == _tap_issue_reference(words, inside, cin, skipping), trial
            if window:
                want = max(sum(1 for v in words[0] if v), 1)
            elif skipping:
                want = accumulate_cycles(tuple(sum(1 for v in w if v) if inside[t] else -1
                                               for t, w in enumerate(words)), True)
            else:
                want = accumulate_cycles((cin,) * taps, False)
            assert cycles == want, trial
            for _ in range(rng.randrange(2)):   # idle cycles between groups
                await ctx.tick()

    _run(dut, bench)


def test_units_check_parameters():
    with pytest.raises(ValueError, match="lanes"):
        SignatureUnit(lanes=0, spike_count_width=1, event_count_width=1,
                      synaptic_count_width=1, update_count_width=1, synaptic_width=1)
    with pytest.raises(ValueError, match="count_bits"):
        PoolCounter(channels=4, count_bits=True)
    with pytest.raises(ValueError, match="plane_widths"):
        TapIssue(channels=4, plane_widths=(4, 5), max_taps=9)
    with pytest.raises(ValueError, match="max_taps"):
        TapIssue(channels=4, plane_widths=(4,), max_taps=0)
    with pytest.raises(ValueError, match="max_kernel"):
        TapIssue(channels=4, plane_widths=(4,), max_taps=9, max_kernel=0)


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


def test_layer_constants_exist_only_when_read_and_follow_the_layer():
    """Each read name is one ``cur_<name>`` signal equal to its value for the selected
    layer; an unread name never becomes a signal; a first read after drive() raises."""
    plans = [SimpleNamespace(index=i, width=5 + 3 * i) for i in range(3)]
    cur = LayerConstants(plans, {"width": (4, lambda lp: lp.width),
                                 "double": (5, lambda lp: 2 * lp.width),
                                 "unread": (8, lambda lp: 1)})
    m, layer = Module(), Signal(2)
    width, double = cur["width"], cur["double"]
    assert cur["width"] is width and width.name == "cur_width" and len(double) == 5
    cur.drive(m, layer)
    with pytest.raises(RuntimeError, match="cur_unread"):
        cur["unread"]
    assert cur["width"] is width            # read before drive: still the same signal
    with pytest.raises(RuntimeError, match="runs once"):
        cur.drive(m, layer)

    async def bench(ctx):
        for lp in plans:
            ctx.set(layer, lp.index)
            assert (ctx.get(width), ctx.get(double)) == (lp.width, 2 * lp.width % 32)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
