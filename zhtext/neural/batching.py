"""Batches for training and inference: rows of similar length together, padded once."""

from __future__ import annotations

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


def length_order(lengths: Sequence[int], longest_first: bool = False) -> list[int]:
    """Indices sorted by length (stable): the order inference batches are cut in, so each batch
    pads only to rows of about its own length. Results go back by index."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i] if longest_first else lengths[i])
