"""Event-camera emulator, event frames, the event_digits dataset and time-major inputs."""
import numpy as np
import pytest
import torch
import yaml

from project_config import UserError, config_from_dict, load_config
from project_config.schema import ConfigError
from train.data import load_dataset, to_time_major
from train.events import (OFF, ON, emulate_events, event_digits, events_to_frames,
                          resize_images, saccade_offsets, shift_resize)
from conftest import ROOT



def _square(n=1, h=8, w=8):
    img = np.zeros((n, h, w))
    img[:, 2:6, 2:6] = 1.0
    return img


def test_shift_resize_identity_and_integer_shift():
    rng = np.random.default_rng(0)
    img = rng.random((3, 8, 8))
    zero = np.zeros(3)
    assert np.allclose(shift_resize(img, 8, zero, zero), img)
    moved = shift_resize(img, 8, np.ones(3), 2 * np.ones(3))     # 1 down, 2 right, black fill
    expect = np.zeros_like(img)
    expect[:, 1:, 2:] = img[:, :-1, :-2]
    assert np.allclose(moved, expect)
    up = shift_resize(img, 16, zero, zero)                         # 2x upsampling keeps the mean
    assert up.shape == (3, 16, 16) and np.allclose(up[:, 4:12, 4:12].mean(), img[:, 2:6, 2:6].mean(), atol=0.05)


def test_saccade_is_a_closed_triangle():
    p = saccade_offsets(24, 2.0)
    assert p.shape == (25, 2) and np.allclose(p[0], p[-1])
    assert np.allclose(np.linalg.norm(p[[0, 8, 16]], axis=1), 1.0)   # vertices on the circle
    assert np.allclose(p[0], [-1.0, 0.0])


def test_no_motion_no_events_and_polarity_of_a_moving_edge():
    still = emulate_events(_square(), 16, 4, 0.15, 0.0, seed=0, max_count=255)
    # Sub-pixel start offsets are static too: a still scene gives no events at all.
    assert still.shape == (1, 4, 2, 16, 16) and still.dtype == np.uint8 and still.sum() == 0
    ev = emulate_events(_square(), 16, 6, 0.15, 3.0, seed=0, max_count=255).astype(int)
    first = ev[0, 0]                    # first bin: the square moves down and right
    assert first[ON].sum() > 0 and first[OFF].sum() > 0
    cols = np.arange(16)
    on_x = (first[ON].sum(0) * cols).sum() / first[ON].sum()
    off_x = (first[OFF].sum(0) * cols).sum() / first[OFF].sum()
    assert on_x > off_x                # brightening at the leading (right) edge
    # Closed path: the reference levels return, ON and OFF totals nearly balance.
    assert abs(ev[0, :, ON].sum() - ev[0, :, OFF].sum()) <= 0.2 * ev[0].sum()


def test_contrast_threshold_and_clipping():
    coarse = emulate_events(_square(), 16, 4, 0.6, 3.0, seed=0, max_count=255).sum()
    fine = emulate_events(_square(), 16, 4, 0.15, 3.0, seed=0, max_count=255).sum()
    assert fine > 2 * coarse > 0
    clipped = emulate_events(_square(), 16, 4, 0.05, 3.0, seed=0, max_count=1)
    assert clipped.max() == 1


def test_event_digits_deterministic_and_seeded():
    a, ya = event_digits(16, 4, 0.15, 1.5, 0, 3)
    b, yb = event_digits(16, 4, 0.15, 1.5, 0, 3)
    c, _ = event_digits(16, 4, 0.15, 1.5, 1, 3)
    assert a.shape == (1797, 4, 2, 16, 16) and a.dtype == np.uint8 and a.max() == 3
    assert np.array_equal(a, b) and np.array_equal(ya, yb) and not np.array_equal(a, c)
    a[0] = 0                                              # callers get copies
    assert event_digits(16, 4, 0.15, 1.5, 0, 3)[0][0].sum() > 0


def test_events_to_frames_binning():
    # 6 events, timestamps 100..199 into T=4 bins of 25 us; 4x4 sensor onto a 2x2 grid.
    x = np.array([0, 3, 1, 2, 3, 3])
    y = np.array([0, 0, 1, 3, 3, 3])
    p = np.array([1, 0, 1, 1, 0, 0])
    t = np.array([100, 124, 125, 150, 199, 199])
    f = events_to_frames(x, y, p, t, 4, (4, 4), (2, 2), max_count=255)
    assert f.shape == (4, 2, 2, 2) and f.dtype == np.uint8 and f.sum() == 6
    assert f[0, 1, 0, 0] == 1 and f[0, 0, 0, 1] == 1     # bin 0: ON at (0,0), OFF at x=3 -> col 1
    assert f[1, 1, 0, 0] == 1 and f[2, 1, 1, 1] == 1 and f[3, 0, 1, 1] == 2
    assert events_to_frames(x, y, p, t, 4, (4, 4), (2, 2), max_count=1)[3, 0, 1, 1] == 1
    assert events_to_frames(x[:0], y[:0], p[:0], t[:0], 3, (4, 4), (2, 2), 7).sum() == 0


