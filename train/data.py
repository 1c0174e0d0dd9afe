"""Datasets as integer inputs: the hardware sees the same integers PyTorch scales.

Static datasets give uint8 images [N, C, H, W] (repeated over the T steps); event datasets
give uint8 per-step frames [N, T, 2, H, W] of event counts. ``to_time_major`` takes either.
"""
from __future__ import annotations

import numpy as np
import torch

from project_config import UserError

from .datasets import load_cifar, load_event_folder
from .events import event_digits, resize_images, sklearn_digits

STATIC_DATASETS = ("digits", "cifar10", "cifar100")
EVENT_DATASETS = ("event_digits", "dvs_cifar10", "ncaltech101", "nmnist")


def load_dataset(cfg):
    """Return (x_train, y_train, x_test, y_test): uint8 inputs and int64 labels.

    Inputs are [N, C, H, W] for static datasets and [N, T, 2, H, W] for event datasets.
    """
    name = cfg.data["dataset"]
    inp = cfg.model["input"]
    max_value = (1 << inp["bits"]) - 1
    if name == "digits":
        return _digits(cfg, inp, max_value)
    if name in ("cifar10", "cifar100"):
        _expect_channels(cfg, 3)
        if inp["bits"] < 8:
            raise UserError(f"{cfg.path}: model.input.bits: {inp['bits']} bits cannot hold "
                            f"{name} pixel values 0..255 (use 8)")
        x_tr, y_tr, x_te, y_te = load_cifar(cfg.data["root"], name, where=cfg.path)
        x_tr = resize_images(x_tr, inp["height"], inp["width"])
        x_te = resize_images(x_te, inp["height"], inp["width"])
        _check_labels(cfg, y_tr, y_te)
        return x_tr, y_tr, x_te, y_te
    if name in EVENT_DATASETS:
        _expect_channels(cfg, 2)
        if name == "event_digits":
            size = cfg.data["event_size"]
            if (inp["height"], inp["width"]) != (size, size):
                raise UserError(f"{cfg.path}: model.input: event_digits frames are "
                                f"{size}x{size} (data.event_size), config says "
                                f"{inp['height']}x{inp['width']}")
            rec = cfg.data["event_recordings"]
            x, y = event_digits(size, cfg.timesteps, cfg.data["event_threshold"],
                                cfg.data["event_motion"], cfg.data["seed"], max_value, rec)
            return _split(cfg, x, y, group=rec)
        else:
            x, y, _ = load_event_folder(cfg.data["root"], name, cfg.timesteps, inp["height"],
                                        inp["width"], max_value, where=cfg.path)
        return _split(cfg, x, y)
    raise UserError(f"{cfg.path}: data.dataset: {name!r} is not supported")


def _digits(cfg, inp, max_value):
    images, y = sklearn_digits()
    x = images.astype(np.uint8).reshape(-1, 1, 8, 8)   # values 0..16, exact integers
    if (inp["channels"], inp["height"], inp["width"]) != (1, 8, 8):
        raise UserError(f"{cfg.path}: model.input: digits are 1x8x8, config says "
                        f"{inp['channels']}x{inp['height']}x{inp['width']}")
    if int(x.max()) > max_value:
        raise UserError(f"{cfg.path}: model.input.bits: {inp['bits']} bits cannot hold "
                        f"pixel value {int(x.max())}")
    return _split(cfg, x, y)


def _split(cfg, x, y, group=1):
    """Stratified, seeded train/test split (the same samples for digits and event_digits).

    ``group`` > 1: consecutive runs of ``group`` samples are recordings of one image; the
    split is made over images (as for ``group`` = 1), so no image is in both splits, and
    each split keeps an image's recordings together, image-major."""
    # Lazy: scikit-learn is the optional `train` extra (see events.sklearn_digits).
    from sklearn.model_selection import train_test_split
    _check_labels(cfg, y)
    y_img = y[::group]
    counts = np.bincount(y_img)
    if counts[counts > 0].min() < 2:
        raise UserError(f"{cfg.path}: data.dataset: {cfg.data['dataset']!r} has a class with "
                        "a single sample; a stratified split needs at least 2 per class")
    i_tr, i_te = train_test_split(
        np.arange(len(y_img)), test_size=cfg.data["test_fraction"],
        random_state=cfg.data["seed"], stratify=y_img, shuffle=True)
    s_tr = (i_tr[:, None] * group + np.arange(group)[None, :]).ravel()
    s_te = (i_te[:, None] * group + np.arange(group)[None, :]).ravel()
    return x[s_tr], y[s_tr], x[s_te], y[s_te]


def _expect_channels(cfg, channels):
    got = cfg.model["input"]["channels"]
    if got != channels:
        raise UserError(f"{cfg.path}: model.input.channels: {cfg.data['dataset']} has "
                        f"{channels} channels, config says {got}")


def _check_labels(cfg, *labels):
    top = max(int(y.max()) for y in labels if len(y)) + 1
    if top > cfg.model["classes"]:
        raise UserError(f"{cfg.path}: model.classes: {cfg.data['dataset']} has {top} classes, "
                        f"config says {cfg.model['classes']}")


def to_time_major(x_batch, T: int) -> torch.Tensor:
    """uint8 [B, C, H, W] (repeated over T) or [B, T, C, H, W] -> float32 [T, B, C, H, W]."""
    x = torch.as_tensor(np.asarray(x_batch)).to(torch.float32)
    if x.dim() == 5:
        if x.shape[1] != T:
            raise ValueError(f"per-step input has {x.shape[1]} steps, the model runs {T}")
        return x.transpose(0, 1)
    return x.unsqueeze(0).expand(T, *x.shape)
