"""Training loop, evaluation, atomic checkpoint writing and checkpoint loading.

A run writes ``<out>/model.pt`` after every epoch (``complete: False``) and once more at
the end (``complete: True``, BN recalibrated) plus ``metrics.json``. The checkpoint carries
the optimizer, scheduler and RNG state, so ``resume=True`` continues an interrupted run, or
a finished one to more epochs, exactly where it stopped. Launched by torchrun
(``WORLD_SIZE`` > 1) the run uses DistributedDataParallel and only rank 0 writes files.
"""
from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from project_config.files import atomic_write
from project_config import UserError, config_from_dict
from project_config.schema import ConfigError, parse_yaml

from .data import load_dataset, to_time_major
from .finetune import (drop_mask_gradients, in_recovery, load_initial_weights,
                       make_optimizer, pruning_penalty, set_recovery)
from .loss import tet_loss
from .model import build_model
from .neuron import QLIF

CHECKPOINT_FORMAT = "spquant-train-checkpoint"
CHECKPOINT_VERSION = 1


@torch.no_grad()
def evaluate(model, x, y, T, batch_size=256) -> float:
    """Accuracy of ``model`` (eval mode) on uint8 inputs ``x`` with labels ``y``."""
    was_training = model.training
    model.eval()
    dev = _device_of(model)
    correct = 0
    for i in range(0, len(x), batch_size):
        logits = model(to_time_major(x[i:i + batch_size], T).to(dev))
        pred = model.predict(logits).cpu()
        correct += int((pred == torch.as_tensor(y[i:i + batch_size])).sum())
    model.train(was_training)
    return correct / max(1, len(x))


@torch.no_grad()
def recalibrate_bn(model, x, T, batch_size=4096):
    """Replace BN running stats by exact averages over ``x`` with the final weights.

    The momentum estimate lags the last updates, and spike thresholds are sensitive to it.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None   # cumulative average
    was_training = model.training
    model.train()
    dev = _device_of(model)
    for i in range(0, len(x), batch_size):
        model(to_time_major(x[i:i + batch_size], T).to(dev))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.train(was_training)


def _device_of(model):
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def distributed_world_size(env=None) -> int:
    """WORLD_SIZE as torchrun sets it; 1 (no distribution) when absent."""
    env = os.environ if env is None else env
    raw = env.get("WORLD_SIZE", "").strip()
    if not raw:
        return 1
    try:
        n = int(raw)
    except ValueError:
        raise UserError(f"WORLD_SIZE: {raw!r} is not an integer") from None
    if n < 1:
        raise UserError(f"WORLD_SIZE: {n} must be at least 1")
    return n


class _Dist:
    """Rank and world size of this process; owns the process group if it created it."""

    def __init__(self, device):
        self.rank, self.world, self.device, self.owned = 0, 1, device, False
        self.amp = False
        world = distributed_world_size()
        if world == 1:
            return
        if not dist.is_available():
            raise UserError("WORLD_SIZE: distributed training requested but this torch "
                            "build has no torch.distributed")
        if device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            # env:// rendezvous: torchrun sets MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE.
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            self.owned = True
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def close(self):
        if self.owned:
            dist.destroy_process_group()


def _resolve_device(device):
    name = "cpu" if device is None else str(device)
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device: {name!r} is not a torch device") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device: {name!r} is not supported (cpu or cuda)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device: {name!r} requested but no CUDA device is available")
    return dev


def train(cfg, config_text: str, epochs=None, out_dir=None, seed=None, max_train=None,
          max_test=None, progress=True, log=print, threads=None, resume=False, device=None,
          amp=False):
    """Train on cfg's dataset; write model.pt and metrics.json to out_dir; return (model, metrics).

    ``threads``: torch intra-op threads for the run (restored after). Small nets are
    fastest on 1; with 2 threads on a 2-core machine shared with another busy process,
    training was measured ~15x slower (threads spin-waiting for a core).
    ``resume``: continue from ``<out_dir>/model.pt`` (same model, quant, pruning and data
    config) up to ``epochs`` in total. ``device``: "cpu" (default) or "cuda".
    """
    saved_threads = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise UserError(f"--threads: {threads} must be at least 1")
        torch.set_num_threads(threads)
    proc = None
    try:
        proc = _Dist(_resolve_device(device))
        proc.amp = bool(amp)
        return _train(cfg, config_text, epochs, out_dir, seed, max_train, max_test, progress,
                      log, resume, proc)
    finally:
        if proc is not None:
            proc.close()
        torch.set_num_threads(saved_threads)


class _Run:
    """One run's settings and training state: what a checkpoint records."""

    def __init__(self, cfg, config_text, epochs, out, seed, prior, proc, n_train):
        self.cfg, self.config_text, self.proc = cfg, config_text, proc
        self.epochs, self.out, self.seed, self.resumed = epochs, out, seed, prior is not None
        # The RNG is seeded before the model is built: the initial weights depend on it.
        torch.manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed)     # the epochs' sample order
        self.model = build_model(cfg)
        self.init_from = None
        if cfg.train["init_from"] and prior is None:
            src = Path(cfg.train["init_from"])
            ckpt, _ = _read_checkpoint(src)
            self.init_from = dict(load_initial_weights(self.model, ckpt["state_dict"], src),
                                  path=str(src))
        self.model = self.model.to(proc.device)
        self.opt = make_optimizer(self.model, cfg.train)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=epochs)
        self.history, self.done, self.wall_before = [], 0, 0.0
        if prior is not None:
            self.done, self.history, self.wall_before = _restore(
                prior, self.model, self.opt, self.sched, self.gen, epochs)
        self.net, self.sampler = _distribute(self.model, n_train, proc, seed)
        dev = proc.device.type
        self.amp = (dev, torch.float16 if dev == "cuda" else torch.bfloat16) if proc.amp else None
        self.scaler = torch.amp.GradScaler(dev, enabled=proc.amp and dev == "cuda")
        self.t0 = time.time()       # wall time counts the epochs and the final evaluation

    def wall_time(self) -> float:
        return self.wall_before + time.time() - self.t0

    def checkpoint(self, epoch, metrics, complete):
        """Write ``out/model.pt`` atomically: weights, config, metrics and training state."""
        state = {"epoch": epoch, "optimizer": self.opt.state_dict(),
                 "scheduler": self.sched.state_dict(), "generator": self.gen.get_state(),
                 "torch_rng": torch.get_rng_state(), "wall_time_s": self.wall_time()}
        ckpt = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                "config": {"path": str(self.cfg.path), "text": self.config_text},
                "overrides": {"epochs": self.epochs, "seed": self.seed, "out_dir": str(self.out)},
                "state_dict": {k: v.detach().cpu().clone()
                               for k, v in self.model.state_dict().items()},
                "metrics": metrics, "complete": complete, "train_state": state}
        atomic_write(self.out / "model.pt", lambda p: torch.save(ckpt, p))


