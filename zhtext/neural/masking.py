"""Masking for masked-language-model pretraining: tokens grouped into words, whole words chosen.

A row's tokens are grouped by the word each starts in (:func:`token_groups`; with no words every
token is its own group: plain character masking). :func:`choose_groups` picks groups in random
order until about ``rate`` of the tokens are covered, never splitting one, so a word is masked
whole or not at all and no masked run crosses a word boundary. :func:`mask_row` applies BERT's
rule to each chosen group as a whole: 80 % of them become ``[MASK]``, 10 % random tokens, 10 % stay
as they are; every chosen token is predicted. Everything is driven by the ``numpy`` generator
passed in, so a batch is the same whenever it is made (a resumed run sees the same masks).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["IGNORE", "MASK_RATE", "choose_groups", "mask_row", "token_groups"]

MASK_RATE = 0.15
IGNORE = -100  # the label of a token that is not predicted (torch's cross-entropy ignore_index)


def token_groups(offsets: Sequence[tuple[int, int]],
                 words: Sequence[tuple[int, int]] | None = None) -> list[list[int]]:
    """Token positions grouped by word: ``offsets`` are each token's (start, end) characters in
    the text (special tokens have an empty span and belong to no group), ``words`` the (start,
    end) characters of the text's words, covering it in order. Without ``words`` each token is
    its own group. A token belongs to the word its first character is in."""
    positions = [i for i, (start, end) in enumerate(offsets) if end > start]
    if words is None:
        return [[i] for i in positions]
    word_of: dict[int, int] = {}
    for w, (start, end) in enumerate(words):
        for c in range(start, end):
            word_of[c] = w
    groups: dict[int, list[int]] = {}
    for i in positions:
        groups.setdefault(word_of.get(offsets[i][0], -1 - i), []).append(i)
    return list(groups.values())


def choose_groups(groups: Sequence[Sequence[int]], rate: float,
                  rng: np.random.Generator) -> list[Sequence[int]]:
    """Groups taken in random order while they fit within ``round(rate * tokens)`` tokens (at
    least one); a group that would overshoot is passed over for a smaller one. When even the
    smallest group is too big, it alone is taken: every row with a token predicts something."""
    if not groups:
        return []
    total = sum(len(g) for g in groups)
    budget = max(1, round(rate * total))
    chosen: list[Sequence[int]] = []
    covered = 0
    for g in rng.permutation(len(groups)).tolist():
        if covered + len(groups[g]) <= budget:
            chosen.append(groups[g])
            covered += len(groups[g])
            if covered == budget:
                break
    if not chosen:
        chosen.append(min(groups, key=len))
    return chosen


def mask_row(ids: Sequence[int], groups: Sequence[Sequence[int]], rate: float,
             rng: np.random.Generator, mask_id: int, replacements: np.ndarray,
             always_mask: bool = False) -> tuple[list[int], list[int]]:
    """One row masked: (input ids, labels). Chosen groups (:func:`choose_groups`) become
    ``mask_id`` (80 %), tokens drawn from ``replacements`` (10 %) or stay (10 %), one draw per
    group; ``always_mask`` masks every chosen group (for evaluation). Labels hold the original id
    at every chosen position and :data:`IGNORE` elsewhere."""
    inputs = list(ids)
    labels = [IGNORE] * len(inputs)
    for group in choose_groups(groups, rate, rng):
        draw = 0.0 if always_mask else rng.random()
        for i in group:
            labels[i] = inputs[i]
            if draw < 0.8:
                inputs[i] = mask_id
            elif draw < 0.9:
                inputs[i] = int(replacements[rng.integers(len(replacements))])
    return inputs, labels
