"""The list API's words as Python strings, made once each: ``cut(text)`` without a new str per word.

Finding the words of a 30-character line takes the kernels well under a microsecond; returning them
as a list of new strings (a slice each, or ``str.split``) costs ~40 ns a word, and a call's fixed
cost (passing a dozen arrays into Numba, boxing the results) more than the rest. So:

- Every distinct word gets one ``str``, kept in a table by *slot*: slots ``0..0xFFFF`` hold the
  single characters of the BMP, then the empty string, then up to :data:`EXTRA_WORDS` words
  outside the dictionary (the HMM's words, ASCII runs: with the HMM on, one token in ten of the
  novels, 85,552 distinct words), then the dictionary's words by word id, each filled the first
  time the word is met. A kernel gives each token's slot and one numpy ``take`` builds the list
  (an INCREF per word instead of an allocation). The words outside the dictionary are found in a
  trie of their own that grows as they are met (a batch of words at a time; a word waiting for
  it is served from its slot); a token still without a slot is sliced from the text.
- A segmenter's kernel arguments travel as one :class:`SegState` (a Numba structref): one pointer
  to unbox per call instead of a dozen arrays.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

import numpy as np
from numba import njit, types
from numba.experimental import structref

from zhtext.lexical.trie import Trie, empty_trie, grows, trie_insert, trie_walk

CHARS = 0x10000  # slots of the BMP's single characters
EMPTY = CHARS  # the slot of "" (full mode's empty pieces; placeholder for tokens to be sliced)
EXTRA = CHARS + 1  # the slot of the first word outside the dictionary
EXTRA_WORDS = 1 << 18  # words outside the dictionary given a slot (2 MiB of the table), at most
PENDING = 256  # such words waiting for the trie the kernels read, at most (WordTable._remember)
PENDING_HITS = 64  # times waiting words are met before they are inserted, at most
BASE = EXTRA + EXTRA_WORDS  # the slot of word id 0
LOOKUP = -2  # a token's word id not known yet: walk the trie for it
NO_IDS = np.empty(0, dtype=np.int32)  # no word ids known: every token is looked up


@structref.register
class SegStateType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class SegState(structref.StructRefProxy):
    """A segmenter's kernel arguments for one HMM setting (made by :func:`make_state`)."""


_FIELDS = ("classes", "root", "table", "bloom", "word", "weight", "shift", "floor", "use_hmm",
           "start_p", "trans_p", "emit_p", "force", "known", "xroot", "xtable", "xbloom",
           "xword")  # fmt: skip
structref.define_proxy(SegState, SegStateType, list(_FIELDS))


@njit(cache=True)
def _make_state(classes, root, table, bloom, word, weight, shift, floor, use_hmm, start_p, trans_p,
                emit_p, force, known, xroot, xtable, xbloom, xword):  # fmt: skip
    # Built by a cached kernel: the proxy's own constructor compiles anew in every process (~0.6 s).
    return SegState(classes, root, table, bloom, word, weight, shift, floor, use_hmm, start_p,
                    trans_p, emit_p, force, known, xroot, xtable, xbloom, xword)  # fmt: skip


def make_state(classes, trie, shift: float, floor: float, use_hmm: bool, hmm, force,
               table: WordTable) -> SegState:
    """The :class:`SegState` of a trie's first five arrays, the route's ``shift``/``floor``, the
    HMM tables ``(start, trans, emit)``, the forced splits and the word table's ``known`` flags
    and trie of words outside the dictionary."""
    return _make_state(classes, *trie[:5], float(shift), float(floor), bool(use_hmm), *hmm, force,
                       table.known, *table.extra[:4])  # type: ignore[index]  # fmt: skip


