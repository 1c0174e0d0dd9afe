"""sim.code_coverage on a hand-made design and coverage file: what is counted, what is
excluded and why, the uncovered points with their Verilog text, and Verilator's format
read back after a merge."""
from sim import code_coverage as cc

VERILOG = """module snn_core(clk);
  reg \\$auto$verilog_backend.cc:2355:dump_module$3  = 0;
  always @(posedge clk) begin
    if (state) begin
      count <= count + 1;
    end
    if (\\$auto$verilog_backend.cc:2355:dump_module$3 ) begin end
  end
endmodule
"""


def _key(**f):
    return "".join(f"\x01{k}\x02{v}" for k, v in f.items())


def _points(core):
    return {
        _key(f=core, l=4, page="v_line/snn_core", o="block"): 7,
        _key(f=core, l=4, page="v_branch/snn_core", o="if"): 5,
        _key(f=core, l=4, page="v_branch/snn_core", o="else"): 0,
        _key(f=core, l=7, page="v_branch/snn_core", o="if"): 0,          # the wake-up block
        _key(f=core, l=5, page="v_toggle/snn_core", o="count[0]:0->1"): 3,
        _key(f=core, l=5, page="v_toggle/snn_core", o="count[1]:1->0"): 0,
        _key(f=core, l=5, page="v_toggle/snn_core", o="__024118[0]:0->1"): 0,   # `\$118`
        _key(f="/x/spquant_sram.v", l=9, page="v_line/spquant_sram", o="block"): 0,
    }


def test_summary_counts_excludes_and_lists_the_uncovered(tmp_path):
    core = tmp_path / "snn_core.v"
    core.write_text(VERILOG)
    s = cc.summarize(_points(str(core)), core)
    assert s["kinds"]["line"] == {"points": 1, "hit": 1}
    assert s["kinds"]["branch"] == {"points": 2, "hit": 1}
    assert s["kinds"]["toggle"] == {"points": 2, "hit": 1}
    assert s["kinds"]["toggle_all"] == {"points": 3, "hit": 1}
    assert s["excluded"] == {"memory models (spquant_sram.v)": 1,
                             "Yosys' time-0 wake-up block (constant-0 condition, empty)": 1,
                             "toggles of Yosys temporaries ($N wires)": 1}
    assert s["uncovered"]["branch"] == [{"line": 4, "arm": "else", "text": "if (state) begin"}]
    assert s["uncovered"]["toggle"] == ["count[1]:1->0"]


def test_tied_bits_are_excluded_from_toggle_coverage(tmp_path):
    core = tmp_path / "snn_core.v"
    core.write_text(VERILOG)
    s = cc.summarize(_points(str(core)), core, tied={("count", 1)})
    assert s["kinds"]["toggle"] == {"points": 1, "hit": 1}
    assert s["excluded"][cc.TIED] == 1 and "toggle" not in s["uncovered"]


def test_constant_bits_are_what_yosys_proves_constant(tmp_path):
    """A layer-table-like constant (bits 2-7 equal in every arm), a counter (no bit tied),
    a submodule's tied output, named hierarchically as Verilator's toggle points are, and a
    sum's top bit that only the gate-level pass proves 0 (at most 7 + 2)."""
    (tmp_path / "snn_core.v").write_text("""
module snn_core(input clk, input rst, input layer, output [7:0] base, output [3:0] count_out,
                output [3:0] sub_out, output [4:0] sum_out);
  reg [7:0] cur_base;
  always @* case (layer) 1'b0: cur_base = 8'h01; default: cur_base = 8'h02; endcase
  reg [3:0] count = 0;
  always @(posedge clk) count <= rst ? 4'd0 : count + 4'd1;
  assign base = cur_base;
  assign count_out = count;
  wire [4:0] sum;
  assign sum = {2'b00, count[2:0]} + {3'b000, count[3], 1'b0};
  assign sum_out = sum;
  snn_core_unit unit(.a(count), .y(sub_out));
endmodule
module snn_core_unit(input [3:0] a, output [3:0] y);
  wire [3:0] masked;
  assign masked = a & 4'b0011;
  assign y = masked;
endmodule
""")
    tied = cc.constant_bits(tmp_path)
    assert {("cur_base", b) for b in range(2, 8)} <= tied
    assert not {("cur_base", 0), ("cur_base", 1)} & tied
    assert not any(name == "count" for name, _ in tied)
    assert {name_bit for name_bit in tied if name_bit[0] == "sum"} == {("sum", 4)}
    assert {("unit.masked", 2), ("unit.masked", 3)} <= tied and ("unit.masked", 0) not in tied
    point = cc.fields(_key(page="v_toggle/snn_core.unit", o="masked[3]:0->1", h="snn_core.unit"))
    assert cc.toggle_signal(point) == ("unit.masked", 3)


def test_merge_sums_counts_and_round_trips_verilators_format(tmp_path):
    core = tmp_path / "snn_core.v"
    core.write_text(VERILOG)
    a, b = tmp_path / "a.dat", tmp_path / "b.dat"
    cc.write_dat(_points(str(core)), a)
    second = {k: (1 if "else" in k or "count[1]" in k else 0) for k in _points(str(core))}
    cc.write_dat(second, b)
    assert a.read_text(encoding="latin-1").startswith("# SystemC::Coverage-3\n")
    merged = cc.merge_dat([a, b])
    assert merged == {k: v + second[k] for k, v in _points(str(core)).items()}
    s = cc.summarize(merged, core)
    assert s["kinds"]["branch"]["hit"] == 2 and s["kinds"]["toggle"]["hit"] == 2
    pooled = cc.write_report({"one": s, "two": cc.summarize(_points(str(core)), core)},
                             tmp_path / "c.json", tmp_path / "c.md", "test")
    assert pooled["kinds"]["branch"] == {"points": 4, "hit": 3, "percent": 75.0}
    md = (tmp_path / "c.md").read_text()
    assert "| branch arms | 3 | 4 | 75.0 |" in md and "`if (state) begin`" in md
