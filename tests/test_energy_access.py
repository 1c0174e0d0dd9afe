"""The energy model with memory accesses (Horowitz 45 nm) on hand-computed counts, and the
core's SRAM traffic (hw.traffic) against a brute-force count over positions and taps."""
import numpy as np
import pytest

import golden
from efficiency.energy import (ENERGY_PJ, HOROWITZ_45NM_PJ, access_energy, int_add_pj,
                               sram_access_pj)
from golden.model import step_work
from hw.params import CoreParams
from hw.perf import core_cycles
from hw.traffic import memory_traffic, read_port_bits
from model_export.random_net import random_export, random_inputs
from project_config import load_config


def test_tables_match_the_quoted_figures():
    # Issue 14 quotes Horowitz (45 nm) and BitNet (7 nm); both tables must carry them.
    h = HOROWITZ_45NM_PJ
    assert (h["int8_add"], h["int32_add"], h["fp32_add"], h["fp32_mult"]) == (0.03, 0.1, 0.9, 3.7)
    assert (h["sram_64b_8kb"], h["dram_64b_low"], h["dram_64b_high"]) == (10.0, 1300.0, 2600.0)
    assert ENERGY_PJ["7nm"]["int8"].add == 0.007
    assert (ENERGY_PJ["7nm"]["fp32"].add, ENERGY_PJ["7nm"]["fp32"].mult) == (0.38, 1.31)
    assert (ENERGY_PJ["45nm"]["fp32"].add, ENERGY_PJ["45nm"]["int8"].add) == (0.9, 0.03)


def test_scaling_rules_by_hand():
    assert int_add_pj(8) == pytest.approx(0.03)
    assert int_add_pj(32) == pytest.approx(0.1)
    assert int_add_pj(20) == pytest.approx(0.065)          # half-way: (0.03 + 0.1) / 2
    with pytest.raises(ValueError):
        int_add_pj(0)
    assert sram_access_pj(64) == pytest.approx(10.0)
    assert sram_access_pj(16) == pytest.approx(2.5)
    # 4 x 8 KB: twice the flat energy; 8 KB itself: unchanged.
    assert sram_access_pj(64, 4 * 65536, size_scaled=True) == pytest.approx(20.0)
    assert sram_access_pj(32, 65536, size_scaled=True) == pytest.approx(5.0)
    with pytest.raises(ValueError):
        sram_access_pj(64, None, size_scaled=True)


def _mem(reads, writes, width, depth):
    return {"reads": reads, "writes": writes, "width": width, "capacity": width * depth}


def test_access_energy_hand_computed():
    # Two samples. Layer 0 (conv, 20-bit adds): 100 synaptic ops, 10 computed neurons x 2 adds;
    # layer 1 (fc, 8-bit adds): 20 synaptic ops, 4 outputs x 1 add.
    rows = [{"layer": 0, "kind": "conv", "acc_width": 20, "synaptic_ops": 100,
             "computed_neurons": 10},
            {"layer": 1, "kind": "fc", "acc_width": 8, "synaptic_ops": 20,
             "computed_neurons": 4}]
    # Per inference: 8 reads of a 32-bit weight word (8 KB bank x 4), 3 reads and 3 writes
    # of a 16-bit membrane word (2 KB: a quarter of 8 KB).
    traffic = {"layers": [
        {"layer": 0, "memories": {"weights": _mem(8, 0, 32, 4 * 2048),
                                  "membranes": _mem(3, 3, 16, 1024)}},
        {"layer": 1, "memories": {"weights": _mem(2, 0, 32, 4 * 2048)}}],
        "every_cycle": {"bits_read": 640}}
    e = access_energy(rows, traffic, samples=2)
    syn = (100 * 0.065 + 20 * 0.03) / 2
    mem = (20 * 0.065 + 4 * 0.03) / 2
    assert e["synaptic_pj"] == pytest.approx(syn)
    assert e["membrane_pj"] == pytest.approx(mem)
    weights = 10 * 5.0                       # 10 reads x 10 pJ x 32 / 64
    membranes = 6 * 2.5
    assert e["sram_by_memory"] == pytest.approx({"weights": weights, "membranes": membranes})
    assert e["total_pj"] == pytest.approx(syn + mem + weights + membranes)
    # Size-scaled: the weight bank is 32 KB = 4 x 8 KB (x2), the membranes 16 x 1024 bits
    # = 2 KB (x0.5).
    assert e["total_size_scaled_pj"] == pytest.approx(syn + mem + 2 * weights + 0.5 * membranes)
    # Weights from DRAM: 10 x 32 bits = 5 x 64-bit accesses at 1.3 and 2.6 nJ.
    assert e["total_weights_dram_pj"] == pytest.approx([syn + mem + membranes + 5 * 1300,
                                                        syn + mem + membranes + 5 * 2600])
    assert e["every_cycle_sram_pj"] == pytest.approx(100.0)    # 640 bits = 10 x 64
    assert e["node"] == "45nm" and "Horowitz" in e["source"]


@pytest.fixture(scope="module", params=["slice_digits.yaml", "vgg9_small.yaml"])
def case(request):
    cfg = load_config(request.param)
    p = CoreParams(cfg)
    net = random_export(cfg, 3, pruning=True)
    res = golden.run(net, random_inputs(net, 2, 5))
    return p, net, res


def _inside(lp, y, x):
    kh, kw = lp.kernel
    n = 0
    for ky in range(kh):
        for kx in range(kw):
            iy, ix = y + ky - lp.padding, x + kx - lp.padding
            n += 0 <= iy < lp.in_height and 0 <= ix < lp.in_width
    return n


def test_traffic_against_brute_force(case):
    p, net, res = case
    B, T = res.inputs.shape[:2]
    tr = memory_traffic(p, net, res)
    work = step_work(net, res, p.lanes)
    assert any(lp.window_fetch for lp in p.layers)         # both read forms are exercised
    for lp, row in zip(p.layers, tr["layers"]):
        m = row["memories"]
        w = work[lp.index]
        reads = 0
        for b in range(B):
            for t in range(T):
                for y in range(lp.out_height):
                    for x in range(lp.out_width):
                        if lp.kind == "conv" and not res.positions[lp.index][b, t, y, x]:
                            continue
                        per = 1 if lp.window_fetch else int(w["packed_groups"][b, t])
                        reads += _inside(lp, y, x) * per
        assert m["activations"]["reads"] == pytest.approx(reads / B)
        assert m["activations"]["writes"] == lp.in_height * lp.in_width * lp.act_copies * T
        assert m["weights"]["reads"] == pytest.approx(2 * w["events"].sum() / B)
        assert m["weights"]["width"] == p.lanes * p.weight_bits
        if lp.kind == "conv":
            assert m["membranes"]["reads"] == m["membranes"]["writes"] \
                == pytest.approx(w["neuron_updates"].sum() / B)
    cycles = np.mean([core_cycles(p, net, res, i).total for i in range(B)])
    assert tr["every_cycle"]["bits_read"] == pytest.approx(cycles * read_port_bits(p))
    # Totals are the layers' sums, and every memory in use reads something.
    total = sum(r["memories"]["weights"]["bits_read"] for r in tr["layers"])
    assert tr["totals"]["weights"]["bits_read"] == pytest.approx(total)
    assert tr["bits_read"] > tr["totals"]["weights"]["bits_read"] > 0
