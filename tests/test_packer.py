"""hw.packer.WindowPacker against its reference: for random and corner-case windows, each
packed group's lane codes are the scheduled channels' codes in order, its lane additions
are the computed channels among them, and expanding the lanes' currents puts every
scheduled channel's current back in place (unscheduled ones 0)."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.compaction import compact_reference
from hw.packer import WindowPacker


def _pack(values, width):
    return sum(int(v) << (i * width) for i, v in enumerate(values))


def _unpack(word, n, width):
    return [(word >> (i * width)) & ((1 << width) - 1) for i in range(n)]


def reference(computed, scheduled, codes, accs, lanes):
    """Per packed group k: (lane codes, lane additions per event); and the window's currents
    after expanding each packed group's lane currents ``accs[k]``."""
    order = np.flatnonzero(scheduled)
    groups = -(-len(order) // lanes)
    out, currents = [], np.zeros(2 * lanes, np.int64)
    for k in range(groups):
        chans = order[k * lanes:(k + 1) * lanes]
        lane_codes = np.zeros(lanes, np.int64)
        lane_codes[:len(chans)] = codes[chans]
        out.append((list(lane_codes), int(computed[chans].sum())))
        if k == 0:
            currents[:] = 0
        currents[chans] = accs[k][:len(chans)]
    return out, list(currents)


@pytest.mark.parametrize("lanes", [1, 3, 4, 8])
def test_window_packer_equals_reference(lanes):
    rng = np.random.default_rng(lanes)
    b, W, n = 4, 6, 2 * lanes
    dut = WindowPacker(lanes=lanes, weight_bits=b, acc_width=W)
    cases = [(np.ones(n, bool), np.ones(n, bool)), (np.zeros(n, bool), np.arange(n) < lanes)]
    for p in (0.2, 0.45, 0.8):
        for _ in range(6):
            computed = rng.random(n) < p
            extra = rng.random(n) < 0.3          # scheduled may hold more than computed
            cases.append((computed, computed | extra))

    async def bench(ctx):
        for computed, scheduled in cases:
            if not scheduled.any():
                continue
            codes = rng.integers(0, 1 << b, n)
            accs = [rng.integers(0, 1 << W, lanes) for _ in range(2)]
            want, currents = reference(computed, scheduled, codes, accs, lanes)
            ctx.set(dut.load, 1)
            ctx.set(dut.computed, _pack(computed, 1))
            ctx.set(dut.scheduled, _pack(scheduled, 1))
            await ctx.tick()
            ctx.set(dut.load, 0)
            await ctx.tick().repeat(2)            # routing, then the per-group counts
            assert ctx.get(dut.second) == int(len(want) == 2)
            assert _unpack(ctx.get(dut.win_computed), n, 1) == list(computed.astype(int))
            ctx.set(dut.codes, _pack(codes, b))
            for k, (lane_codes, synaptic) in enumerate(want):
                ctx.set(dut.k, k)
                assert _unpack(ctx.get(dut.lane_codes), lanes, b) == lane_codes, (k, scheduled)
                assert ctx.get(dut.synaptic) == synaptic
                ctx.set(dut.acc, _pack(accs[k], W))
                if k == len(want) - 1:           # the core reads the last group unregistered
                    assert _unpack(ctx.get(dut.expanded), n, W) == currents, scheduled
                ctx.set(dut.expand, 1)
                await ctx.tick()
                ctx.set(dut.expand, 0)
            assert _unpack(ctx.get(dut.currents), n, W) == currents, scheduled
            ctx.set(dut.k, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_compaction_reference_is_the_lane_order():
    codes = np.array([5, 6, 7, 8])
    assert list(compact_reference(codes, np.array([0, 1, 0, 1], bool))) == [6, 8, 0, 0]


@pytest.mark.parametrize("bad", [{"lanes": 0}, {"weight_bits": True}, {"acc_width": 2.0}])
def test_window_packer_refuses_bad_sizes(bad):
    with pytest.raises(ValueError):
        WindowPacker(**{"lanes": 2, "weight_bits": 4, "acc_width": 8, **bad})
