"""Minimum-entropy word discovery.

A lexicon is good when the corpus, written as a sequence of its words under a unigram model, takes
the fewest bits. The pipeline:

1. read the corpus once into compact unit ids: a unit is a Han character or a whole run of ASCII
   letters/digits, so that 2000年 can be a word (:mod:`zhtext.lexical.corpus`);
2. count n-grams, n = 2..max_n, exactly, one Numba pass an order (:mod:`zhtext.lexical.ngrams`), skipping
   what the cohesion bound says can never be kept;
3. keep the n-grams whose cohesion — the smallest pointwise mutual information over their binary
   splits — clears a threshold that rises with n (a longer word must pay for its spelling);
4. glue adjacent units wherever a kept n-gram covers them: the maximal glued spans, and the kept
   n-grams themselves, are the candidates;
5. re-estimate: segment the corpus with the unigram model (the route of :mod:`zhtext.lexical.route`,
   run on the ids), recount, drop words that barely beat their own best split, and repeat while
   the description (corpus bits plus lexicon bits) shrinks. A large corpus is re-estimated on an
   even sample, then routed whole once for the final counts.

The counting, candidate and routing passes share the corpus's blocks out over threads (the kernels
release the GIL), each thread with its own table, merged afterwards. Counts are integers, candidates
are sorted, and the log-probabilities of a routing pass are kept block by block and summed exactly
(``math.fsum``), so every result, bits per character included, is that of one thread to the bit.
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from zhtext.errors import ZhtextError
from zhtext.lexical.chars import from_codes, join_lines
from zhtext.lexical.choices import MAX_N
from zhtext.lexical.corpus import FIRST_RUN_ID, N_IDS, IdCorpus, Source, each_item
from zhtext.lexical.lexicon import Lexicon
from zhtext.lexical.ngrams import CountTable, KeySet, set_has, slot, table_find
from zhtext.lexical.route import route_counts, unigram_route
from zhtext.lexical.trie import build_trie

MAX_WORD = 12  # longest candidate kept (three uint64 keys of four ids each)
SAMPLE_UNITS = 1 << 22  # re-estimation routes at most ~4.2M units a pass (a 15 MB corpus)


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


def default_min_count(units: int) -> int:
    """Count threshold that follows the corpus size in units (Han characters plus letter/digit
    runs): 2 for a novel, ~30 for 100 MB of text.

    Grows with the square root of the size, so that a large corpus keeps more rare words than a
    constant fraction would but the tables stay small.
    """
    return max(2, int(round(2.0 * math.sqrt(units / 2e5))))


def default_thresholds(max_n: int, alphabet: int, base: float = 2.0) -> dict[int, float]:
    """Minimum cohesion (nats) an n-gram needs: ``base`` for pairs, ``ln(alphabet)`` more a unit.

    Merging every occurrence of a pair (a, b) changes the corpus's code length by about
    -N_ab * (PMI(a, b) - 1) nats, so joining pays once its PMI is above 1 nat; ``base`` asks for
    a margin over that. Each further unit of a longer word must also pay for its spelling in the
    lexicon, ln(alphabet) nats, the alphabet being the distinct units of the corpus (~3,200 for
    the PKU test text, ~6,000 for the four novels). Checked on the first 1,000 PKU test lines:
    the old constant rise of 3 nats a unit kept phrases as words (F 0.75 -> 0.77); a base of 1
    nat scored higher there still but glued template phrases of data/corpus.txt into spans too
    long to be words, losing planted words.
    """
    step = math.log(max(alphabet, 2))
    return {n: base + step * (n - 2) for n in range(2, max_n + 1)}


def default_margin(length: int) -> float:
    """How many nats a word must beat its best split by, per occurrence, to stay in the lexicon.

    Tuned on the first 1,000 lines of the PKU test set only (see benchmarks/discover_quality.py);
    a longer word must earn more, which keeps compounds apart as most segmentation standards do.
    """
    return 4.0 + 3.0 * (length - 2)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------------------------- candidates


@njit(cache=True)
def _key3_slot(k0, k1, k2, bits):
    return slot(k0 ^ (k1 * np.uint64(0x100000001B3)) ^ (k2 * np.uint64(0xC2B2AE3D27D4EB4F)), bits)


@njit(cache=True)
def _insert3(slots, bits, k0, k1, k2, add):
    """Add ``add`` to the count of the key (k0, k1, k2); ``slots[s] = (k0, k1, k2, count)``."""
    mask = (1 << bits) - 1
    s = _key3_slot(k0, k1, k2, bits)
    while True:
        if slots[s, 0] == k0 and slots[s, 1] == k1 and slots[s, 2] == k2:
            slots[s, 3] += add
            return 0
        if slots[s, 0] == 0:
            slots[s, 0] = k0
            slots[s, 1] = k1
            slots[s, 2] = k2
            slots[s, 3] = add
            return 1
        s = (s + 1) & mask


@njit(cache=True, nogil=True)
def _rehash3(old, slots, bits):
    filled = 0
    for i in range(old.shape[0]):
        if old[i, 0] != 0:
            filled += _insert3(slots, bits, old[i, 0], old[i, 1], old[i, 2], old[i, 3])
    return filled


@njit(cache=True, inline="always")
def _is_kept(ids, p, n, kept_keys, kept_bits):
    key = np.uint64(0)
    for q in range(p, p + n):
        key = (key << np.uint64(16)) | np.uint64(ids[q])
    return table_find(kept_keys[n], kept_bits[n], key) >= 0


@njit(cache=True, nogil=True)
def _candidate_pass(ids, start, max_n, glue_n, max_len, ok_uni, kept_keys, kept_blooms, kept_bits,
                    slots, bits, filled, limit, glue):
    """Count the maximal glued spans of ``ids`` from ``start``; see :func:`_count_pass`.

    ``glue[p]`` says a kept n-gram covers the boundary between p and p+1 (``glue_n``: the longest
    order with any kept n-gram). A span longer than max_n must have every max_n window kept; spans
    longer than ``max_len`` are phrases, not words.
    A kept n-gram was counted, so all its units are frequent (``ok_uni``): that cheap test ends
    the search for longer n-grams from p before any hash lookup.
    """
    size = ids.shape[0]
    for p in range(start, size):
        glue[p] = False
    for p in range(start, size):
        c = ids[p]
        if c == 0 or not ok_uni[c]:
            continue
        key = np.uint64(c)
        for n in range(2, glue_n + 1):
            if p + n > size:
                break
            c = ids[p + n - 1]
            if c == 0 or not ok_uni[c]:
                break
            key = (key << np.uint64(16)) | np.uint64(c)
            if set_has(kept_keys[n], kept_blooms[n], kept_bits[n], key):
                for q in range(p, p + n - 1):
                    glue[q] = True
    p = start
    while p < size:
        if ids[p] == 0 or not glue[p]:
            p += 1
            continue
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
                filled += _insert3(slots, bits, k0, k1, k2, np.uint64(1))
                if filled >= limit:
                    return e + 1, filled
        p = e + 1
    return size, filled


def _spell_keys(keys: np.ndarray) -> list[str]:
    """Packed keys (rows of 1..3 ``uint64``, four 16-bit ids each) as unit-id strings.

    Ids are never 0, so the zero padding of a partly filled key drops out; one decode for all.
    """
    if len(keys) == 0:
        return []
    keys = keys.reshape(len(keys), -1)
    shifts = np.array([48, 32, 16, 0], dtype=np.uint64)
    ids = ((keys[:, :, None] >> shifts) & np.uint64(0xFFFF)).reshape(len(keys), -1)
    present = ids != 0
    text = from_codes(ids[present])
    ends = np.cumsum(present.sum(axis=1)).tolist()
    return [text[a:b] for a, b in zip([0, *ends], ends)]


# ---------------------------------------------------------------------------------- the pipeline


class Discoverer:
    """Minimum-entropy word discovery with its settings; :meth:`run` returns a :class:`Lexicon`.

    Args:
        max_n: longest n-gram counted (2..4).
        min_count: least count of a kept n-gram and a final word; ``None`` scales it with the
            corpus (:func:`default_min_count`).
        iterations: most re-estimation passes; they stop early once bits per character stop falling.
        thresholds: minimum cohesion in nats by n; default :func:`default_thresholds` of the
            corpus's alphabet.
        margin: nats a word must beat its best split by (a function of its length).
        max_word_len: longest word kept, in units (a letter/digit run is one unit).
        threads: threads for the counting and routing passes (default: the CPU count, at most 8).
        sample_units: on a larger corpus, re-estimation passes route a sample of this many units
            taken evenly across it, and one final pass routes the whole corpus for the counts.
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
        threads: int | None = None,
        sample_units: int = SAMPLE_UNITS,
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
        self.thresholds = thresholds
        self.margin = margin
        self.max_word_len = max_word_len
        self.threads = threads or min(8, os.cpu_count() or 1)
        self.sample_units = sample_units
        self.progress = progress
        self.stats = DiscoverStats()

    # -- reporting
    def _bar(self):
        from zhtext.io.progress import Bar

        return Bar(enabled=self.progress)

    def run(self, source: Source, encoding: str | None = None, engine: Any = None) -> Lexicon:
        """Discover words in a path, several ``Path`` objects, or an iterable of text lines.

        ``engine`` runs the passes over the whole corpus elsewhere (a
        :class:`zhtext.distributed.discover.RayEngine`); by default they run on this machine's
        threads. The lexicon is the same either way.
        """
        started = time.perf_counter()
        stats = self.stats = DiscoverStats()
        with self._bar() as bar:
            task = bar.add("reading", total=None)
            advance = lambda n: bar.advance(task, n)
            if engine is None:
                corpus = IdCorpus.read(source, encoding, on_block=advance)
                passes: Any = LocalPasses(corpus, self.threads)
            else:
                corpus = passes = engine.read(source, encoding, on_block=advance)
            try:
                stats.chars_read, stats.han_chars = corpus.chars_read, corpus.han_chars
                if corpus.han_chars == 0:
                    what = "is empty" if corpus.chars_read == 0 else "has no Chinese characters"
                    raise ZhtextError(f"the corpus {what}: nothing to discover")
                min_count = self.min_count or default_min_count(corpus.units)
                stats.min_count = min_count
                kept = self._count(corpus, min_count, bar, passes)
                # The kept n-grams themselves join the spans, with their n-gram counts: a word
                # that is mostly glued into longer spans (宝贵 in 宝贵财富) can still be chosen
                # by re-estimation. On the PKU test text: F +0.014.
                spans = self._candidates(corpus, kept, min_count, bar, passes)
                candidates = {**_kept_words(kept), **spans}
                stats.candidates = len(candidates)
                counts = self._reestimate(corpus, candidates, min_count, bar, passes)
                spelling = corpus.spelling_table()
            finally:
                corpus.close()
        # A lone letter/digit run is no word to list: the segmenter keeps such runs whole anyway.
        lexicon = Lexicon({
            w.translate(spelling): c for w, c in counts.items() if len(w) > 1 or ord(w) < FIRST_RUN_ID
        })  # fmt: skip
        stats.words = sum(1 for w in counts if len(w) > 1)
        stats.seconds = time.perf_counter() - started
        stats.peak_mb = _peak_mb()
        lexicon.bits_per_char = list(stats.bits_per_char)
        return lexicon

    def _count(self, corpus: IdCorpus, min_count: int, bar, passes: Any = None) -> list:
        """Exact n-gram counts by order; returns, per n, the KeySet of kept n-grams."""
        passes = passes or LocalPasses(corpus, self.threads)
        uni = corpus.unigrams
        total = float(corpus.units)
        frequent: dict[int, KeySet] = {}
        kept: list = [None] * (self.max_n + 1)
        ok_uni = uni >= min_count
        ok_uni[0] = False
        thresholds = self.thresholds or default_thresholds(self.max_n, int(np.count_nonzero(uni)))
        # An n-gram w = a|b has N_w <= N_b, so its cohesion is at most log(T / N_a) for its first
        # unit a, and likewise for its last: both must occur at most T e^-threshold times. Orders
        # where that bound is below min_count keep nothing and are not counted; the last order
        # counted only counts windows whose end units are that rare (no later order needs more).
        # The kept sets are exactly those of counting everything.
        bound = {n: total * math.exp(-thresholds[n]) * (1 + 1e-9) for n in thresholds}
        top = max([n for n in range(2, self.max_n + 1) if bound[n] >= min_count], default=1)
        for n in range(2, self.max_n + 1):
            if n > top:
                kept[n] = KeySet(np.zeros(0, dtype=np.uint64))
                self.stats.ngrams_kept[n] = 0
                continue
            ok_end = ok_uni & (uni <= bound[n]) if n == top else None
            task = bar.add(f"counting {n}-grams", total=corpus.units)
            table = passes.count(n, ok_uni, frequent.get(n - 1), ok_end,
                                 lambda units, task=task: bar.advance(task, units))
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
            good = cohesion >= thresholds[n]
            kept[n] = KeySet(keys[good], counts[good])
            self.stats.ngrams_kept[n] = int(good.sum())
        return kept

    def _candidates(self, corpus: IdCorpus, kept: list, min_count: int, bar, passes: Any = None
                    ) -> dict[str, int]:
        """Maximal spans glued by kept n-grams (unit-id strings), with their counts (at least
        ``min_count``)."""
        passes = passes or LocalPasses(corpus, self.threads)
        empty = KeySet(np.zeros(0, dtype=np.uint64))
        sets = [k if k is not None else empty for k in kept]
        glue_n = max([n for n, s in enumerate(sets) if s.size], default=1)
        spec = SpanSpec(
            self.max_n, glue_n, self.max_word_len, corpus.unigrams >= min_count,
            tuple(s.keys for s in sets), tuple(s.bloom for s in sets),
            np.array([s.bits for s in sets], dtype=np.int64),
        )
        task = bar.add("finding candidates", total=corpus.units)
        slots = passes.spans(spec, lambda units: bar.advance(task, units))[1]
        sel = np.flatnonzero((slots[:, 0] != 0) & (slots[:, 3] >= min_count))
        # Key order, not slot order (which follows the threads' merge order): the same candidates
        # in the same order, so that re-estimation is the same whatever the thread count.
        sel = sel[np.lexsort((slots[sel, 2], slots[sel, 1], slots[sel, 0]))]
        return dict(zip(_spell_keys(slots[sel, :3]), slots[sel, 3].tolist()))

    def _route(self, passes: Any, words: list[str], weights: np.ndarray, floor: float,
               blocks: list[np.ndarray] | None, bar, label: str
               ) -> tuple[np.ndarray, np.ndarray, float, int]:
        """Route ``blocks`` (on this machine's threads), or the whole corpus (None: where the
        corpus lives), with the unigram model; word counts, floor-unit counts, log p, units.

        Each block's log p is kept by its index and the whole summed exactly, so the total does not
        depend on which thread or worker routed which block.
        """
        trie = build_trie(words, weights)  # over unit ids: chr(id) strings
        task = bar.add(label, total=None)
        advance = lambda units: bar.advance(task, units)
        if blocks is None:
            counts, unknown, logp, units = passes.route(trie, len(words), floor, advance)
        else:
            counts, unknown, logp, units = route_on_threads(
                enumerate(blocks), len(blocks), trie, len(words), floor, self.threads, advance)
        return counts, unknown, math.fsum(logp[i] for i in sorted(logp)), units

    def _reestimate(
        self, corpus: IdCorpus, candidates: dict[str, int], min_count: int, bar, passes: Any = None
    ) -> dict[str, int]:
        """Unigram re-estimation: segment, recount, prune redundant words, while bits fall.

        Words are unit-id strings. Returns the counts of the final segmentation of the corpus.
        """
        passes = passes or LocalPasses(corpus, self.threads)
        uni = corpus.unigrams
        chars = {chr(i): int(uni[i]) for i in np.flatnonzero(uni)}
        counts = {**chars, **candidates}
        sampled = corpus.units > self.sample_units
        # Taken once for every pass, on this machine (at most ~8 MB: a spilled corpus is read
        # once; a corpus held elsewhere is brought here whole when it is no larger).
        sample = passes.sample(self.sample_units)
        # Stopping looks at the whole description: the corpus's bits plus the lexicon's spelling
        # (each multi-unit word costs its units plus an end mark, log2(alphabet) bits each).
        # Corpus bits alone can only rise when words are pruned.
        spell_bits = math.log2(len(chars) + 1)
        best: tuple[float, dict[str, int], list[str], np.ndarray, float] | None = None
        log2 = math.log(2.0)
        for it in range(max(1, self.iterations)):
            words = list(counts)
            total = float(sum(counts.values()))
            weights = np.log(np.array([counts[w] for w in words], dtype=np.float64)) - math.log(total)
            floor = -math.log(total)
            new, unknown, logp, units = self._route(
                passes, words, weights, floor, sample, bar, f"re-estimating ({it + 1})"
            )
            bpc = -logp / log2 / units
            scale = corpus.units / units  # 1 unless sampled: counts stand for the whole corpus
            segmented = _counted(words, new, unknown, scale)
            lexicon_bits = sum(len(w) + 1 for w in segmented if len(w) > 1) * spell_bits
            described = bpc + lexicon_bits / corpus.units
            if best is not None and described >= best[0] - 1e-6:
                break  # no longer falling: keep the previous lexicon
            self.stats.bits_per_char.append(bpc)
            self.stats.description_bits.append(described)
            best = (described, segmented, words, weights, floor)
            if it + 1 >= self.iterations:
                break
            counts = self._prune(segmented, min_count)
        assert best is not None
        if not sampled:
            return best[1]
        del sample
        # The model chosen on the sample, applied to the whole corpus: exact counts.
        _, _, words, weights, floor = best
        new, unknown, logp, units = self._route(passes, words, weights, floor, None, bar, "counting words")
        self.stats.bits_per_char[-1] = -logp / log2 / units
        return _counted(words, new, unknown, 1.0)

    def _prune(self, counts: dict[str, int], min_count: int) -> dict[str, int]:
        """Drop rare words and words that beat their best split by less than the margin."""
        counts = {w: c for w, c in counts.items() if len(w) == 1 or c >= min_count}
        words = list(counts)
        total = float(sum(counts.values()))
        weights = np.log(np.array([counts[w] for w in words], dtype=np.float64)) - math.log(total)
        trie = build_trie(words, weights)  # over unit ids: chr(id) strings
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
        codes, offsets = join_lines(pieces)
        ends, ids, _ = unigram_route(codes, offsets, trie, -math.log(total))
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


