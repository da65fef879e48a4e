"""UTF-8 bytes to codepoints and back in Numba, without the GIL.

``zhtext segment`` on a UTF-8 file hands each block of raw bytes to the kernels: decoding,
segmenting and encoding the output then all release the GIL, so threads on blocks scale with the
cores (Python's codecs hold the GIL, and on a 2-core machine they were a third of the work).

Decoding is strict exactly as CPython's ``utf-8`` codec: the same bytes are refused (overlong
forms, surrogates, anything above U+10FFFF, stray continuation bytes), and the first refused byte
is reported where the codec reports it, the start of the bad sequence.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from zhtext.errors import ZhtextError

__all__ = ["Utf8Error", "decode_utf8", "encode_utf8"]


class Utf8Error(ZhtextError):
    """Bytes that are not UTF-8, at ``offset`` in the stream of chunks they came in (a character
    only cut short by the end of the stream: ``truncated``); the reader of a named input turns it
    into its own message (:meth:`~zhtext.io.reading.RawText.decode_error`)."""

    def __init__(self, offset: int, truncated: bool = False):
        what = "truncated character" if truncated else "cannot decode byte"
        super().__init__(f"{what} at byte offset {offset} (utf-8)")
        self.offset = offset
        self.truncated = truncated


@njit(cache=True, nogil=True)
def _tail_ok(data, i, lead):
    """Whether ``data[i]``, the byte after ``lead``, may follow it (its narrower ranges)."""
    b = data[i]
    if lead == 0xE0:
        return 0xA0 <= b <= 0xBF
    if lead == 0xED:
        return 0x80 <= b <= 0x9F
    if lead == 0xF0:
        return 0x90 <= b <= 0xBF
    if lead == 0xF4:
        return 0x80 <= b <= 0x8F
    return 0x80 <= b <= 0xBF


@njit(cache=True, nogil=True)
def _decode_kernel(data, out):
    """Decode ``data`` into ``out`` (room for ``len(data)``); returns ``(n, bad, truncated)``:
    ``n`` codepoints, and ``bad`` the offset of the first refused sequence (-1: none), which is
    ``truncated`` when it only lacks bytes at the end of ``data``."""
    size = data.shape[0]
    i = 0
    n = 0
    while i < size:
        b = data[i]
        if b < 0x80:
            out[n] = b
            n += 1
            i += 1
            continue
        if 0xC2 <= b <= 0xDF:
            need, cp = 1, b & 0x1F
        elif 0xE0 <= b <= 0xEF:
            need, cp = 2, b & 0x0F
        elif 0xF0 <= b <= 0xF4:
            need, cp = 3, b & 0x07
        else:
            return n, i, False
        if b == 0xED and i + 2 == size and 0xA0 <= data[i + 1] <= 0xBF:
            # half a surrogate at the very end: CPython's incremental decoder waits for more
            # (for surrogatepass), so a file ending so is "truncated" to the reader
            return n, i, True
        for k in range(1, need + 1):
            if i + k >= size:
                return n, i, True
            if not (_tail_ok(data, i + 1, b) if k == 1 else 0x80 <= data[i + k] <= 0xBF):
                return n, i, False
            cp = (cp << 6) | (data[i + k] & 0x3F)
        out[n] = cp
        n += 1
        i += need + 1
    return n, -1, False


def decode_utf8(data: np.ndarray) -> tuple[np.ndarray, int, bool]:
    """The ``int32`` codepoints of the UTF-8 bytes ``data`` (``uint8``), the offset of the first
    byte CPython's strict codec refuses (-1: none) and whether that sequence is only cut short by
    the end of ``data``; the codepoints stop before it."""
    out = np.empty(data.shape[0], dtype=np.int32)
    n, bad, truncated = _decode_kernel(data, out)
    return out[:n], bad, truncated


@njit(cache=True, nogil=True)
def _encode_kernel(codes, out):
    n = 0
    for i in range(codes.shape[0]):
        c = codes[i]
        if c < 0x80:
            out[n] = c
            n += 1
        elif c < 0x800:
            out[n] = 0xC0 | (c >> 6)
            out[n + 1] = 0x80 | (c & 0x3F)
            n += 2
        elif c < 0x10000:
            out[n] = 0xE0 | (c >> 12)
            out[n + 1] = 0x80 | ((c >> 6) & 0x3F)
            out[n + 2] = 0x80 | (c & 0x3F)
            n += 3
        else:
            out[n] = 0xF0 | (c >> 18)
            out[n + 1] = 0x80 | ((c >> 12) & 0x3F)
            out[n + 2] = 0x80 | ((c >> 6) & 0x3F)
            out[n + 3] = 0x80 | (c & 0x3F)
            n += 4
    return n


def encode_utf8(codes: np.ndarray) -> np.ndarray:
    """The UTF-8 bytes (``uint8``) of the codepoints ``codes``; a surrogate is written as
    ``surrogatepass`` writes it (decoded input never holds one)."""
    out = np.empty(4 * codes.shape[0], dtype=np.uint8)
    return out[: _encode_kernel(codes, out)]
