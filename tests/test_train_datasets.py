"""Dataset file readers on tiny synthetic files written in the real formats."""
import os
import pickle
import struct

import numpy as np
import pytest

from project_config import UserError, config_from_dict
from train.data import load_dataset
from train.datasets import (load_cifar, load_event_folder, read_aedat2, read_cifar_batch,
                            read_ncaltech_bin)


# --- writers in the datasets' own formats ----------------------------------------------

def write_cifar_batch(path, data, labels, label_key=b"labels", str_keys=False):
    d = {b"batch_label": b"synthetic", label_key: list(labels), b"data": data,
         b"filenames": [b"x.png"] * len(labels)}
    if str_keys:
        d = {k.decode(): v for k, v in d.items()}
    path.write_bytes(pickle.dumps(d, protocol=2))


def cifar_images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


AEDAT2_HEADER = (b"#!AER-DAT2.0\r\n", b"# synthetic\r\n")


def write_aedat_raw(path, words, header=AEDAT2_HEADER):
    """words: (address, timestamp) uint32 pairs, big-endian, after the header lines."""
    path.write_bytes(b"".join(header) + b"".join(struct.pack(">II", a, t) for a, t in words))


def dvs128_address(x, y, p):
    """The raw DVS128 address jAER decodes to (x, y, p): x mirrored, bit 0 = 1 - p."""
    return (y << 8) | ((127 - x) << 1) | (1 - p)


def write_aedat(path, events, header=AEDAT2_HEADER):
    """events: (x, y, p, t) tuples as jAER shows them, encoded as the DVS128 wrote them."""
    write_aedat_raw(path, [(dvs128_address(x, y, p), t) for x, y, p, t in events], header)


