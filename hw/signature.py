"""Spike-stream signatures: CRC-32 and spike counts per (layer, step), shared by core and host.

The signature of one spiking layer at one step is taken over the spike records the core
computes, in its visiting order (docs/HARDWARE.md, "Signature records"): for each record,
the ``lanes`` spike bits, lane 0 first, are fed into a CRC-32 one bit at a time.

The CRC is the common reflected CRC-32 (IEEE 802.3, zlib's ``crc32``): polynomial
0xEDB88320 in reflected form, register preset to 0xFFFFFFFF, each message bit XORed into
the register's bit 0, result inverted. With a multiple of 8 lanes a record's spike word is
exactly ``lanes / 8`` little-endian bytes of zlib's input, so the host can use zlib.

No Amaranth here: the core (hw.core) builds its parallel update from :func:`update_masks`,
the testbench computes expected values with :func:`crc32_bits`.
"""
from __future__ import annotations

import zlib

import numpy as np

CRC_POLY = 0xEDB88320      # reflected 0x04C11DB7
CRC_INIT = 0xFFFFFFFF
CRC_XOROUT = 0xFFFFFFFF
CRC_WIDTH = 32


def crc32_bits(state: int, word: int, nbits: int) -> int:
    """Feed the ``nbits`` low bits of ``word`` (bit 0 first) into the raw CRC register."""
    if nbits % 8 == 0:
        # zlib takes and returns the finalized value: undo and redo the output inversion.
        data = (word & ((1 << nbits) - 1)).to_bytes(nbits // 8, "little")
        return zlib.crc32(data, state ^ CRC_XOROUT) ^ CRC_XOROUT
    for i in range(nbits):
        fb = (state ^ (word >> i)) & 1
        state = (state >> 1) ^ (CRC_POLY if fb else 0)
    return state


def crc32_stream(bits_per_record: int, records) -> int:
    """Finalized CRC-32 of ``records`` (ints, ``bits_per_record`` bits each, in order)."""
    state = CRC_INIT
    for w in records:
        state = crc32_bits(state, w, bits_per_record)
    return state ^ CRC_XOROUT


def crc32_packed(bits_per_record: int, bits) -> int:
    """Finalized CRC-32 of a bit matrix ``bits`` [records, bits_per_record] (NumPy, 0/1).

    Fast path for whole bytes (one zlib call), bitwise otherwise."""
    bits = np.asarray(bits, dtype=np.uint8).reshape(-1, bits_per_record)
    if bits_per_record % 8 == 0:
        data = np.packbits(bits, axis=1, bitorder="little").tobytes()
        return zlib.crc32(data)
    state = CRC_INIT
    for b in bits.reshape(-1):
        fb = (state ^ int(b)) & 1
        state = (state >> 1) ^ (CRC_POLY if fb else 0)
    return state ^ CRC_XOROUT


def update_masks(nbits: int) -> tuple[list[int], list[int]]:
    """The CRC update for ``nbits`` message bits as GF(2) masks.

    The update is linear in (register, message): new register bit ``k`` is
    ``parity(state & state_mask[k]) ^ parity(word & word_mask[k])``. Returns
    (state_mask, word_mask), 32 masks each.
    """
    def step(state, word):
        for i in range(nbits):
            fb = (state ^ (word >> i)) & 1
            state = (state >> 1) ^ (CRC_POLY if fb else 0)
        return state
    state_cols = [step(1 << i, 0) for i in range(CRC_WIDTH)]
    word_cols = [step(0, 1 << j) for j in range(nbits)]
    state_mask = [sum(1 << i for i, col in enumerate(state_cols) if (col >> k) & 1)
                  for k in range(CRC_WIDTH)]
    word_mask = [sum(1 << j for j, col in enumerate(word_cols) if (col >> k) & 1)
                 for k in range(CRC_WIDTH)]
    return state_mask, word_mask
