"""Event readers against files written byte by byte from the published layouts: jAER's
DVS128 AEDAT 2.0 decoding, N-MNIST / N-Caltech101 overflow markers, AEDAT 3.1, AEDAT 4
(through the optional ``aedat`` package), tonic's layout and binning, the reader CLI."""
import struct
import subprocess
import sys

import numpy as np
import pytest

from project_config import UserError
from train.datasets import (EVENT_DTYPE, load_event_folder, read_aedat, read_aedat2,
                            read_aedat4, read_aedat31, read_ncaltech_bin, read_nmnist_bin,
                            unwrap_timestamps)
from train.events import events_to_frames
from test_train_datasets import dvs128_address, write_aedat_raw, write_ncaltech


# --- AEDAT 2.0, DVS128, decoded as jAER's DVS128.Extractor does ---------------------------

def test_aedat2_polarity_is_one_minus_bit0(tmp_path):
    f = tmp_path / "p.aedat"
    write_aedat_raw(f, [(0x0000, 1), (0x0001, 2)])          # bit 0 = 0 is ON in jAER
    assert read_aedat2(f)["p"].tolist() == [1, 0]


def test_aedat2_x_is_mirrored_y_is_not(tmp_path):
    f = tmp_path / "x.aedat"
    write_aedat_raw(f, [((5 << 8) | (3 << 1), 1), ((127 << 8) | (127 << 1), 2)])
    ev = read_aedat2(f)
    assert ev["x"].tolist() == [124, 0] and ev["y"].tolist() == [5, 127]


def test_aedat2_special_events_are_skipped(tmp_path):
    f = tmp_path / "s.aedat"
    pixel = dvs128_address(10, 20, 1)
    write_aedat_raw(f, [(pixel, 1), (0x8000, 2), (pixel | 0x8000, 3), (0x80000000, 4),
                        (pixel | 0x80000000, 5), (pixel, 6)])
    ev = read_aedat2(f)
    assert ev["t"].tolist() == [1, 6] and ev["x"].tolist() == [10, 10]
    assert ev["y"].tolist() == [20, 20] and ev["p"].tolist() == [1, 1]


def test_aedat2_timestamp_wrap_is_unwrapped(tmp_path):
    f = tmp_path / "w.aedat"
    a = dvs128_address(1, 1, 1)
    # A special event sits across the wrap: the wrap still counts (unwrapped before skipping).
    write_aedat_raw(f, [(a, 2**32 - 20), (a, 2**32 - 1), (0x8000, 3), (a, 5), (a, 4), (a, 9)])
    t = read_aedat2(f)["t"]
    assert t.tolist() == [2**32 - 20, 2**32 - 1, 2**32 + 5, 2**32 + 4, 2**32 + 9]
    # Bins over the 30 us actually recorded: only the first event falls in the first half
    # (read wrapped, the three after the wrap would land in bin 0 and the two before in bin 1).
    frames = events_to_frames(np.zeros(5), np.zeros(5), np.ones(5), t, 2, (128, 128), (1, 1), 255)
    assert frames[:, 1, 0, 0].tolist() == [1, 4]
    assert unwrap_timestamps([10, 2**32 - 5, 3]).tolist() == [10, 2**32 - 5, 2**32 + 3]


def test_aedat2_truncated_and_wrong_version(tmp_path):
    f = tmp_path / "t.aedat"
    write_aedat_raw(f, [(1, 2), (3, 4)])
    f.write_bytes(f.read_bytes()[:-1])
    with pytest.raises(UserError, match=r"t\.aedat: truncated: 15 bytes of events"):
        read_aedat2(f)
    f.write_bytes(b"#!AER-DAT2.0\r\n# a header line cut")
    with pytest.raises(UserError, match=r"t\.aedat: header line without an end"):
        read_aedat2(f)
    f.write_bytes(b"#!AER-DAT3.1\r\n#!END-HEADER\r\n")
    with pytest.raises(UserError, match=r"t\.aedat: AEDAT 3\.1 file where AEDAT 2\.0"):
        read_aedat2(f)


# --- N-MNIST / N-Caltech101 overflow markers -----------------------------------------------

def test_atis_overflow_markers_add_8192_to_later_timestamps(tmp_path):
    f = tmp_path / "o.bin"
    write_ncaltech(f, [(1, 2, 1, 100), (0, 240, 0, 0), (3, 4, 0, 50), (0, 240, 0, 0),
                       (5, 6, 1, 7)])
    ev = read_ncaltech_bin(f)
    assert ev["t"].tolist() == [100, 8192 + 50, 2 * 8192 + 7]
    assert ev["x"].tolist() == [1, 3, 5] and ev["y"].tolist() == [2, 4, 6]
    assert ev["p"].tolist() == [1, 0, 1]
    ev = read_nmnist_bin(f)                    # N-MNIST's 34 x 34 sensor, same markers
    assert ev["t"].tolist() == [100, 8242, 16391]
    write_ncaltech(f, [(40, 2, 1, 1)])
    with pytest.raises(UserError, match=r"o\.bin: event 0 at x=40, y=2 is outside the 34x34"):
        read_nmnist_bin(f)


