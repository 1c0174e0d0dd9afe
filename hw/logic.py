"""Combinational building blocks of the core: find-first-set, population count, adder tree,
per-layer constants."""
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


class LayerConstants:
    """Per-layer constants of a core, selected by its current layer, each made on first use.

    ``consts[name]`` is the signal ``cur_<name>``, equal to ``value(layer)`` for the layer
    plan selected by ``layer``; ``specs`` maps a name to ``(width, value)``. Only the names
    the design reads become signals (an unread one would be dead logic in the Verilog and a
    coverage point no test can reach); :meth:`drive` adds their one ``Switch``, and must run
    once, at the top level of ``elaborate``, after the last read (so that the assignments are
    not nested in another statement's condition); a name first read after it raises.
    """

    def __init__(self, plans, specs: dict):
        self._plans, self._specs, self._signals = list(plans), dict(specs), {}
        self._driven = False

    def __getitem__(self, name):
        if name not in self._signals:
            if self._driven:
                raise RuntimeError(f"cur_{name} is read after drive(): it would be undriven")
            width, _ = self._specs[name]
            self._signals[name] = Signal(width, name=f"cur_{name}")
        return self._signals[name]

    def drive(self, m, layer):
        if self._driven:
            raise RuntimeError("LayerConstants.drive() runs once: a second Switch would "
                               "drive every constant twice")
        self._driven = True
        with m.Switch(layer):
            for plan in self._plans:
                with m.Case(plan.index):
                    m.d.comb += [sig.eq(self._specs[name][1](plan))
                                 for name, sig in self._signals.items()]
