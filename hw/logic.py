"""Combinational building blocks of the core: find-first-set, population count, adder tree."""
from amaranth import Mux, Signal

from .params import bits_for


def first_set(m, vec, name):
    """Index of the lowest set bit of ``vec`` (0 when ``vec`` is 0), comb.

    A binary search: is the lower half nonzero? then keep it, else the upper half; one
    index bit per halving, most significant first. Every step is a whole-slice OR and mux
    (no carry chain, no per-bit gathers), which keeps the logic small in simulators too.
    """
    n = len(vec)
    bits = bits_for(n)
    index = Signal(bits, name=name)
    part = Signal(1 << bits, name=f"{name}_search{bits}")
    m.d.comb += part.eq(vec)
    for b in reversed(range(bits)):
        half = 1 << b
        low_empty = ~part[:half].any()
        m.d.comb += index[b].eq(low_empty)
        nxt = Signal(half, name=f"{name}_search{b}")
        m.d.comb += nxt.eq(Mux(low_empty, part[half:2 * half], part[:half]))
        part = nxt
    return index


def popcount(vec):
    """Number of set bits of ``vec`` (a balanced adder tree)."""
    return tree_sum([vec[i] for i in range(len(vec))])


def tree_sum(terms):
    """The sum of ``terms`` as a balanced adder tree: log-depth expressions, where Python's
    ``sum`` nests one Operator per term and overflows the recursion limit of Amaranth's
    transformers at a few hundred terms (``hardware.lanes`` = 384 did)."""
    terms = list(terms)
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]
