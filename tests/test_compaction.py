"""hw.compaction against its references: the kept fields packed in order and packed fields
put back, for random and corner-case keep patterns, element counts that are and are not
powers of two; the router's ranks and packed-slot mask."""
import numpy as np
import pytest
from amaranth import Module
from amaranth.sim import Simulator

from hw.compaction import (Compaction, PackNetwork, PackRouter, compact_reference, drop_counts,
                           expand_reference)


def _pack(values, width):
    return sum(int(v) << (i * width) for i, v in enumerate(values))


def _unpack(word, n, width):
    return [(word >> (i * width)) & ((1 << width) - 1) for i in range(n)]


def _patterns(count, rng):
    out = [np.ones(count, bool), np.zeros(count, bool),
           np.arange(count) % 2 == 0, np.arange(count) >= count // 2]
    return out + [rng.random(count) < p for p in (0.1, 0.4, 0.7, 0.95) for _ in range(6)]


@pytest.mark.parametrize("count, width", [(1, 3), (5, 2), (8, 4), (13, 1), (32, 3)])
def test_compaction_equals_reference(count, width):
    rng = np.random.default_rng(count * 7 + width)
    dut = Compaction(count, width)

    async def bench(ctx):
        for keep in _patterns(count, rng):
            values = rng.integers(0, 1 << width, count)
            ctx.set(dut.data, _pack(values, width))
            ctx.set(dut.keep, _pack(keep, 1))
            got = _unpack(ctx.get(dut.packed), count, width)
            assert got == list(compact_reference(values, keep)), (keep, values)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("count, width", [(1, 2), (6, 3), (16, 5), (24, 2)])
def test_expansion_inverts_compaction(count, width):
    """One router drives a compacting and an expanding network, as in the core: expanding
    the packed slots gives every kept field back in place and zeros elsewhere."""
    rng = np.random.default_rng(count + 100 * width)
    m = Module()
    m.submodules.router = router = PackRouter(count)
    m.submodules.expand = expand = PackNetwork(count, width, expand=True)
    m.d.comb += [expand.moves.eq(router.moves), expand.mask.eq(router.keep)]

    async def bench(ctx):
        for keep in _patterns(count, rng):
            packed = rng.integers(0, 1 << width, count)
            ctx.set(router.keep, _pack(keep, 1))
            ctx.set(expand.data, _pack(packed, width))
            got = _unpack(ctx.get(expand.out), count, width)
            assert got == list(expand_reference(packed, keep)), (keep, packed)
            ranks = _unpack(ctx.get(router.ranks), count, router.rank_width)
            assert ranks == list(np.arange(count) - drop_counts(keep))
            assert _unpack(ctx.get(router.packed_valid), count, 1) == \
                [int(k < keep.sum()) for k in range(count)]

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def test_references():
    keep = np.array([1, 0, 0, 1, 1, 0, 1], bool)
    assert list(drop_counts(keep)) == [0, 0, 1, 2, 2, 2, 3]
    assert list(compact_reference(np.arange(1, 8), keep)) == [1, 4, 5, 7, 0, 0, 0]
    assert list(expand_reference([1, 4, 5, 7, 9, 9, 9], keep)) == [1, 0, 0, 4, 5, 0, 7]


@pytest.mark.parametrize("count, width", [(0, 4), (4, 0), (2.0, 4), (True, 4)])
def test_compaction_refuses_bad_sizes(count, width):
    with pytest.raises(ValueError):
        Compaction(count, width)