def _train(cfg, config_text, epochs, out_dir, seed, max_train, max_test, progress, log,
           resume, proc):
    """The body of :func:`train`, in ``proc``'s process (rank, world, device)."""
    epochs, out, seed, prior = _settings(cfg, epochs, out_dir, seed, resume)
    lead = proc.rank == 0
    log = log if lead else None
    x_tr, y_tr, x_te, y_te = _load_data(cfg, max_train, max_test)
    run = _Run(cfg, config_text, epochs, out, seed, prior, proc, len(x_tr))
    x_tr_t, y_tr_t = torch.as_tensor(x_tr), torch.as_tensor(y_tr)
    for epoch in range(run.done + 1, epochs + 1):
        perm = _epoch_order(run.sampler, run.gen, len(x_tr_t), epoch)
        loss, train_acc = _train_epoch(run, x_tr_t, y_tr_t, perm, epoch, progress and lead)
        lr = run.opt.param_groups[0]["lr"]
        run.sched.step()
        test_acc = evaluate(run.model, x_te, y_te, cfg.timesteps)
        rec = {"epoch": epoch, "loss": loss, "train_accuracy": train_acc,
               "test_accuracy": test_acc, "lr": lr,
               "recovery": in_recovery(cfg.train, epoch, epochs),
               "ops_kept": sum(run.kept) / len(run.kept) if run.kept else None,
               "vth": [float(m.vth.detach()) for m in run.model.modules() if isinstance(m, QLIF)]}
        run.history.append(rec)
        if lead and epoch < epochs:
            # Written before logging, so a run stopped after this line can resume here.
            run.checkpoint(epoch, {"epochs": run.history}, complete=False)
        if log:
            kept = f"  ops kept {rec['ops_kept']:.3f}" if rec["ops_kept"] is not None else ""
            log(f"epoch {epoch:3d}/{epochs}  loss {loss:.4f}  train {train_acc:.4f}"
                f"  test {test_acc:.4f}{kept}")
    metrics = _finish(run, x_tr, y_tr, x_te, y_te, log)
    if lead:
        run.checkpoint(epochs, metrics, complete=True)
        atomic_write(out / "metrics.json",
                     lambda p: Path(p).write_text(json.dumps(metrics, indent=2) + "\n"))
    return run.model, metrics


