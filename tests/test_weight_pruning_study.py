"""The weight-pruning study's pieces: Pareto fronts, memory, the float-side counts (used for
8-bit weights) against golden's on an exported model, and the CLI's argument checks."""
import numpy as np
import pytest
import torch

import golden
from benchmarks.weight_pruning_study import findings, pareto, parse_args, weight_memory
from conftest import run_cli
from efficiency.counts import recount
from efficiency.model_counts import model_counts
from model_export.from_torch import export_model
from train.data import to_time_major
from train.model import SpikingConvNet
from train.weight_pruning import prune_by_magnitude


def test_pareto_front():
    pts = [{"e": 1.0, "accuracy": 0.5}, {"e": 2.0, "accuracy": 0.9}, {"e": 2.0, "accuracy": 0.8},
           {"e": 3.0, "accuracy": 0.9}, {"e": 0.5, "accuracy": 0.4}]
    assert pareto(pts, "e") == [0, 1, 4]


def test_weight_memory_three_ways():
    rep = [{"weights": 100, "zero_codes": 70}, {"weights": 50, "zero_codes": 10}]
    m = weight_memory(rep, 4)
    assert m == {"weights": 150, "nonzero_weights": 70, "dense_bits": 600,
                 "sparse_bits": 280, "bitmap_bits": 150 + 280}


def test_findings_name_the_iso_accuracy_level():
    base = {"code_sparsity": 0.1, "energy_nj": 2.0, "memory_kbit": 10.0}
    rows = [dict(base, bits=4, mode="dense", sparsity=0.0, accuracy=0.95),
            dict(base, bits=4, mode="cumulative", sparsity=0.5, accuracy=0.945),
            dict(base, bits=4, mode="cumulative", sparsity=0.9, accuracy=0.90),
            dict(base, bits=4, mode="joint", sparsity=0.9, accuracy=0.85)]
    (line,) = findings(rows)
    assert "up to s = 0.5" in line and "Joint at s = 0.9: 85.0% vs cumulative 90.0%" in line


def test_float_side_counts_equal_golden_counts(slice_cfg):
    torch.manual_seed(4)
    model = SpikingConvNet(slice_cfg)
    prune_by_magnitude(model, 0.6)
    g = torch.Generator().manual_seed(5)
    x = torch.randint(0, 17, (24, 1, 8, 8), generator=g).to(torch.uint8)
    model.train()
    with torch.no_grad():
        model(to_time_major(x, slice_cfg.timesteps))       # BN statistics
    model.eval()
    net = export_model(model, slice_cfg)
    lanes = slice_cfg.hardware["lanes"]
    mine = model_counts(model, slice_cfg, x.numpy(), lanes, batch=10)
    ref = recount(net, x.numpy(), lanes)
    res = golden.run(net, x.numpy())
    with torch.no_grad():
        _, records = model(to_time_major(x, slice_cfg.timesteps), record=True)
    same_spikes = all(np.array_equal(r["spikes"].numpy().transpose(1, 0, 2, 3, 4), s)
                      for r, s in zip(records, res.spikes))
    assert same_spikes        # otherwise the counts may differ legitimately
    for a, b in zip(mine, ref):
        for key in ("synaptic_ops", "events", "neuron_updates", "weighted_ops", "useful_events",
                    "computed_neurons", "dense_ops", "nonzero_weights", "acc_width"):
            assert a[key] == b[key], (a["layer"], key)


def test_cli_rejects_bad_arguments():
    with pytest.raises(Exception, match="exclude"):
        parse_args(["--quick", "--full"])
    with pytest.raises(Exception, match="must increase"):
        parse_args(["--sparsities", "0.8,0.5"])
    r = run_cli("benchmarks.weight_pruning_study", "--joint", "4-0.8")
    assert r.returncode == 2 and "BITS:SPARSITY" in r.stderr


def test_report_only_needs_a_result(tmp_path):
    r = run_cli("benchmarks.weight_pruning_study", "--report-only", "--out", str(tmp_path))
    assert r.returncode == 2 and "results.json" in r.stderr