def test_resize_images():
    x = (np.arange(16, dtype=np.uint8) * 10).reshape(1, 1, 4, 4)
    assert resize_images(x, 4, 4) is x
    up = resize_images(x, 8, 8)
    assert up.shape == (1, 1, 8, 8) and up.dtype == np.uint8
    assert up[0, 0, 0, 0] == x[0, 0, 0, 0] and up[0, 0, -1, -1] == x[0, 0, -1, -1]
    down = resize_images(np.full((2, 3, 32, 32), 200, np.uint8), 16, 8)
    assert down.shape == (2, 3, 16, 8) and (down == 200).all()


def _event_cfg(**data):
    raw = yaml.safe_load((ROOT / "configs" / "event_digits.yaml").read_text())
    raw["model"]["timesteps"] = 4
    raw["data"].update(data)
    return config_from_dict(raw, where="ev.yaml")


def test_event_digits_dataset_and_split():
    cfg = _event_cfg()
    x_tr, y_tr, x_te, y_te = load_dataset(cfg)
    assert x_tr.shape[1:] == (4, 2, 16, 16) and x_tr.dtype == np.uint8
    assert x_tr.max() <= 3 and len(x_tr) + len(x_te) == 1797
    # Same samples as the static digits split with the same seed and fraction.
    digits = load_config("slice_digits.yaml")
    assert np.array_equal(load_dataset(digits)[3], y_te)
    xt = to_time_major(x_te[:5], 4)
    assert xt.shape == (4, 5, 2, 16, 16) and xt.dtype == torch.float32
    assert torch.equal(xt[2, 3], torch.as_tensor(x_te[3, 2]).float())
    with pytest.raises(ValueError, match="steps"):
        to_time_major(x_te[:5], 8)


def test_event_digits_config_errors():
    raw = yaml.safe_load((ROOT / "configs" / "event_digits.yaml").read_text())
    raw["model"]["input"]["height"] = 8
    with pytest.raises(UserError, match=r"bad\.yaml: model\.input: event_digits frames are 16x16"):
        load_dataset(config_from_dict(raw, where="bad.yaml"))
    raw = yaml.safe_load((ROOT / "configs" / "event_digits.yaml").read_text())
    raw["model"]["input"]["channels"] = 1
    with pytest.raises(UserError, match=r"model\.input\.channels: event_digits has 2"):
        load_dataset(config_from_dict(raw, where="bad.yaml"))
    raw = yaml.safe_load((ROOT / "configs" / "event_digits.yaml").read_text())
    raw["data"]["event_threshold"] = 0.0
    with pytest.raises(ConfigError, match=r"bad\.yaml\.data\.event_threshold"):
        config_from_dict(raw, where="bad.yaml")
    raw["data"]["event_threshold"] = 0.15
    raw["model"]["classes"] = 5
    with pytest.raises(UserError, match=r"model\.classes: event_digits has 10 classes"):
        load_dataset(config_from_dict(raw, where="bad.yaml"))


def test_event_model_trains_and_exports_bit_exact(tmp_path):
    """A briefly trained event-digits model: the integer export agrees with PyTorch."""
    from sim.agreement import measure
    from model_export.from_torch import export_model
    from train.trainer import load_checkpoint, train
    cfg = _event_cfg()
    text = (ROOT / "configs" / "event_digits.yaml").read_text().replace("timesteps: 8", "timesteps: 4")
    _, metrics = train(cfg, text, epochs=1, out_dir=tmp_path, max_train=256, max_test=64,
                       progress=False, log=None, threads=1)
    model, cfg2 = load_checkpoint(tmp_path / "model.pt")
    assert cfg2.timesteps == 4 and metrics["dataset"] == "event_digits"
    x_te, y_te = load_dataset(cfg2)[2:]
    r = measure(model, cfg2, export_model(model, cfg2), x_te[:48], y_te[:48])
    assert r["prediction_agreement"] == 1.0 and min(r["spike_agreement"]) == 1.0
