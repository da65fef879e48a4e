"""Exact probabilities of tag paths and spans under a linear-chain CRF, by forward-backward in Numba.

``forward_backward`` gives the log forward and backward variables of a batch of emission matrices;
:class:`PathScorer` reads from them the probability of a whole path and of each span on it (the
confidence ``zhtext tag`` reports). No torch: emissions come in as numpy arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit


# Serial on purpose: a batch costs about a millisecond, less than waking threads on a busy machine.
@njit(cache=True)
def _forward_backward_kernel(em, lengths, exp_trans, trans_shift, start, end, alpha, beta, log_z, work):
    """Log forward/backward variables per sequence by the scaled (probability-space) recursions.

    Each step is a [K] x [K, K] product with ``exp_trans`` = exp(transitions - trans_shift), the
    vector renormalised to sum 1 and the log of the scale carried along: only K exps and logs per
    step instead of K^2. ``work`` [B, 2, K] holds the two scaled vectors.
    """
    n_batch, _, n_tags = em.shape
    for b in range(n_batch):
        n = lengths[b]
        log_z[b] = 0.0
        if n == 0:
            continue
        prev = work[b, 0]
        cur = work[b, 1]
        # forward: alpha[t, j] includes the emission at t
        top = -np.inf
        for j in range(n_tags):
            top = max(top, start[j] + em[b, 0, j])
        total = 0.0
        for j in range(n_tags):
            prev[j] = np.exp(start[j] + em[b, 0, j] - top)
            total += prev[j]
        log_scale = top + np.log(total)
        for j in range(n_tags):
            prev[j] /= total
            alpha[b, 0, j] = np.log(prev[j]) + log_scale
        for t in range(1, n):
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
                top = max(top, em[b, t, j])
            total = 0.0
            for j in range(n_tags):
                cur[j] *= np.exp(em[b, t, j] - top)
                total += cur[j]
            log_scale += top + trans_shift + np.log(total)
            for j in range(n_tags):
                cur[j] /= total
                alpha[b, t, j] = np.log(cur[j]) + log_scale
            prev, cur = cur, prev
        top = -np.inf
        for j in range(n_tags):
            top = max(top, end[j])
        total = 0.0
        for j in range(n_tags):
            total += prev[j] * np.exp(end[j] - top)
        log_z[b] = log_scale + top + np.log(total)
        # backward: beta[t, i] excludes the emission at t
        prev = work[b, 0]
        cur = work[b, 1]
        total = 0.0
        for i in range(n_tags):
            prev[i] = np.exp(end[i] - top)
            total += prev[i]
        log_scale = top + np.log(total)
        for i in range(n_tags):
            prev[i] /= total
            beta[b, n - 1, i] = np.log(prev[i]) + log_scale
        for t in range(n - 2, -1, -1):
            peak = -np.inf
            for j in range(n_tags):
                peak = max(peak, em[b, t + 1, j])
            for j in range(n_tags):
                prev[j] *= np.exp(em[b, t + 1, j] - peak)  # prev now holds emission * beta
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
                beta[b, t, i] = np.log(cur[i]) + log_scale
            prev, cur = cur, prev


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
        trans = np.asarray(trans, dtype=np.float64)
        shift = float(trans.max())
        with np.errstate(divide="ignore"):
            _forward_backward_kernel(
                em, np.ascontiguousarray(lengths, dtype=np.int64),
                np.ascontiguousarray(np.exp(trans - shift)), shift,
                np.ascontiguousarray(start, dtype=np.float64), np.ascontiguousarray(end, dtype=np.float64),
                alpha, beta, log_z, np.empty((n_batch, 2, n_tags)),
            )
    return alpha, beta, log_z


class PathScorer:
    """Exact probabilities of a whole tag path, and of the part of it that labels one span, from
    the forward-backward variables of one text (O(span length) each)."""

    def __init__(self, em, alpha, beta, log_z, trans, start, end):
        self.em, self.alpha, self.beta, self.log_z = em, alpha, beta, log_z
        self.trans, self.start, self.end = trans, start, end

    def path_prob(self, path: np.ndarray) -> float:
        score = self.start[path[0]] + self.end[path[-1]] + self.em[np.arange(len(path)), path].sum()
        score += self.trans[path[:-1], path[1:]].sum()
        return float(np.exp(min(0.0, score - self.log_z)))

    def span_prob(self, path: np.ndarray, start: int, end: int, continuation: int = -1) -> float:
        """P(tags start..end-1 equal the path's), minus P(that and tag ``continuation`` at end)."""
        tags = path[start:end]
        inner = self.em[np.arange(start + 1, end), tags[1:]].sum() + self.trans[tags[:-1], tags[1:]].sum()
        head = self.alpha[start, tags[0]] + inner
        prob = np.exp(head + self.beta[end - 1, tags[-1]] - self.log_z)
        if continuation >= 0:
            prob -= np.exp(head + self.trans[tags[-1], continuation] + self.em[end, continuation]
                           + self.beta[end, continuation] - self.log_z)
        return float(min(1.0, max(0.0, prob)))
