"""Export format and folding: worked example, exact thresholds, round trip, corrupt files."""
import json
import random
from fractions import Fraction

import numpy as np
import pytest

from model_export import ExportError, decode_weights, encode_weights, load_export, save_export
from model_export.fold import fold_channel
from model_export.random_net import random_export
from conftest import run_cli


def test_worked_example():
    """docs/INTEGER_SPEC.md section 8, recomputed by the exporter's code."""
    A, B = 3 / 128, -1 / 8
    rows = fold_channel(A, B, 1.0, "ternary", width=16)
    assert rows == [[70, 49, 5], [49, 27, -16], [27, 6, -38]]
    codes = encode_weights(np.array([1, -1, -1, 1]), np.array([0, 2, 3, 1]), 4)
    assert list(codes) == [0b0001, 0b1011, 0b1100, 0b0010]
    w = decode_weights(codes, 4)
    assert int((np.array([1, 0, 1, 1]) * w).sum()) == 88


def _float_rule(q, I, A, B, vth, membrane):
    u = Fraction(q, 2) + Fraction(A) * I + Fraction(B)
    if u > Fraction(vth):
        return 1, 0
    if u > Fraction(1, 2):
        return 0, 1
    if membrane == "ternary" and u <= Fraction(-1, 2):
        return 0, -1
    return 0, 0


def _int_rule(rows, q, I, membrane):
    F, P, N = rows[q + 1 if membrane == "ternary" else q]
    if I >= F:
        return 1, 0
    if I >= P:
        return 0, 1
    if I <= N:
        return 0, -1
    return 0, 0


@pytest.mark.parametrize("membrane", ["ternary", "binary"])
def test_folded_thresholds_equal_the_exact_rule(membrane):
    """For random scales and every reachable current, compare-only == the rational rule."""
    rng = random.Random(3)
    width = 12
    bound = (1 << (width - 1)) - 2
    levels = (-1, 0, 1) if membrane == "ternary" else (0, 1)
    for _ in range(60):
        A = rng.choice([0.0, rng.uniform(1e-4, 0.5), 2.0 ** -rng.randint(1, 9)])
        B = rng.choice([rng.uniform(-3, 3), 0.5, -0.5, 0.0])
        vth = rng.choice([rng.uniform(0.1, 3), 1.0, 0.5])
        rows = fold_channel(A, B, vth, membrane, width)
        for q in levels:
            for I in list(range(-60, 61)) + [bound, -bound, rng.randint(-bound, bound)]:
                assert _int_rule(rows, q, I, membrane) == _float_rule(q, I, A, B, vth, membrane), \
                    (A, B, vth, q, I)


def test_ties_follow_the_contract():
    # A = 1/4, B = 0: u = I/4 (+ q/2). I = 2 -> u = 0.5 -> 0; I = -2 -> -0.5 -> -1; Vth = 1: I = 4 does not fire.
    rows = fold_channel(0.25, 0.0, 1.0, "ternary", width=10)
    assert _int_rule(rows, 0, 2, "ternary") == (0, 0)
    assert _int_rule(rows, 0, -2, "ternary") == (0, -1)
    assert _int_rule(rows, 0, 4, "ternary") == (0, 1)
    assert _int_rule(rows, 0, 5, "ternary") == (1, 0)
    assert _int_rule(rows, 1, 2, "ternary") == (0, 1)      # u = 0.5 + 0.5 = 1.0: not > Vth


def test_saturation_never_collides():
    rows = fold_channel(1e-9, 0.1, 1.0, "ternary", width=8)     # thresholds far out of range
    assert all(v in (-128, 127) for r in rows for v in r)
    assert _int_rule(rows, 0, 126, "ternary") == (0, 0)
    rows = fold_channel(0.0, 5.0, 1.0, "ternary", width=8)      # always fires
    assert _int_rule(rows, -1, -126, "ternary") == (1, 0)


def test_eight_bit_codes_are_refused_by_the_integer_datapath():
    with pytest.raises(ExportError, match="beyond the integer datapath"):
        decode_weights(encode_weights(np.array([1]), np.array([126]), 8), 8)


def test_codes_round_trip():
    for bits in (2, 4):
        K = (1 << (bits - 1)) - 2
        sign = np.array([-1, 0, 1, 1, -1])
        k = np.array([0, 0, K, 0, K])
        w = decode_weights(encode_weights(sign, k, bits), bits)
        assert list(w) == [-(1 << K), 0, 1, 1 << K, -1]


