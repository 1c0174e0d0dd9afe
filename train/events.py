"""A small deterministic event-camera emulator, and events -> integer frames.

``event_digits`` moves each of scikit-learn's 8x8 digits along a closed triangular
saccade (as N-MNIST does with a real sensor) and emits ON/OFF events the way a DVS pixel
does: it keeps a reference log-intensity per pixel and emits one event each time the
current log-intensity has moved a contrast step C away from it (several per bin allowed).

Frames everywhere in ``train`` are integer event counts [N, T, 2, H, W]: channel 0 counts
OFF events (intensity fell), channel 1 ON events (intensity rose), clipped to the input's
bit width so the hardware sees the same integers PyTorch does.
"""
from __future__ import annotations

import numpy as np

SUBSTEPS = 4        # motion steps per time bin: several events per bin, smooth motion
LOG_EPS = 0.1       # log(eps + I) keeps dark pixels finite, as a real sensor's dark current
OFF, ON = 0, 1      # channel index of each polarity


def _axis_weights(size_out: int, size_in: int, shift: np.ndarray, clamp: bool = False):
    """Bilinear taps (i0, w0, i1, w1), each [N, size_out], for an axis moved by ``shift``.

    Output pixel i of sample n samples the input at its own centre minus the shift, in
    output pixels (pixel-centre alignment). Taps outside the input get weight 0 (black
    background), or with ``clamp`` repeat the edge pixel (plain resizing).
    """
    scale = size_in / size_out
    pos = (np.arange(size_out)[None, :] + 0.5 - shift[:, None]) * scale - 0.5
    i0 = np.floor(pos).astype(np.int64)
    f = pos - i0
    i1 = i0 + 1
    if clamp:
        w0, w1 = 1.0 - f, f
    else:
        w0 = np.where((i0 >= 0) & (i0 < size_in), 1.0 - f, 0.0)
        w1 = np.where((i1 >= 0) & (i1 < size_in), f, 0.0)
    return np.clip(i0, 0, size_in - 1), w0, np.clip(i1, 0, size_in - 1), w1


