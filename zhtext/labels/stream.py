"""A CRF over one sequence too long to hold: the n best paths and their span probabilities, exact,
in memory that does not grow with the sequence.

The emissions arrive in order, row blocks at a time (a tagger's stitched windows), and go through
two passes. Forward: each block of :data:`BLOCK` rows is kept (in memory up to
:data:`HELD_BYTES`, then in an unnamed temporary file) and run through the Viterbi and forward
recursions, of which only a checkpoint per block stays. Backward, last block first: each block is
read back, its Viterbi back-pointers and forward variables recomputed from its checkpoints, its
backward variables carried on from the block after it, and its tags walked back; the finished
part is handed out as a :class:`Region`, a piece of the sequence that no span crosses, with a
:class:`~zhtext.labels.marginals.PathScorer` over its rows. The recursions are the very functions
the whole-sequence kernels run (:mod:`zhtext.labels.viterbi`, :mod:`zhtext.labels.marginals`), so
paths and span probabilities are those of decoding the whole sequence at once.

What is held: one block's arrays, the part of the sequence whose spans are still open (its length
is that of the longest span), and per block a checkpoint of 2K + kK numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from zhtext.io.spill import SpillList
from zhtext.labels.marginals import (
    ChainScores,
    PathScorer,
    Scaled,
    backward_block,
    forward_block,
    log_partition,
)
from zhtext.labels.viterbi import ViterbiBlocks

__all__ = ["BLOCK", "HELD_BYTES", "LongChain", "Region"]

# Rows per block: one block's arrays (4 + 3 x 8 bytes per row and tag) stay a few MB.
BLOCK = 1 << 14
# Emission bytes kept in memory before they move to a temporary file.
HELD_BYTES = 64 << 20


class Region(NamedTuple):
    """A finished piece of the sequence: ``paths[m]`` are path m's tags at rows ``offset ..
    offset + paths.shape[1] - 1``; no span of any path crosses either end; ``scorer`` reads rows
    relative to ``offset`` (one more row than the paths where the sequence goes on)."""

    offset: int
    paths: np.ndarray
    scorer: PathScorer


class LongChain:
    """The ``k`` best paths of one sequence and what scores their spans, its emission rows given
    in order through :meth:`add`, then :meth:`regions`.

    ``trans``, ``start`` and ``end`` are the CRF's constrained scores (float32, forbidden moves at
    -1e4 or -inf) as :meth:`CRF.decode` takes them; ``closes[tag]`` says that no span is open
    after that tag (O, E, S), which is where regions may end.
    """

    def __init__(self, trans: np.ndarray, start: np.ndarray, end: np.ndarray, k: int,
                 closes: np.ndarray) -> None:
        self.viterbi = ViterbiBlocks(trans, start, end, k)
        # float32 scores widened, as the tagger hands them to forward_backward and PathScorer
        self.trans, self.start, self.end = (np.asarray(x, dtype=np.float64) for x in (trans, start, end))
        self.chain = ChainScores(self.trans, self.start, self.end)
        self.closes = np.asarray(closes, dtype=bool)
        self.rows = SpillList(HELD_BYTES, "zhtext-emissions-")
        self.pending: list[np.ndarray] = []  # rows not yet a whole block
        self.pending_rows = 0
        self.alpha: Scaled | None = None
        self.checkpoints: list[Scaled | None] = []
        self.bounds = [0]  # first row of each block, then the length
        self.probs: list[float] = []

    def add(self, rows: np.ndarray) -> None:
        """The next emission rows ``[T, K]`` of the sequence."""
        if len(rows):
            self.pending.append(np.asarray(rows, dtype=np.float32))
            self.pending_rows += len(rows)
        while self.pending_rows >= BLOCK:
            joined = np.concatenate(self.pending)
            self._block(joined[:BLOCK])
            self.pending = [joined[BLOCK:]]
            self.pending_rows -= BLOCK

    def _block(self, em: np.ndarray) -> None:
        em = np.ascontiguousarray(em)
        self.rows.append(em)
        self.viterbi.forward(em)
        self.checkpoints.append(self.alpha)
        self.alpha = forward_block(em, self.chain, self.alpha)[1]
        self.bounds.append(self.bounds[-1] + len(em))

    def regions(self) -> Iterator[Region]:
        """The sequence's regions, last first; afterwards :attr:`probs` holds each path's
        probability. Paths that do not exist (fewer than k allowed) are left out."""
        try:
            yield from self._regions()
        finally:
            self.rows.close()

    def _regions(self) -> Iterator[Region]:
        if self.pending_rows:
            self._block(np.concatenate(self.pending))
            self.pending, self.pending_rows = [], 0
        if self.alpha is None:
            return
        length, k = self.bounds[-1], self.viterbi.k
        log_z = log_partition(self.alpha, self.chain)
        live = int(np.sum(self.viterbi.finish() > -np.inf))
        if live == 0:
            return
        last = self.viterbi.codes[:live] // k  # each path's tag at the last row
        em_sum, trans_sum = np.zeros(live), np.zeros(live)
        beta: Scaled | None = None
        after: np.ndarray | None = None  # the block after's first emission row
        held: tuple[np.ndarray, ...] | None = None  # em, alpha, beta, paths of rows [.., stop (+1))
        stop = length  # rows from here on are handed out
        for index in range(len(self.bounds) - 2, -1, -1):
            begin = self.bounds[index]
            em32 = self.rows[index]
            em = em32.astype(np.float64)
            paths = self.viterbi.backward(index, em32)[:live]
            alpha = forward_block(em, self.chain, self.checkpoints[index])[0]
            beta_rows, beta = backward_block(em, after, self.chain, beta)
            after = em[0]
            # the sums of each path's score, block by block (its probability at the end)
            em_sum += em[np.arange(len(em)), paths].sum(1)
            trans_sum += self.trans[paths[:, :-1], paths[:, 1:]].sum(1)
            if held is not None:
                trans_sum += self.trans[paths[:, -1], held[3][:, 0]]
            # The scorer reads the float32 emissions, as the tagger's whole-text scorer does.
            em_all, alpha_all, beta_all, paths_all = em32, alpha, beta_rows, paths
            if held is not None:  # the rows after this block whose spans are not handed out yet
                em_all, alpha_all, beta_all = (np.concatenate(pair) for pair in
                                               zip((em32, alpha, beta_rows), held[:3]))
                paths_all = np.concatenate([paths, held[3]], axis=1)
            # The region starts at the first row after which no path has a span open.
            before = self.viterbi.codes[:live, None] // k  # the tags at row begin - 1
            previous = np.concatenate([before, paths_all[:, : stop - begin - 1]], axis=1)
            safe = self.closes[previous].all(axis=0)
            if begin == 0:
                safe[0] = True
            cut = begin + int(np.argmax(safe)) if safe.any() else stop
            if cut < stop:
                at = cut - begin
                scorer = PathScorer(em_all[at:], alpha_all[at:], beta_all[at:], log_z, self.trans,
                                    self.start, self.end)
                yield Region(cut, paths_all[:, at : stop - begin], scorer)
            # Kept for the block before: the rows of spans still open, and row cut itself (a BIO
            # span ending there looks at the next row). Copies, so the block's arrays go.
            keep = min(cut + 1, length) - begin
            held = (em_all[:keep].copy(), alpha_all[:keep].copy(), beta_all[:keep].copy(),
                    paths_all[:, :keep].copy())
            stop = cut
        first = held[3][:, 0] if held is not None else last
        scores = self.start[first] + self.end[last] + em_sum + trans_sum
        self.probs = [float(np.exp(min(0.0, score - log_z))) for score in scores]
