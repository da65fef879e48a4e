"""Character classes and the codepoint arrays that the Numba kernels work on.

Every kernel sees text as ``int32`` codepoints and looks characters up in one class table, so that
discovery and segmentation agree on what a Chinese character is. The Han range is jieba's
(U+4E00..U+9FD5): a lexicon discovered here then segments the same way in zhtext and in jieba.
"""

from __future__ import annotations

import codecs

import numpy as np

HAN_FIRST, HAN_LAST = 0x4E00, 0x9FD5

OTHER = 0  # punctuation, symbols, other scripts: one token each
HAN = 1  # Chinese characters: where words are found
ALNUM = 2  # ASCII letters and digits: runs stay one token
JOINER = 3  # + # & . _ % -: may sit inside dictionary words (as in jieba), never start a fragment
SPACE = 4  # whitespace: its own token

_JOINERS = "+#&._%-"


def _build_classes() -> np.ndarray:
    table = np.zeros(0x110000, dtype=np.uint8)
    table[HAN_FIRST : HAN_LAST + 1] = HAN
    for lo, hi in ((ord("0"), ord("9")), (ord("a"), ord("z")), (ord("A"), ord("Z"))):
        table[lo : hi + 1] = ALNUM
    for ch in _JOINERS:
        table[ord(ch)] = JOINER
    # str.isspace() is what Python's re \s matches; every such character lies below U+3001.
    for cp in range(0x3001):
        if chr(cp).isspace():
            table[cp] = SPACE
    return table


CHAR_CLASS: np.ndarray = _build_classes()


def char_class(ch: str) -> int:
    """The class (OTHER, HAN, ALNUM, JOINER, SPACE) of one character."""
    return int(CHAR_CLASS[ord(ch)])


def is_han(ch: str) -> bool:
    """True for a character in the Han range that words are built from."""
    return HAN_FIRST <= ord(ch) <= HAN_LAST


def to_codes(text: str) -> np.ndarray:
    """The codepoints of ``text`` as an ``int32`` array (lone surrogates pass through)."""
    try:
        data = _encode(text)[0]  # the codec function itself: str.encode's lookup costs 3x as much
    except UnicodeEncodeError:
        data = _encode(text, "surrogatepass")[0]
    return np.frombuffer(data, _INT32)


def from_codes(codes: np.ndarray) -> str:
    """Inverse of :func:`to_codes`."""
    data = np.ascontiguousarray(codes, dtype=np.int32).tobytes()
    try:
        return _decode(data)[0]
    except UnicodeDecodeError:
        return _decode(data, "surrogatepass")[0]


_encode, _decode = codecs.utf_32_le_encode, codecs.utf_32_le_decode
_INT32 = np.dtype(np.int32)  # a dtype object: np.frombuffer converts ``np.int32`` on every call


def join_lines(lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate lines into one codepoint array plus ``int64`` offsets (len(lines) + 1 of them).

    Encoding the joined string once is far cheaper than one array per line; one line, the usual
    call of a ``cut(text)``, skips the joining altogether.
    """
    if len(lines) == 1:
        codes = to_codes(lines[0])
        return codes, np.array((0, codes.shape[0]), dtype=np.int64)
    offsets = np.zeros(len(lines) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, lines), dtype=np.int64, count=len(lines)), out=offsets[1:])
    return to_codes("".join(lines)), offsets


def free_char(text: str) -> str | None:
    """A character that does not occur in ``text`` (to split a joined output on), or None."""
    for ch in _SEPARATORS:
        if ch not in text:
            return ch
    return None


# Control characters first (text almost never holds them), then private-use ones.
_SEPARATORS = "\x00\x01\x02\x03\x04\x05\x06\x07\ue000\ue001\ue002\ue003"
