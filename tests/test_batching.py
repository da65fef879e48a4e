"""Inference batches by length (zhtext.neural.batching.length_batches): every row once, in length
order, no batch over the size, and the cut points the cheapest there are."""

from __future__ import annotations

import itertools
import random

import pytest

from zhtext.neural.batching import length_batches, length_order


def cost(batches: list[list[int]], lengths: list[int], per_batch: int) -> int:
    return sum(per_batch + len(b) * max(lengths[i] for i in b) for b in batches)


def cheapest(run: list[int], lengths: list[int], per_batch: int) -> int:
    """Brute force: every way of cutting the run (in its order) into consecutive batches."""
    best = None
    for cuts in itertools.product((False, True), repeat=len(run) - 1):
        batches, current = [], [run[0]]
        for row, cut in zip(run[1:], cuts):
            if cut:
                batches.append(current)
                current = []
            current.append(row)
        batches.append(current)
        c = cost(batches, lengths, per_batch)
        best = c if best is None else min(best, c)
    return best


@pytest.mark.parametrize("longest_first", [False, True])
@pytest.mark.parametrize("seed", range(40))
def test_length_batches_cut_each_run_as_cheaply_as_brute_force(seed, longest_first):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 60) for _ in range(rng.randint(1, 25))]
    batch_size, per_batch = rng.randint(1, 10), rng.choice([0, 8, 32, 64, 500])
    batches = length_batches(lengths, batch_size, longest_first=longest_first, per_batch=per_batch)
    assert [i for b in batches for i in b] == length_order(lengths, longest_first)
    assert all(0 < len(b) <= batch_size for b in batches)
    order = length_order(lengths, longest_first)
    for start in range(0, len(order), batch_size):  # each run of batch_size rows on its own
        run = order[start : start + batch_size]
        mine = [b for b in batches if b[0] in run]
        assert cost(mine, lengths, per_batch) == cheapest(run, lengths, per_batch)


def test_mixed_lengths_are_split_and_even_ones_kept_whole():
    mixed = [12, 48] * 16  # a server's gathered requests: one batch would pad half of them 4x
    batches = length_batches(mixed, 32)
    assert [len(b) for b in batches] == [16, 16]
    assert all(len({mixed[i] for i in b}) == 1 for b in batches)
    even = [30, 31, 32] * 20  # sorted large inputs: the padding is worth less than a call
    assert [len(b) for b in length_batches(even, 32)] == [32, 28]
    assert length_batches([], 32) == []
