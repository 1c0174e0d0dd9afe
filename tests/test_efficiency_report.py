"""efficiency.breakdown and reports.efficiency: the skip breakdown adds up, the count checks
catch a difference, the generated blocks of RESULTS.md are replaced in place, and the
report runs end to end (train, export, golden, Verilator) with model, golden and RTL counts
agreeing."""
import json

import numpy as np
import pytest
import yaml

import golden
from conftest import ROOT, run_cli
from efficiency.breakdown import count_differences, lane_use, skip_breakdown
from efficiency.counts import recount
from model_export.random_net import random_export, random_inputs
from project_config import UserError, load_config
from reports.render import replace_block
from sim.calibrate import add_runtime_pruning, calibrated_export
from sim.host import COUNTERS, counter_totals


@pytest.fixture(scope="module")
def pruned_case():
    cfg = load_config("vgg9_small.yaml")
    inputs = random_inputs(random_export(cfg, seed=3), 3, seed=4)
    net = add_runtime_pruning(cfg, calibrated_export(cfg, inputs, 3, rate=0.15), inputs, 3)
    assert any(l.spatial_pruning for l in net.layers) and any(l.gated for l in net.layers)
    return cfg, net, inputs


def test_breakdown_parts_add_up_and_match_golden(pruned_case):
    cfg, net, inputs = pruned_case
    lanes = cfg.hardware["lanes"]
    res = golden.run(net, inputs)
    rows = skip_breakdown(net, res, lanes)
    work = golden.work_counts(net, inputs, lanes)
    mine = recount(net, inputs, lanes, result=res)
    for row, w, m in zip(rows, work, mine):
        parts = ("skipped_position_ops", "skipped_channel_ops", "skipped_input_channel_ops",
                 "skipped_zero_input_ops")
        assert all(row[k] >= 0 for k in parts)
        assert sum(row[k] for k in parts) + row["synaptic_ops"] == row["dense_ops"] == w["dense_ops"]
        issues = ("skipped_position_issues", "skipped_group_issues", "skipped_zero_input_issues")
        assert all(row[k] >= 0 for k in issues)
        assert sum(row[k] for k in issues) + row["events"] == row["dense_issues"]
        for key in COUNTERS:
            assert row[key] == w[key]
        # The earlier count: every tap (padding too) of a computed neuron's receptive field.
        assert row["ops_output_only"] == m["computed_neurons"] * net.layers[row["layer"]].fan_in
        assert row["ops"] == w["ops"] == m["ops"]
    # This pruned network skips at all three places somewhere.
    assert sum(r["skipped_position_ops"] for r in rows) > 0
    assert sum(r["skipped_channel_ops"] for r in rows) > 0
    assert sum(r["skipped_zero_input_ops"] for r in rows) > 0


def test_lane_use_splits_lane_cycles():
    u = lane_use(lanes=8, cycles=100, events=40, synaptic_ops=250)
    assert u["lane_cycles"] == 800
    assert u["adds"] + u["idle_in_issue"] + u["idle_no_issue"] == 800
    assert (u["idle_in_issue"], u["idle_no_issue"]) == (70, 480)
    with pytest.raises(ValueError, match="cycles"):
        lane_use(lanes=8, cycles=10, events=40, synaptic_ops=5)


def test_count_differences_names_the_layer_and_key():
    a = [{"events": 5, "synaptic_ops": 9}, {"events": 1, "synaptic_ops": 2}]
    b = [{"events": 5, "synaptic_ops": 9}, None]
    assert count_differences({"golden": a, "rtl": b}) == []
    c = [{"events": 5, "synaptic_ops": 8}, {"events": 1, "synaptic_ops": 2}]
    assert count_differences({"golden": a, "model": c}) == [
        (0, "synaptic_ops", {"golden": 9, "model": 8})]


def test_counter_totals_sum_samples_and_steps():
    per_sample = [{"0,0": [1, 2, 3], "0,1": [1, 1, 1], "1,0": [5, 6, 7]},
                  {"0,0": [1, 0, 0]}]
    assert counter_totals(per_sample, 3) == [
        {"events": 3, "synaptic_ops": 3, "neuron_updates": 4},
        {"events": 5, "synaptic_ops": 6, "neuron_updates": 7}, None]
    with pytest.raises(ValueError, match="0,0"):
        counter_totals([{"0,0": [1, 2]}], 2)


def test_generated_blocks_are_replaced_in_place():
    text = "# Results\n\nprose before\n"
    once = replace_block(text, "network:a", "table one")
    assert once.startswith(text.rstrip()) and "table one" in once
    twice = replace_block(once + "\nprose after\n", "network:a", "table two")
    assert "table one" not in twice and "table two" in twice
    assert twice.count("BEGIN GENERATED network:a") == 1
    assert "prose before" in twice and "prose after" in twice
    with pytest.raises(UserError, match="END GENERATED network:a"):
        replace_block(once.replace("<!-- END GENERATED network:a -->", ""), "network:a", "x")


@pytest.mark.sim
def test_report_end_to_end_on_a_short_trained_slice(tmp_path):
    """Train a 3-epoch slice, co-simulate 4 samples on Verilator, write the docs: model,
    golden and RTL counts must agree on every layer; the tables and plots exist."""
    raw = yaml.safe_load((ROOT / "configs" / "slice_digits.yaml").read_text())
    raw["model"]["name"] = "slice_report_test"
    raw["train"].update(epochs=3, out_dir=str(tmp_path / "run"))
    (tmp_path / "slice_report_test.yaml").write_text(yaml.safe_dump(raw))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "RESULTS.md").write_text("# Results\n\nhand-written prose\n")
    r = run_cli("reports.efficiency", "--config", "slice_report_test.yaml", "--samples", "4",
                "--no-synth", "--docs", str(docs), cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    result = json.loads((docs / "results" / "slice_report_test.json").read_text())
    assert result["rtl"]["mismatches"] == 0
    assert result["counts"]["differences"] == []
    counts = result["counts"]
    for l in range(2):                                   # the spiking layers: all three sources
        for key in COUNTERS:
            assert counts["model"][l][key] == counts["golden"][l][key] == counts["rtl"][l][key]
    assert counts["rtl"][2] is None                      # the classifier has no counters
    md = (docs / "RESULTS.md").read_text()
    assert "hand-written prose" in md and "All sources agree" in md
    assert "BEGIN GENERATED network:slice_report_test" in md
    e = result["energy"]
    assert 0 < e["core_rtl"]["total_pj"] < e["fp32_dense_mac"]["total_pj"]
    for png in ("slice_report_test_work_and_cycles.png", "slice_report_test_energy.png"):
        assert (docs / "figures" / png).stat().st_size > 1000