def _counted(words: list[str], new: np.ndarray, unknown: np.ndarray, scale: float) -> dict[str, int]:
    """Word counts of a routing pass (floor units added as words), scaled to the whole corpus."""
    if scale != 1.0:
        new = np.rint(new * scale).astype(np.int64)
        unknown = np.rint(unknown * scale).astype(np.int64)
    counted = {w: int(c) for w, c in zip(words, new.tolist()) if c > 0}
    for i in np.flatnonzero(unknown).tolist():
        counted[chr(i)] = counted.get(chr(i), 0) + int(unknown[i])
    return counted


def _kept_words(kept: list) -> dict[str, int]:
    """The kept n-grams of every order as unit-id strings, with their counts."""
    words = {}
    for keyset in kept:
        if keyset is not None:
            have = keyset.keys != 0
            words.update(zip(_spell_keys(keyset.keys[have]), keyset.values[have].tolist()))
    return words


def _grow3(state: list, need: int) -> None:
    """Double a candidate table (``[bits, slots, filled]``) until ``need`` entries fit under 60 %."""
    while need >= int(0.6 * (1 << state[0])):
        bits = state[0] + 1
        slots = np.zeros((1 << bits, 4), dtype=np.uint64)
        filled = int(_rehash3(state[1], slots, bits))
        state[:] = [bits, slots, filled]


