"""Viterbi decoding for linear-chain CRFs in Numba: the best path and the k best paths.

One kernel serves both. It takes a whole batch (emissions ``float32 [B, L, K]`` and lengths ``[B]``)
and decodes W sequences at once in SIMD lanes: every array of the inner loop is laid out
[tag, rank, lane], so one (from-tag, to-tag) pair is a contiguous run of W lanes that LLVM turns into
vector instructions, and the K*K pairs of a step do not wait on each other. For the best path, each
pass over the lanes weighs four from-tags, keeping the running maximum and back-pointer in registers.
Groups of W sequences (dealt round-robin from the batch sorted by length, so every group gets an equal
share of the work) run side by side on threads (the kernel releases the GIL) when the batch is big
enough to pay for them. All scratch space is allocated once per call, by the wrappers.

Arithmetic is float32 and in the order ``(score[i] + transitions[i, j]) + emissions[t, j]``, and on
equal scores the lower from-tag wins, as with torch's and numpy's max: the same values, and so the
same paths, as the usual batched torch decoders. Among equal-scoring top-k paths, the one whose
reversed tag sequence is lexicographically smaller comes first (which, for k=1, is that same rule).

Constraints arrive folded into the scores: any transition, start or end score at or below
:data:`FORBIDDEN` (``-1e4``, or ``-inf``) is treated as impossible, so no path ever takes such a step,
however large the emissions. A sequence with no allowed path gets path ``-1`` and score ``-inf``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import config, njit

__all__ = ["FORBIDDEN", "ViterbiBlocks", "viterbi_decode", "viterbi_topk"]

#: Scores at or below this value mark a forbidden transition, start or end.
FORBIDDEN = -1e4

# Below this many (token, from-tag, to-tag, rank) steps per call (~50 µs on one core), decode serially.
_PARALLEL_WORK = 1 << 18


@njit(cache=True)
def _better(best, arg, value, tag):
    """The running (maximum, arg-maximum) after one more candidate; a tie keeps the earlier one."""
    if value > best:
        return value, tag
    return best, arg


@njit(cache=True)
def _ranking(final, end, best, codes):
    """The k best end states from the scores at the last token ``final`` [K, k]: ``best`` (at
    -inf on entry) gets their scores, best first, ``codes`` their ``tag * k + rank``; on equal
    scores the earlier state stays ahead."""
    n_tags, k = final.shape
    for j in range(n_tags):
        for r in range(k):
            v = final[j, r] + end[j]
            if not v > best[k - 1]:
                break
            pos = k - 1
            while pos > 0 and v > best[pos - 1]:
                best[pos] = best[pos - 1]
                codes[pos] = codes[pos - 1]
                pos -= 1
            best[pos] = v
            codes[pos] = j * k + r


@njit(cache=True, nogil=True)
def _viterbi_kernel(first, step, emissions, lengths, order, trans, start, end, paths, scores, backptr,
                    work, emit):
    """The k best paths of the sequences of groups ``first, first + step, ...``;
    ``k = scores.shape[1]``.

    With G groups, lane l of group g decodes the sequence ``order[l*G + g]``; ``order`` must sort
    the batch by length, longest first, so a group's lanes finish together and the running ones stay
    in front. Scratch, per group: ``backptr`` [L, K, k, W] (uint8 or int32) holds
    ``from_tag * k + rank`` for every (step, tag, rank), and its row t=0, never a back-pointer, holds
    the final ranking (and, for k=1, each lane's tag while walking back);
    ``work`` [3, K, k, W] the previous scores, the new scores and each lane's scores at its last
    token; ``emit`` [K, W] this step's emissions.
    """
    n_batch, _, n_tags = emissions.shape
    k = scores.shape[1]
    groups = backptr.shape[0]
    lanes = work.shape[4]  # a run-time value: with a constant W LLVM unrolls into scalar code instead
    last = n_tags - 1
    neg_inf = np.float32(-np.inf)
    for g in range(first, groups, step):
        width = (n_batch - g + groups - 1) // groups  # the lanes l with l*G + g < B
        prev, cur, final = work[g, 0], work[g, 1], work[g, 2]
        bp, em = backptr[g], emit[g]
        # Lanes past the batch's end, or past their own length, compute finite values nobody reads.
        # (Plain loops throughout: in a parallel kernel, as this was, a slice assignment or fill()
        # became a parfor of its own.)
        for lane in range(lanes):
            seq = order[lane * groups + g] if lane < width else -1
            for j in range(n_tags):
                em[j, lane] = 0.0
                for r in range(k):
                    prev[j, r, lane] = neg_inf
                prev[j, 0, lane] = start[j] + emissions[seq, 0, j] if seq >= 0 and lengths[seq] > 0 else 0.0
                for r in range(k):
                    final[j, r, lane] = prev[j, r, lane]
        # Lengths fall lane by lane, so the lanes still running at step t are 0..active-1.
        active = width
        while active > 0 and lengths[order[(active - 1) * groups + g]] <= 1:
            active -= 1
        t = 0
        while active > 0:
            t += 1
            for lane in range(active):
                seq = order[lane * groups + g]
                for j in range(n_tags):
                    em[j, lane] = emissions[seq, t, j]
            span = min(lanes, (active + 15) // 16 * 16)  # whole vectors covering the active lanes
            bpt = bp[t]
            if k == 1:
                # Plain Viterbi. From-tag 0 opens the race; then each pass over the lanes weighs
                # four more from-tags, so the running maximum and back-pointer are loaded and
                # stored once per four candidates. The last pass repeats tag K-1 to fill up: a
                # repeat never strictly beats a maximum it is already part of, and strict > keeps
                # the lower from-tag on equal scores.
                for j in range(n_tags):
                    row, back, e, a = cur[j, 0], bpt[j, 0], em[j], trans[0, j]
                    p = prev[0, 0]
                    for lane in range(span):
                        row[lane] = (p[lane] + a) + e[lane]
                        back[lane] = 0
                    i = 1
                    while i < n_tags:
                        i1, i2, i3 = min(i + 1, last), min(i + 2, last), min(i + 3, last)
                        p0, p1, p2, p3 = prev[i, 0], prev[i1, 0], prev[i2, 0], prev[i3, 0]
                        a0, a1, a2, a3 = trans[i, j], trans[i1, j], trans[i2, j], trans[i3, j]
                        t0, t1, t2, t3 = np.int32(i), np.int32(i1), np.int32(i2), np.int32(i3)
                        for lane in range(span):
                            x = e[lane]
                            best, arg = row[lane], np.int32(back[lane])
                            best, arg = _better(best, arg, (p0[lane] + a0) + x, t0)
                            best, arg = _better(best, arg, (p1[lane] + a1) + x, t1)
                            best, arg = _better(best, arg, (p2[lane] + a2) + x, t2)
                            best, arg = _better(best, arg, (p3[lane] + a3) + x, t3)
                            row[lane] = best
                            back[lane] = arg
                        i += 4
            else:
                # List Viterbi, lane by lane. Almost every candidate fails its first comparison,
                # so this branchy scalar loop beat (measured) branch-free insertion over lanes.
                for lane in range(active):
                    for j in range(n_tags):
                        for r in range(k):
                            cur[j, r, lane] = neg_inf
                        e = em[j, lane]
                        floor = neg_inf  # the k-th best so far: what a candidate must beat
                        for i in range(n_tags):
                            a = trans[i, j]
                            for r in range(k):
                                v = (prev[i, r, lane] + a) + e
                                if not v > floor:
                                    break  # prev[i] is sorted: no lower rank of i can enter
                                pos = k - 1  # strict >: equal scores keep their arrival order
                                while pos > 0 and v > cur[j, pos - 1, lane]:
                                    cur[j, pos, lane] = cur[j, pos - 1, lane]
                                    bpt[j, pos, lane] = bpt[j, pos - 1, lane]
                                    pos -= 1
                                cur[j, pos, lane] = v
                                bpt[j, pos, lane] = i * k + r
                                floor = cur[j, k - 1, lane]
            prev, cur = cur, prev
            while active > 0 and lengths[order[(active - 1) * groups + g]] == t + 1:
                active -= 1
                for j in range(n_tags):
                    for r in range(k):
                        final[j, r, active] = prev[j, r, active]
        for lane in range(width):
            seq = order[lane * groups + g]
            n = lengths[seq]
            if n == 0:
                scores[seq, 0] = 0.0  # the one empty path
                continue
            ranking = bp[0, 0, :, lane]
            best = scores[seq]
            _ranking(final[:, :, lane], end, best, ranking)
            if k == 1:
                if best[0] == neg_inf:
                    ranking[0] = 0  # no allowed path: walk back from a valid tag, then blank it
                continue
            for m in range(k):
                if best[m] == neg_inf:
                    break  # fewer than k allowed paths
                code = ranking[m]
                for t in range(n - 1, -1, -1):
                    tag = code // k
                    paths[seq, m, t] = tag
                    code = bp[t, tag, code % k, lane]
        if k == 1 and width > 0:
            # Walk back all lanes together, longest first: independent loads that overlap, where
            # one lane at a time is a chain of dependent loads.
            tags = bp[0, 0, 0]
            live = 0
            for t in range(lengths[order[g]] - 1, -1, -1):
                while live < width and lengths[order[live * groups + g]] > t:
                    live += 1
                for lane in range(live):
                    tag = tags[lane]
                    paths[order[lane * groups + g], 0, t] = tag
                    tags[lane] = bp[t, tag, 0, lane]
            for lane in range(width):
                seq = order[lane * groups + g]
                if scores[seq, 0] == neg_inf:
                    for t in range(lengths[seq]):
                        paths[seq, 0, t] = -1


_POOLS: dict[int, ThreadPoolExecutor] = {}  # by size, made on first use
os.register_at_fork(after_in_child=_POOLS.clear)  # a forked child has none of the threads


def _pool(threads: int) -> ThreadPoolExecutor:
    """The threads that decode the groups of a big batch (kept: starting them costs ~0.2 ms)."""
    pool = _POOLS.get(threads)
    if pool is None:
        pool = _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="zhtext-viterbi")
    return pool


def _lanes(n_batch: int, n_tags: int, k: int, threads: int) -> int:
    """Sequences per SIMD group, a multiple of 16: one group per thread, at most 128 lanes (longer
    runs over the lanes amortise each loop's set-up), and one group's three score arrays
    (3 x K x k x lanes float32) within 32 KiB, so that they stay in the L1 cache."""
    per_thread = -(-n_batch // threads)
    fits_l1 = 32768 // (12 * n_tags * k) // 16 * 16
    return max(16, min(-(-per_thread // 16) * 16, 128, fits_l1))


def _folded(x: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``x`` as float32 with every forbidden score at -inf (a copy: the caller's array stays)."""
    x = np.array(x, dtype=np.float32, order="C")
    if x.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {x.shape}")
    x[x <= FORBIDDEN] = -np.inf
    return x


def _run(
    emissions: np.ndarray,
    lengths: np.ndarray,
    transitions: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate, fold forbidden scores into -inf, allocate scratch and run the kernel."""
    em = np.ascontiguousarray(emissions, dtype=np.float32)
    if em.ndim != 3:
        raise ValueError(f"emissions must be [B, L, K], got shape {em.shape}")
    n_batch, max_len, n_tags = em.shape
    lens = np.ascontiguousarray(lengths, dtype=np.int64).reshape(-1)
    if lens.shape[0] != n_batch:
        raise ValueError(f"lengths has {lens.shape[0]} entries for a batch of {n_batch}")
    if n_batch and (lens.min() < 0 or lens.max() > max_len):
        raise ValueError(f"lengths must lie in [0, {max_len}]")

    trans = _folded(transitions, (n_tags, n_tags), "transitions")
    st = _folded(start, (n_tags,), "start")
    en = _folded(end, (n_tags,), "end")

    paths = np.full((n_batch, k, max_len), -1, dtype=np.int32)
    scores = np.full((n_batch, k), -np.inf, dtype=np.float32)
    if n_batch == 0 or n_tags == 0 or max_len == 0:
        scores[lens == 0, 0] = 0.0
        return paths, scores
    # Small batches run on the calling thread: threads cost more than they save there, and on a
    # busy machine waking one can wait a whole scheduler slice (~10 ms, measured; ~2 ms a request
    # in a server, when this was a Numba parallel kernel, whose pool runs even one thread's work).
    # Groups narrower than 64 lanes spend much of their time setting up short loops, so a batch
    # too small to give each thread 64 sequences also stays on one thread (measured: B=32, K=41).
    threads = config.NUMBA_NUM_THREADS  # (NUMBA_NUM_THREADS, or every core)
    small = int(lens.sum()) * n_tags * n_tags * k < _PARALLEL_WORK or n_batch < 64 * threads
    lanes = _lanes(n_batch, n_tags, k, 1 if small else threads)
    groups = -(-n_batch // lanes)
    order = np.argsort(-lens, kind="stable")
    # uint8 back-pointers cut the inner loop's memory traffic; int32 when codes pass 255.
    code_type = np.uint8 if n_tags * k <= 256 else np.int32
    backptr = np.empty((groups, max_len, n_tags, k, lanes), dtype=code_type)
    work = np.empty((groups, 3, n_tags, k, lanes), dtype=np.float32)
    emit = np.empty((groups, n_tags, lanes), dtype=np.float32)

    def run(first: int, step: int) -> None:
        _viterbi_kernel(first, step, em, lens, order, trans, st, en, paths, scores, backptr, work,
                        emit)

    if small:
        run(0, 1)
    else:  # the kernel releases the GIL: each thread takes every n-th group
        n = min(threads, groups)
        list(_pool(threads).map(run, range(n), [n] * n))
    return paths, scores


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
    paths, scores = _run(emissions, lengths, transitions, start, end, 1)
    return paths[:, 0], scores[:, 0]


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
    score ``-inf``. ``k=1`` gives exactly :func:`viterbi_decode`'s answer.
    """
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return _run(emissions, lengths, transitions, start, end, int(k))


# --------------------------------------------------------------------------- one long sequence in blocks


@njit(cache=True)
def _block_kernel(em, t0, trans, prev, cur, backptr):
    """Viterbi steps over the rows ``em[t0:]`` of one sequence, from ``prev`` [K, k] (the scores
    at the row before), each as one lane of :func:`_viterbi_kernel` computes it: the same sums in
    the same order, the same tie rules. ``backptr`` [T, K, k] gets the codes ``from_tag * k +
    rank``; returns the array that holds the scores at the last row (``prev`` or ``cur``)."""
    n_tags, k = prev.shape
    neg_inf = np.float32(-np.inf)
    for t in range(t0, em.shape[0]):
        bpt = backptr[t]
        for j in range(n_tags):
            e = em[t, j]
            if k == 1:
                best = (prev[0, 0] + trans[0, j]) + e
                arg = 0
                for i in range(1, n_tags):
                    v = (prev[i, 0] + trans[i, j]) + e
                    if v > best:
                        best, arg = v, i
                cur[j, 0] = best
                bpt[j, 0] = arg
                continue
            for r in range(k):
                cur[j, r] = neg_inf
            floor = neg_inf
            for i in range(n_tags):
                a = trans[i, j]
                for r in range(k):
                    v = (prev[i, r] + a) + e
                    if not v > floor:
                        break
                    pos = k - 1
                    while pos > 0 and v > cur[j, pos - 1]:
                        cur[j, pos] = cur[j, pos - 1]
                        bpt[j, pos] = bpt[j, pos - 1]
                        pos -= 1
                    cur[j, pos] = v
                    bpt[j, pos] = i * k + r
                    floor = cur[j, k - 1]
        prev, cur = cur, prev
    return prev


@njit(cache=True)
def _walk_back(backptr, codes, k, paths):
    """Tags of a block's rows, last to first, for each path whose code at the last row is in
    ``codes``; ``codes`` become those of the row before the block (row 0's back-pointers)."""
    for m in range(len(codes)):
        code = codes[m]
        for t in range(backptr.shape[0] - 1, -1, -1):
            tag = code // k
            paths[m, t] = tag
            code = backptr[t, tag, code % k]
        codes[m] = code


class ViterbiBlocks:
    """The k best paths of one sequence too long to hold, its emissions taken in blocks.

    A first pass hands the blocks in order to :meth:`forward`, which keeps only a checkpoint per
    block (the scores before it: K x k floats); :meth:`finish` ranks the end states; then
    :meth:`backward` takes the same blocks again, last first, recomputes each block's
    back-pointers from its checkpoint and gives its tags. Scores, back-pointers and tie rules
    are :func:`viterbi_topk`'s, so the paths are the ones it finds for the whole sequence.
    """

    def __init__(self, transitions: np.ndarray, start: np.ndarray, end: np.ndarray, k: int) -> None:
        n_tags = len(start)
        self.trans = _folded(transitions, (n_tags, n_tags), "transitions")
        self.start = _folded(start, (n_tags,), "start")
        self.end = _folded(end, (n_tags,), "end")
        self.k = int(k)
        self.code_type = np.uint8 if n_tags * self.k <= 256 else np.int32
        self.scores: np.ndarray | None = None  # at the last row seen
        self.checkpoints: list[np.ndarray | None] = []

    def _steps(self, em: np.ndarray, before: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        em = np.ascontiguousarray(em, dtype=np.float32)
        n_tags = em.shape[1]
        backptr = np.zeros((len(em), n_tags, self.k), dtype=self.code_type)
        if before is None:  # the sequence's first row
            prev = np.full((n_tags, self.k), -np.inf, dtype=np.float32)
            prev[:, 0] = self.start + em[0]
            t0 = 1
        else:
            prev, t0 = before.copy(), 0
        last = _block_kernel(em, t0, self.trans, prev, np.empty_like(prev), backptr)
        return last, backptr

    def forward(self, em: np.ndarray) -> None:
        """The next block of emissions ``float32 [T, K]`` (T >= 1), in order."""
        self.checkpoints.append(self.scores)
        self.scores = self._steps(em, self.scores)[0]

    def finish(self) -> np.ndarray:
        """The scores of the k best paths (``float32 [k]``, -inf for missing ones) once every
        block went through :meth:`forward`."""
        assert self.scores is not None, "no block was given"
        self.best = np.full(self.k, -np.inf, dtype=np.float32)
        self.codes = np.zeros(self.k, dtype=np.int64)
        _ranking(self.scores, self.end, self.best, self.codes)
        return self.best.copy()

    def backward(self, index: int, em: np.ndarray) -> np.ndarray:
        """Tags ``int32 [k, T]`` of block ``index`` (its emissions again), called for the last
        block first; a missing path's rows are meaningless."""
        _, backptr = self._steps(em, self.checkpoints[index])
        paths = np.empty((self.k, len(em)), dtype=np.int32)
        _walk_back(backptr, self.codes, self.k, paths)
        return paths
