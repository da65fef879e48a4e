"""Exact probabilities of tag paths and spans under a linear-chain CRF, by forward-backward in Numba.

``forward_backward`` gives the log forward and backward variables of a batch of emission matrices;
:func:`score_paths` reads from them the probability of each path a tagger decodes and of each span
on it (the confidence ``zhtext tag`` reports), a batch at a time. No torch: emissions come in as
numpy arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from zhtext.labels.spans import read_spans_into


@njit(cache=True)
def _alpha_first(em_row, start, vec, alpha_row):
    """Forward variables at the first token from ``start``: ``vec`` gets the scaled vector, the
    log of its scale is returned."""
    n_tags = len(vec)
    top = -np.inf
    for j in range(n_tags):
        top = max(top, start[j] + em_row[j])
    total = 0.0
    for j in range(n_tags):
        vec[j] = np.exp(start[j] + em_row[j] - top)
        total += vec[j]
    log_scale = top + np.log(total)
    for j in range(n_tags):
        vec[j] /= total
        alpha_row[j] = np.log(vec[j]) + log_scale
    return log_scale


@njit(cache=True)
def _alpha_step(em_row, exp_trans, trans_shift, prev, cur, log_scale, alpha_row):
    """One forward step: ``cur`` from ``prev`` and this token's emissions; the new log scale."""
    n_tags = len(prev)
    for j in range(n_tags):
        cur[j] = 0.0
    for i in range(n_tags):
        a = prev[i]
        if a == 0.0:
            continue
        row = exp_trans[i]
        for j in range(n_tags):
            cur[j] += a * row[j]
    top = -np.inf
    for j in range(n_tags):
        top = max(top, em_row[j])
    total = 0.0
    for j in range(n_tags):
        cur[j] *= np.exp(em_row[j] - top)
        total += cur[j]
    log_scale += top + trans_shift + np.log(total)
    for j in range(n_tags):
        cur[j] /= total
        alpha_row[j] = np.log(cur[j]) + log_scale
    return log_scale


@njit(cache=True)
def _log_partition(vec, log_scale, end):
    """log Z from the scaled forward vector at the last token."""
    top = -np.inf
    for j in range(len(end)):
        top = max(top, end[j])
    total = 0.0
    for j in range(len(end)):
        total += vec[j] * np.exp(end[j] - top)
    return log_scale + top + np.log(total)


@njit(cache=True)
def _beta_last(end, vec, beta_row):
    """Backward variables at the last token from ``end``; the log of the scale."""
    top = -np.inf
    for i in range(len(end)):
        top = max(top, end[i])
    total = 0.0
    for i in range(len(end)):
        vec[i] = np.exp(end[i] - top)
        total += vec[i]
    log_scale = top + np.log(total)
    for i in range(len(end)):
        vec[i] /= total
        beta_row[i] = np.log(vec[i]) + log_scale
    return log_scale


@njit(cache=True)
def _beta_step(next_em_row, exp_trans, trans_shift, prev, cur, log_scale, beta_row):
    """One backward step: ``cur`` (token t) from ``prev`` (t + 1) and the emissions at t + 1,
    which ``prev`` absorbs in place; the new log scale."""
    n_tags = len(prev)
    peak = -np.inf
    for j in range(n_tags):
        peak = max(peak, next_em_row[j])
    for j in range(n_tags):
        prev[j] *= np.exp(next_em_row[j] - peak)  # prev now holds emission * beta
    total = 0.0
    for i in range(n_tags):
        acc = 0.0
        row = exp_trans[i]
        for j in range(n_tags):
            acc += row[j] * prev[j]
        cur[i] = acc
        total += acc
    log_scale += peak + trans_shift + np.log(total)
    for i in range(n_tags):
        cur[i] /= total
        beta_row[i] = np.log(cur[i]) + log_scale
    return log_scale


