"""Compare-only neuron unit: thresholds in, spike and next ternary/binary membrane out."""
from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class NeuronUnit(wiring.Component):
    """One neuron update (docs/INTEGER_SPEC.md, section 4), purely combinational.

    Parameters
    ----------
    membrane : "ternary" | "binary"
        Ternary stores q in 2 bits (00 = 0, 01 = +1, 11 = -1); binary in 1 bit.
    acc_width : int
        Signed width of the current and of each threshold.

    Members
    -------
    current : In(signed(acc_width))
    q_prev : In(membrane_bits)       stored membrane before this step
    first_step : In(1)               treat q_prev as 0 (t = 0: no reset pass over the SRAM)
    active : In(1)                   0 = masked: no spike, the membrane keeps its value
    thresholds : In(levels * 3 * acc_width)
        [F, P, N] for each q_prev level, level index q_prev + 1 (ternary) or q_prev.
    spike : Out(1)
    q_next : Out(membrane_bits)
    """

    def __init__(self, *, membrane, acc_width):
        if membrane not in ("ternary", "binary"):
            raise ValueError(f"membrane must be 'ternary' or 'binary', not {membrane!r}")
        if not isinstance(acc_width, int) or acc_width < 2:
            raise ValueError(f"acc_width must be an integer >= 2, not {acc_width!r}")
        self.membrane, self.acc_width = membrane, acc_width
        self.membrane_bits = 2 if membrane == "ternary" else 1
        self.levels = 3 if membrane == "ternary" else 2
        super().__init__({
            "current": In(signed(acc_width)),
            "q_prev": In(self.membrane_bits),
            "first_step": In(1),
            "active": In(1),
            "thresholds": In(self.levels * 3 * acc_width),
            "spike": Out(1),
            "q_next": Out(self.membrane_bits),
        })

    def elaborate(self, platform):
        m = Module()
        W = self.acc_width
        q = Signal(self.membrane_bits)
        m.d.comb += q.eq(Mux(self.first_step, 0, self.q_prev))
        thr = [Signal(signed(W), name=n) for n in ("fire_at", "plus_at", "minus_at")]
        # Level index: ternary 11 (-1) -> 0, 00 -> 1, 01 -> 2; binary q -> q.
        codes = {0: 0b11, 1: 0b00, 2: 0b01} if self.membrane == "ternary" else {0: 0, 1: 1}
        with m.Switch(q):
            for level, code in codes.items():
                with m.Case(code):
                    for f in range(3):
                        lo = (level * 3 + f) * W
                        m.d.comb += thr[f].eq(self.thresholds[lo:lo + W].as_signed())
        fire = self.current >= thr[0]
        q_new = Signal(self.membrane_bits)
        with m.If(fire):
            m.d.comb += q_new.eq(0)
        with m.Elif(self.current >= thr[1]):
            m.d.comb += q_new.eq(1)
        with m.Elif((self.current <= thr[2]) if self.membrane == "ternary" else C(0, 1)):
            m.d.comb += q_new.eq(0b11)
        m.d.comb += [
            self.spike.eq(fire & self.active),
            self.q_next.eq(Mux(self.active, q_new, q)),
        ]
        return m
