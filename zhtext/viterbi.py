"""Viterbi decoding for linear-chain CRFs in Numba: the best path and the k best paths.

Both kernels take a whole batch (emissions ``float32 [B, L, K]`` and lengths ``[B]``) and loop over it
inside compiled code, one sequence per thread with ``prange``. All scratch space (scores, back-pointers)
is allocated once per call by the wrappers, so the time-step loops never allocate.

Arithmetic is float32 and in the order ``(score[i] + transitions[i, j]) + emissions[t, j]``, with the
first maximum winning: the same values, and so the same paths, as the usual batched torch decoders.

Constraints arrive folded into the scores: any transition, start or end score at or below
:data:`FORBIDDEN` (``-1e4``, or ``-inf``) is treated as impossible, so no path ever takes such a step,
however large the emissions. A sequence with no allowed path gets path ``-1`` and score ``-inf``.
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads, njit, prange

__all__ = ["FORBIDDEN", "viterbi_decode", "viterbi_topk"]

#: Scores at or below this value mark a forbidden transition, start or end.
FORBIDDEN = -1e4

_NEG_INF = np.float32(-np.inf)


@njit(cache=True, parallel=True)
def _best_path_kernel(emissions, lengths, order, trans, start, end, paths, scores, backptr, work):
    """One best path per sequence, W sequences at a time in SIMD lanes.

    Group g holds the sequences ``order[g*W : (g+1)*W]`` (the wrapper sorts them by length so a
    group's lanes finish together). Every array the inner loop touches is laid out [tag, lane], so
    one (from-tag, to-tag) pair is a contiguous run of W lanes that LLVM vectorises, and the K*K
    pairs of a step carry no dependency on each other. ``backptr`` [G, L, K, W] (uint8 or int32)
    and ``work`` [G, 4, K, W] (previous scores, new scores, this step's emissions, final scores) are
    scratch.
    """
    n_batch, _, n_tags = emissions.shape
    lanes = work.shape[3]  # a run-time value: a constant W gets unrolled into scalar code instead
    neg_inf = np.float32(-np.inf)
    for g in prange(backptr.shape[0]):
        first = g * lanes
        width = min(lanes, n_batch - first)
        prev, cur, emit, final = work[g, 0], work[g, 1], work[g, 2], work[g, 3]
        bp = backptr[g]
        longest = 0
        for lane in range(width):
            longest = max(longest, lengths[order[first + lane]])
        # Unused lanes (a short last group, finished sequences) compute harmless finite values.
        prev[:] = 0.0
        emit[:] = 0.0
        for lane in range(width):
            seq = order[first + lane]
            if lengths[seq] > 0:
                for j in range(n_tags):
                    prev[j, lane] = start[j] + emissions[seq, 0, j]
                    final[j, lane] = prev[j, lane]
        for t in range(1, longest):
            for lane in range(width):
                seq = order[first + lane]
                if t < lengths[seq]:
                    for j in range(n_tags):
                        emit[j, lane] = emissions[seq, t, j]
            bpt = bp[t]
            for j in range(n_tags):  # from-tag 0 sets the first candidate
                a = trans[0, j]
                for lane in range(lanes):
                    cur[j, lane] = (prev[0, lane] + a) + emit[j, lane]
                    bpt[j, lane] = 0
            for i in range(1, n_tags):
                for j in range(n_tags):
                    a = trans[i, j]
                    for lane in range(lanes):
                        v = (prev[i, lane] + a) + emit[j, lane]
                        if v > cur[j, lane]:  # strict: the first best from-tag wins
                            cur[j, lane] = v
                            bpt[j, lane] = i
            prev, cur = cur, prev
            for lane in range(width):
                if lengths[order[first + lane]] == t + 1:
                    for j in range(n_tags):
                        final[j, lane] = prev[j, lane]
        for lane in range(width):
            seq = order[first + lane]
            n = lengths[seq]
            if n == 0:
                scores[seq] = 0.0
                continue
            best = neg_inf
            tag = -1
            for j in range(n_tags):
                v = final[j, lane] + end[j]
                if v > best:
                    best = v
                    tag = j
            scores[seq] = best
            if tag < 0:  # every path uses a forbidden step
                continue
            for t in range(n - 1, -1, -1):
                paths[seq, t] = tag
                tag = bp[t, tag, lane]


@njit(cache=True, parallel=True)
def _topk_kernel(emissions, lengths, trans, start, end, paths, scores, back_tag, back_rank, work):
    """k best paths per sequence (list Viterbi).

    ``work`` [B, 2, K, k] holds each tag's k best prefix scores, best first; ``back_tag`` and
    ``back_rank`` [B, L, K, k] say which (tag, rank) each one extends. Equal scores keep their
    arrival order, so k=1 picks exactly what :func:`_best_path_kernel` picks.
    """
    n_batch, _, n_tags = emissions.shape
    k = scores.shape[1]
    neg_inf = np.float32(-np.inf)
    for b in prange(n_batch):
        n = lengths[b]
        if n == 0:
            scores[b, 0] = 0.0  # the one empty path
            continue
        em = emissions[b]
        prev = work[b, 0]
        cur = work[b, 1]
        for j in range(n_tags):
            prev[j, 0] = start[j] + em[0, j]
            for r in range(1, k):
                prev[j, r] = neg_inf
        for t in range(1, n):
            for j in range(n_tags):
                kept = cur[j]
                bt = back_tag[b, t, j]
                br = back_rank[b, t, j]
                for r in range(k):
                    kept[r] = neg_inf
                ej = em[t, j]
                for i in range(n_tags):
                    a = trans[i, j]
                    for r in range(k):
                        v = (prev[i, r] + a) + ej
                        if not v > kept[k - 1]:
                            break  # prev[i] is sorted, so no later rank of i can enter
                        pos = k - 1
                        while pos > 0 and v > kept[pos - 1]:
                            kept[pos] = kept[pos - 1]
                            bt[pos] = bt[pos - 1]
                            br[pos] = br[pos - 1]
                            pos -= 1
                        kept[pos] = v
                        bt[pos] = i
                        br[pos] = r
            prev, cur = cur, prev
        # Merge the k best of every tag, plus the end score, into the k best overall.
        final_tag = back_tag[b, 0, 0]  # row t=0 is never used for back-pointers: reuse it
        final_rank = back_rank[b, 0, 0]
        out = scores[b]
        for j in range(n_tags):
            for r in range(k):
                v = prev[j, r] + end[j]
                if not v > out[k - 1]:
                    break
                pos = k - 1
                while pos > 0 and v > out[pos - 1]:
                    out[pos] = out[pos - 1]
                    final_tag[pos] = final_tag[pos - 1]
                    final_rank[pos] = final_rank[pos - 1]
                    pos -= 1
                out[pos] = v
                final_tag[pos] = j
                final_rank[pos] = r
        for m in range(k):
            if out[m] == neg_inf:
                break
            tag = final_tag[m]
            rank = final_rank[m]
            for t in range(n - 1, -1, -1):
                paths[b, m, t] = tag
                if t > 0:
                    tag, rank = back_tag[b, t, tag, rank], back_rank[b, t, tag, rank]


def _lanes(n_batch: int) -> int:
    """Sequences per SIMD group: 16 to 64, keeping at least two groups per thread to share out."""
    per_thread = n_batch // (2 * get_num_threads())
    lanes = 16
    while lanes < 64 and 2 * lanes <= per_thread:
        lanes *= 2
    return lanes


def _prepare(
    emissions: np.ndarray,
    lengths: np.ndarray,
    transitions: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check shapes, make contiguous float32/int64 copies and turn forbidden scores into -inf."""
    em = np.ascontiguousarray(emissions, dtype=np.float32)
    if em.ndim != 3:
        raise ValueError(f"emissions must be [B, L, K], got shape {em.shape}")
    n_batch, max_len, n_tags = em.shape
    lens = np.ascontiguousarray(lengths, dtype=np.int64).reshape(-1)
    if lens.shape[0] != n_batch:
        raise ValueError(f"lengths has {lens.shape[0]} entries for a batch of {n_batch}")
    if n_batch and (lens.min() < 0 or lens.max() > max_len):
        raise ValueError(f"lengths must lie in [0, {max_len}]")

    def scores(x: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
        x = np.array(x, dtype=np.float32, order="C")  # a copy: the caller's array is not touched
        if x.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {x.shape}")
        x[x <= FORBIDDEN] = _NEG_INF
        return x

    return (
        em,
        lens,
        scores(transitions, (n_tags, n_tags), "transitions"),
        scores(start, (n_tags,), "start"),
        scores(end, (n_tags,), "end"),
    )


def viterbi_decode(
    emissions: np.ndarray,
    lengths: np.ndarray,
    transitions: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The highest-scoring tag path of every sequence in a batch.

    Args:
        emissions: ``float32 [B, L, K]`` per-token tag scores.
        lengths: ``int [B]`` valid prefix length of each sequence (0..L).
        transitions: ``[K, K]`` score of moving from tag i to tag j.
        start: ``[K]`` score of starting in each tag.
        end: ``[K]`` score of ending in each tag.

    Returns:
        ``(paths, scores)``: ``int32 [B, L]`` tags, ``-1`` beyond each length, and ``float32 [B]``
        path scores (0 for an empty sequence; ``-inf`` with an all ``-1`` path when every path is
        forbidden).
    """
    em, lens, trans, st, en = _prepare(emissions, lengths, transitions, start, end)
    n_batch, max_len, n_tags = em.shape
    paths = np.full((n_batch, max_len), -1, dtype=np.int32)
    scores = np.empty(n_batch, dtype=np.float32)
    if n_batch == 0 or n_tags == 0:
        scores[:] = np.where(lens == 0, 0.0, -np.inf)
        return paths, scores
    lanes = _lanes(n_batch)
    groups = -(-n_batch // lanes)
    order = np.argsort(-lens, kind="stable")
    # uint8 back-pointers halve the memory traffic of the inner loop; int32 past 256 tags.
    bp_type = np.uint8 if n_tags <= 256 else np.int32
    backptr = np.empty((groups, max_len, n_tags, lanes), dtype=bp_type)
    work = np.empty((groups, 4, n_tags, lanes), dtype=np.float32)
    _best_path_kernel(em, lens, order, trans, st, en, paths, scores, backptr, work)
    return paths, scores


def viterbi_topk(
    emissions: np.ndarray,
    lengths: np.ndarray,
    transitions: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` highest-scoring distinct tag paths of every sequence, best first.

    Arguments as :func:`viterbi_decode`. Returns ``int32 [B, k, L]`` paths (``-1`` beyond each
    length) and ``float32 [B, k]`` scores in descending order. When a sequence has fewer than ``k``
    allowed paths (short sequences, few tags, constraints), the missing ranks are all ``-1`` with
    score ``-inf``.
    """
    if int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = int(k)
    em, lens, trans, st, en = _prepare(emissions, lengths, transitions, start, end)
    n_batch, max_len, n_tags = em.shape
    paths = np.full((n_batch, k, max_len), -1, dtype=np.int32)
    scores = np.full((n_batch, k), -np.inf, dtype=np.float32)
    # Row t=0 of the back-pointers doubles as the final ranking, so it must exist even when L=0.
    rows = max(max_len, 1)
    back_tag = np.empty((n_batch, rows, n_tags, k), dtype=np.int32)
    back_rank = np.empty((n_batch, rows, n_tags, k), dtype=np.int32)
    work = np.empty((n_batch, 2, n_tags, k), dtype=np.float32)
    if n_batch and n_tags:
        _topk_kernel(em, lens, trans, st, en, paths, scores, back_tag, back_rank, work)
    else:
        scores[:, 0] = np.where(lens == 0, 0.0, -np.inf)
    return paths, scores