def _settings(cfg, epochs, out_dir, seed, resume):
    """(epochs, out folder, seed, checkpoint to resume or None): the overrides, checked."""
    tc = cfg.train
    epochs = tc["epochs"] if epochs is None else int(epochs)
    out = Path(tc["out_dir"] if out_dir is None else out_dir)
    if epochs < 1:
        raise UserError(f"--epochs: {epochs} must be at least 1")
    if seed is not None and int(seed) < 0:
        raise UserError(f"--seed: {seed} must be non-negative")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: output path exists and is not a folder")
    prior = _resume_state(out / "model.pt", cfg, epochs, seed) if resume else None
    if prior is not None:
        seed = prior["overrides"].get("seed", seed)
    seed = tc["seed"] if seed is None else int(seed)
    return epochs, out, seed, prior


def _load_data(cfg, max_train, max_test):
    """(x_train, y_train, x_test, y_test), cut to the first max_train / max_test samples."""
    x_tr, y_tr, x_te, y_te = load_dataset(cfg)
    if max_train is not None:
        x_tr, y_tr = x_tr[:max_train], y_tr[:max_train]
    if max_test is not None:
        x_te, y_te = x_te[:max_test], y_te[:max_test]
    return x_tr, y_tr, x_te, y_te


def _distribute(model, n_train, proc, seed):
    """(network to train, DistributedSampler or None): DDP when torchrun started several."""
    if proc.world == 1:
        return model, None
    net = DistributedDataParallel(
        model, device_ids=[proc.device.index] if proc.device.type == "cuda" else None)
    # Each process trains on its shard; batch_size is per process.
    sampler = DistributedSampler(range(n_train), num_replicas=proc.world,
                                 rank=proc.rank, shuffle=True, seed=seed)
    return net, sampler


def _epoch_order(sampler, gen, n_train, epoch):
    """The training sample indices of ``epoch``: this process's shard, or all shuffled."""
    if sampler is not None:
        sampler.set_epoch(epoch)
        return torch.as_tensor(list(sampler))
    return torch.randperm(n_train, generator=gen)


def _train_epoch(run, x_tr_t, y_tr_t, perm, epoch, progress):
    """One pass over ``perm`` in batches; return (mean loss, train accuracy)."""
    cfg, model, net, opt = run.cfg, run.model, run.net, run.opt
    tc, dev, T, bs = cfg.train, run.proc.device, cfg.timesteps, cfg.train["batch_size"]
    recovery = in_recovery(tc, epoch, run.epochs) and hasattr(model, "ops_kept_fraction")
    set_recovery(model, recovery)
    run.kept = []
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    bar = tqdm(range(0, len(perm), bs), desc=f"epoch {epoch}/{run.epochs}", leave=False,
               disable=not progress)
    for i in bar:
        progress_epochs = epoch - 1 + i / max(1, len(perm))
        idx = perm[i:i + bs]
        xb = to_time_major(x_tr_t[idx], T).to(dev)
        yb = y_tr_t[idx].to(dev)
        with torch.autocast(*(run.amp or (dev.type,)), enabled=run.amp is not None):
            logits = net(xb)
            loss = tet_loss(logits.float(), yb, tc["tet_lambda"], tc["tet_target"])
            penalty = pruning_penalty(model, cfg.pruning, progress_epochs, recovery)
            if penalty is not None:
                loss = loss + penalty.float().to(loss.device)
        if not torch.isfinite(loss):
            raise RuntimeError(f"training diverged at epoch {epoch} (loss {float(loss)})")
        opt.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        if recovery:
            drop_mask_gradients(model)
        run.scaler.step(opt)
        run.scaler.update()
        loss_sum += float(loss.detach()) * len(idx)
        if penalty is not None or recovery:
            run.kept.append(float(model.ops_kept_fraction().detach()))
        correct += int((model.predict(logits.detach()) == yb).sum())
        seen += len(idx)
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
    bar.close()
    return loss_sum / seen, correct / seen


def _finish(run, x_tr, y_tr, x_te, y_te, log):
    """Recalibrate BN, evaluate the final model; return the run's metrics."""
    cfg, model, T = run.cfg, run.model, run.cfg.timesteps
    recalibrate_bn(model, x_tr, T)
    final_test = evaluate(model, x_te, y_te, T)
    wall = run.wall_time()
    if log:
        log(f"after BN recalibration: test {final_test:.4f}")
    model.eval()
    # Per-epoch test accuracies use the momentum BN stats; the final one the recalibrated.
    return {"epochs": run.history, "final_test_accuracy": final_test, "bn_recalibrated": True,
            "final_train_accuracy": evaluate(model, x_tr, y_tr, T),
            "train_samples": len(x_tr), "test_samples": len(x_te),
            "seed": run.seed, "epochs_run": run.epochs, "wall_time_s": wall,
            "arch": cfg.model.get("arch", "convnet"), "dataset": cfg.data["dataset"],
            "resumed_from_epoch": run.done if run.resumed else None,
            "init_from": run.init_from,
            "world_size": run.proc.world}


_SAME_FOR_RESUME = ("model", "quant", "pruning", "data")


