"""Training loop, evaluation, atomic checkpoint writing and checkpoint loading."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from project_config.files import atomic_write
from project_config import UserError, config_from_dict
from project_config.schema import ConfigError

from .data import load_dataset, to_time_major
from .loss import tet_loss
from .model import SpikingConvNet

CHECKPOINT_FORMAT = "spquant-train-checkpoint"
CHECKPOINT_VERSION = 1


@torch.no_grad()
def evaluate(model, x, y, T, batch_size=256) -> float:
    """Accuracy of ``model`` (eval mode) on uint8 images ``x`` with labels ``y``."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        logits = model(to_time_major(x[i:i + batch_size], T))
        correct += int((model.predict(logits) == torch.as_tensor(y[i:i + batch_size])).sum())
    model.train(was_training)
    return correct / max(1, len(x))


@torch.no_grad()
def recalibrate_bn(model, x, T, batch_size=4096):
    """Replace BN running stats by exact averages over ``x`` with the final weights.

    The momentum estimate lags the last updates, and spike thresholds are sensitive to it.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None   # cumulative average
    was_training = model.training
    model.train()
    for i in range(0, len(x), batch_size):
        model(to_time_major(x[i:i + batch_size], T))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.train(was_training)


def train(cfg, config_text: str, epochs=None, out_dir=None, seed=None, max_train=None,
          max_test=None, progress=True, log=print, threads=None):
    """Train on cfg's dataset; write model.pt and metrics.json to out_dir; return (model, metrics).

    ``threads``: torch intra-op threads for the run (restored after). Small nets are
    fastest on 1; with 2 threads on a 2-core machine shared with another busy process,
    training was measured ~15x slower (threads spin-waiting for a core).
    """
    saved_threads = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise UserError(f"--threads: {threads} must be at least 1")
        torch.set_num_threads(threads)
    try:
        return _train(cfg, config_text, epochs, out_dir, seed, max_train, max_test, progress, log)
    finally:
        torch.set_num_threads(saved_threads)


def _train(cfg, config_text, epochs, out_dir, seed, max_train, max_test, progress, log):
    tc = cfg.train
    epochs = tc["epochs"] if epochs is None else int(epochs)
    seed = tc["seed"] if seed is None else int(seed)
    out = Path(tc["out_dir"] if out_dir is None else out_dir)
    if epochs < 1:
        raise UserError(f"--epochs: {epochs} must be at least 1")
    if seed < 0:
        raise UserError(f"--seed: {seed} must be non-negative")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: output path exists and is not a folder")

    x_tr, y_tr, x_te, y_te = load_dataset(cfg)
    if max_train is not None:
        x_tr, y_tr = x_tr[:max_train], y_tr[:max_train]
    if max_test is not None:
        x_te, y_te = x_te[:max_test], y_te[:max_test]

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = SpikingConvNet(cfg)
    T, bs = cfg.timesteps, tc["batch_size"]
    opt = torch.optim.Adam(model.parameters(), lr=tc["lr"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    x_tr_t, y_tr_t = torch.as_tensor(x_tr), torch.as_tensor(y_tr)

    history = []
    t0 = time.time()
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(x_tr_t), generator=gen)
        loss_sum, correct, seen = 0.0, 0, 0
        batches = range(0, len(perm), bs)
        bar = tqdm(batches, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not progress)
        for i in bar:
            idx = perm[i:i + bs]
            xb, yb = to_time_major(x_tr_t[idx], T), y_tr_t[idx]
            logits = model(xb)
            loss = tet_loss(logits, yb, tc["tet_lambda"], tc["tet_target"])
            if not torch.isfinite(loss):
                raise RuntimeError(f"training diverged at epoch {epoch} (loss {float(loss)})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((model.predict(logits.detach()) == yb).sum())
            seen += len(idx)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
        bar.close()
        lr = opt.param_groups[0]["lr"]
        sched.step()
        test_acc = evaluate(model, x_te, y_te, T)
        rec = {"epoch": epoch, "loss": loss_sum / seen, "train_accuracy": correct / seen,
               "test_accuracy": test_acc, "lr": lr,
               "vth": [float(b.neuron.vth.detach()) for b in model.blocks]}
        history.append(rec)
        if log:
            log(f"epoch {epoch:3d}/{epochs}  loss {rec['loss']:.4f}  train {rec['train_accuracy']:.4f}"
                f"  test {test_acc:.4f}")
    recalibrate_bn(model, x_tr, T)
    final_test = evaluate(model, x_te, y_te, T)
    wall = time.time() - t0
    if log:
        log(f"after BN recalibration: test {final_test:.4f}")

    model.eval()
    # Per-epoch test accuracies use the momentum BN stats; the final one the recalibrated.
    metrics = {"epochs": history, "final_test_accuracy": final_test, "bn_recalibrated": True,
               "final_train_accuracy": evaluate(model, x_tr, y_tr, T),
               "train_samples": len(x_tr), "test_samples": len(x_te),
               "seed": seed, "epochs_run": epochs, "wall_time_s": wall}
    ckpt = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "config": {"path": str(cfg.path), "text": config_text},
            "overrides": {"epochs": epochs, "seed": seed, "out_dir": str(out)},
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "metrics": metrics}
    atomic_write(out / "model.pt", lambda p: torch.save(ckpt, p))
    atomic_write(out / "metrics.json",
                  lambda p: Path(p).write_text(json.dumps(metrics, indent=2) + "\n"))
    return model, metrics


def load_checkpoint(path):
    """Rebuild (model in eval mode, Config) from a model.pt written by :func:`train`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file
        raise UserError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not a train checkpoint (format key missing or wrong)")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise UserError(f"{path}: checkpoint version {ckpt.get('version')!r} is not supported "
                        f"(expected {CHECKPOINT_VERSION})")
    try:
        conf = ckpt["config"]
        raw = yaml.safe_load(conf["text"])
        state = ckpt["state_dict"]
    except (KeyError, TypeError, yaml.YAMLError) as e:
        raise UserError(f"{path}: checkpoint is incomplete or damaged ({type(e).__name__})") from None
    try:
        cfg = config_from_dict(raw, where=f"{path}:{conf.get('path', 'config')}")
    except ConfigError as e:
        raise UserError(f"{path}: embedded config is invalid: {e}") from None
    model = SpikingConvNet(cfg)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()
        raise UserError(f"{path}: state_dict does not match its config "
                        f"({first[1].strip() if len(first) > 1 else first[0]})") from None
    model.eval()
    return model, cfg
