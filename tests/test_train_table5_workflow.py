"""Table 5's plan follows the paper's workflow: the SpQuant rungs fine-tune from the same
seed's Quant-SNN checkpoint under an operations budget with a recovery phase, run after
it; the paired threshold gain and its CI; the VGG-9 ladder's last rung is its config."""
import json
from pathlib import Path

import pytest
import yaml

from benchmarks import vgg9_ladder
from benchmarks.table5 import main, parse_args
from benchmarks.table5_plan import (DEFAULT_FINETUNE, DEFAULT_GATE_PENALTY, FINETUNE_VTH_LR,
                                    plan_runs)
from benchmarks.table5_report import paired_gain
from project_config.schema import load_raw_config


def test_spquant_rungs_finetune_from_their_seeds_quant():
    args = parse_args(["--out", "runs/x", "--seeds", "2", "--only",
                       "quant,spquant,spquant_lvth"])
    base_path, base_raw = load_raw_config(args.config)
    jobs = plan_runs(args, base_raw, base_path)
    by = {(j["rung"], j["seed"]): j for j in jobs}
    for rung in ("spquant", "spquant_lvth"):
        for seed in (0, 1):
            j = by[(rung, seed)]
            cfg = yaml.safe_load(j["settings"]["config_text"])
            assert cfg["train"]["init_from"] == str(Path("runs/x/quant") / f"seed{seed}" / "model.pt")
            assert j["after"] == by[("quant", seed)]["out_dir"]
            assert cfg["pruning"]["target_kept"] == args.target_kept > 0
            assert cfg["pruning"]["budget_ramp_epochs"] == args.budget_ramp_epochs
            assert cfg["train"]["recovery_epochs"] == args.recovery_epochs >= 1
            assert j["settings"]["epochs"] == args.finetune_epochs
            assert cfg["data"]["event_recordings"] == 5
            assert cfg["train"]["vth_lr"] == FINETUNE_VTH_LR == 1e-3
            assert cfg["pruning"]["gate_penalty"] == args.gate_penalty
    q = yaml.safe_load(by[("quant", 0)]["settings"]["config_text"])
    assert q["train"]["init_from"] == "" and by[("quant", 0)]["after"] is None
    assert q["pruning"]["target_kept"] == 0.0


def test_default_recipe_holds_the_budget_and_recovers():
    """The ladder's defaults (issue 13): a hinge strong enough to hold the budget (at 2 the
    kept fraction settled 30% above its target), a >= 4x target, and several recovery
    epochs after the ramp, within the fine-tuning."""
    args = parse_args([])
    assert args.gate_penalty == DEFAULT_GATE_PENALTY >= 10
    assert args.target_kept == DEFAULT_FINETUNE["target_kept"] <= 0.25
    assert args.recovery_epochs >= 3
    assert args.budget_ramp_epochs + args.recovery_epochs < args.finetune_epochs


def test_paired_gain_and_its_ci():
    summary = {"spquant": {"seeds": [0, 1, 2, 3, 4], "accuracies": [90, 91, 92, 93, 94]},
               "spquant_lvth": {"seeds": [0, 1, 2, 3, 4], "accuracies": [91, 92, 92, 95, 95]}}
    g = paired_gain(summary)
    assert g["n"] == 5 and g["mean"] == pytest.approx(1.0)
    d = [1, 1, 0, 2, 1]
    sd = (sum((v - 1.0) ** 2 for v in d) / 4) ** 0.5
    half = 2.776 * sd / 5 ** 0.5
    assert g["ci95"] == pytest.approx([1.0 - half, 1.0 + half])
    # Pairs by seed, not by position.
    summary["spquant_lvth"] = {"seeds": [1, 0], "accuracies": [92, 91]}
    assert paired_gain(summary)["differences"] == [1, 1]


def test_vgg9_ladder_last_rung_is_the_config_verbatim(tmp_path):
    base_path, base_raw = load_raw_config("vgg9_events.yaml")
    jobs = vgg9_ladder.plan(base_path, base_raw, tmp_path)
    assert [j["rung"] for j in jobs] == list(vgg9_ladder.ORDER)
    last = next(j for j in jobs if j["rung"] == "spquant_lvth")
    assert last["settings"]["config_text"] == base_path.read_text()
    assert last["out_dir"] == base_raw["train"]["out_dir"]
    init = base_raw["train"]["init_from"]
    quant = next(j for j in jobs if j["rung"] == "quant")
    assert init == str(Path(quant["out_dir"]) / "model.pt").replace(str(tmp_path), "runs/vgg9_ladder")


def test_quick_ladder_fine_tunes_after_quant_end_to_end(tmp_path):
    """--quick: Quant-SNN, then SpQuant fine-tuned from it (budget, recovery), measured
    with both operation counts; a second invocation reuses both runs."""
    argv = ["--quick", "--workers", "1", "--only", "quant,spquant", "--out", str(tmp_path)]
    assert main(argv) == 0
    res = json.loads((tmp_path / "table5.json").read_text())
    sp = next(r for r in res["runs"] if r["rung"] == "spquant")
    metrics = json.loads((tmp_path / "spquant/seed0/metrics.json").read_text())
    assert metrics["init_from"]["path"] == str(tmp_path / "quant/seed0/model.pt")
    assert [e["recovery"] for e in metrics["epochs"]] == [False, True]
    act = sp["activity"]
    assert act["ops"] < act["dense_ops"] and act["ops_output_only"] < act["dense_ops_padded"]
    assert "ops_reduction" in res["summary"]["spquant"]
    assert main(argv) == 0
    again = json.loads((tmp_path / "table5.json").read_text())
    assert all(r["trained"].startswith("reused") for r in again["runs"])


def test_spatial_first_layer_and_widths_options():
    """--spatial-first-layer prunes layer 0's positions in the pruned rungs only;
    --widths sets the conv layers' channels in every rung; neither changes the default
    ladder's settings (so its stored runs are reused)."""
    base_path, base_raw = load_raw_config("event_digits.yaml")
    default = {(j["rung"], j["seed"]): j["settings"]["config_text"]
               for j in plan_runs(parse_args(["--out", "runs/x", "--seeds", "1"]),
                                  base_raw, base_path)}
    args = parse_args(["--out", "runs/x", "--seeds", "1", "--spatial-first-layer",
                       "--widths", "24,48,96"])
    for j in plan_runs(args, base_raw, base_path):
        cfg = yaml.safe_load(j["settings"]["config_text"])
        assert [layer["channels"] for layer in cfg["model"]["layers"]] == [24, 48, 96]
        assert cfg["model"]["layers"][0]["kernel"] == base_raw["model"]["layers"][0]["kernel"]
        pruned = j["rung"] in ("spquant", "spquant_lvth")
        assert cfg["pruning"].get("spatial_first_layer", False) is pruned
        assert j["settings"]["config_text"] != default[(j["rung"], j["seed"])]
    for (rung, _), text in default.items():
        cfg = yaml.safe_load(text)
        assert "spatial_first_layer" not in cfg["pruning"]
        assert [layer["channels"] for layer in cfg["model"]["layers"]] == [16, 32, 64]