def _resume_state(path, cfg, epochs, seed):
    """The checkpoint at ``path`` checked for resuming ``cfg`` to ``epochs`` in total."""
    if not path.is_file():
        raise UserError(f"{path}: --resume needs a checkpoint here; none found")
    ckpt, old = _read_checkpoint(path)
    state = ckpt.get("train_state")
    if not isinstance(state, dict) or not isinstance(ckpt.get("overrides"), dict):
        raise UserError(f"{path}: has no training state (written before --resume existed); "
                        "train again without --resume")
    for section in _SAME_FOR_RESUME:
        if getattr(old, section) != getattr(cfg, section):
            raise UserError(f"{cfg.path}: {section}: differs from the config {path} was trained "
                            f"with; --resume needs the same {', '.join(_SAME_FOR_RESUME)}")
    old_seed = ckpt["overrides"].get("seed")
    if seed is not None and int(seed) != old_seed:
        raise UserError(f"--seed: {seed} differs from the seed {old_seed} of {path}; "
                        "--resume continues that run")
    if state.get("epoch", 0) >= epochs:
        raise UserError(f"--epochs: {epochs}: {path} has already run {state.get('epoch')} "
                        "epochs; ask for more to resume")
    return ckpt


def _restore(ckpt, model, opt, sched, gen, epochs):
    """Load weights, optimizer, scheduler and RNG state; return (epochs done, history, wall)."""
    state = ckpt["train_state"]
    try:
        model.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        done = int(state["epoch"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"{ckpt['config'].get('path', 'checkpoint')}: training state cannot be "
                        f"restored ({type(e).__name__})") from None
    if sched.T_max != epochs:
        # More epochs than first planned: stretch the cosine to the new total, from here on.
        sched.T_max = epochs
        for group in opt.param_groups:
            group["lr"] = sched.eta_min + (group["initial_lr"] - sched.eta_min) * (
                1 + math.cos(math.pi * done / epochs)) / 2
    history = list(ckpt.get("metrics", {}).get("epochs", []))[:done]
    return done, history, float(state.get("wall_time_s", 0.0))


def _read_checkpoint(path):
    """(checkpoint dict, its Config) from a model.pt written by :func:`train`, validated."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():      # torch warns before refusing a raw pickle
            warnings.simplefilter("ignore")
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
        text = conf["text"]
        ckpt["state_dict"]
        if not isinstance(text, str):
            raise TypeError("config.text")
    except (KeyError, TypeError) as e:
        raise UserError(f"{path}: checkpoint is incomplete or damaged ({type(e).__name__})") from None
    try:
        raw = parse_yaml(text, f"{path}: config.text")
        cfg = config_from_dict(raw, where=f"{path}:{conf.get('path', 'config')}")
    except ConfigError as e:
        raise UserError(f"{path}: embedded config is invalid: {e}") from None
    return ckpt, cfg


def _check_tensors(path, state_dict):
    """Every entry of a checkpoint's state_dict is a tensor, and every floating one is
    finite (a NaN or inf weight, threshold or batch-norm statistic has no integer form);
    UserError naming the file and the key otherwise."""
    if not isinstance(state_dict, dict):
        raise UserError(f"{path}: state_dict: expected a mapping, got {type(state_dict).__name__}")
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{path}: state_dict.{key}: expected a tensor, got {type(value).__name__}")
        if (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value).all()):
            bad = value[~torch.isfinite(value)].flatten()[0].item()
            raise UserError(f"{path}: state_dict.{key}: {bad} is not a finite number")


def checkpoint_config_matches(path, config_text: str) -> bool:
    """True if the checkpoint at ``path`` was trained from the same settings as
    ``config_text`` (compared as parsed YAML: comments and layout do not count)."""
    ckpt, _ = _read_checkpoint(path)
    try:
        return (parse_yaml(ckpt["config"]["text"], f"{path}: config.text")
                == parse_yaml(config_text, "config"))
    except ConfigError:             # unreadable (or with a duplicate key): not the same settings
        return False


def checkpoint_complete(path) -> bool:
    """True if ``path`` holds a finished run (False for one written mid-run)."""
    ckpt, _ = _read_checkpoint(path)
    return bool(ckpt.get("complete", True))


def load_checkpoint(path):
    """Rebuild (model in eval mode, Config) from a model.pt written by :func:`train`.

    Reads checkpoints with or without the training state (older runs have none); one
    written mid-run (``complete`` False) loads too, with that epoch's weights.
    """
    ckpt, cfg = _read_checkpoint(path)
    _check_tensors(path, ckpt["state_dict"])
    model = build_model(cfg)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()
        raise UserError(f"{path}: state_dict does not match its config "
                        f"({first[1].strip() if len(first) > 1 else first[0]})") from None
    model.eval()
    return model, cfg
