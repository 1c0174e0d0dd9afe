"""Channel-gate lanes: ``z[j] += G[j] * P``, ``open[j] = z[j] >= theta[j]`` (INTEGER_SPEC section 5)."""
from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class ChannelGateLanes(wiring.Component):
    """``lanes`` gate accumulators fed by one broadcast prior sum and one ternary weight each.

    Parameters
    ----------
    lanes : int
        Output channels scored in parallel.
    prior_width : int
        Signed width of a prior sum ``P[c]`` (the previous layer's membranes summed over its
        positions).
    z_width : int
        Signed width of the scores and thresholds; must hold ``C_in * max|P|`` and
        ``bound + 1``.

    Members
    -------
    clear : In(1)
        Zero every score (takes priority over ``valid``).
    valid : In(1)
        Add this cycle's terms.
    prior : In(signed(prior_width))
        ``P[c]`` for this cycle's input channel ``c``, shared by all lanes.
    weights : In(2 * lanes)
        Lane j's gate weight at bits [2j, 2j+2), as a 2-bit PoT code: 00 = 0, 01 = +1,
        11 = -1 (10 is another zero).
    thresholds : In(lanes * z_width)
        ``theta_g`` of lane j at bits [j*z_width, (j+1)*z_width), signed.
    open : Out(lanes)
        ``z[j] >= theta[j]`` for the scores as registered (combinational from them).

    Latency 1 cycle (registered scores), throughput one input channel per cycle.
    """

    def __init__(self, *, lanes, prior_width, z_width):
        for name, v in (("lanes", lanes), ("prior_width", prior_width), ("z_width", z_width)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if z_width < prior_width + 1:
            raise ValueError(f"z_width {z_width} cannot hold one {prior_width}-bit prior and its negation")
        self.lanes, self.prior_width, self.z_width = lanes, prior_width, z_width
        super().__init__({
            "clear": In(1),
            "valid": In(1),
            "prior": In(signed(prior_width)),
            "weights": In(2 * lanes),
            "thresholds": In(lanes * z_width),
            "open": Out(lanes),
        })
        self.scores = [Signal(signed(z_width), name=f"score{j}") for j in range(lanes)]

    def score(self, j):
        return self.scores[j]

    def elaborate(self, platform):
        m = Module()
        Z = self.z_width
        for j, z in enumerate(self.scores):
            code = self.weights[2 * j:2 * j + 2]
            with m.If(self.clear):
                m.d.sync += z.eq(0)
            with m.Elif(self.valid & code[0]):
                with m.If(code[1]):
                    m.d.sync += z.eq(z - self.prior)
                with m.Else():
                    m.d.sync += z.eq(z + self.prior)
            theta = self.thresholds[j * Z:(j + 1) * Z].as_signed()
            m.d.comb += self.open[j].eq(z >= theta)
        return m