# Serial on purpose: a batch costs about a millisecond, less than waking threads on a busy machine.
@njit(cache=True)
def _forward_backward_kernel(em, lengths, exp_trans, trans_shift, start, end, alpha, beta, log_z, work):
    """Log forward/backward variables per sequence by the scaled (probability-space) recursions.

    Each step is a [K] x [K, K] product with ``exp_trans`` = exp(transitions - trans_shift), the
    vector renormalised to sum 1 and the log of the scale carried along: only K exps and logs per
    step instead of K^2. ``work`` [B, 2, K] holds the two scaled vectors. The steps are the
    functions above, which :func:`forward_block` and :func:`backward_block` share, so a sequence
    taken in blocks gets the very same values.
    """
    n_batch = em.shape[0]
    for b in range(n_batch):
        n = lengths[b]
        log_z[b] = 0.0
        if n == 0:
            continue
        prev = work[b, 0]
        cur = work[b, 1]
        # forward: alpha[t, j] includes the emission at t
        log_scale = _alpha_first(em[b, 0], start, prev, alpha[b, 0])
        for t in range(1, n):
            log_scale = _alpha_step(em[b, t], exp_trans, trans_shift, prev, cur, log_scale, alpha[b, t])
            prev, cur = cur, prev
        log_z[b] = _log_partition(prev, log_scale, end)
        # backward: beta[t, i] excludes the emission at t
        prev = work[b, 0]
        cur = work[b, 1]
        log_scale = _beta_last(end, prev, beta[b, n - 1])
        for t in range(n - 2, -1, -1):
            log_scale = _beta_step(em[b, t + 1], exp_trans, trans_shift, prev, cur, log_scale, beta[b, t])
            prev, cur = cur, prev


class ChainScores:
    """A CRF's transition, start and end scores as the forward-backward kernels take them:
    float64, and exp(transitions - their maximum) for the probability-space steps."""

    def __init__(self, trans: np.ndarray, start: np.ndarray, end: np.ndarray) -> None:
        trans = np.asarray(trans, dtype=np.float64)
        self.shift = float(trans.max())
        self.exp_trans = np.ascontiguousarray(np.exp(trans - self.shift))
        self.start = np.ascontiguousarray(start, dtype=np.float64)
        self.end = np.ascontiguousarray(end, dtype=np.float64)