def write_ncaltech(path, events):
    """events: (x, y, p, t) tuples; 5 bytes: x, y, p << 23 | t as 24 bits big-endian
    (y = 240: a timestamp-overflow marker)."""
    out = bytearray()
    for x, y, p, t in events:
        v = (p << 23) | t
        out += bytes([x, y, (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF])
    path.write_bytes(bytes(out))


# --- CIFAR --------------------------------------------------------------------------------

def test_cifar10_layout_and_labels(tmp_path):
    sub = tmp_path / "cifar-10-batches-py"       # the archive's own folder is found too
    sub.mkdir()
    for i in range(1, 6):
        data = cifar_images(4, i)
        if i == 1:
            data[0, :] = 0
            data[0, 0] = 255            # red, row 0, col 0
            data[0, 1024 + 33] = 7      # green, row 1, col 1
            data[0, 2048 + 1023] = 9    # blue, row 31, col 31
        write_cifar_batch(sub / f"data_batch_{i}", data, [i, 0, 9, 3], str_keys=(i == 2))
    write_cifar_batch(sub / "test_batch", cifar_images(3, 9), [5, 6, 7])
    x_tr, y_tr, x_te, y_te = load_cifar(tmp_path, "cifar10")
    assert x_tr.shape == (20, 3, 32, 32) and x_tr.dtype == np.uint8 and x_te.shape == (3, 3, 32, 32)
    assert x_tr[0, 0, 0, 0] == 255 and x_tr[0, 1, 1, 1] == 7 and x_tr[0, 2, 31, 31] == 9
    assert x_tr[0].sum() == 255 + 7 + 9
    assert y_tr.tolist() == sum(([i, 0, 9, 3] for i in range(1, 6)), []) and y_te.tolist() == [5, 6, 7]
    assert y_tr.dtype == np.int64


def test_cifar100_fine_labels_and_config_path(tmp_path):
    write_cifar_batch(tmp_path / "train", cifar_images(6, 0), [0, 99, 5, 5, 1, 2],
                      label_key=b"fine_labels")
    write_cifar_batch(tmp_path / "test", cifar_images(2, 1), [42, 7], label_key=b"fine_labels")
    raw = {"model": {"input": {"channels": 3, "height": 16, "width": 16, "bits": 8},
                     "timesteps": 2, "layers": [{"channels": 4, "pool": 2}], "classes": 100},
           "data": {"dataset": "cifar100", "root": str(tmp_path)}}
    x_tr, y_tr, x_te, y_te = load_dataset(config_from_dict(raw, where="c.yaml"))
    assert x_tr.shape == (6, 3, 16, 16) and y_tr.tolist() == [0, 99, 5, 5, 1, 2]
    assert y_te.tolist() == [42, 7]
    raw["model"]["classes"] = 10
    with pytest.raises(UserError, match=r"c\.yaml: model\.classes: cifar100 has 100 classes"):
        load_dataset(config_from_dict(raw, where="c.yaml"))
    raw["model"]["input"]["bits"] = 5
    with pytest.raises(UserError, match=r"model\.input\.bits: 5"):
        load_dataset(config_from_dict(raw, where="c.yaml"))


def test_cifar_errors(tmp_path):
    with pytest.raises(UserError, match=r"c\.yaml: data\.root: folder .*nope.* not found"):
        load_cifar(tmp_path / "nope", "cifar10", where="c.yaml")
    with pytest.raises(UserError, match=r"data\.root: empty"):
        load_cifar("", "cifar10")
    with pytest.raises(UserError, match=r"data_batch_1: CIFAR file not found"):
        load_cifar(tmp_path, "cifar10")
    good = tmp_path / "good"
    write_cifar_batch(good, cifar_images(2, 0), [1, 2])
    cut = tmp_path / "cut"
    cut.write_bytes(good.read_bytes()[:500])
    with pytest.raises(UserError, match=r"cut: not a readable CIFAR pickle"):
        read_cifar_batch(cut, "labels")
    evil = tmp_path / "evil"
    evil.write_bytes(pickle.dumps({"data": os.system}))   # any non-array global is refused
    with pytest.raises(UserError, match=r"evil: not a readable CIFAR pickle \(UnpicklingError\)"):
        read_cifar_batch(evil, "labels")
    wrong = tmp_path / "wrong"
    write_cifar_batch(wrong, np.zeros((2, 100), np.uint8), [1, 2])
    with pytest.raises(UserError, match=r"wrong: 'data' must be uint8 \[N, 3072\]"):
        read_cifar_batch(wrong, "labels")
    short = tmp_path / "short"
    write_cifar_batch(short, cifar_images(3, 0), [1, 2])
    with pytest.raises(UserError, match=r"short: 'labels' must be 3 integers"):
        read_cifar_batch(short, "labels")


# --- DVS-CIFAR10 AEDAT 2.0 -----------------------------------------------------------------

def test_aedat_decoding(tmp_path):
    ev = [(0, 0, 1, 10), (127, 5, 0, 20), (3, 127, 1, 30), (64, 64, 0, 2**32 - 1)]
    f = tmp_path / "a.aedat"
    write_aedat(f, ev)
    ev_read = read_aedat2(f)
    x, y, p, t = (ev_read[k] for k in "xypt")
    assert x.tolist() == [e[0] for e in ev] and y.tolist() == [e[1] for e in ev]
    assert p.tolist() == [e[2] for e in ev] and t.tolist() == [e[3] for e in ev]
    write_aedat(f, ev, header=())          # no header at all is fine
    assert read_aedat2(f)["x"].tolist() == [e[0] for e in ev]
    write_aedat(f, [])
    assert len(read_aedat2(f)) == 0


def test_aedat_errors(tmp_path):
    f = tmp_path / "t.aedat"
    write_aedat(f, [(1, 2, 1, 3), (4, 5, 0, 6)])
    f.write_bytes(f.read_bytes()[:-3])
    with pytest.raises(UserError, match=r"t\.aedat: truncated: 13 bytes"):
        read_aedat2(f)
    f.write_bytes(b"#!AER-DAT2.0 but the header never ends")
    with pytest.raises(UserError, match=r"t\.aedat: header line without an end"):
        read_aedat2(f)
    with pytest.raises(UserError, match=r"missing\.aedat: cannot read"):
        read_aedat2(tmp_path / "missing.aedat")


def test_dvs_cifar10_folder_to_frames_and_split(tmp_path):
    # Class folders sorted: "cat" = 0, "dog" = 1. Events at 0..99 us, T = 2 bins of 50 us;
    # recording i adds i events at (10, 10), OFF for dog, ON for cat.
    for c, name in enumerate(["dog", "cat"]):
        (tmp_path / name).mkdir()
        for i in range(4):
            write_aedat(tmp_path / name / f"r{i}.aedat",
                        [(0, 0, 1, 0), (127, 127, 0, 49), (127, 0, 1, 50), (64, 64, 1, 99)]
                        + [(10, 10, c, 60)] * i)
    (tmp_path / "notes").mkdir()           # a folder without .aedat files is not a class
    x, y, classes = load_event_folder(tmp_path, "dvs_cifar10", 2, 4, 4, max_count=3)
    assert classes == ["cat", "dog"] and x.shape == (8, 2, 2, 4, 4) and x.dtype == np.uint8
    assert y.tolist() == [0] * 4 + [1] * 4
    f = x[3]                                # cat r3: 4 events + 3 ON events at (10, 10)
    assert f[0, 1, 0, 0] == 1 and f[0, 0, 3, 3] == 1     # bin 0: ON (0,0), OFF (127,127)
    assert f[1, 1, 0, 3] == 1 and f[1, 1, 2, 2] == 1     # bin 1: ON x=127 y=0; ON (64,64)
    assert f[1, 1, 0, 0] == 3 and f.sum() == 7
    assert x[7, 1, 0, 0, 0] == 3 and x[7, 1, 1, 0, 0] == 0   # dog r3: OFF events there
    raw = {"model": {"input": {"channels": 2, "height": 4, "width": 4, "bits": 2},
                     "timesteps": 2, "layers": [{"channels": 4, "pool": 2}], "classes": 10},
           "data": {"dataset": "dvs_cifar10", "root": str(tmp_path), "test_fraction": 0.5}}
    x_tr, y_tr, x_te, y_te = load_dataset(config_from_dict(raw, where="d.yaml"))
    assert x_tr.shape == (4, 2, 2, 4, 4) and sorted(y_te.tolist()) == [0, 0, 1, 1]
    with pytest.raises(UserError, match=r"d\.yaml: data\.root: folder .* for dvs_cifar10 not found"):
        raw["data"]["root"] = str(tmp_path / "absent")
        load_dataset(config_from_dict(raw, where="d.yaml"))
    raw["data"]["root"] = str(tmp_path / "notes")
    with pytest.raises(UserError, match=r"d\.yaml: data\.root: .*notes.* has no class folders"):
        load_dataset(config_from_dict(raw, where="d.yaml"))


# --- N-Caltech101 .bin ---------------------------------------------------------------------

def test_ncaltech_decoding(tmp_path):
    ev = [(0, 0, 1, 0), (239, 179, 0, 2**23 - 1), (17, 3, 1, 0x12345), (200, 100, 0, 70000)]
    f = tmp_path / "image_0001.bin"
    write_ncaltech(f, ev)
    ev_read = read_ncaltech_bin(f)
    x, y, p, t = (ev_read[k] for k in "xypt")
    assert x.tolist() == [e[0] for e in ev] and y.tolist() == [e[1] for e in ev]
    assert p.tolist() == [e[2] for e in ev] and t.tolist() == [e[3] for e in ev]


def test_ncaltech_errors_and_folder(tmp_path):
    f = tmp_path / "cut.bin"
    write_ncaltech(f, [(1, 2, 1, 3), (4, 5, 0, 6)])
    f.write_bytes(f.read_bytes()[:7])
    with pytest.raises(UserError, match=r"cut\.bin: truncated: 7 bytes is not a multiple of 5"):
        read_ncaltech_bin(f)
    write_ncaltech(f, [(1, 2, 1, 3), (250, 5, 0, 6)])
    with pytest.raises(UserError, match=r"cut\.bin: event 1 at x=250, y=5 is outside"):
        read_ncaltech_bin(f)
    root = tmp_path / "Caltech101"
    for name in ("airplanes", "Faces_easy", "ant"):
        (root / name).mkdir(parents=True)
        write_ncaltech(root / name / "image_0001.bin", [(120, 90, 1, 5), (0, 0, 0, 1000)])
    x, y, classes = load_event_folder(root, "ncaltech101", 3, 6, 8, max_count=7)
    assert classes == ["Faces_easy", "airplanes", "ant"] and y.tolist() == [0, 1, 2]
    # 240x180 onto 8 wide x 6 high: x 120 -> 4, y 90 -> 3; t 5 -> bin 0, t 1000 -> bin 2.
    assert x.shape == (3, 3, 2, 6, 8) and x[0, 0, 1, 3, 4] == 1 and x[0, 2, 0, 0, 0] == 1
    assert x.sum() == 6
