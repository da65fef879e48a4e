"""Character classes and the codepoint arrays that the Numba kernels work on.

Every kernel sees text as ``int32`` codepoints and looks characters up in one class table, so that
discovery and segmentation agree on what a Chinese character is. The Han range is jieba's
(U+4E00..U+9FD5): a lexicon discovered here then segments the same way in zhtext and in jieba.
"""

from __future__ import annotations

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
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.int32)


def from_codes(codes: np.ndarray) -> str:
    """Inverse of :func:`to_codes`."""
    return np.ascontiguousarray(codes, dtype=np.int32).tobytes().decode("utf-32-le", "surrogatepass")


def join_lines(lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate lines into one codepoint array plus ``int64`` offsets (len(lines) + 1 of them).

    Encoding the joined string once is far cheaper than one array per line.
    """
    lengths = np.fromiter((len(s) for s in lines), dtype=np.int64, count=len(lines))
    offsets = np.zeros(len(lines) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return to_codes("".join(lines)), offsets