@pytest.mark.parametrize("pruning", [False, True])
def test_save_load_round_trip(tmp_path, slice_cfg, pruning):
    net = random_export(slice_cfg, seed=1, pruning=pruning)
    save_export(net, tmp_path / "e")
    back = load_export(tmp_path / "e")
    for a, b in zip(net.layers, back.layers):
        assert a.geometry == b.geometry
        assert a.arrays().keys() == b.arrays().keys()
        for name, arr in a.arrays().items():
            assert np.array_equal(arr, getattr(b, name))
    assert [l.gated for l in back.layers] == [False, pruning, False]
    assert [l.spatial_pruning for l in back.layers] == [pruning, pruning, False]
    manifest = json.loads((tmp_path / "e" / "manifest.json").read_text())
    assert manifest["schema"] == "spquant-export" and manifest["version"] == 2
    assert len(manifest["sha256"]) == 64


def test_version_1_export_still_reads(tmp_path, slice_cfg):
    """Version 1 had no runtime-pruning arrays; such an export reads as unpruned."""
    save_export(random_export(slice_cfg, seed=1), tmp_path / "e")
    m = json.loads((tmp_path / "e" / "manifest.json").read_text())
    m["version"] = 1
    (tmp_path / "e" / "manifest.json").write_text(json.dumps(m))
    back = load_export(tmp_path / "e")
    assert not any(l.gated or l.spatial_pruning for l in back.layers)


@pytest.mark.parametrize("change, phrase", [
    (lambda n: setattr(n.layers[0], "spatial_threshold", np.array([1], np.int64)),
     "L0.spatial_threshold: 1 is outside"),
    (lambda n: setattr(n.layers[1], "spatial_threshold", np.array([-17], np.int64)),
     "L1.spatial_threshold: -17 is outside"),
    (lambda n: (setattr(n.layers[0], "gate_weights", np.zeros((8, 1), np.int8)),
                setattr(n.layers[0], "gate_thresholds", np.zeros(8, np.int64))),
     "L0.gate_weights: the first layer has no gate"),
    (lambda n: n.layers[1].gate_weights.__setitem__((0, 0), 2), "values must be -1, 0 or 1"),
    (lambda n: n.layers[1].gate_thresholds.__setitem__(0, 8 * 64 + 2), "L1.gate_thresholds: outside"),
    (lambda n: setattr(n.layers[1], "gate_thresholds", None), "L1.gate_thresholds: expected int64"),
])
def test_bad_pruning_arrays_are_refused(tmp_path, slice_cfg, change, phrase):
    net = random_export(slice_cfg, seed=1, pruning=True)
    change(net)
    with pytest.raises(ExportError, match=phrase):
        save_export(net, tmp_path / "e")
    assert not (tmp_path / "e" / "manifest.json").exists()


@pytest.fixture
def export_dir(tmp_path, slice_cfg):
    save_export(random_export(slice_cfg, seed=2), tmp_path / "e")
    return tmp_path / "e"


def _corrupt_truncate(d):
    p = d / "export.npz"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _corrupt_flip_array(d):
    with np.load(d / "export.npz") as z:
        arrays = {k: z[k].copy() for k in z.files}
    arrays["L0.thresholds"][0, 0, 0] += 1
    np.savez(d / "export.npz", **arrays)


def _corrupt_version(d):
    m = json.loads((d / "manifest.json").read_text())
    m["version"] = 99
    (d / "manifest.json").write_text(json.dumps(m))


def _corrupt_manifest_json(d):
    (d / "manifest.json").write_text('{"schema": "spquant-export", "vers')


def _missing_npz(d):
    (d / "export.npz").unlink()


def _garbage_npz(d):
    (d / "export.npz").write_bytes(b"not a zip file at all")


@pytest.mark.parametrize("corrupt, phrase", [
    (_corrupt_truncate, "corrupted or truncated"),
    (_corrupt_flip_array, "sha256 does not match"),
    (_corrupt_version, "schema version 99"),
    (_corrupt_manifest_json, "corrupted manifest"),
    (_missing_npz, "not found"),
    (_garbage_npz, "corrupted or truncated"),
])
def test_corrupted_export_is_refused(export_dir, corrupt, phrase):
    corrupt(export_dir)
    with pytest.raises(ExportError, match=phrase):
        load_export(export_dir)


def test_corrupted_export_cli_one_line_exit_2(export_dir):
    _corrupt_truncate(export_dir)
    r = run_cli("golden", "--export", str(export_dir))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "export.npz" in lines[0] and "truncated" in lines[0]


def test_export_reader_never_imports_torch():
    r = run_cli("golden", "--help")
    assert r.returncode == 0
    import subprocess, sys
    code = ("import sys, model_export, golden, hw.params, sim.host; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
