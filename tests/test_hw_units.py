"""PoT shift-add lanes and the neuron unit, in Amaranth's simulator, against Python models."""
import random

import pytest
from amaranth.sim import Simulator

from hw.neuron_unit import NeuronUnit
from hw.pot_shift_add import PotShiftAdd


def _term(x, code, bits, K):
    e, neg = code & ((1 << (bits - 1)) - 1), code >> (bits - 1)
    if e == 0:
        return 0
    t = x << (K - (e - 1))
    return -t if neg else t


@pytest.mark.parametrize("bits", [2, 4])
def test_pot_shift_add_matches_model(bits):
    K, L, xb = (1 << (bits - 1)) - 2, 3, 3
    W = 14
    dut = PotShiftAdd(lanes=L, weight_bits=bits, max_shift=K, x_bits=xb, acc_width=W)
    rng = random.Random(bits)
    # Extremes first (largest input, largest term, both signs), then random; idle cycles between.
    events = [((1 << xb) - 1, [1] * L), ((1 << xb) - 1, [1 | (1 << (bits - 1))] * L)]
    events += [(rng.randrange(1 << xb), [rng.randrange(1 << bits) for _ in range(L)])
               for _ in range(60)]

    async def bench(ctx):
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        model = [0] * L
        for i, (x, codes) in enumerate(events):
            valid = rng.random() < 0.8
            ctx.set(dut.valid, valid)
            ctx.set(dut.x, x)
            ctx.set(dut.codes, sum(c << (j * bits) for j, c in enumerate(codes)))
            await ctx.tick()
            if valid:
                model = [m + _term(x, c, bits, K) for m, c in zip(model, codes)]
            for j in range(L):
                assert ctx.get(dut.lane_acc(j)) == model[j], (i, j)
        ctx.set(dut.valid, 0)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        assert all(ctx.get(dut.lane_acc(j)) == 0 for j in range(L))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_pot_shift_add_checks_parameters():
    with pytest.raises(ValueError, match="weight_bits"):
        PotShiftAdd(lanes=2, weight_bits=3, max_shift=2, x_bits=2, acc_width=8)
    with pytest.raises(ValueError, match="max_shift"):
        PotShiftAdd(lanes=2, weight_bits=4, max_shift=5, x_bits=2, acc_width=12)
    with pytest.raises(ValueError, match="acc_width"):
        PotShiftAdd(lanes=2, weight_bits=4, max_shift=6, x_bits=3, acc_width=8)


def _neuron_model(I, q, F, P, N, membrane, active, first):
    q = 0 if first else q
    if not active:
        return 0, q
    if I >= F:
        return 1, 0
    if I >= P:
        return 0, 1
    if membrane == "ternary" and I <= N:
        return 0, -1
    return 0, 0


@pytest.mark.parametrize("membrane", ["ternary", "binary"])
def test_neuron_unit_matches_model(membrane):
    W = 8
    dut = NeuronUnit(membrane=membrane, acc_width=W)
    levels = (-1, 0, 1) if membrane == "ternary" else (0, 1)
    rng = random.Random(5)
    lo, hi = -(1 << (W - 1)), (1 << (W - 1)) - 1

    async def bench(ctx):
        for _ in range(400):
            thr = [sorted(rng.choice([lo, hi, rng.randint(lo, hi)]) for _ in range(3))[::-1]
                   for _ in levels]
            I = rng.choice([lo + 1, hi - 1, 0, rng.randint(lo + 1, hi - 1)])
            q = rng.choice(levels)
            # Exercise equality edges: the current sits on a threshold now and then.
            if rng.random() < 0.3:
                I = rng.choice(thr[levels.index(q)])
                I = min(max(I, lo + 1), hi - 1)
            active, first = rng.random() < 0.85, rng.random() < 0.2
            word = 0
            for li, row in enumerate(thr):
                for f, v in enumerate(row):
                    word |= (v & ((1 << W) - 1)) << ((li * 3 + f) * W)
            ctx.set(dut.thresholds, word)
            ctx.set(dut.current, I)
            ctx.set(dut.q_prev, q & (3 if membrane == "ternary" else 1))
            ctx.set(dut.active, active)
            ctx.set(dut.first_step, first)
            F, P, N = thr[levels.index(0 if first else q)]
            spike, q_new = _neuron_model(I, q, F, P, N, membrane, active, first)
            assert ctx.get(dut.spike) == spike
            got = ctx.get(dut.q_next)
            if membrane == "ternary" and got == 3:
                got = -1
            assert got == q_new, (I, q, thr, active, first)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


def test_channel_gate_lanes_match_model():
    from hw.channel_gate import ChannelGateLanes
    L, PW, ZW = 4, 6, 10
    dut = ChannelGateLanes(lanes=L, prior_width=PW, z_width=ZW)
    rng = random.Random(5)
    code_of = {0: 0b00, 1: 0b01, -1: 0b11}
    # Extremes first (largest |P| with both weights), then random, with idle cycles.
    lo, hi = -(1 << (PW - 1)), (1 << (PW - 1)) - 1
    events = [(lo, [1] * L), (lo, [-1] * L), (hi, [-1, 1, 0, 1])]
    events += [(rng.randint(lo, hi), [rng.choice([-1, 0, 1]) for _ in range(L)]) for _ in range(40)]
    thetas = [rng.randint(-30, 30) for _ in range(L)]

    async def bench(ctx):
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        ctx.set(dut.thresholds, sum((t & ((1 << ZW) - 1)) << (j * ZW) for j, t in enumerate(thetas)))
        model = [0] * L
        for i, (p, w) in enumerate(events):
            valid = rng.random() < 0.8
            ctx.set(dut.valid, valid)
            ctx.set(dut.prior, p)
            ctx.set(dut.weights, sum(code_of[v] << (2 * j) for j, v in enumerate(w)))
            await ctx.tick()
            if valid:
                model = [z + v * p for z, v in zip(model, w)]
            for j in range(L):
                assert ctx.get(dut.score(j)) == model[j], (i, j)
                assert ctx.get(dut.open[j]) == (model[j] >= thetas[j]), (i, j)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_channel_gate_lanes_check_parameters():
    from hw.channel_gate import ChannelGateLanes
    with pytest.raises(ValueError, match="z_width"):
        ChannelGateLanes(lanes=2, prior_width=8, z_width=8)
    with pytest.raises(ValueError, match="lanes"):
        ChannelGateLanes(lanes=0, prior_width=8, z_width=12)