def forward_backward(emissions: np.ndarray, lengths: np.ndarray, trans: np.ndarray,
                     start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log forward ``alpha [B, L, K]`` (including the emission at t), backward ``beta [B, L, K]``
    (excluding it) and ``log Z [B]`` of a CRF, so that alpha[t, k] + beta[t, k] - log Z is the log
    marginal of tag k at t. Scores as :meth:`CRF.constrained` gives them (illegal moves at -1e4,
    whose exp is exactly 0 in float64)."""
    em = np.ascontiguousarray(emissions, dtype=np.float64)
    n_batch, _, n_tags = em.shape
    alpha = np.full(em.shape, -np.inf)
    beta = np.full(em.shape, -np.inf)
    log_z = np.zeros(n_batch)
    if em.size:
        chain = ChainScores(trans, start, end)
        with np.errstate(divide="ignore"):
            _forward_backward_kernel(
                em, np.ascontiguousarray(lengths, dtype=np.int64), chain.exp_trans, chain.shift,
                chain.start, chain.end, alpha, beta, log_z, np.empty((n_batch, 2, n_tags)),
            )
    return alpha, beta, log_z


# --------------------------------------------------------------------------- one long sequence in blocks


class Scaled:
    """The running state of a forward or backward pass: the scaled vector and its log scale."""

    def __init__(self, vec: np.ndarray, log_scale: float) -> None:
        self.vec, self.log_scale = vec, log_scale

    def copy(self) -> Scaled:
        return Scaled(self.vec.copy(), self.log_scale)


@njit(cache=True)
def _forward_block_kernel(em, first, exp_trans, trans_shift, start, vec, work, log_scale, alpha):
    prev, cur = vec, work
    t0 = 0
    if first:
        log_scale = _alpha_first(em[0], start, vec, alpha[0])
        t0 = 1
    for t in range(t0, em.shape[0]):
        log_scale = _alpha_step(em[t], exp_trans, trans_shift, prev, cur, log_scale, alpha[t])
        prev, cur = cur, prev
    if (em.shape[0] - t0) % 2:
        for j in range(len(vec)):
            vec[j] = work[j]
    return log_scale


@njit(cache=True)
def _backward_block_kernel(em, after, last, exp_trans, trans_shift, end, vec, work, log_scale, beta):
    prev, cur = vec, work
    n = em.shape[0]
    if last:
        log_scale = _beta_last(end, vec, beta[n - 1])
    else:
        log_scale = _beta_step(after, exp_trans, trans_shift, prev, cur, log_scale, beta[n - 1])
        prev, cur = cur, prev
    for t in range(n - 2, -1, -1):
        log_scale = _beta_step(em[t + 1], exp_trans, trans_shift, prev, cur, log_scale, beta[t])
        prev, cur = cur, prev
    if (n - 1 + (not last)) % 2:
        for j in range(len(vec)):
            vec[j] = work[j]
    return log_scale


def forward_block(em: np.ndarray, chain: ChainScores, state: Scaled | None
                  ) -> tuple[np.ndarray, Scaled]:
    """The log forward variables of the next block ``em [T, K]`` of a sequence (T >= 1), from the
    state after the block before (None: the block starts the sequence), and the state after it:
    block by block, the values :func:`forward_backward` gives for the whole sequence."""
    em = np.ascontiguousarray(em, dtype=np.float64)
    alpha = np.empty(em.shape)
    first = state is None
    state = Scaled(np.empty(em.shape[1]), 0.0) if state is None else state.copy()
    with np.errstate(divide="ignore"):
        state.log_scale = _forward_block_kernel(em, first, chain.exp_trans, chain.shift, chain.start,
                                                state.vec, np.empty_like(state.vec), state.log_scale,
                                                alpha)
    return alpha, state


def log_partition(state: Scaled, chain: ChainScores) -> float:
    """log Z of a sequence from the forward state after its last token."""
    return float(_log_partition(state.vec, state.log_scale, chain.end))


def backward_block(em: np.ndarray, after: np.ndarray | None, chain: ChainScores,
                   state: Scaled | None) -> tuple[np.ndarray, Scaled]:
    """The log backward variables of a block ``em [T, K]`` of a sequence, taken from the end:
    ``after`` is the emission row just past the block and ``state`` the backward state there
    (both None for the last block); returns them and the state at the block's first token."""
    em = np.ascontiguousarray(em, dtype=np.float64)
    beta = np.empty(em.shape)
    last = state is None
    state = Scaled(np.empty(em.shape[1]), 0.0) if state is None else state.copy()
    after = em[0] if after is None else np.ascontiguousarray(after, dtype=np.float64)
    with np.errstate(divide="ignore"):
        state.log_scale = _backward_block_kernel(em, after, last, chain.exp_trans, chain.shift,
                                                 chain.end, state.vec, np.empty_like(state.vec),
                                                 state.log_scale, beta)
    return beta, state


class PathScorer:
    """The forward-backward variables of one text (or of a stretch of a long one: the rows from
    where its paths start), which :func:`score_paths` reads path and span probabilities from."""

    def __init__(self, em, alpha, beta, log_z, trans, start, end):
        self.em, self.alpha, self.beta, self.log_z = em, alpha, beta, log_z
        self.trans, self.start, self.end = trans, start, end


@njit(cache=True, nogil=True)
def _score_paths_kernel(paths, lengths, limits, roles, kinds, cont, em, alpha, beta, log_z, trans,
                        start, end, starts, ends, span_kinds, probs, counts, path_probs):  # fmt: skip
    n_batch, n_paths, width = paths.shape
    running = np.empty(max(width, 1))
    at = 0
    for b in range(n_batch):
        n = lengths[b]
        for m in range(n_paths):
            path = paths[b, m]
            if n == 0 or path[0] < 0:  # an empty text, or fewer allowed paths than asked for
                continue
            # The path's score gained at each token after the first (its move and emission),
            # summed as it goes: the score inside any span is a difference of two sums.
            running[0] = 0.0
            for t in range(1, n):
                running[t] = running[t - 1] + (em[b, t, path[t]] + trans[path[t - 1], path[t]])
            score = start[path[0]] + em[b, 0, path[0]] + running[n - 1] + end[path[n - 1]]
            path_probs[b, m] = np.exp(min(0.0, score - log_z[b]))
            first = at
            at = read_spans_into(path, n, roles, kinds, starts, ends, span_kinds, at)
            counts[b, m] = at - first
            for i in range(first, at):
                a, e = starts[i], ends[i]
                last = path[e - 1]
                head = alpha[b, a, path[a]] + (running[e - 1] - running[a])
                p = np.exp(head + beta[b, e - 1, last] - log_z[b])
                c = cont[span_kinds[i]]
                if c >= 0 and e < limits[b]:  # BIO: not the span continued by its inside tag
                    p -= np.exp(head + trans[last, c] + em[b, e, c] + beta[b, e, c] - log_z[b])
                probs[i] = min(max(p, 0.0), 1.0)


def score_paths(paths: np.ndarray, lengths: np.ndarray, limits: np.ndarray, roles: np.ndarray,
                kinds: np.ndarray, cont: np.ndarray, em: np.ndarray, alpha: np.ndarray,
                beta: np.ndarray, log_z: np.ndarray, trans: np.ndarray, start: np.ndarray,
                end: np.ndarray) -> tuple[np.ndarray, ...]:
    """The probability of each tag path and of each span on it (the confidence ``zhtext tag``
    reports), for a batch of texts at once.

    ``paths [B, N, L]``: each text's ``N`` paths (tag ids; a path starting with -1 is absent), of
    which the first ``lengths[b]`` tags are read, as spans, by :mod:`zhtext.labels.spans` (tags as
    ``roles`` and ``kinds``). A span's probability is P(its tags equal the path's), less, where
    ``cont[kind]`` >= 0 (BIO's inside tag of the kind) and the span ends before ``limits[b]``,
    P(that and the next tag continuing it). ``em``, ``alpha``, ``beta`` ``[B, >= L, K]`` and
    ``log_z [B]`` are :func:`forward_backward`'s.

    Returns ``(starts, ends, kinds, probs)`` of every span, path after path, ``counts [B, N]``
    (spans per path; -1 where a path is absent or the text empty) and ``path_probs [B, N]``.
    """
    paths = np.ascontiguousarray(paths, dtype=np.int64)
    n_batch, n_paths, width = paths.shape
    room = n_batch * n_paths * width
    starts, ends, span_kinds = (np.empty(room, dtype=np.int64) for _ in range(3))
    probs = np.empty(room)
    counts = np.full((n_batch, n_paths), -1, dtype=np.int64)
    path_probs = np.full((n_batch, n_paths), -1.0)
    f64 = [np.ascontiguousarray(x, dtype=np.float64) for x in (em, alpha, beta, log_z, trans, start, end)]
    i64 = [np.ascontiguousarray(x, dtype=np.int64) for x in (lengths, limits, roles, kinds, cont)]
    with np.errstate(over="ignore", invalid="ignore"):
        _score_paths_kernel(paths, *i64, *f64, starts, ends, span_kinds, probs, counts, path_probs)
    used = int(counts[counts > 0].sum())
    return starts[:used], ends[:used], span_kinds[:used], probs[:used], counts, path_probs


