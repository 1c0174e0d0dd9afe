"""PoT shift-add synapse lanes: ``acc[j] += s_j * (x << (K - k_j))``, no multiplier."""
from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class PotShiftAdd(wiring.Component):
    """``lanes`` accumulators fed by one broadcast input and one weight code per lane.

    Parameters
    ----------
    lanes : int
        Number of lanes (output channels computed in parallel).
    weight_bits : int
        Code width b; code = sign (MSB) | e (b-1 bits), e = 0 zero, else k = e - 1.
    max_shift : int
        K; a nonzero code adds ``x << (K - k)``.
    x_bits, acc_width : int
        Input and (signed) accumulator widths. ``acc_width`` must hold the layer bound.

    Members
    -------
    clear : In(1)
        Zero every accumulator (takes priority over ``valid``).
    valid : In(1)
        Add this cycle's terms.
    x : In(x_bits)
        The input value, shared by all lanes.
    codes : In(lanes * weight_bits)
        Lane j's code at bits [j*b, (j+1)*b).
    acc : Out(lanes * acc_width)
        Registered accumulators, lane j at bits [j*W, (j+1)*W).

    Latency 1 cycle (registered), throughput one input per cycle.
    """

    def __init__(self, *, lanes, weight_bits, max_shift, x_bits, acc_width):
        for name, v in (("lanes", lanes), ("x_bits", x_bits), ("acc_width", acc_width)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if weight_bits not in (2, 4, 8):
            raise ValueError(f"weight_bits must be 2, 4 or 8, not {weight_bits!r}")
        if max_shift != (1 << (weight_bits - 1)) - 2:
            raise ValueError(f"max_shift must be {(1 << (weight_bits - 1)) - 2} for "
                             f"{weight_bits}-bit codes, not {max_shift!r}")
        if x_bits + max_shift + 1 > acc_width:
            raise ValueError(f"acc_width {acc_width} cannot hold one {x_bits}-bit input "
                             f"shifted by {max_shift}")
        self.lanes, self.weight_bits, self.max_shift = lanes, weight_bits, max_shift
        self.x_bits, self.acc_width = x_bits, acc_width
        super().__init__({
            "clear": In(1),
            "valid": In(1),
            "x": In(x_bits),
            "codes": In(lanes * weight_bits),
            "acc": Out(lanes * acc_width),
        })

    def lane_acc(self, j):
        return self.acc[j * self.acc_width:(j + 1) * self.acc_width].as_signed()

    def elaborate(self, platform):
        m = Module()
        b, K, W = self.weight_bits, self.max_shift, self.acc_width
        for j in range(self.lanes):
            code = self.codes[j * b:(j + 1) * b]
            e, negative = code[:b - 1], code[b - 1]
            # e in 1..K+1 selects shift K+1-e in 0..K; e = 0 is a zero weight.
            amount = Signal(range(K + 2), name=f"shift{j}")
            m.d.comb += amount.eq(K + 1 - e)
            shifted = Signal(W, name=f"term{j}")
            m.d.comb += shifted.eq((self.x << amount)[:W])
            term = Signal(signed(W), name=f"signed_term{j}")
            with m.If(e == 0):
                m.d.comb += term.eq(0)
            with m.Elif(negative):
                m.d.comb += term.eq(-shifted.as_signed())
            with m.Else():
                m.d.comb += term.eq(shifted.as_signed())
            acc = self.acc[j * W:(j + 1) * W]
            with m.If(self.clear):
                m.d.sync += acc.eq(0)
            with m.Elif(self.valid):
                m.d.sync += acc.eq(acc.as_signed() + term)
        return m
