"""Lexicon features per character, for lexicon-aware tagging (after SoftLexicon, Ma et al. 2020).

For each character of a text, the lexicon words that occur in the text and **B**egin at it,
continue through it (**M**iddle), **E**nd at it, or are it (**S**ingle: a one-character word) form
four sets. Each set is summarised by which word lengths (2, 3, 4, 5+; the S set's only length is
1) and which frequency quartiles (of the lexicon's counts) it holds: a multi-hot vector of
:data:`FEATURE_DIM` = 4 sets x (4 lengths + 4 frequency buckets) entries, which tells the tagger
where words start and end and how long and common they are.

With ``slots`` > 0 the words themselves come too, as SoftLexicon pools their embeddings: for
each set its ``slots`` most frequent words (ids by falling count, ``0``: none) and their
weights, ``log(1 + count)`` normalised as in the paper (4 x weight / the sum over the four sets),
appended to the marks (:meth:`LexiconFeatures.__call__`). The tagger looks the ids up in an
embedding table with rows for the words its training texts hold only (one shared row for the
rest), so a jieba-sized lexicon costs rows for the few thousand words it meets, not 349k.

Matching walks the lexicon's :mod:`~zhtext.lexical.trie` from every position in one Numba kernel;
:meth:`LexiconFeatures.window` gives a window's rows exactly as the whole text's (words crossing
its edges included) by matching over a margin of the longest word around it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from numba import njit

from zhtext.errors import ZhtextError
from zhtext.lexical.chars import to_codes
from zhtext.lexical.lexicon import Lexicon
from zhtext.lexical.trie import Trie, build_trie, trie_child

__all__ = ["FEATURE_DIM", "LEXICON_FILE", "WORD_SLOTS", "LexiconFeatures", "read_lexicon"]

SETS = "BMES"
N_LENGTHS = 4  # word lengths 2, 3, 4, 5+ (S: 1)
N_FREQ = 4  # quartiles of the lexicon's counts
PER_SET = N_LENGTHS + N_FREQ
FEATURE_DIM = len(SETS) * PER_SET
LEXICON_FILE = "lexicon.tsv"  # the lexicon inside a model folder, counts kept
WORD_SLOTS = 4  # words per set and character that a tagger with word embeddings sees


@njit(cache=True, nogil=True)
def _features_kernel(root, table, bloom, word, freq, weight, codes, out, ids, weights):
    """For every lexicon word occurring in ``codes``, mark in ``out[pos, :]`` the B/M/E/S length
    and frequency bits it gives each position it covers; with word slots (``ids.shape[2]`` > 0),
    also keep in ``ids[pos, set, :]`` the ids + 1 of each set's most frequent words (a lower id is
    a more frequent word) and in ``weights`` their ``weight`` x 4 / the sum of the weights of
    every word in the four sets. All outputs are zeros on entry."""
    n = codes.shape[0]
    slots = ids.shape[2]
    total = np.zeros(n if slots else 0)
    for i in range(n):
        node = root[codes[i]]
        j = i
        while node >= 0:
            w = word[node]
            if w >= 0:
                f = N_LENGTHS + freq[w]
                ln = 0 if j == i else min(j - i + 1, 5) - 2  # (the S set's one length: bit 0)
                for k in range(i, j + 1):
                    s = 3 if j == i else 0 if k == i else 2 if k == j else 1
                    out[k, s * PER_SET + ln] = 1
                    out[k, s * PER_SET + f] = 1
                    if slots:
                        total[k] += weight[w]
                        v = w + 1  # into the set's ascending ids; the largest falls out
                        for m in range(slots):
                            cur = ids[k, s, m]
                            if cur == 0 or v < cur:
                                ids[k, s, m] = v
                                if cur == 0:
                                    break
                                v = cur
            j += 1
            if j >= n:
                break
            node = trie_child(table, bloom, node, codes[j])
    for k in range(total.shape[0]):
        if total[k] > 0:
            for s in range(len(SETS)):
                for m in range(slots):
                    v = ids[k, s, m]
                    if v > 0:
                        weights[k, s, m] = 4.0 * weight[v - 1] / total[k]


def _round_trips(word: str) -> bool:
    """Whether ``word`` survives a TSV save and :meth:`Lexicon.load` unchanged."""
    return bool(word) and word.strip() == word and not word.startswith(("#", "\ufeff")) and \
        "\t" not in word and "\n" not in word and "\r" not in word


class LexiconFeatures:
    """A lexicon turned into per-character features (see the module docstring), with the words
    of ``slots`` per set (0: the marks only).

    Words with a count of zero are left out (they are never matched), and so are words a TSV file
    cannot hold (leading or trailing whitespace, tabs, a leading ``#``), so that a saved lexicon
    loads back to the same features. Word ids follow falling count (ties by word), so they are
    the same after a save and load.
    """

    def __init__(self, lexicon: Lexicon, slots: int = 0):
        if slots < 0:
            raise ZhtextError(f"word slots must be >= 0, not {slots}")
        counts = dict(Lexicon({w: c for w, c in lexicon.counts.items()
                               if c > 0 and _round_trips(w)}).most_common())
        if not counts:
            raise ZhtextError("the lexicon holds no words with a count above zero")
        if slots and len(counts) >= 1 << 24:  # ids travel in float32 feature rows: exact below 2^24
            raise ZhtextError(f"a lexicon of {len(counts)} words is too large for word slots "
                              "(at most 16,777,215)")
        self.lexicon = Lexicon(counts)
        self.slots = slots
        self.dim = FEATURE_DIM + 2 * len(SETS) * slots  # marks, then ids, then weights
        words = list(counts)
        values = np.fromiter(counts.values(), dtype=np.float64, count=len(words))
        self.weight = np.log1p(values)
        # Frequency buckets: quartiles of the counts, so jieba's and discovery's scales compare.
        edges = np.quantile(values, [0.25, 0.5, 0.75])
        self.freq = np.searchsorted(edges, values, side="right").astype(np.int8)
        self.trie: Trie = build_trie(words, np.zeros(len(words)))
        self.max_word = max(len(w) for w in words)

    def __len__(self) -> int:
        return len(self.lexicon)

    def __call__(self, text: str) -> np.ndarray:
        """The features of each character of ``text``: ``uint8[len(text), FEATURE_DIM]`` marks,
        or with word slots ``float32[len(text), dim]``: the marks, then :meth:`word_slots`' ids
        and weights, each flattened set by set."""
        codes = to_codes(text)
        n = len(text)
        marks, ids, weights = self._match(codes)
        if not self.slots:
            return marks
        return np.concatenate([marks.astype(np.float32), ids.reshape(n, -1).astype(np.float32),
                               weights.reshape(n, -1)], axis=1)

    def _match(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = codes.shape[0]
        marks = np.zeros((n, FEATURE_DIM), dtype=np.uint8)
        ids = np.zeros((n, len(SETS), self.slots), dtype=np.int32)
        weights = np.zeros((n, len(SETS), self.slots), dtype=np.float32)
        if n:
            t = self.trie
            _features_kernel(t.root, t.table, t.bloom, t.word, self.freq, self.weight, codes,
                             marks, ids, weights)
        return marks, ids, weights

    def word_slots(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each character of the codepoints ``codes`` and each set B/M/E/S: the ids + 1 of its
        ``slots`` most frequent words (``int32[n, 4, slots]``, ``0``: no word) and their weights
        (``float32[n, 4, slots]``)."""
        return self._match(codes)[1:]

    def seen(self, texts: Iterable[str]) -> np.ndarray:
        """The ids (sorted) of the words that :meth:`word_slots` gives somewhere in ``texts``:
        those a tagger trained on them has learned an embedding for."""
        found = [np.unique(self.word_slots(to_codes(text))[0]) for text in texts if text]
        ids = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int32)
        return (ids[ids > 0] - 1).astype(np.int64)

    def window(self, text: str, start: int, end: int) -> np.ndarray:
        """The rows ``start:end`` of ``self(text)``, matched over only a margin around them."""
        begin = max(0, start - self.max_word + 1)
        return self(text[begin : min(len(text), end + self.max_word - 1)])[start - begin :
                                                                             end - begin]

    def save(self, directory: str | os.PathLike) -> None:
        """Write the lexicon (words and counts) as :data:`LEXICON_FILE` in ``directory``."""
        self.lexicon.save(Path(directory) / LEXICON_FILE)

    @classmethod
    def load(cls, directory: str | os.PathLike, slots: int = 0) -> LexiconFeatures:
        """The features of the lexicon :meth:`save` wrote to ``directory``."""
        path = Path(directory) / LEXICON_FILE
        if not path.is_file():
            raise ZhtextError(f"{directory} has no {LEXICON_FILE}: the tagger's lexicon is missing")
        return cls(Lexicon.load(path, fmt="tsv"), slots)


def read_lexicon(spec: str | os.PathLike | Lexicon, slots: int = 0) -> LexiconFeatures:
    """Features (with ``slots`` words per set) of a :class:`Lexicon`, of a lexicon file (a
    discovered TSV or a jieba-format dictionary), or of ``"jieba"``: jieba's own dictionary."""
    if isinstance(spec, Lexicon):
        return LexiconFeatures(spec, slots)
    if str(spec) == "jieba":
        return LexiconFeatures(Lexicon.jieba_default(), slots)
    if not Path(spec).is_file():
        raise ZhtextError(f"lexicon not found: {spec}")
    lexicon = Lexicon.load(spec)  # a malformed line fails here, naming the file and line
    if not any(count > 0 for count in lexicon.counts.values()):
        raise ZhtextError(f"lexicon {spec} holds no words with a count above zero")
    return LexiconFeatures(lexicon, slots)
