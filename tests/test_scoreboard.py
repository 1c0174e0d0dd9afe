"""The scoreboard's sensitivity, without a simulator: the record stream a core equal to
golden would send (sim.host.expected_records) passes, and each kind of corruption of it
is caught by the checker meant for it, and by no other."""
import numpy as np
import pytest

import golden
from hw.params import CoreParams
from hw.protocol import (KIND_CURRENT, KIND_LOGITS, KIND_SIGNATURE, KIND_SPIKES, RecordDecoder,
                         pack_fields, record_fields, signature_fields, unpack_fields)
from model_export import save_export
from model_export.random_net import random_export, random_inputs
from sim.host import compare, expected_records
from sim.runner import cosimulate
from conftest import ROOT


@pytest.fixture(scope="module")
def case(slice_cfg):
    p = CoreParams(slice_cfg)
    net = random_export(slice_cfg, 8, pruning=True)
    res = golden.run(net, random_inputs(net, 1, 3, density=0.4))
    return p, net, res, expected_records(p, net, res, 0)


def _problems(p, net, res, words):
    dec = RecordDecoder(p, net)
    for w in words:
        dec.add(w)
    return compare(res, 0, dec)


def _find(p, words, kind, pred=lambda r: True):
    fields = record_fields(p)
    for i, w in enumerate(words):
        r = unpack_fields(fields, w)
        if r["kind"] == kind and pred(r):
            return i, r
    raise AssertionError(f"no record of kind {kind} matches")


def _with(p, r, **changes):
    return pack_fields(record_fields(p), **{**r, **changes})


def test_golden_stream_passes(case):
    p, net, res, words = case
    assert len(words) > 10
    assert _problems(p, net, res, words) == (0, [])


def _only(problems, needle):
    count, text = problems
    assert count >= 1 and text, "the corruption went unnoticed"
    assert all(needle in line for line in text), text
    return text


def test_a_flipped_spike_is_caught_by_the_spike_check_only(case):
    p, net, res, words = case
    i, r = _find(p, words, KIND_SPIKES, lambda r: r["layer"] == 1)
    w = list(words)
    w[i] = _with(p, r, data=r["data"] ^ 1)               # lane 0's spike bit
    _only(_problems(p, net, res, w), "spikes")


def test_a_wrong_membrane_is_caught_by_the_membrane_check_only(case):
    p, net, res, words = case
    i, r = _find(p, words, KIND_SPIKES, lambda r: r["layer"] == 0)
    w = list(words)
    w[i] = _with(p, r, data=r["data"] ^ (1 << p.lanes))  # lane 0's membrane field
    _only(_problems(p, net, res, w), "membrane")


def test_a_missing_record_is_caught_by_the_record_check(case):
    p, net, res, words = case
    i, _ = _find(p, words, KIND_SPIKES, lambda r: (r["data"] & ((1 << p.lanes) - 1)) == 0)
    _only(_problems(p, net, res, words[:i] + words[i + 1:]), "records missing")


def test_a_duplicated_record_is_caught_by_the_record_check(case):
    p, net, res, words = case
    i, _ = _find(p, words, KIND_SPIKES)
    _only(_problems(p, net, res, words[:i + 1] + words[i:]), "duplicate record")


def test_an_extra_record_is_caught_by_the_record_check(case):
    p, net, res, words = case
    lp = p.layers[0]
    computed = res.positions[0][0, 0].reshape(-1)
    pos = int(np.flatnonzero(~computed)[0])              # a position layer 0 skips at step 0
    extra = pack_fields(record_fields(p), kind=KIND_SPIKES, layer=0, step=0, pos=pos, group=0)
    problems = _problems(p, net, res, words + [extra])
    assert any("unexpected records" in line for line in problems[1]), problems
    assert not any("spikes" in line or "signature" in line for line in problems[1])


def test_a_wrong_signature_is_caught_by_the_signature_check_only(case):
    p, net, res, words = case
    i, r = _find(p, words, KIND_SIGNATURE)
    w = list(words)
    w[i] = _with(p, r, data=r["data"] ^ 1)               # one CRC bit
    _only(_problems(p, net, res, w), "signature")


def test_a_wrong_work_counter_is_caught_by_the_counter_check_only(case):
    p, net, res, words = case
    i, r = _find(p, words, KIND_SIGNATURE)
    sig = unpack_fields(signature_fields(p), r["data"])
    w = list(words)
    w[i] = _with(p, r, data=pack_fields(signature_fields(p),
                                        **{**sig, "synaptic_ops": sig["synaptic_ops"] + 1}))
    _only(_problems(p, net, res, w), "work counters")


@pytest.mark.parametrize("kind, needle", [(KIND_CURRENT, "classifier current"),
                                          (KIND_LOGITS, "logit")])
def test_a_wrong_classifier_value_is_caught_by_its_check_only(case, kind, needle):
    p, net, res, words = case
    i, r = _find(p, words, kind)
    w = list(words)
    w[i] = _with(p, r, data=r["data"] ^ 1)
    _only(_problems(p, net, res, w), needle)


@pytest.mark.sim
def test_the_reference_stream_is_the_rtl_stream(tmp_path, slice_cfg):
    """expected_records is what the core really sends: word for word, in order."""
    p = CoreParams(slice_cfg)
    net = random_export(slice_cfg, 8, pruning=True)
    save_export(net, tmp_path / "export")
    x = random_inputs(net, 2, 3, density=0.4)
    r = cosimulate(str(ROOT / "configs" / "slice_digits.yaml"), tmp_path / "export", x,
                   "verilator", tmp_path, stall_probability=0.3, keep_records=True)
    assert r["mismatches"] == 0 and not r["testbench_failed"], r["details"]
    res = golden.run(net, x)
    for i, words in enumerate(r["jobs"][0]["records"]):
        assert words == expected_records(p, net, res, i)


@pytest.mark.sim
def test_a_hung_testbench_raises_instead_of_passing(tmp_path, slice_cfg):
    net = random_export(slice_cfg, 8)
    save_export(net, tmp_path / "export")
    with pytest.raises(RuntimeError, match="stopped after 0 samples.*hangs"):
        cosimulate(str(ROOT / "configs" / "slice_digits.yaml"), tmp_path / "export",
                   random_inputs(net, 1, 3), "verilator", tmp_path, stall_probability=0.0,
                   max_cycles=5)
