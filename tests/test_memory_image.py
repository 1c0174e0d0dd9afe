"""Memory images (hw.memory_image), spike-stream signatures (hw.signature) and the host's
replay of the core's visiting order (sim.host), without a simulator."""
import json
import random
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

import golden
from hw.memory_image import image_bytes, read_image, write_images
from hw.params import CoreParams
from hw.protocol import (COUNTERS, KIND_SIGNATURE, PRELOADED, TARGET_CHANNEL_MASK,
                         TARGET_POSITION_MASK, TARGET_THRESHOLDS, TARGET_WEIGHTS, RecordDecoder,
                         pack_fields, param_fields, param_transfers, record_fields,
                         signature_fields, unpack_fields)
from hw.signature import CRC_INIT, crc32_bits, crc32_packed, crc32_stream, update_masks
from model_export import save_export
from model_export.random_net import random_export, random_inputs
from project_config import config_from_dict, load_config
from sim.host import counter_mismatches, expected_signatures
from conftest import ROOT, run_cli

TINY = {"model": {"name": "tiny", "input": {"channels": 2, "height": 6, "width": 6, "bits": 3},
                  "timesteps": 3, "classes": 5,
                  "layers": [{"channels": 5, "kernel": 3, "padding": 1, "pool": 2},
                             {"channels": 4, "kernel": 3, "padding": 0, "pool": 1}]},
        "hardware": {"lanes": 3}}


def _configs():
    binary = json.loads(json.dumps(TINY))
    binary["quant"] = {"membrane": "binary", "weight_bits": 2}
    return [config_from_dict(TINY, "tiny"), config_from_dict(binary, "tiny-binary-2bit"),
            load_config("slice_digits.yaml"), load_config("vgg9_small.yaml")]


def _streamed(p: CoreParams, transfers) -> dict:
    """The parameter SRAMs as the param stream leaves them: {sram: {address: word}}, with the
    core's port widths and the thresholds' per-lane writes (hw.core)."""
    fields, L, TLW = param_fields(p), p.lanes, p.threshold_lane_width
    mem = {name: {} for name in PRELOADED}
    for w in transfers:
        f = unpack_fields(fields, w)
        a, d = f["addr"], f["data"]
        if f["target"] == TARGET_WEIGHTS:            # address 2 * word + bank
            bank = ("weight_sram_even", "weight_sram_odd")[a & 1]
            mem[bank][a >> 1] = d & ((1 << (L * p.weight_bits)) - 1)
        elif f["target"] == TARGET_THRESHOLDS:
            shift = f["lane"] * TLW
            old = mem["threshold_sram"].get(a, 0) & ~(((1 << TLW) - 1) << shift)
            mem["threshold_sram"][a] = old | ((d & ((1 << TLW) - 1)) << shift)
        elif f["target"] == TARGET_CHANNEL_MASK:
            mem["channel_mask_sram"][a] = d & ((1 << L) - 1)
        elif f["target"] == TARGET_POSITION_MASK:
            mem["position_mask_sram"][a] = d & 1
    return mem


@pytest.mark.parametrize("cfg", _configs(), ids=lambda c: c.path)
def test_images_hold_what_the_param_stream_writes(tmp_path, cfg):
    """Round trip: every image word equals the word the param stream writes at that address,
    and the stream writes every address of every image."""
    p = CoreParams(cfg)
    net = random_export(cfg, 3)
    paths = write_images(p, net, tmp_path)
    streamed = _streamed(p, param_transfers(p, net))
    depths = {"weight_sram_even": p.weight_depth, "weight_sram_odd": p.weight_depth_odd,
              "threshold_sram": p.group_depth,
              "channel_mask_sram": p.group_depth, "position_mask_sram": p.position_depth}
    widths = {"weight_sram_even": p.lanes * p.weight_bits, "weight_sram_odd": p.lanes * p.weight_bits,
              "threshold_sram": p.lanes * p.threshold_lane_width,
              "channel_mask_sram": p.lanes, "position_mask_sram": 1}
    assert p.weight_depth_odd > 0 or cfg.path.endswith("slice_digits.yaml")
    for name in PRELOADED:
        if not depths[name]:                              # no layer has an odd group
            assert name not in paths and not streamed[name], name
            continue
        words = read_image(paths[name])
        assert len(words) == depths[name], name
        assert sorted(streamed[name]) == list(range(depths[name])), name
        assert words == [streamed[name][a] for a in range(depths[name])], name
        lines = paths[name].read_text().splitlines()
        assert {len(line) for line in lines} == {-(-widths[name] // 4)}, name   # $readmemh words


def test_image_bytes_are_deterministic_and_padding_lanes_zero():
    cfg = config_from_dict(TINY, "tiny")
    p = CoreParams(cfg)
    net = random_export(cfg, 4)
    a, b = image_bytes(p, net), image_bytes(p, net)
    assert a == b
    # Layer 0 has 5 channels in 2 groups of 3 lanes: lane 2 of group 1 is padding.
    cmask = [int(line, 16) for line in a["channel_mask_sram"].split()]
    assert cmask[1] >> 2 == 0


def test_build_with_export_preloads_images_by_path(tmp_path):
    """hw.build --export: images beside the Verilog, named by INIT_FILE, not inlined."""
    cfg = config_from_dict(TINY, "tiny")
    save_export(random_export(cfg, 5), tmp_path / "export")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    r = run_cli("hw.build", "--config", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "hw"),
                "--export", str(tmp_path / "export"), "--no-lint")
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "hw" / "report.json").read_text())
    images = rep["preloaded"]["images"]
    assert set(images) == set(PRELOADED)
    verilog = (tmp_path / "hw" / "snn_core.v").read_text()
    for name, path in images.items():
        assert f'.INIT_FILE("{path}")' in verilog, name
        first_word = open(path).readline().strip()
        assert len(first_word) < 8 or first_word not in verilog
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert rep["preloaded"]["export_sha256"] == manifest["sha256"]
    # Without --export nothing is preloaded.
    r = run_cli("hw.build", "--config", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "hw2"),
                "--no-lint")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "hw2" / "report.json").read_text())["preloaded"] is None
    assert '.INIT_FILE("' not in (tmp_path / "hw2" / "snn_core.v").read_text()


