"""The maximum-probability route through a word lattice, in Numba: the one kernel that both
segmentation (``segment.py``, with jieba's text rules around it) and word discovery's unigram
re-estimation (``discover.py``, over unit ids) walk.

Every dictionary word starting at ``i`` is an edge ``i -> i + len(w)`` weighted by its log
probability; a unit no word starts with is an edge of weight ``floor``. The best route is found
right to left, so ties break as in ``jieba.cut(HMM=False)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from zhtext.lexical.trie import Trie, trie_child


@njit(cache=True, nogil=True)
def route_span(codes, start, end, root, table, bloom, word, weight, shift, floor, score, step, ids):
    """Best route over ``codes[start:end]`` into scratch arrays indexed by ``i - start``.

    ``score[i]``: best log-probability of the rest of the span from ``i``; ``step[i]``: length of
    the first token from ``i``; ``ids[i]``: its word id (-1 for a floor character). An edge weighs
    ``weight[node] - shift``: ``shift`` is log(total) when weights are log-counts (jieba's order of
    operations), 0.0 when they are already log-probabilities.
    """
    n = end - start
    score[n] = 0.0
    for r in range(n - 1, -1, -1):
        i = start + r
        best = -np.inf
        best_len = 0
        best_id = -1
        node = root[codes[i]]
        j = i + 1
        while node >= 0:  # node spells codes[i:j]
            w = weight[node]
            if w > -np.inf:
                s = (w - shift) + score[j - start]
                if s >= best:  # edges come shortest first: on a tie the longer one wins
                    best = s
                    best_len = j - i
                    best_id = word[node]
            if j >= end:
                break
            node = trie_child(table, bloom, node, codes[j])
            j += 1
        if best_len == 0:
            best = floor + score[r + 1]
            best_len = 1
        score[r] = best
        step[r] = best_len
        ids[r] = best_id


@njit(cache=True, nogil=True)
def max_span(offsets):
    longest = 0
    for k in range(offsets.shape[0] - 1):
        longest = max(longest, offsets[k + 1] - offsets[k])
    return longest


@njit(cache=True, nogil=True)
def route_scratch(offsets):
    """The scratch arrays of :func:`route_span` (score, step, ids) for the longest span."""
    longest = max_span(offsets)
    score = np.empty(longest + 1, dtype=np.float64)
    return score, np.empty(longest, dtype=np.int32), np.empty(longest, dtype=np.int32)


@njit(cache=True, nogil=True)
def _unigram_route_kernel(
    codes, offsets, root, table, bloom, word, weight, floor, out_ends, out_ids
):
    score, step, ids = route_scratch(offsets)
    n_tok = 0
    logp = 0.0
    for k in range(offsets.shape[0] - 1):
        start, end = offsets[k], offsets[k + 1]
        if start >= end:
            continue
        route_span(
            codes, start, end, root, table, bloom, word, weight, 0.0, floor, score, step, ids
        )
        logp += score[0]
        r = 0
        while r < end - start:
            out_ids[n_tok] = ids[r]
            r += step[r]
            out_ends[n_tok] = start + r
            n_tok += 1
    return n_tok, logp


@njit(cache=True, nogil=True)
def _route_count_kernel(ids, root, table, bloom, word, weight, floor, counts, unknown):
    """:func:`route_counts` over the trie's arrays; scratch sized once, for the longest fragment."""
    size = ids.shape[0]
    longest = 0
    run = 0
    for p in range(size):
        run = run + 1 if ids[p] != 0 else 0
        longest = max(longest, run)
    score = np.empty(longest + 1, dtype=np.float64)
    step = np.empty(longest, dtype=np.int32)
    wid = np.empty(longest, dtype=np.int32)
    logp = 0.0
    units = 0
    p = 0
    while p < size:
        if ids[p] == 0:
            p += 1
            continue
        e = p
        while e < size and ids[e] != 0:
            e += 1
        route_span(ids, p, e, root, table, bloom, word, weight, 0.0, floor, score, step, wid)
        logp += score[0]
        units += e - p
        r = 0
        while r < e - p:
            if wid[r] >= 0:
                counts[wid[r]] += 1
            else:
                unknown[ids[p + r]] += 1
            r += step[r]
        p = e
    return logp, units


def route_counts(
    ids: np.ndarray, trie: Trie, floor: float, counts: np.ndarray, unknown: np.ndarray
) -> tuple[float, int]:
    """Route every fragment of ``ids`` (``uint16``, 0 between fragments) and count the words.

    The trie spells words in the same ids; its weights are log-probabilities and ``floor`` is the
    weight of a unit no word starts with. Adds each routed word's id to ``counts`` and each floor
    unit to ``unknown`` (indexed by id); returns the summed log-probability and the units routed.
    Releases the GIL, so that blocks can be routed on several threads.
    """
    return _route_count_kernel(ids, *trie[:5], float(floor), counts, unknown)


def unigram_route(
    codes: np.ndarray, offsets: np.ndarray, trie: Trie, floor: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Segment each span ``codes[offsets[k]:offsets[k+1]]`` by the pure maximum-probability route.

    ``trie`` weights are log-probabilities; a character where no word starts is a token of weight
    ``floor``. No character-class rules apply. Returns ``(ends, ids, logp)``: every token in order
    with its end offset (absolute, into ``codes``) and word id (-1 for a floor character), and the
    summed log-probability of all routes.
    """
    codes = np.ascontiguousarray(codes, dtype=np.int32)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or offsets.shape[0] < 1:
        raise ValueError("offsets must be a 1-d array with at least one entry")
    if offsets[0] < 0 or offsets[-1] > codes.shape[0] or np.any(np.diff(offsets) < 0):
        raise ValueError("offsets must be non-decreasing and within codes")
    ends = np.empty(codes.shape[0], dtype=np.int64)
    ids = np.empty(codes.shape[0], dtype=np.int32)
    if codes.size and (codes.min() < 0 or codes.max() >= trie.root.shape[0]):
        raise ValueError("codes must be Unicode codepoints (0..0x10FFFF)")
    # trie[:5] = root, table, bloom, word, weight
    n_tok, logp = _unigram_route_kernel(codes, offsets, *trie[:5], float(floor), ends, ids)
    if 2 * n_tok < codes.shape[0]:  # give most of the preallocated room back
        return ends[:n_tok].copy(), ids[:n_tok].copy(), float(logp)
    return ends[:n_tok], ids[:n_tok], float(logp)
