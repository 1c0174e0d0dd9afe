"""PyTorch model vs golden integer model on a dataset split (needs torch).

``python -m sim.agreement --checkpoint runs/x/model.pt [--export runs/x/export]``
prints accuracy of both, prediction agreement and per-layer spike agreement.

:func:`trained_network` is the trained side of ``python -m sim.flow`` (and of the
efficiency report): the config's checkpoint (training it if there is none, it is
unfinished or the config has changed), its integer export and the agreement on the test
split.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import golden
from model_export import NetworkExport, load_export, save_export
from model_export.from_torch import export_model
from project_config import Config, cli_main
from project_config.cli import add_export, parser
from train.data import load_dataset, to_time_major
from train.trainer import checkpoint_complete, checkpoint_config_matches, load_checkpoint, train


def measure(model, cfg, net, x_uint8, y, batch=256) -> dict:
    """Accuracy of the model and of golden on ``x_uint8``, their prediction agreement and
    the fraction of equal spikes per spiking layer."""
    T = cfg.timesteps
    torch_pred, gold_pred = [], []
    spike_equal = np.zeros(len(net.spiking_layers))
    spike_total = np.zeros(len(net.spiking_layers))
    with torch.no_grad():
        for s in range(0, len(x_uint8), batch):
            xb = x_uint8[s:s + batch]
            logits, records = model(to_time_major(xb, T), record=True)
            torch_pred.append(logits.sum(0).argmax(1).numpy())
            ref = golden.run(net, xb.astype(np.int64))
            gold_pred.append(ref.predictions)
            for l, rec in enumerate(records):
                ts = rec["spikes"].numpy().transpose(1, 0, 2, 3, 4).astype(np.uint8)
                spike_equal[l] += (ts == ref.spikes[l]).sum()
                spike_total[l] += ts.size
    tp, gp = np.concatenate(torch_pred), np.concatenate(gold_pred)
    return {
        "samples": int(len(y)),
        "torch_accuracy": float((tp == y).mean()),
        "golden_accuracy": float((gp == y).mean()),
        "prediction_agreement": float((tp == gp).mean()),
        "spike_agreement": [float(e / t) for e, t in zip(spike_equal, spike_total)],
    }


def format_report(r: dict) -> str:
    layers = ", ".join(f"L{i} {a:.5f}" for i, a in enumerate(r["spike_agreement"]))
    return (f"golden vs PyTorch on {r['samples']} test samples: accuracy torch "
            f"{r['torch_accuracy']:.4f}, golden {r['golden_accuracy']:.4f}; identical predictions "
            f"{r['prediction_agreement'] * 100:.2f}%; spike agreement {layers}")


@dataclass
class TrainedNetwork:
    """A config's trained model, its integer export and how well they agree."""
    model: torch.nn.Module      # eval mode
    cfg: Config                 # the config the checkpoint was trained with
    export_dir: Path
    net: NetworkExport
    x_test: np.ndarray          # the test split as the model takes it (uint8)
    y_test: np.ndarray
    agreement: dict             # :func:`measure` on the whole test split


def ensure_checkpoint(cfg: Config, run_dir: Path, retrain: bool = False, log=print) -> Path:
    """``run_dir/model.pt`` trained from ``cfg``'s file: trained now if absent, if ``retrain``
    or if the file has changed since; an interrupted training is resumed."""
    ckpt = run_dir / "model.pt"
    config_text = Path(cfg.path).read_text()
    if retrain or not ckpt.exists():
        log(f"[1/5] training {cfg.name} -> {ckpt}")
        train(cfg, config_text, out_dir=str(run_dir), progress=True, threads=1)
    elif not checkpoint_config_matches(ckpt, config_text):
        log(f"[1/5] {cfg.path} has changed since {ckpt} was trained: training again")
        train(cfg, config_text, out_dir=str(run_dir), progress=True, threads=1)
    elif not checkpoint_complete(ckpt):
        log(f"[1/5] resuming the interrupted training in {ckpt}")
        train(cfg, config_text, out_dir=str(run_dir), progress=True, resume=True, threads=1)
    else:
        log(f"[1/5] using checkpoint {ckpt} (--retrain to train again)")
    return ckpt


def trained_network(cfg: Config, run_dir: Path, retrain: bool = False,
                    log=print) -> TrainedNetwork:
    """Checkpoint (:func:`ensure_checkpoint`), export into ``run_dir/export``, agreement."""
    model, cfg_ckpt = load_checkpoint(ensure_checkpoint(cfg, run_dir, retrain, log))
    export_dir = run_dir / "export"
    save_export(export_model(model, cfg_ckpt), export_dir)
    net = load_export(export_dir)
    log(f"[2/5] exported {export_dir}")
    _, _, x_test, y_test = load_dataset(cfg_ckpt)
    agreement = measure(model, cfg_ckpt, net, x_test, y_test)
    log("[3/5] " + format_report(agreement))
    return TrainedNetwork(model, cfg_ckpt, export_dir, net, x_test, y_test, agreement)


def main(argv=None):
    ap = parser("python -m sim.agreement", __doc__)
    ap.add_argument("--checkpoint", required=True, help="model.pt written by python -m train")
    add_export(ap, help="export directory (default: <checkpoint dir>/export)")
    args = ap.parse_args(argv)
    model, cfg = load_checkpoint(args.checkpoint)
    net = load_export(args.export or Path(args.checkpoint).parent / "export")
    _, _, x_test, y_test = load_dataset(cfg)
    print(format_report(measure(model, cfg, net, x_test, y_test)))
    return 0


def cli():
    """Console-script entry point (pyproject [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