class SpanSpec(NamedTuple):
    """What the candidate pass needs besides a block: the kept n-grams and the limits."""

    max_n: int
    glue_n: int
    max_len: int
    ok_uni: np.ndarray
    kept_keys: tuple
    kept_blooms: tuple
    kept_bits: np.ndarray


def new_span_table() -> list:
    """An empty candidate table: ``[bits, slots (rows of three keys and a count), filled]``."""
    return [16, np.zeros((1 << 16, 4), np.uint64), 0]


def span_block(state: list, block: np.ndarray, spec: SpanSpec) -> None:
    """Count the maximal glued spans of one block into a candidate table."""
    glue = np.zeros(len(block), dtype=np.bool_)
    pos = 0
    while pos < len(block):
        bits, slots, filled = state
        pos, state[2] = _candidate_pass(
            block, pos, spec.max_n, spec.glue_n, spec.max_len, spec.ok_uni, spec.kept_keys,
            spec.kept_blooms, spec.kept_bits, slots, bits, filled, int(0.6 * (1 << bits)), glue,
        )
        _grow3(state, state[2])


def merge_spans(state: list, other: list) -> list:
    """Add a candidate table into ``state`` (the counts of blocks counted elsewhere)."""
    _grow3(state, state[2] + other[2])
    state[2] += int(_rehash3(other[1], state[1], state[0]))
    return state


