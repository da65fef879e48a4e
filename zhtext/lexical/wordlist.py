"""The list API's words as Python strings, made once each: ``cut(text)`` without a new str per word.

Finding the words of a 30-character line takes the kernels well under a microsecond; returning them
as a list of new strings (a slice each, or ``str.split``) costs ~40 ns a word, and a call's fixed
cost (passing a dozen arrays into Numba, boxing the results) more than the rest. So:

- Every distinct word gets one ``str``, kept in a table by *slot*: slots ``0..0xFFFF`` hold the
  single characters of the BMP, then the empty string, then the dictionary's words by word id,
  each filled the first time the word is met. A kernel gives each token's slot and one numpy
  ``take`` builds the list (an INCREF per word instead of an allocation). Tokens without a slot
  (HMM words outside the dictionary, ASCII runs, astral characters) are sliced from the text.
- A segmenter's kernel arguments travel as one :class:`SegState` (a Numba structref): one pointer
  to unbox per call instead of a dozen arrays.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
from numba import njit, types
from numba.experimental import structref

from zhtext.lexical.trie import trie_walk

CHARS = 0x10000  # slots of the BMP's single characters
EMPTY = CHARS  # the slot of "" (full mode's empty pieces; placeholder for tokens to be sliced)
BASE = CHARS + 1  # the slot of word id 0


@structref.register
class SegStateType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class SegState(structref.StructRefProxy):
    """A segmenter's kernel arguments for one HMM setting (made by :func:`make_state`)."""


_FIELDS = ("classes", "root", "table", "bloom", "word", "weight", "shift", "floor", "use_hmm",
           "start_p", "trans_p", "emit_p", "force", "known")  # fmt: skip
structref.define_proxy(SegState, SegStateType, list(_FIELDS))


@njit(cache=True)
def _make_state(classes, root, table, bloom, word, weight, shift, floor, use_hmm, start_p, trans_p,
                emit_p, force, known):  # fmt: skip
    # Built by a cached kernel: the proxy's own constructor compiles anew in every process (~0.6 s).
    return SegState(classes, root, table, bloom, word, weight, shift, floor, use_hmm, start_p,
                    trans_p, emit_p, force, known)  # fmt: skip


def make_state(classes, trie, shift: float, floor: float, use_hmm: bool, hmm, force, known) -> SegState:
    """The :class:`SegState` of a trie's first five arrays, the route's ``shift``/``floor``, the
    HMM tables ``(start, trans, emit)``, the forced splits and the table's ``known`` flags."""
    return _make_state(classes, *trie[:5], float(shift), float(floor), bool(use_hmm), *hmm, force,
                       known)  # fmt: skip


@njit(cache=True, nogil=True)
def fill_slots(codes, starts, ends, n, root, table, bloom, word, known, res):
    """The slot of each token ``codes[starts[t]:ends[t]]`` (``t < n``) into ``res[:n]``; a token
    without one gets :data:`EMPTY` there, and ``(t, start, end, word id or -1)`` after ``res[n:]``,
    4 entries each (the word id: a dictionary word whose string is not made yet). Returns the
    number of such tokens."""
    n_fix = 0
    for t in range(n):
        a = starts[t]
        b = ends[t]
        if b - a == 1 and codes[a] < CHARS:
            res[t] = codes[a]
            continue
        if b == a:
            res[t] = EMPTY
            continue
        node = trie_walk(root, table, bloom, codes, a, b)
        w = word[node] if node >= 0 else -1
        if w >= known.shape[0]:
            w = -1  # added after the table was sized: sliced every time
        if w >= 0 and known[w]:
            res[t] = BASE + w
            continue
        res[t] = EMPTY
        q = n + 4 * n_fix
        res[q] = t
        res[q + 1] = a
        res[q + 2] = b
        res[q + 3] = w
        n_fix += 1
    return n_fix


@njit(cache=True, nogil=True)
def span_slots(codes, spans, n, root, table, bloom, word, known, res):
    """:func:`fill_slots` of tokens given as rows ``(start, end, ...)`` of ``spans``."""
    return fill_slots(codes, spans[:, 0], spans[:, 1], n, root, table, bloom, word, known, res)


class _Scratch(threading.local):
    """A buffer per thread (the list API's kernels run without the GIL; a segmenter may be shared
    by threads), for kernels to write into: a new array boxed per call costs more than a short
    line's whole segmentation."""

    def __init__(self) -> None:
        self.buf = np.empty(1 << 12, dtype=np.int64)


SCRATCH = _Scratch()


def scratch(size: int) -> np.ndarray:
    """This thread's scratch buffer, grown to at least ``size`` entries."""
    if SCRATCH.buf.shape[0] < size:
        SCRATCH.buf = np.empty(max(size, 2 * SCRATCH.buf.shape[0]), dtype=np.int64)
    return SCRATCH.buf


@functools.cache
def _bmp() -> list[str]:
    return [chr(c) for c in range(CHARS)]


class WordTable:
    """The strings by slot, and ``known``: which word ids' strings are made (read by the kernels)."""

    def __init__(self) -> None:
        self.strings = np.empty(0, dtype=object)
        self.known = np.zeros(0, dtype=np.uint8)
        self._lock = threading.Lock()  # threads sharing a segmenter may size it at once

    def fit(self, n_words: int) -> bool:
        """Room for word ids below ``n_words`` (a quarter more, so that added words rarely regrow
        it); the strings made so far are kept. True if it grew: ``known`` is then a new array, and
        kernel arguments holding the old one must be made again."""
        with self._lock:
            return self._fit(n_words)

    def _fit(self, n_words: int) -> bool:
        have = self.known.shape[0]
        if n_words <= have and self.strings.shape[0]:
            return False
        room = max(n_words, have + have // 4)
        strings = np.empty(BASE + room, dtype=object)
        if self.strings.shape[0]:
            strings[: self.strings.shape[0]] = self.strings
        else:
            strings[:CHARS] = _bmp()
            strings[EMPTY] = ""
        known = np.zeros(room, dtype=np.uint8)
        known[:have] = self.known
        self.strings, self.known = strings, known
        return True

    def words(self, text: str, res: np.ndarray, n: int, n_fix: int) -> list[str]:
        """The ``n`` words of ``text`` whose slots :func:`fill_slots` put in ``res``."""
        if not n_fix:
            return self.strings.take(res[:n]).tolist()
        words = self.strings.take(res[:n]).tolist()
        fixes = iter(res[n : n + 4 * n_fix].tolist())
        for t, a, b, w in zip(fixes, fixes, fixes, fixes):
            words[t] = word = text[a:b]
            if w >= 0:  # a dictionary word met for the first time: its string from now on
                self.strings[BASE + w] = word
                self.known[w] = 1
        return words
