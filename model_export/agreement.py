"""PyTorch model vs golden integer model on a dataset split (needs torch).

``python -m model_export.agreement --checkpoint runs/x/model.pt [--export runs/x/export]``
prints accuracy of both, prediction agreement and per-layer spike agreement.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from project_config import cli_main


def measure(model, cfg, net, x_uint8, y, batch=256) -> dict:
    import torch
    import golden
    from train.data import to_time_major
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


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m model_export.agreement", description=__doc__)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--export", help="export directory (default: <checkpoint dir>/export)")
    args = ap.parse_args(argv)
    from model_export import load_export
    from train.data import load_dataset
    from train.trainer import load_checkpoint
    model, cfg = load_checkpoint(args.checkpoint)
    net = load_export(args.export or Path(args.checkpoint).parent / "export")
    _, _, x_test, y_test = load_dataset(cfg)
    print(format_report(measure(model, cfg, net, x_test, y_test)))
    return 0


if __name__ == "__main__":
    cli_main(main)