def test_crc32_is_zlibs_crc32_bit_for_bit():
    rng = random.Random(1)
    data = bytes(rng.randrange(256) for _ in range(40))
    state = CRC_INIT
    for byte in data:                     # bitwise path: 3 + 5 bits per byte
        state = crc32_bits(state, byte & 7, 3)
        state = crc32_bits(state, byte >> 3, 5)
    assert state ^ 0xFFFFFFFF == zlib.crc32(data)
    words = [int.from_bytes(data[i:i + 8], "little") for i in range(0, 40, 8)]
    assert crc32_stream(64, words) == zlib.crc32(data)


@pytest.mark.parametrize("nbits", [1, 3, 8, 64])
def test_parallel_crc_update_matches_the_bitwise_one(nbits):
    """The core's update (hw.core: parity of masked register and word) is the bitwise CRC."""
    state_mask, word_mask = update_masks(nbits)
    rng = random.Random(nbits)
    parity = lambda v: bin(v).count("1") & 1
    for _ in range(200):
        state, word = rng.getrandbits(32), rng.getrandbits(nbits)
        new = sum((parity(state & sm) ^ parity(word & wm)) << k
                  for k, (sm, wm) in enumerate(zip(state_mask, word_mask)))
        assert new == crc32_bits(state, word, nbits)


@pytest.mark.parametrize("lanes", [3, 16])
def test_packed_crc_matches_the_record_stream(lanes):
    rng = np.random.default_rng(lanes)
    bits = (rng.random((37, lanes)) < 0.3).astype(np.uint8)
    words = [sum(int(b) << j for j, b in enumerate(row)) for row in bits]
    assert crc32_packed(lanes, bits) == crc32_stream(lanes, words)


def test_signatures_replay_the_cores_visiting_order():
    """sim.host's vectorized replay equals the core's loops written out (hw.core): windows,
    positions in a window, live groups; masked positions and groups skipped."""
    cfg = config_from_dict(TINY, "tiny")
    p = CoreParams(cfg)
    net = random_export(cfg, 6)
    net.layers[0].channel_mask[3:] = 0            # group 1 of layer 0 is dead
    rng = np.random.default_rng(7)
    spikes = []
    for lp, le in zip(p.spiking_layers, net.spiking_layers):
        s = (rng.random((1, p.timesteps, lp.out_channels, lp.out_height, lp.out_width)) < 0.4)
        active = le.channel_mask[:, None, None] & le.position_mask[None]
        spikes.append((s & active.astype(bool)).astype(np.uint8))
    got = expected_signatures(p, net, SimpleNamespace(spikes=spikes), 0)
    L = p.lanes
    for lp, le in zip(p.spiking_layers, net.spiking_layers):
        for t in range(p.timesteps):
            words = []
            P = lp.pool
            for wy in range(lp.out_height // P):
                for wx in range(lp.out_width // P):
                    for dy in range(P):
                        for dx in range(P):
                            y, x = wy * P + dy, wx * P + dx
                            if not le.position_mask[y, x]:
                                continue
                            for g in range(lp.groups):
                                chans = range(g * L, min((g + 1) * L, lp.out_channels))
                                if not any(le.channel_mask[c] for c in chans):
                                    continue
                                words.append(sum(int(spikes[lp.index][0, t, c, y, x]) << (c - g * L)
                                                 for c in chans))
            count = sum(bin(w).count("1") for w in words)
            assert got[(lp.index, t)] == (crc32_stream(L, words), count)


def test_work_counters_are_checked_against_golden():
    """The signature record's work counters: decoded from their fields and compared with
    golden.step_work per (layer, step); a wrong counter is a mismatch, in the skipping core."""
    cfg = config_from_dict(TINY, "tiny")
    p = CoreParams(cfg)
    net = random_export(cfg, 6, pruning=False)
    x = random_inputs(net, 1, 3, density=0.5)
    ref = golden.run(net, x)
    work = golden.step_work(net, ref, p.lanes)
    sigs = expected_signatures(p, net, ref, 0)
    dec = RecordDecoder(p, net)
    for lp in p.spiking_layers:
        for t in range(p.timesteps):
            counts = {k: int(work[lp.index][k][0, t]) for k in COUNTERS}
            if (lp.index, t) == (1, 0):
                counts["events"] += 1                 # one wrong counter
            crc, spikes = sigs[(lp.index, t)]
            data = pack_fields(signature_fields(p), crc=crc, spikes=spikes, **counts)
            dec.add(pack_fields(record_fields(p), kind=KIND_SIGNATURE, layer=lp.index, step=t,
                                data=data))
    assert dec.signatures == sigs
    bad = counter_mismatches(ref, 0, dec)
    assert [key for key, _, _ in bad] == [(1, 0)]
    assert bad[0][2][0] == bad[0][1][0] + 1
