"""Minimum-entropy word discovery (DESIGN.md section 2).

A lexicon is good when the corpus, written as a sequence of its words under a unigram model, takes
the fewest bits. The pipeline:

1. read the corpus once into compact Han-character ids (:mod:`zhtext.corpus`);
2. count n-grams, n = 1..max_n, exactly, one Numba pass an order (:mod:`zhtext.ngrams`);
3. keep the n-grams whose cohesion — the smallest pointwise mutual information over their binary
   splits — clears a threshold that rises with n (a longer word must pay for its spelling);
4. glue adjacent characters wherever a kept n-gram covers them: maximal glued spans are candidates;
5. re-estimate: segment the corpus with the unigram model (:mod:`zhtext.segment`), recount, drop
   words that barely beat their own best split, and repeat while bits per character falls.
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from .corpus import IdCorpus, fragments
from .errors import ZhtextError
from .io import iter_many_lines
from .lexicon import Lexicon
from .ngrams import MAX_N, CountTable, KeySet, _slot, ids_to_text, table_find

Source = str | os.PathLike | Iterable[str | os.PathLike]

MAX_WORD = 12  # longest candidate kept (three uint64 keys of four ids each)


@dataclass
class DiscoverStats:
    """What a discovery run read, kept and achieved (the CLI's summary table)."""

    chars_read: int = 0
    han_chars: int = 0
    min_count: int = 0
    ngrams_counted: dict[int, int] = field(default_factory=dict)
    ngrams_kept: dict[int, int] = field(default_factory=dict)
    candidates: int = 0
    words: int = 0
    bits_per_char: list[float] = field(default_factory=list)
    description_bits: list[float] = field(default_factory=list)  # corpus + lexicon, per char
    seconds: float = 0.0
    peak_mb: float = 0.0


def default_min_count(han_chars: int) -> int:
    """Count threshold that follows the corpus size: 2 for a novel, ~30 for 100 MB of text.

    Grows with the square root of the size, so that a large corpus keeps more rare words than a
    constant fraction would but the tables stay small.
    """
    return max(2, int(round(2.0 * math.sqrt(han_chars / 2e5))))


def default_thresholds(max_n: int, base: float = 2.0, step: float = 3.0) -> dict[int, float]:
    """Minimum cohesion (nats) an n-gram needs: ``base`` for pairs, rising ``step`` per character."""
    return {n: base + step * (n - 2) for n in range(2, max_n + 1)}


def default_margin(length: int) -> float:
    """How many nats a word must beat its best split by, per occurrence, to stay in the lexicon.

    Tuned on the first 1,000 lines of the PKU test set only (see benchmarks/discover_quality.py);
    a longer word must earn more, which keeps compounds apart as most segmentation standards do.
    """
    return 4.0 + 3.0 * (length - 2)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _lines_of(source: Source, encoding: str | None) -> Iterable[str]:
    """Lines from one path, several paths (``Path`` objects) or an iterable of text lines."""
    if isinstance(source, (str, os.PathLike)):
        return iter_many_lines([source], encoding, max_chars=1 << 20)
    items = source if isinstance(source, (list, tuple)) else None
    if items is not None and items and all(isinstance(s, os.PathLike) for s in items):
        return iter_many_lines(items, encoding, max_chars=1 << 20)
    return (str(line) for line in source)


# ----------------------------------------------------------------------------------- candidates


@njit(cache=True)
def _key3_slot(k0, k1, k2, bits):
    return _slot(k0 ^ (k1 * np.uint64(0x100000001B3)) ^ (k2 * np.uint64(0xC2B2AE3D27D4EB4F)), bits)


@njit(cache=True)
def _insert3(keys, counts, bits, k0, k1, k2, add):
    mask = (1 << bits) - 1
    s = _key3_slot(k0, k1, k2, bits)
    while True:
        if keys[s, 0] == k0 and keys[s, 1] == k1 and keys[s, 2] == k2:
            counts[s] += add
            return 0
        if keys[s, 0] == 0:
            keys[s, 0] = k0
            keys[s, 1] = k1
            keys[s, 2] = k2
            counts[s] = add
            return 1
        s = (s + 1) & mask


@njit(cache=True)
def _rehash3(old_keys, old_counts, keys, counts, bits):
    filled = 0
    for i in range(old_keys.shape[0]):
        if old_keys[i, 0] != 0:
            filled += _insert3(keys, counts, bits, old_keys[i, 0], old_keys[i, 1], old_keys[i, 2],
                               old_counts[i])
    return filled


@njit(cache=True)
def _is_kept(ids, p, n, kept_keys, kept_bits):
    key = np.uint64(0)
    for q in range(p, p + n):
        key = (key << np.uint64(16)) | np.uint64(ids[q])
    return table_find(kept_keys[n], kept_bits[n], key) >= 0


@njit(cache=True)
def _candidate_pass(ids, start, max_n, max_len, kept_keys, kept_bits, keys, counts, bits, filled,
                    limit, glue):
    """Count the maximal glued spans of ``ids`` from ``start``; see :func:`_count_pass`.

    ``glue[p]`` says a kept n-gram covers the boundary between p and p+1. A span longer than max_n
    must have every max_n window kept; spans longer than ``max_len`` are phrases, not words.
    """
    size = ids.shape[0]
    for p in range(start, size):
        glue[p] = False
    for p in range(start, size):
        if ids[p] == 0:
            continue
        for n in range(2, max_n + 1):
            if p + n > size or ids[p + n - 1] == 0:
                break
            if _is_kept(ids, p, n, kept_keys, kept_bits):
                for q in range(p, p + n - 1):
                    glue[q] = True
    p = start
    while p < size:
        if ids[p] == 0 or not glue[p]:
            p += 1
            continue
        # back up to the span's first character, at or after ``start``
        s = p
        e = p
        while e < size and glue[e]:
            e += 1
        length = e - s + 1
        if length <= max_len:
            good = True
            if length > max_n:
                for w in range(s, e - max_n + 2):
                    if not _is_kept(ids, w, max_n, kept_keys, kept_bits):
                        good = False
                        break
            if good:
                k0 = np.uint64(0)
                k1 = np.uint64(0)
                k2 = np.uint64(0)
                for q in range(length):
                    c = np.uint64(ids[s + q])
                    if q < 4:
                        k0 = (k0 << np.uint64(16)) | c
                    elif q < 8:
                        k1 = (k1 << np.uint64(16)) | c
                    else:
                        k2 = (k2 << np.uint64(16)) | c
                filled += _insert3(keys, counts, bits, k0, k1, k2, np.uint32(1))
                if filled >= limit:
                    return e + 1, filled
        p = e + 1
    return size, filled


def _spell3(row: np.ndarray) -> str:
    ids: list[int] = []
    for word in row:
        word = int(word)
        part = []
        while word:
            part.append(word & 0xFFFF)
            word >>= 16
        ids.extend(reversed(part))
    return ids_to_text(ids)


# ---------------------------------------------------------------------------------- the pipeline


class Discoverer:
    """Minimum-entropy word discovery with its settings; :meth:`run` returns a :class:`Lexicon`.

    Args:
        max_n: longest n-gram counted (2..4).
        min_count: least count of a kept n-gram and a final word; ``None`` scales it with the
            corpus (:func:`default_min_count`).
        iterations: most re-estimation passes; they stop early once bits per character stop falling.
        thresholds: minimum cohesion in nats by n; default :func:`default_thresholds`.
        margin: nats a word must beat its best split by (a function of its length).
        max_word_len: longest word kept.
        progress: show rich progress bars on stderr.
    """

    def __init__(
        self,
        max_n: int = 4,
        min_count: int | None = None,
        iterations: int = 5,
        thresholds: dict[int, float] | None = None,
        margin: Callable[[int], float] = default_margin,
        max_word_len: int = MAX_WORD,
        progress: bool = False,
    ) -> None:
        if not 2 <= max_n <= MAX_N:
            raise ZhtextError(f"--max-n must be between 2 and {MAX_N}, not {max_n}")
        if min_count is not None and min_count < 1:
            raise ZhtextError("--min-count must be at least 1")
        if iterations < 0:
            raise ZhtextError("--iterations cannot be negative")
        if not 2 <= max_word_len <= MAX_WORD:
            raise ZhtextError(f"the longest word must be between 2 and {MAX_WORD} characters")
        self.max_n = max_n
        self.min_count = min_count
        self.iterations = iterations
        self.thresholds = thresholds or default_thresholds(max_n)
        self.margin = margin
        self.max_word_len = max_word_len
        self.progress = progress
        self.stats = DiscoverStats()

    # -- reporting
    def _bar(self):
        from .progress import Bar

        return Bar(enabled=self.progress)

    def run(self, source: Source, encoding: str | None = None) -> Lexicon:
        """Discover words in a path, several ``Path`` objects, or an iterable of text lines."""
        started = time.perf_counter()
        stats = self.stats = DiscoverStats()
        with self._bar() as bar:
            task = bar.add("reading", total=None)
            corpus = IdCorpus.from_lines(
                _lines_of(source, encoding), on_batch=lambda n: bar.advance(task, n)
            )
            try:
                stats.chars_read, stats.han_chars = corpus.chars_read, corpus.han_chars
                if corpus.han_chars == 0:
                    what = "is empty" if corpus.chars_read == 0 else "has no Chinese characters"
                    raise ZhtextError(f"the corpus {what}: nothing to discover")
                min_count = self.min_count or default_min_count(corpus.han_chars)
                stats.min_count = min_count
                uni, kept = self._count(corpus, min_count, bar)
                candidates = self._candidates(corpus, kept, min_count, bar)
                stats.candidates = len(candidates)
                lexicon = self._reestimate(corpus, uni, candidates, min_count, bar)
            finally:
                corpus.close()
        stats.words = sum(1 for w in lexicon if len(w) > 1)
        stats.seconds = time.perf_counter() - started
        stats.peak_mb = _peak_mb()
        lexicon.bits_per_char = list(stats.bits_per_char)
        return lexicon

    def _count(self, corpus: IdCorpus, min_count: int, bar) -> tuple[np.ndarray, list]:
        """Exact n-gram counts by order; returns unigram counts and, per n, the kept KeySet."""
        uni = np.zeros(1 << 16, dtype=np.int64)
        for block in corpus:
            uni += np.bincount(block, minlength=1 << 16)
        uni[0] = 0
        total = float(corpus.han_chars)
        frequent: dict[int, KeySet] = {}
        kept: list = [None] * (self.max_n + 1)
        ok_uni = uni >= min_count
        for n in range(2, self.max_n + 1):
            task = bar.add(f"counting {n}-grams", total=corpus.han_chars)
            table = CountTable(bits=16)
            for block in corpus:
                table.count(block, n, ok_uni, frequent.get(n - 1))
                bar.advance(task, len(block))
            keys, counts = table.items(min_count)
            self.stats.ngrams_counted[n] = int(table.filled)
            del table
            frequent[n] = KeySet(keys, counts)
            # Cohesion: the weakest binary split's PMI, log(N_w T / (N_a N_b)).
            cohesion = np.full(len(keys), np.inf)
            for i in range(1, n):
                shift = np.uint64(16 * (n - i))
                left, right = keys >> shift, keys & ((np.uint64(1) << shift) - np.uint64(1))
                n_left = uni[left.astype(np.int64)] if i == 1 else frequent[i].lookup(left)
                n_right = uni[right.astype(np.int64)] if n - i == 1 else frequent[n - i].lookup(right)
                pmi = np.log(counts * total / (n_left.astype(np.float64) * n_right))
                np.minimum(cohesion, pmi, out=cohesion)
            good = cohesion >= self.thresholds[n]
            kept[n] = KeySet(keys[good])
            self.stats.ngrams_kept[n] = int(good.sum())
        return uni, kept

    def _candidates(self, corpus: IdCorpus, kept: list, min_count: int, bar) -> dict[str, int]:
        """Maximal spans glued by kept n-grams, with their counts (at least ``min_count``)."""
        empty = KeySet(np.zeros(0, dtype=np.uint64))
        sets = [k if k is not None else empty for k in kept]
        kept_keys = tuple(s.keys for s in sets)
        kept_bits = np.array([s.bits for s in sets], dtype=np.int64)
        bits = 16
        keys = np.zeros((1 << bits, 3), dtype=np.uint64)
        counts = np.zeros(1 << bits, dtype=np.uint32)
        filled = 0
        task = bar.add("finding candidates", total=corpus.han_chars)
        for block in corpus:
            glue = np.zeros(len(block), dtype=np.bool_)
            pos = 0
            while pos < len(block):
                limit = int(0.6 * (1 << bits))
                pos, filled = _candidate_pass(
                    block, pos, self.max_n, self.max_word_len, kept_keys, kept_bits, keys, counts,
                    bits, filled, limit, glue,
                )
                if filled >= limit:
                    bits += 1
                    new_keys = np.zeros((1 << bits, 3), dtype=np.uint64)
                    new_counts = np.zeros(1 << bits, dtype=np.uint32)
                    filled = int(_rehash3(keys, counts, new_keys, new_counts, bits))
                    keys, counts = new_keys, new_counts
            bar.advance(task, len(block))
        sel = np.flatnonzero((keys[:, 0] != 0) & (counts >= min_count))
        return {_spell3(keys[i]): int(counts[i]) for i in sel}

    def _reestimate(
        self, corpus: IdCorpus, uni: np.ndarray, candidates: dict[str, int], min_count: int, bar
    ) -> Lexicon:
        """Unigram re-estimation: segment, recount, prune redundant words, while bits fall."""
        from .segment import unigram_route
        from .trie import build_trie

        chars = {ids_to_text([i]): int(c) for i, c in enumerate(uni) if c > 0}
        counts = {**chars, **candidates}
        # Stopping looks at the whole description: the corpus's bits plus the lexicon's spelling
        # (each multi-character word costs its characters plus an end mark, log2(alphabet) bits
        # each). Corpus bits alone can only rise when words are pruned.
        spell_bits = math.log2(len(chars) + 1)
        best: tuple[float, dict[str, int]] | None = None
        log2 = math.log(2.0)
        for it in range(max(1, self.iterations)):
            words = list(counts)
            total = float(sum(counts.values()))
            weights = np.log(np.array([counts[w] for w in words], dtype=np.float64)) - math.log(total)
            trie = build_trie(words, weights)
            floor = -math.log(total)
            new = np.zeros(len(words), dtype=np.int64)
            unknown = np.zeros(1 << 21, dtype=np.int64)  # characters the lexicon lacks, by codepoint
            logp = 0.0
            task = bar.add(f"re-estimating ({it + 1})", total=corpus.han_chars)
            for block in corpus:
                codes, offsets = fragments(block)
                ends, ids, lp = unigram_route(codes, offsets, trie, floor)
                new += np.bincount(ids[ids >= 0], minlength=len(words))
                if (ids < 0).any():
                    unknown += np.bincount(codes[ends[ids < 0] - 1], minlength=1 << 21)
                logp += lp
                bar.advance(task, len(block))
            bpc = -logp / log2 / corpus.han_chars
            segmented = {w: int(c) for w, c in zip(words, new) if c > 0}
            for cp in np.flatnonzero(unknown):
                segmented[chr(cp)] = segmented.get(chr(cp), 0) + int(unknown[cp])
            lexicon_bits = sum(len(w) + 1 for w in segmented if len(w) > 1) * spell_bits
            described = bpc + lexicon_bits / corpus.han_chars
            if best is not None and described >= best[0] - 1e-6:
                break  # no longer falling: keep the previous lexicon
            self.stats.bits_per_char.append(bpc)
            self.stats.description_bits.append(described)
            best = (described, segmented)
            if it + 1 >= self.iterations:
                break
            counts = self._prune(segmented, min_count)
        assert best is not None
        return Lexicon(best[1])

    def _prune(self, counts: dict[str, int], min_count: int) -> dict[str, int]:
        """Drop rare words and words that beat their best split by less than the margin."""
        from .segment import unigram_route
        from .text import to_codes
        from .trie import build_trie

        counts = {w: c for w, c in counts.items() if len(w) == 1 or c >= min_count}
        words = list(counts)
        total = float(sum(counts.values()))
        weights = np.log(np.array([counts[w] for w in words], dtype=np.float64)) - math.log(total)
        trie = build_trie(words, weights)
        multi = [i for i, w in enumerate(words) if len(w) > 1]
        if not multi:
            return counts
        # Every binary split of every word, as spans: the best route of each part cannot use the
        # word itself (it is longer), so max over splits = the best segmentation without the word.
        pieces: list[str] = []
        owner: list[int] = []
        for i in multi:
            w = words[i]
            for k in range(1, len(w)):
                pieces += [w[:k], w[k:]]
                owner.append(i)
        lengths = np.array([len(p) for p in pieces], dtype=np.int64)
        offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ends, ids, _ = unigram_route(to_codes("".join(pieces)), offsets, trie, -math.log(total))
        token_lp = np.where(ids >= 0, weights[np.maximum(ids, 0)], -math.log(total))
        span = np.searchsorted(offsets, ends, side="left") - 1
        piece_lp = np.bincount(span, weights=token_lp, minlength=len(pieces))
        split_lp = piece_lp[0::2] + piece_lp[1::2]
        best_split = np.full(len(words), -np.inf)
        np.maximum.at(best_split, np.array(owner), split_lp)
        keep = {}
        for i, w in enumerate(words):
            if len(w) == 1 or weights[i] - best_split[i] >= self.margin(len(w)):
                keep[w] = counts[w]
        return keep


def discover(source: Source, encoding: str | None = None, **options) -> Lexicon:
    """Discover the words of a corpus by minimum entropy; see :class:`Discoverer` for options.

    ``source`` is a path (``str`` or ``Path``), a list of ``Path`` objects, or an iterable of text
    lines. Returns a :class:`Lexicon` of words (single characters included, so that it segments
    on its own) with their counts in the final segmentation; ``lexicon.bits_per_char`` lists the
    corpus's bits per character after each re-estimation pass.
    """
    return Discoverer(**options).run(source, encoding)
