"""The SRAM macro's simulation model (hw/sram.py): an out-of-range write stops simulation."""
import shutil
import subprocess

import pytest

from hw.sram import SRAM_VERILOG
from hw.toolchain import note_simulator

_BENCH = """module bench;
  reg clk = 0;
  reg [1:0] waddr = 0;
  wire [7:0] rdata;
  spquant_sram #(.WIDTH(8), .DEPTH(3), .GRAN(8), .ADDR_WIDTH(2)) ram(
      .clk(clk), .raddr(2'd0), .rdata(rdata), .waddr(waddr), .wdata(8'h5a), .wen(1'b1));
  initial begin
    waddr = 2'd{addr};
    #1 clk = 1; #1 clk = 0;
    $display("DONE");
    $finish;
  end
endmodule
"""


@pytest.mark.sim
@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs Icarus Verilog")
@pytest.mark.parametrize("addr", [2, 3])
def test_write_beyond_depth_stops_simulation(tmp_path, addr):
    """Address 2 of 3 words is written and the bench finishes; address 3, which the 2-bit
    port can carry, stops the run with an error naming the instance and the address."""
    (tmp_path / "spquant_sram.v").write_text(SRAM_VERILOG)
    (tmp_path / "bench.v").write_text(_BENCH.format(addr=addr))
    note_simulator("icarus build")
    subprocess.run(["iverilog", "-g2012", "-o", "bench.vvp", "bench.v", "spquant_sram.v"],
                   cwd=tmp_path, check=True)
    run = subprocess.run(["vvp", "-n", "bench.vvp"], cwd=tmp_path, capture_output=True,
                         text=True)
    if addr < 3:
        assert "DONE" in run.stdout and "ERROR" not in run.stdout
    else:
        assert "DONE" not in run.stdout
        assert "ERROR: bench.ram: write to address 3, beyond its 3 words" in run.stdout
