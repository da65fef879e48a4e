"""Lexicon features per character, for lexicon-aware tagging (after SoftLexicon, Ma et al. 2020).

For each character of a text, the lexicon words that occur in the text and **B**egin at it,
continue through it (**M**iddle), **E**nd at it, or are it (**S**ingle: a one-character word) form
four sets. SoftLexicon pools the embeddings of each set's words, weighted by frequency; here each
set is summarised instead by which word lengths (2, 3, 4, 5+; the S set's only length is 1) and
which frequency quartiles (of the lexicon's counts) it holds: a multi-hot vector of
:data:`FEATURE_DIM` = 4 sets x (4 lengths + 4 frequency buckets) entries. The choice is about cost:
it needs no word-embedding table (a jieba-sized lexicon would add 349k rows to a model of a few
MB), it is a fixed small vector a linear layer turns into an input embedding, and what the
tagger learns from it (where words start and end, how long and common they are) is most of what
the pooled embeddings give a model trained from scratch.

Matching walks the lexicon's :mod:`~zhtext.lexical.trie` from every position in one Numba kernel;
:meth:`LexiconFeatures.window` gives a window's rows exactly as the whole text's (words crossing
its edges included) by matching over a margin of the longest word around it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numba import njit

from zhtext.errors import ZhtextError
from zhtext.lexical.chars import to_codes
from zhtext.lexical.lexicon import Lexicon
from zhtext.lexical.trie import Trie, build_trie, trie_child

__all__ = ["FEATURE_DIM", "LEXICON_FILE", "LexiconFeatures", "read_lexicon"]

SETS = "BMES"
N_LENGTHS = 4  # word lengths 2, 3, 4, 5+ (S: 1)
N_FREQ = 4  # quartiles of the lexicon's counts
PER_SET = N_LENGTHS + N_FREQ
FEATURE_DIM = len(SETS) * PER_SET
LEXICON_FILE = "lexicon.tsv"  # the lexicon inside a model folder, counts kept


@njit(cache=True, nogil=True)
def _features_kernel(root, table, bloom, word, freq, codes, out):
    """Mark in ``out[pos, :]`` (zeros on entry) the B/M/E/S length and frequency bits of every
    lexicon word occurring in ``codes``."""
    n = codes.shape[0]
    for i in range(n):
        node = root[codes[i]]
        j = i
        while node >= 0:
            w = word[node]
            if w >= 0:
                f = N_LENGTHS + freq[w]
                if j == i:  # S
                    out[i, 3 * PER_SET] = 1
                    out[i, 3 * PER_SET + f] = 1
                else:
                    ln = min(j - i + 1, 5) - 2
                    out[i, ln] = 1  # B
                    out[i, f] = 1
                    out[j, 2 * PER_SET + ln] = 1  # E
                    out[j, 2 * PER_SET + f] = 1
                    for k in range(i + 1, j):  # M
                        out[k, PER_SET + ln] = 1
                        out[k, PER_SET + f] = 1
            j += 1
            if j >= n:
                break
            node = trie_child(table, bloom, node, codes[j])


def _round_trips(word: str) -> bool:
    """Whether ``word`` survives a TSV save and :meth:`Lexicon.load` unchanged."""
    return bool(word) and word.strip() == word and not word.startswith(("#", "\ufeff")) and \
        "\t" not in word and "\n" not in word and "\r" not in word


class LexiconFeatures:
    """A lexicon turned into per-character features (see the module docstring).

    Words with a count of zero are left out (they are never matched), and so are words a TSV file
    cannot hold (leading or trailing whitespace, tabs, a leading ``#``), so that a saved lexicon
    loads back to the same features.
    """

    def __init__(self, lexicon: Lexicon):
        counts = {w: c for w, c in lexicon.counts.items() if c > 0 and _round_trips(w)}
        if not counts:
            raise ZhtextError("the lexicon holds no words with a count above zero")
        self.lexicon = Lexicon(counts)
        words = list(counts)
        values = np.fromiter(counts.values(), dtype=np.float64, count=len(words))
        # Frequency buckets: quartiles of the counts, so jieba's and discovery's scales compare.
        edges = np.quantile(values, [0.25, 0.5, 0.75])
        self.freq = np.searchsorted(edges, values, side="right").astype(np.int8)
        self.trie: Trie = build_trie(words, np.zeros(len(words)))
        self.max_word = max(len(w) for w in words)

    def __len__(self) -> int:
        return len(self.lexicon)

    def __call__(self, text: str) -> np.ndarray:
        """``uint8[len(text), FEATURE_DIM]``: the features of each character of ``text``."""
        out = np.zeros((len(text), FEATURE_DIM), dtype=np.uint8)
        if text:
            t = self.trie
            _features_kernel(t.root, t.table, t.bloom, t.word, self.freq, to_codes(text), out)
        return out

    def window(self, text: str, start: int, end: int) -> np.ndarray:
        """The rows ``start:end`` of ``self(text)``, matched over only a margin around them."""
        begin = max(0, start - self.max_word + 1)
        return self(text[begin : min(len(text), end + self.max_word - 1)])[start - begin :
                                                                             end - begin]

    def save(self, directory: str | os.PathLike) -> None:
        """Write the lexicon (words and counts) as :data:`LEXICON_FILE` in ``directory``."""
        self.lexicon.save(Path(directory) / LEXICON_FILE)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> LexiconFeatures:
        """The features of the lexicon :meth:`save` wrote to ``directory``."""
        path = Path(directory) / LEXICON_FILE
        if not path.is_file():
            raise ZhtextError(f"{directory} has no {LEXICON_FILE}: the tagger's lexicon is missing")
        return cls(Lexicon.load(path, fmt="tsv"))


def read_lexicon(spec: str | os.PathLike | Lexicon) -> LexiconFeatures:
    """Features of a :class:`Lexicon`, of a lexicon file (a discovered TSV or a jieba-format
    dictionary), or of ``"jieba"``: jieba's own dictionary."""
    if isinstance(spec, Lexicon):
        return LexiconFeatures(spec)
    if str(spec) == "jieba":
        return LexiconFeatures(Lexicon.jieba_default())
    if not Path(spec).is_file():
        raise ZhtextError(f"lexicon not found: {spec}")
    lexicon = Lexicon.load(spec)  # a malformed line fails here, naming the file and line
    if not any(count > 0 for count in lexicon.counts.values()):
        raise ZhtextError(f"lexicon {spec} holds no words with a count above zero")
    return LexiconFeatures(lexicon)
