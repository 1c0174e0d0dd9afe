"""Datasets as integer images: the hardware sees the same integers PyTorch scales."""
from __future__ import annotations

import numpy as np
import torch

from project_config import UserError


def load_dataset(cfg):
    """Return (x_train, y_train, x_test, y_test): uint8 [N, C, H, W] and int64 labels."""
    name = cfg.data["dataset"]
    if name != "digits":
        raise UserError(f"{cfg.path}: data.dataset: {name!r} is not supported (known: digits)")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.uint8).reshape(-1, 1, 8, 8)   # values 0..16, exact integers
    y = d.target.astype(np.int64)
    inp = cfg.model["input"]
    if (inp["channels"], inp["height"], inp["width"]) != (1, 8, 8):
        raise UserError(f"{cfg.path}: model.input: digits are 1x8x8, config says "
                        f"{inp['channels']}x{inp['height']}x{inp['width']}")
    if int(x.max()) > (1 << inp["bits"]) - 1:
        raise UserError(f"{cfg.path}: model.input.bits: {inp['bits']} bits cannot hold "
                        f"pixel value {int(x.max())}")
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=cfg.data["test_fraction"], random_state=cfg.data["seed"],
        stratify=y, shuffle=True)
    return x_tr, y_tr, x_te, y_te


def to_time_major(x_batch, T: int) -> torch.Tensor:
    """uint8 [B, C, H, W] (numpy or tensor) -> float32 [T, B, C, H, W], repeated over T."""
    x = torch.as_tensor(np.asarray(x_batch)).to(torch.float32)
    return x.unsqueeze(0).expand(T, *x.shape)