def test_nmnist_folder(tmp_path):
    for c in ("0", "1"):
        (tmp_path / c).mkdir()
        write_ncaltech(tmp_path / c / "00001.bin", [(0, 0, int(c), 0), (0, 240, 0, 0),
                                                    (33, 33, 1, 0)])
    x, y, classes = load_event_folder(tmp_path, "nmnist", 2, 2, 2, max_count=3)
    # The marker puts the second event 8192 us later: the last of the two bins.
    assert classes == ["0", "1"] and x.shape == (2, 2, 2, 2, 2)
    assert x[0, 0, 0, 0, 0] == 1 and x[0, 1, 1, 1, 1] == 1 and x[1, 0, 1, 0, 0] == 1
    assert x.sum() == 4


# --- AEDAT 3.1 -----------------------------------------------------------------------------

AEDAT3_HEADER = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n"


def aedat3_packet(kind, events, overflow=0, size=8):
    """One packet: the 28-byte header (type, source, size, ts offset, ts overflow,
    capacity, number, valid), then ``events`` as (data word, timestamp) pairs."""
    head = struct.pack("<hhiiiiii", kind, 1, size, 4, overflow, len(events), len(events),
                       len(events))
    return head + b"".join(struct.pack("<Ii", d, t) + b"\0" * (size - 8) for d, t in events)


def polarity_word(x, y, p, valid=1):
    return (x << 17) | (y << 2) | (p << 1) | valid


def test_aedat31_polarity_packets(tmp_path):
    f = tmp_path / "g.aedat"
    body = (aedat3_packet(1, [(polarity_word(100, 7, 1), 10), (polarity_word(3, 120, 0), 20),
                              (polarity_word(9, 9, 1, valid=0), 25)])
            + aedat3_packet(0, [(0x12345, 30)])                 # a special-event packet
            + aedat3_packet(1, [(polarity_word(127, 0, 0), 5)], overflow=1, size=12))
    f.write_bytes(AEDAT3_HEADER + body)
    ev = read_aedat31(f)
    assert ev.dtype == EVENT_DTYPE
    assert ev["x"].tolist() == [100, 3, 127] and ev["y"].tolist() == [7, 120, 0]
    assert ev["p"].tolist() == [1, 0, 0] and ev["t"].tolist() == [10, 20, (1 << 31) + 5]
    assert read_aedat(f)["t"].tolist() == ev["t"].tolist()      # dispatch by version line


def test_aedat31_truncated(tmp_path):
    f = tmp_path / "c.aedat"
    packet = aedat3_packet(1, [(polarity_word(1, 1, 1), 1), (polarity_word(2, 2, 1), 2)])
    f.write_bytes(AEDAT3_HEADER + packet[:-4])
    with pytest.raises(UserError, match=r"c\.aedat: truncated: packet 0 needs 16 bytes"):
        read_aedat31(f)
    f.write_bytes(AEDAT3_HEADER + packet + packet[:10])
    with pytest.raises(UserError, match=r"c\.aedat: truncated: packet 1 header has 10 of 28"):
        read_aedat31(f)
    f.write_bytes(b"#!AER-DAT3.1\r\n#Source 1: DVS128\r\n")
    with pytest.raises(UserError, match=r"c\.aedat: AEDAT 3\.1 header has no #!END-HEADER"):
        read_aedat31(f)


# --- AEDAT 4 (optional aedat package) --------------------------------------------------------

AEDAT4_DESCRIPTION = (
    '<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">'
    '<node name="0" path="/mainloop/Recorder/outInfo/0/">'
    '<attr key="typeIdentifier" type="string">EVTS</attr>'
    '<node name="info" path="/mainloop/Recorder/outInfo/0/info/">'
    '<attr key="sizeX" type="int">128</attr><attr key="sizeY" type="int">128</attr>'
    '</node></node></node></dv>').encode()


def aedat4_ioheader():
    """The IOHeader flatbuffer (ioheader.fbs): root offset, vtable (3 fields), table
    (soffset, compression None, file_data_position -1 = packets up to the end, offset of
    the description), then the description string (length, bytes, NUL)."""
    vtable = struct.pack("<HHHHH", 10, 20, 4, 8, 16) + b"\0\0"       # at 4
    table = struct.pack("<iiqI", 16 - 4, 0, -1, 36 - 32)               # at 16
    return (struct.pack("<I", 16) + vtable + table + struct.pack("<I", len(AEDAT4_DESCRIPTION))
            + AEDAT4_DESCRIPTION + b"\0")


