"""hw.compaction against its reference: the kept fields packed in order, for random and
corner-case keep patterns, element counts that are and are not powers of two."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.compaction import Compaction, compact_reference, drop_counts


def _pack(values, width):
    return sum(int(v) << (i * width) for i, v in enumerate(values))


def _unpack(word, n, width):
    return [(word >> (i * width)) & ((1 << width) - 1) for i in range(n)]


@pytest.mark.parametrize("count, width", [(1, 3), (5, 2), (8, 4), (13, 1), (32, 3)])
def test_compaction_equals_reference(count, width):
    rng = np.random.default_rng(count * 7 + width)
    dut = Compaction(count, width)
    patterns = [np.ones(count, bool), np.zeros(count, bool),
                np.arange(count) % 2 == 0, np.arange(count) >= count // 2]
    patterns += [rng.random(count) < p for p in (0.1, 0.4, 0.7, 0.95) for _ in range(6)]

    async def bench(ctx):
        for keep in patterns:
            values = rng.integers(0, 1 << width, count)
            ctx.set(dut.data, _pack(values, width))
            ctx.set(dut.keep, _pack(keep, 1))
            ctx.set(dut.shift, _pack(drop_counts(keep), dut.shift_width))
            got = _unpack(ctx.get(dut.packed), count, width)
            assert got == list(compact_reference(values, keep)), (keep, values)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


def test_drop_counts_and_reference():
    keep = np.array([1, 0, 0, 1, 1, 0, 1], bool)
    assert list(drop_counts(keep)) == [0, 0, 1, 2, 2, 2, 3]
    assert list(compact_reference(np.arange(1, 8), keep)) == [1, 4, 5, 7, 0, 0, 0]


@pytest.mark.parametrize("count, width", [(0, 4), (4, 0), (2.0, 4)])
def test_compaction_refuses_bad_sizes(count, width):
    with pytest.raises(ValueError):
        Compaction(count, width)
