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
// Write: the granules whose wen bit is set; WDATA_WIDTH = WIDTH gives each granule its own
// data, WDATA_WIDTH = GRAN one granule of data for all of them (the bus fans out).
// Contents are undefined until written (X in four-state simulators), unless INIT_FILE
// names a $readmemh image (one hex word per line, address 0 first). Simulation stops with
// an error on a write to an address >= DEPTH.
module spquant_sram #(
    parameter WIDTH = 8,
    parameter DEPTH = 16,
    parameter GRAN = 8,
    parameter ADDR_WIDTH = 4,
    parameter WDATA_WIDTH = WIDTH,
    parameter INIT_FILE = ""
) (
    input  wire                    clk,
    input  wire [ADDR_WIDTH-1:0]   raddr,
    output reg  [WIDTH-1:0]        rdata,
    input  wire [ADDR_WIDTH-1:0]   waddr,
    input  wire [WDATA_WIDTH-1:0]  wdata,
    input  wire [WIDTH/GRAN-1:0]   wen
);
    reg [WIDTH-1:0] mem [0:DEPTH-1];

`ifdef SYNTHESIS
    // The plain macro (what synthesis tools infer block RAM from).
    integer i;
    always @(posedge clk) begin
        rdata <= mem[raddr];
        for (i = 0; i < WIDTH / GRAN; i = i + 1)
            if (wen[i])
                mem[waddr][i * GRAN +: GRAN] <= wdata[(WDATA_WIDTH == WIDTH ? i * GRAN : 0) +: GRAN];
    end
    initial if (INIT_FILE != "") $readmemh(INIT_FILE, mem);
`else
    // Simulators: the same behaviour, faster. The word is read again only if the address
    // changed or the memory was written (the data of a read every cycle); the write is one
    // masked word, formed only in a cycle that writes.
    function [WIDTH-1:0] granule_mask(input [WIDTH/GRAN-1:0] enables);
        integer k;
        for (k = 0; k < WIDTH / GRAN; k = k + 1)
            granule_mask[k * GRAN +: GRAN] = {GRAN{enables[k]}};
    endfunction

    function [WIDTH-1:0] granule_data(input [WDATA_WIDTH-1:0] data);
        integer k;
        for (k = 0; k < WIDTH / GRAN; k = k + 1)
            granule_data[k * GRAN +: GRAN] = data[(WDATA_WIDTH == WIDTH ? k * GRAN : 0) +: GRAN];
    endfunction

    reg [ADDR_WIDTH-1:0] last_raddr;
    reg reread;
    initial begin
        reread = 1'b1;
        if (INIT_FILE != "") $readmemh(INIT_FILE, mem);
    end
    always @(posedge clk) begin
        if (reread || raddr != last_raddr) rdata <= mem[raddr];
        last_raddr <= raddr;
        reread <= |wen;
        // mem is private to this block and read above first, so a blocking write keeps
        // read-before-write and spares the simulator a delayed copy of the word.
        // verilator lint_off BLKSEQ
        if (|wen)
            mem[waddr] = (mem[waddr] & ~granule_mask(wen)) | (granule_data(wdata) & granule_mask(wen));
        // verilator lint_on BLKSEQ
        // A write beyond DEPTH is a core bug (a macro or a rounded-up block RAM would wrap
        // or alias it), so simulation stops on it rather than dropping it silently.
        // verilator lint_off WIDTHEXPAND
        if (|wen && waddr >= DEPTH) begin
            $display("ERROR: %m: write to address %0d, beyond its %0d words", waddr, DEPTH);
            $fatal(1);
        end
        // verilator lint_on WIDTHEXPAND
    end
`endif
endmodule
"""


class Sram:
    """Ports of one ``spquant_sram`` instance; ``add_to(m)`` instantiates it.

    Read latency 1 cycle: ``rdata`` shows the word at the ``raddr`` of the previous cycle.
    ``init_file``: an image file (``hw.memory_image``) the memory starts from, passed to
    the model as ``INIT_FILE``; the path is written into the Verilog as given.
    ``broadcast``: ``wdata`` is one granule wide and written to every enabled granule.
    """

    def __init__(self, name, *, width, depth, granularity=None, init_file=None, broadcast=False):
        granularity = granularity or width
        if width % granularity:
            raise ValueError(f"{name}: granularity {granularity} does not divide width {width}")
        if depth < 1:
            raise ValueError(f"{name}: depth must be >= 1, not {depth}")
        self.name, self.width, self.depth, self.granularity = name, width, depth, granularity
        self.init_file = str(init_file) if init_file else ""
        if any(ch in self.init_file for ch in '"\\\n'):
            raise ValueError(f"{name}: init_file {self.init_file!r} cannot be a Verilog string")
        aw = bits_for(depth)
        self.raddr = Signal(aw, name=f"{name}_raddr")
        self.rdata = Signal(width, name=f"{name}_rdata")
        self.waddr = Signal(aw, name=f"{name}_waddr")
        self.wdata = Signal(granularity if broadcast else width, name=f"{name}_wdata")
        self.wen = Signal(width // granularity, name=f"{name}_wen")

    def add_to(self, m):
        m.submodules[self.name] = Instance(
            SRAM_MODULE,
            p_WIDTH=self.width, p_DEPTH=self.depth, p_GRAN=self.granularity,
            p_ADDR_WIDTH=len(self.raddr), p_WDATA_WIDTH=len(self.wdata), p_INIT_FILE=self.init_file,
            i_clk=ClockSignal(), i_raddr=self.raddr, o_rdata=self.rdata,
            i_waddr=self.waddr, i_wdata=self.wdata, i_wen=self.wen)
        return self
