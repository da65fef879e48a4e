"""Batches for training and inference: rows of similar length together, padded once."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


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


def pad(rows: Sequence[Sequence[int]], value: int = 0, *, left: bool = False,
        width: int | None = None, device: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ids as one ``(B, width)`` long tensor and its 0/1 attention mask.

    The one padding helper: right padding for encoders and training, ``left=True`` for
    decoder-only generation (the newest token last in every row). ``width`` defaults to the
    longest row.
    """
    import torch

    width = max((len(r) for r in rows), default=0) if width is None else width
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row)
        if n:
            at = slice(width - n, width) if left else slice(0, n)
            ids[i, at] = torch.as_tensor(row, dtype=torch.long)
            mask[i, at] = 1
    if device is not None:
        ids, mask = ids.to(device), mask.to(device)
    return ids, mask


PER_BATCH_TOKENS = 64  # one more model call, in padded tokens: see length_batches


def length_batches(lengths: Sequence[int], batch_size: int, *, longest_first: bool = False,
                   per_batch: int = PER_BATCH_TOKENS) -> list[list[int]]:
    """Indices in inference batches: in length order, at most ``batch_size`` rows each, and a
    run of ``batch_size`` rows split further where the padding that saves outweighs the cost of
    one more model call, counted as ``per_batch`` tokens.

    A large input sorted by length gives runs of nearly equal rows, which stay whole; a few
    rows of mixed lengths (a server's gathered requests: 32 sentences of 12 to 48 characters pad
    to 1.6x their tokens) are cut where it pays, by an exact search over the run's cut points.
    """
    order = length_order(lengths, longest_first)
    batches: list[list[int]] = []
    for b in range(0, len(order), batch_size):
        run = order[b : b + batch_size]
        widths = [lengths[i] for i in run]
        if len(run) * max(widths) - sum(widths) <= per_batch:  # splitting cannot pay
            batches.append(run)
            continue
        # best[j]: the least cost of the first j rows; cost = per_batch + rows x longest per batch.
        # On a tie the longer last batch wins (fewer calls for the same padded tokens).
        best = [0] * (len(run) + 1)
        cut = [0] * (len(run) + 1)
        for j in range(1, len(run) + 1):
            widest, best[j] = 0, -1
            for i in range(j - 1, -1, -1):
                widest = max(widest, widths[i])
                cost = best[i] + per_batch + (j - i) * widest
                if best[j] < 0 or cost <= best[j]:
                    best[j], cut[j] = cost, i
        ends = [len(run)]
        while ends[-1]:
            ends.append(cut[ends[-1]])
        batches.extend(run[a:z] for a, z in itertools.pairwise(ends[::-1]))
    return batches


def length_order(lengths: Sequence[int], longest_first: bool = False) -> list[int]:
    """Indices sorted by length (stable): the order inference batches are cut in, so each batch
    pads only to rows of about its own length. Results go back by index."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i] if longest_first else lengths[i])