@njit(cache=True, nogil=True)
def fill_slots(codes, starts, ends, ids, n, root, table, bloom, word, known, xroot, xtable,
               xbloom, xword, res):  # fmt: skip
    """The slot of each token ``codes[starts[t]:ends[t]]`` (``t < n``) into ``res[:n]``; a token
    without one gets :data:`EMPTY` there, and ``(t, start, end, word id or -1)`` after ``res[n:]``,
    4 entries each (the word id: a dictionary word whose string is not made yet; -1: a word
    outside the dictionary not in the ``x`` trie yet). Returns the number of such tokens.
    ``ids[t]``, unless ``ids`` is empty or it is :data:`LOOKUP`, is the token's word id as the
    route found it (the trie is walked only for the others)."""
    has_ids = ids.shape[0] > 0
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
        if has_ids and ids[t] != LOOKUP:
            w = ids[t]
        else:
            node = trie_walk(root, table, bloom, codes, a, b)
            w = word[node] if node >= 0 else -1
        if w >= known.shape[0]:
            w = -1  # added after the table was sized: sliced every time
        if w >= 0 and known[w]:
            res[t] = BASE + w
            continue
        if w < 0:
            node = trie_walk(xroot, xtable, xbloom, codes, a, b)
            if node >= 0 and xword[node] >= 0:
                res[t] = EXTRA + xword[node]
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
def span_slots(codes, spans, n, root, table, bloom, word, known, xroot, xtable, xbloom, xword,
               res):  # fmt: skip
    """:func:`fill_slots` of tokens given as rows ``(start, end, ...)`` of ``spans``."""
    none = np.empty(0, dtype=np.int32)  # not known: every token is looked up
    return fill_slots(codes, spans[:, 0], spans[:, 1], none, n, root, table, bloom, word, known,
                      xroot, xtable, xbloom, xword, res)  # fmt: skip


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
    """The strings by slot, ``known``: which word ids' strings are made, and ``extra``: the trie
    of the words outside the dictionary that have a slot (both read by the kernels).

    ``on_change`` is called when ``extra`` is replaced by a larger trie: kernel arguments holding
    the old one must then be made again (they stay safe to use, only blind to the newer words).
    """

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self.strings = np.empty(0, dtype=object)
        self.known = np.zeros(0, dtype=np.uint8)
        self.extra: Trie | None = None  # made with the strings, by the first fit
        self._extras = 0  # words outside the dictionary with a slot (in extra, or pending)
        self._pending: dict[str, int] = {}  # such words not yet in extra, and their slots
        self._pending_hits = 0  # times pending words were met since the last insertion
        self._on_change = on_change
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
            self.extra = empty_trie()
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
        room = self._extras < EXTRA_WORDS  # past the cap, such words are only sliced
        pending = self._pending
        fresh: dict[str, None] = {}
        hits = 0
        for t, a, b, w in zip(fixes, fixes, fixes, fixes):
            word = text[a:b]
            if w >= 0:  # a dictionary word met for the first time: its string from now on
                words[t] = word
                self.strings[BASE + w] = word
                self.known[w] = 1
                continue
            slot = pending.get(word)
            if slot is not None:  # given a slot, not yet in the trie the kernels read
                words[t] = self.strings[slot]
                hits += 1
            else:
                words[t] = word
                if room:
                    fresh[word] = None
        if fresh or hits:
            self._remember(list(fresh), hits)
        return words

    def _remember(self, words: list[str], hits: int = 0) -> None:
        """Give ``words`` (outside the dictionary, not in ``extra``) slots, while there is room.

        Each word has its slot at once, but goes into ``extra`` (where the kernels find it) with
        others: when :data:`PENDING` words wait, or when waiting words were met
        :data:`PENDING_HITS` times (``hits``: this call's). Inserting a line's few new words
        one line at a time cost ~16 us a line, a fifth of a first pass over the novels.

        Kernels in other threads may be reading ``extra`` meanwhile: each string is in place
        before its word id is, a word is added in place only where no array moves (a reader then
        finds the word or misses it), and ``root``, which the insertion writes in place, is copied
        before the other arrays move (a reader's old arrays then stay consistent).
        """
        with self._lock:
            pending = self._pending
            words = [w for w in words if w not in pending][: EXTRA_WORDS - self._extras]
            first = self._extras
            for k, word in enumerate(words):
                self.strings[EXTRA + first + k] = word
                pending[word] = EXTRA + first + k
            self._extras = first + len(words)
            self._pending_hits += hits
            if pending and (len(pending) >= PENDING or self._pending_hits >= PENDING_HITS):
                self._insert_pending()

    def _insert_pending(self) -> None:
        """Put the words waiting for ``extra`` into it (their slots are consecutive)."""
        words = list(self._pending)
        trie = self.extra
        if grows(trie, sum(map(len, words))):
            trie = trie._replace(root=trie.root.copy())
        trie, _ = trie_insert(trie, words, np.zeros(len(words)), self._pending[words[0]] - EXTRA)
        self._pending.clear()
        self._pending_hits = 0
        if trie is not self.extra:
            self.extra = trie
            if self._on_change is not None:
                self._on_change()
