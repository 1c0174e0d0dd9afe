"""SRAM macro: one synchronous read port, one write port with per-granule enables.

The core instantiates ``spquant_sram`` as a black box, as it would a foundry SRAM
macro; ``SRAM_VERILOG`` is the behavioural model that simulation and lint use. Keeping
memories out of Amaranth's netlist keeps the generated Verilog small for full-size
networks (no per-word initial blocks), and lets simulation preload a memory from an image
file (``INIT_FILE``, ``$readmemh`` format) instead of loading it word by word.
"""
from amaranth import *

from .params import bits_for

SRAM_MODULE = "spquant_sram"

SRAM_VERILOG = r"""// Behavioural model of the SRAM macro used by snn_core (written by hw.build).
// Read: registered, old data on a same-address write (read-before-write).
// Contents are undefined until written (X in four-state simulators).
module spquant_sram #(
    parameter WIDTH = 8,
    parameter DEPTH = 16,
    parameter GRAN = 8,
    parameter ADDR_WIDTH = 4,
    parameter INIT_FILE = ""
) (
    input  wire                    clk,
    input  wire [ADDR_WIDTH-1:0]   raddr,
    output reg  [WIDTH-1:0]        rdata,
    input  wire [ADDR_WIDTH-1:0]   waddr,
    input  wire [WIDTH-1:0]        wdata,
    input  wire [WIDTH/GRAN-1:0]   wen
);
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    integer i;
    initial begin
        if (INIT_FILE != "") $readmemh(INIT_FILE, mem);
    end
    always @(posedge clk) begin
        rdata <= mem[raddr];
        for (i = 0; i < WIDTH / GRAN; i = i + 1)
            if (wen[i]) mem[waddr][i * GRAN +: GRAN] <= wdata[i * GRAN +: GRAN];
    end
endmodule
"""


class Sram:
    """Ports of one ``spquant_sram`` instance; ``add_to(m, name)`` instantiates it.

    Read latency 1 cycle: ``rdata`` shows the word at the ``raddr`` of the previous cycle.
    """

    def __init__(self, name, *, width, depth, granularity=None):
        granularity = granularity or width
        if width % granularity:
            raise ValueError(f"{name}: granularity {granularity} does not divide width {width}")
        if depth < 1:
            raise ValueError(f"{name}: depth must be >= 1, not {depth}")
        self.name, self.width, self.depth, self.granularity = name, width, depth, granularity
        aw = bits_for(depth)
        self.raddr = Signal(aw, name=f"{name}_raddr")
        self.rdata = Signal(width, name=f"{name}_rdata")
        self.waddr = Signal(aw, name=f"{name}_waddr")
        self.wdata = Signal(width, name=f"{name}_wdata")
        self.wen = Signal(width // granularity, name=f"{name}_wen")

    def add_to(self, m):
        m.submodules[self.name] = Instance(
            SRAM_MODULE,
            p_WIDTH=self.width, p_DEPTH=self.depth, p_GRAN=self.granularity,
            p_ADDR_WIDTH=len(self.raddr), p_INIT_FILE="",
            i_clk=ClockSignal(), i_raddr=self.raddr, o_rdata=self.rdata,
            i_waddr=self.waddr, i_wdata=self.wdata, i_wen=self.wen)
        return self