def shift_resize(images: np.ndarray, size: int, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Bilinear resample of float [N, h, w] to [N, size, size], moved by (dy, dx) output pixels.

    Elementwise gathers only (no BLAS): results do not depend on a library's summation order.
    """
    n, h, w = images.shape
    y0, wy0, y1, wy1 = _axis_weights(size, h, dy)
    x0, wx0, x1, wx1 = _axis_weights(size, w, dx)
    rows = np.arange(n)[:, None]
    r = (wy0[:, :, None] * images[rows, y0] + wy1[:, :, None] * images[rows, y1])   # [N, size, w]
    rows3 = np.arange(n)[:, None, None]
    cols0, cols1 = x0[:, None, :], x1[:, None, :]
    srow = np.arange(size)[None, :, None]
    return wx0[:, None, :] * r[rows3, srow, cols0] + wx1[:, None, :] * r[rows3, srow, cols1]


def saccade_offsets(steps: int, motion: float, rotation: float = 0.0) -> np.ndarray:
    """(dy, dx) [steps + 1, 2]: a closed equilateral triangle of circumscribed diameter
    ``motion``, its vertices turned by ``rotation`` degrees (0: the first vertex on top)."""
    angles = np.deg2rad(np.array([-90.0, 30.0, 150.0]) + rotation)
    verts = 0.5 * motion * np.stack([np.sin(angles), np.cos(angles)], axis=1)
    verts = np.concatenate([verts, verts[:1]])       # back to the start: three saccades
    u = 3.0 * np.arange(steps + 1) / steps
    leg = np.minimum(u.astype(np.int64), 2)
    frac = (u - leg)[:, None]
    return verts[leg] * (1.0 - frac) + verts[leg + 1] * frac


def emulate_events(images: np.ndarray, size: int, timesteps: int, threshold: float,
                   motion: float, seed, max_count: int, rotation: float = 0.0) -> np.ndarray:
    """Event counts uint8 [N, T, 2, size, size] of float images [N, h, w] in 0..1.

    Each sample gets its own amplitude (x0.75..1.25) and sub-pixel start offset (+-0.5 px)
    from ``seed``, so samples differ as real recordings do; the same seed gives the same events.
    ``rotation``: the saccade triangle turned by this many degrees.
    """
    n = images.shape[0]
    rng = np.random.default_rng(seed)
    amp = rng.uniform(0.75, 1.25, size=n)
    start = rng.uniform(-0.5, 0.5, size=(n, 2))
    steps = timesteps * SUBSTEPS
    path = saccade_offsets(steps, motion, rotation)
    counts = np.zeros((n, timesteps, 2, size, size), np.int64)

    def log_frame(s):
        off = start + amp[:, None] * path[s][None, :]
        return np.log(LOG_EPS + shift_resize(images, size, off[:, 0], off[:, 1]))

    ref = log_frame(0)
    for s in range(1, steps + 1):
        diff = log_frame(s) - ref
        # floor(|diff| / C) events of the diff's sign; the reference moves by whole steps.
        k = np.floor(np.abs(diff) / threshold)
        b = (s - 1) // SUBSTEPS
        counts[:, b, ON] += np.where(diff > 0, k, 0).astype(np.int64)
        counts[:, b, OFF] += np.where(diff < 0, k, 0).astype(np.int64)
        ref = ref + np.sign(diff) * k * threshold
    return np.minimum(counts, max_count).astype(np.uint8)


def sklearn_digits():
    """scikit-learn's digits: (images float64 [1797, 8, 8] of integers 0..16, labels int64)."""
    # Lazy: scikit-learn is the optional `train` extra, needed for the digits datasets
    # only; `import train` (checkpoint loading, CIFAR) works without it.
    from sklearn.datasets import load_digits
    d = load_digits()
    return d.images, d.target.astype(np.int64)


_CACHE: dict = {}


def recording_rotation(r: int, recordings: int) -> float:
    """Saccade rotation (degrees) of recording ``r`` of ``recordings``: evenly spread, so
    every recording of a digit moves along a different path (recording 0: unrotated)."""
    return 360.0 * r / recordings


def event_digits(size: int, timesteps: int, threshold: float, motion: float, seed: int,
                 max_count: int, recordings: int = 1):
    """(x uint8 [1797 * R, T, 2, size, size], y int64 [1797 * R]): scikit-learn's digits as
    events, ``R = recordings`` per image, image-major (sample ``i * R + r`` is recording
    ``r`` of image ``i``). Recording ``r`` has its own saccade (:func:`recording_rotation`)
    and its own amplitude and start offsets (seed ``(seed, r)``; recording 0 uses ``seed``,
    so one recording per image is the original data set)."""
    key = (size, timesteps, threshold, motion, seed, max_count, recordings)
    if key not in _CACHE:
        images, labels = sklearn_digits()
        images = images.astype(np.float64) / 16.0          # 0..16 -> 0..1 intensity
        x = np.stack([emulate_events(images, size, timesteps, threshold, motion,
                                     seed if r == 0 else (seed, r), max_count,
                                     recording_rotation(r, recordings))
                      for r in range(recordings)], axis=1)
        x = x.reshape(-1, *x.shape[2:])
        labels = np.repeat(labels, recordings)
        _CACHE.clear()       # one entry: a run uses one setting; frames can be large
        _CACHE[key] = (x, labels)
    x, y = _CACHE[key]
    return x.copy(), y.copy()


def events_to_frames(x, y, p, t, timesteps: int, sensor_hw: tuple, out_hw: tuple,
                     max_count: int) -> np.ndarray:
    """Bin events into uint8 counts [T, 2, H, W].

    Time: T equal bins spanning the first to the last timestamp,
    bin = (t - t_min) * T // (t_max - t_min + 1). Space: the sensor grid is scaled to the
    output grid by integer division (each output cell sums the events of the sensor
    pixels it covers), so counts stay exact integers. Polarity p is 0 (OFF) or 1 (ON).
    """
    sh, sw = sensor_hw
    oh, ow = out_hw
    frames = np.zeros(timesteps * 2 * oh * ow, np.int64)
    if len(t):
        t = np.asarray(t, np.int64)
        t0 = int(t.min())
        span = int(t.max()) - t0 + 1
        b = (t - t0) * timesteps // span
        fy = np.asarray(y, np.int64) * oh // sh
        fx = np.asarray(x, np.int64) * ow // sw
        idx = ((b * 2 + np.asarray(p, np.int64)) * oh + fy) * ow + fx
        frames += np.bincount(idx, minlength=frames.size)
    return np.minimum(frames, max_count).astype(np.uint8).reshape(timesteps, 2, oh, ow)


def resize_images(x: np.ndarray, height: int, width: int, chunk: int = 4096) -> np.ndarray:
    """Bilinear resize of uint8 [N, C, H, W] to [N, C, height, width], rounded back to uint8."""
    n, c, h, w = x.shape
    if (h, w) == (height, width):
        return x
    no_shift = np.zeros(1)
    y0, wy0, y1, wy1 = (a[0] for a in _axis_weights(height, h, no_shift, clamp=True))
    x0, wx0, x1, wx1 = (a[0] for a in _axis_weights(width, w, no_shift, clamp=True))
    flat = x.reshape(n * c, h, w)
    out = np.empty((n * c, height, width), np.uint8)
    for s in range(0, n * c, chunk):     # chunks: float64 copies of a whole dataset are GBs
        f = flat[s:s + chunk].astype(np.float64)
        r = wy0[None, :, None] * f[:, y0] + wy1[None, :, None] * f[:, y1]
        v = wx0[None, None, :] * r[:, :, x0] + wx1[None, None, :] * r[:, :, x1]
        out[s:s + chunk] = np.clip(np.floor(v + 0.5), 0, 255)
    return out.reshape(n, c, height, width)
