"""A machine-readable stamp in a frame's top-left corner: which chunk made the frame, and with which parameters.

Tests read it from frames received over WebRTC to see which message a frame shows. The block is 16 x 4 cells of
8 x 8 pixels (128 x 32 pixels). Its 64 bits, row-major and most significant first, are the magic byte 0xA5, then
the chunk index modulo 2**24, then a 32-bit digest of the parameters the chunk used. A 1 is a white cell, a 0 a
black one; reading takes the mean luminance of each cell's inner 4 x 4 pixels, so the stamp survives VP8 or H.264
at a few Mbit/s. This module imports numpy only, so a copy can live in a Scope plugin (the probe pipeline) and stamp
frames in exactly the same format.

This file is that copy of metadj_bridge/emulator/stamp.py, same format and same code. The probe plugin
must not import metadj_bridge (it runs inside Scope's own environment); tests/test_scope_probe.py checks that
both copies draw identical pixels and read each other's stamps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy

CELL = 8
COLS = 16
ROWS = 4
MAGIC = 0xA5

_BITS = COLS * ROWS
_WIDTH = CELL * COLS
_HEIGHT = CELL * ROWS
_INNER = (CELL - 4) // 2  # offset of the inner 4 x 4 pixels inside a cell
_LUMA = numpy.array([0.299, 0.587, 0.114])


def params_digest(params: Mapping[str, Any]) -> int:
    """The first 32 bits (big-endian) of the SHA-1 of the parameters as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:4], "big")


def _word(chunk_index: int, digest: int) -> int:
    """The 64-bit value the stamp carries."""
    return (MAGIC << 56) | ((chunk_index % (1 << 24)) << 32) | (digest & 0xFFFFFFFF)


def draw_stamp(rgb: numpy.ndarray, chunk_index: int, digest: int) -> None:
    """Draw the stamp in place on an (H, W, 3) uint8 frame with H >= 32 and W >= 128."""
    height, width = rgb.shape[:2]
    if height < _HEIGHT or width < _WIDTH:
        raise ValueError(f"a stamp needs a frame of at least {_WIDTH}x{_HEIGHT} pixels, not {width}x{height}")
    word = _word(chunk_index, digest)
    bits = numpy.array([(word >> (_BITS - 1 - i)) & 1 for i in range(_BITS)], dtype=numpy.uint8)
    cells = (bits.reshape(ROWS, COLS) * 255).astype(numpy.uint8)
    block = numpy.repeat(numpy.repeat(cells, CELL, axis=0), CELL, axis=1)
    rgb[:_HEIGHT, :_WIDTH, :] = block[:, :, None]


def read_stamp(rgb: numpy.ndarray) -> tuple[int, int] | None:
    """The (chunk_index, digest) a frame carries, or None when it is too small or carries no stamp."""
    if rgb.ndim != 3 or rgb.shape[0] < _HEIGHT or rgb.shape[1] < _WIDTH or rgb.shape[2] < 3:
        return None
    block = rgb[:_HEIGHT, :_WIDTH, :3].astype(numpy.float64) @ _LUMA
    inner = block.reshape(ROWS, CELL, COLS, CELL)[:, _INNER : _INNER + 4, :, _INNER : _INNER + 4]
    means = inner.mean(axis=(1, 3))
    word = 0
    for bit in (means >= 128).reshape(-1):
        word = (word << 1) | int(bit)
    if word >> 56 != MAGIC:
        return None
    return (word >> 32) & 0xFFFFFF, word & 0xFFFFFFFF