def route_on_threads(blocks: Iterable[tuple[int, np.ndarray]], n_blocks: int, trie, n_words: int,
                     floor: float, threads: int, advance: Callable[[int], None] | None = None,
                     ) -> tuple[np.ndarray, np.ndarray, dict[int, float], int]:
    """Route numbered blocks on threads: summed word and floor-unit counts, each block's log p
    by its number, and the units routed."""
    threads = max(1, min(threads, n_blocks))
    counts = np.zeros((threads, n_words), dtype=np.int64)
    unknown = np.zeros((threads, N_IDS), dtype=np.int64)
    units = np.zeros(threads, dtype=np.int64)
    logp: dict[int, float] = {}
    source = iter(blocks)

    def work(worker: int, _: int, item: tuple[int, np.ndarray]) -> None:
        index, block = item
        logp[index], n = route_counts(block, trie, floor, counts[worker], unknown[worker])
        units[worker] += n
        if advance is not None:
            advance(len(block))

    each_item(source, n_blocks, work, threads)
    return counts.sum(axis=0), unknown.sum(axis=0), logp, int(units.sum())


class LocalPasses:
    """Discovery's passes over the whole corpus on this machine: the corpus's blocks shared out
    over threads (the kernels release the GIL), one table a thread, merged."""

    def __init__(self, corpus: IdCorpus, threads: int) -> None:
        self.corpus, self.threads = corpus, threads

    def count(self, n: int, ok_uni: np.ndarray, prev: KeySet | None, ok_end: np.ndarray | None,
              advance: Callable[[int], None]) -> CountTable:
        """The n-grams whose (n-1)-grams are in ``prev`` (and whose end units pass ``ok_end``)."""
        tables = [CountTable(bits=16) for _ in range(self.threads)]

        def work(worker: int, index: int, block: np.ndarray) -> None:
            tables[worker].count(block, n, ok_uni, prev, ok_end)
            advance(len(block))

        self.corpus.each_block(work, self.threads)
        for other in tables[1:]:
            tables[0].merge(other)
        return tables[0]

    def spans(self, spec: SpanSpec, advance: Callable[[int], None]) -> list:
        """The candidate table of the whole corpus."""
        tables = [new_span_table() for _ in range(self.threads)]

        def work(worker: int, index: int, block: np.ndarray) -> None:
            span_block(tables[worker], block, spec)
            advance(len(block))

        self.corpus.each_block(work, self.threads)
        for other in tables[1:]:
            merge_spans(tables[0], other)
        return tables[0]

    def sample(self, max_units: int) -> list[np.ndarray] | None:
        """The re-estimation sample (copies), or None when the corpus is no larger."""
        if self.corpus.units <= max_units:
            return None
        return [piece.copy() for piece in self.corpus.sample(max_units)]

    def route(self, trie, n_words: int, floor: float, advance: Callable[[int], None]):
        """Route the whole corpus; see :func:`route_on_threads`."""
        return route_on_threads(enumerate(self.corpus), len(self.corpus), trie, n_words, floor,
                                self.threads, advance)