def aedat4_event_packet(events):
    """A size-prefixed EventPacket flatbuffer (events.fbs, identifier EVTS): vtable at 12,
    table at 20, the vector of 16-byte Event structs (t int64, x, y int16, on bool) at 28."""
    body = (struct.pack("<I", 20 - 4) + b"EVTS" + struct.pack("<HHH", 6, 8, 4) + b"\0\0"
            + struct.pack("<iI", 20 - 12, 28 - 24) + struct.pack("<I", len(events))
            + b"".join(struct.pack("<qhhB3x", t, x, y, on) for t, x, y, on in events))
    return struct.pack("<I", len(body)) + body


def write_aedat4(path, packets):
    """``#!AER-DAT4.0``, the IOHeader's length and bytes, then per packet: stream id 0,
    length, the packet (no compression)."""
    head = aedat4_ioheader()
    data = b"#!AER-DAT4.0\r\n" + struct.pack("<I", len(head)) + head
    for events in packets:
        buf = aedat4_event_packet(events)
        data += struct.pack("<II", 0, len(buf)) + buf
    path.write_bytes(data)


def test_aedat4_events(tmp_path):
    pytest.importorskip("aedat")
    f = tmp_path / "e.aedat4"
    write_aedat4(f, [[(10, 3, 4, 1), (20, 127, 0, 0)], [(2**40, 5, 6, 1)]])
    for ev in (read_aedat4(f), read_aedat(f)):
        assert ev.dtype == EVENT_DTYPE
        assert ev["x"].tolist() == [3, 127, 5] and ev["y"].tolist() == [4, 0, 6]
        assert ev["t"].tolist() == [10, 20, 2**40] and ev["p"].tolist() == [1, 0, 1]
    (tmp_path / "cat").mkdir()
    write_aedat4(tmp_path / "cat" / "r.aedat4", [[(0, 0, 0, 1), (99, 127, 127, 0)]])
    x, y, classes = load_event_folder(tmp_path, "dvs_cifar10", 2, 2, 2, max_count=3)
    assert classes == ["cat"] and x[0, 0, 1, 0, 0] == 1 and x[0, 1, 0, 1, 1] == 1


def test_aedat4_damaged_file_is_one_error(tmp_path):
    pytest.importorskip("aedat")
    f = tmp_path / "d.aedat4"
    f.write_bytes(b"#!AER-DAT4.0\r\n" + b"\x01\x02\x03")
    with pytest.raises(UserError, match=r"d\.aedat4: not a readable AEDAT 4 file") as e:
        read_aedat(f)
    assert "\n" not in str(e.value)
    write_aedat4(f, [[(10, 3, 4, 1), (20, 127, 0, 0)]])
    f.write_bytes(f.read_bytes()[:-5])                   # the last packet cut short
    with pytest.raises(UserError, match=r"d\.aedat4: not a readable AEDAT 4 file"):
        read_aedat4(f)


# --- tonic: same layout, same binning ---------------------------------------------------------

def test_binning_equals_tonic_to_frame():
    tonic_fn = pytest.importorskip("tonic.functional")
    rng = np.random.default_rng(3)
    n, T = 500, 5
    ev = np.zeros(n, EVENT_DTYPE)
    ev["x"], ev["y"] = rng.integers(0, 12, n), rng.integers(0, 9, n)
    ev["t"] = np.sort(rng.integers(1000, 1000 + 997, n))
    ev["p"] = rng.integers(0, 2, n)
    ours = events_to_frames(ev["x"], ev["y"], ev["p"], ev["t"], T, (9, 12), (9, 12), 10**6)
    span = int(ev["t"][-1] - ev["t"][0]) + 1
    theirs = tonic_fn.to_frame_numpy(ev, (12, 9, 2), time_window=span / T,
                                     include_incomplete=True)
    assert theirs.shape == ours.shape == (T, 2, 9, 12)
    np.testing.assert_array_equal(ours, theirs)


# --- the reader CLI ---------------------------------------------------------------------------

def test_read_events_cli(tmp_path):
    f = tmp_path / "r.aedat"
    write_aedat_raw(f, [(dvs128_address(4, 5, 1), 10), (dvs128_address(6, 7, 0), 30)])
    out = tmp_path / "ev.npy"
    r = subprocess.run([sys.executable, "-m", "train.read_events", str(f), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "2 events, t 10..30 us, x 4..6, y 5..7, ON 0.500" in r.stdout
    ev = np.load(out)
    assert ev.dtype.names == ("x", "y", "t", "p") and ev["x"].tolist() == [4, 6]
    f.write_bytes(f.read_bytes()[:-2])
    out.unlink()
    r = subprocess.run([sys.executable, "-m", "train.read_events", str(f), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and not out.exists()
    assert r.stderr.count("\n") == 1 and "r.aedat: truncated" in r.stderr
