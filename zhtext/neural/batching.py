"""Batches for training and inference: rows of similar length together, padded once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def bucketed_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int,
                     pool_batches: int = 50) -> list[list[int]]:
    """One epoch's batches of row indices, in random order, each of rows of similar length.

    Rows are shuffled, sorted by length within pools of ``pool_batches`` batches, cut into
    batches, and the batches shuffled again: little padding, and still random batches. The
    order depends only on (seed, epoch), so a resumed run sees the same batches.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    pool = batch_size * pool_batches
    groups: list[list[int]] = []
    for p in range(0, len(order), pool):
        chunk = sorted(order[p:p + pool].tolist(), key=lambda i: lengths[i])
        groups.extend(chunk[b:b + batch_size] for b in range(0, len(chunk), batch_size))
    return [groups[g] for g in rng.permutation(len(groups))]


def batches_of(n: int, batch_size: int, seed: int, epoch: int) -> Iterator[np.ndarray]:
    """Row indices of ``n`` rows in shuffled batches, deterministic in (seed, epoch)."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]
