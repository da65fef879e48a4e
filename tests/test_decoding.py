"""The shared decoder: exact against brute force and transformers' logits processors."""

from __future__ import annotations

import itertools

import pytest
import torch
from transformers.generation.logits_process import (
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from zhtext.neural.decoding import (
    DecodeConfig,
    _beam_search,
    _Tracker,
    generate,
    iter_generate,
    process_logits,
)
from zhtext.errors import ZhtextError

EOS = 0


class Markov:
    """A toy cached model: next-token logits depend on the last token and the position."""

    def __init__(self, vocab: int = 4, length: int = 8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.table = torch.randn(vocab, vocab, generator=g) * 2
        self.bias = torch.randn(length + 1, vocab, generator=g)
        self.calls = 0

    def start(self, first: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        first_t = torch.tensor(first)
        return self.table[first_t] + self.bias[0], torch.zeros(len(first), dtype=torch.long)

    def step(self, tokens: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        pos = state + 1
        return self.table[tokens] + self.bias[pos], pos

    def reorder(self, state: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return state[index]

    def logp(self, first: int, seq: list[int]) -> float:
        """Log-probability of emitting seq after the prefix token ``first``."""
        total, prev = 0.0, first
        for pos, tok in enumerate(seq):
            total += torch.log_softmax(self.table[prev] + self.bias[pos], -1)[tok].item()
            prev = tok
        return total


def run(model: Markov, first: list[int], **kw) -> list[list[list[int]]]:
    logits, state = model.start(first)
    return generate(model, logits, state, DecodeConfig(**kw), [EOS], [[f] for f in first])


def test_greedy_matches_stepwise_argmax_and_rows_are_independent():
    model = Markov(vocab=6, length=10, seed=1)
    firsts = [1, 2, 3, 4, 5]
    batch = run(model, firsts, max_new_tokens=10)
    for f, out in zip(firsts, batch):
        expect, prev = [], f
        for pos in range(10):
            tok = int((model.table[prev] + model.bias[pos]).argmax())
            if tok == EOS:
                break
            expect.append(tok)
            prev = tok
        assert out == [expect]
        assert run(model, [f], max_new_tokens=10) == [[expect]]


def brute_force_beams(model: Markov, first: int, vocab: int, max_new: int, lp: float):
    hyps = []
    for n in range(max_new + 1):
        for body in itertools.product(range(1, vocab), repeat=n):
            seq = list(body)
            if n < max_new:  # ends with EOS, which counts in the length
                hyps.append((model.logp(first, seq + [EOS]) / (n + 1) ** lp, seq))
            elif n > 0:  # ran to the length limit
                hyps.append((model.logp(first, seq) / n ** lp, seq))
    hyps.sort(key=lambda h: -h[0])
    return [seq for _, seq in hyps]


@pytest.mark.parametrize("lp", [0.0, 1.0, 2.0])
def test_wide_beam_is_exhaustive_search(lp):
    vocab, max_new = 4, 3
    model = Markov(vocab=vocab, length=max_new, seed=2)
    # 64 beams never prune 3**3 live sequences, so the search is exact.
    got = run(model, [1, 2, 3], max_new_tokens=max_new, beam=64, length_penalty=lp, num_return=5)
    for f, out in zip([1, 2, 3], got):
        assert out == brute_force_beams(model, f, vocab, max_new, lp)[:5]


def test_one_beam_without_length_penalty_is_greedy():
    model = Markov(vocab=7, length=12, seed=3)
    greedy = run(model, [1, 2, 3, 4], max_new_tokens=12)
    logits, state = model.start([1, 2, 3, 4])
    opts = DecodeConfig(max_new_tokens=12, length_penalty=0.0)
    assert _beam_search(model, logits, state, opts, [EOS], [[1], [2], [3], [4]]) == greedy


def test_beam_rows_do_not_depend_on_the_batch():
    model = Markov(vocab=9, length=10, seed=4)
    batch = run(model, [1, 5, 8], max_new_tokens=10, beam=3, num_return=2)
    alone = [run(model, [f], max_new_tokens=10, beam=3, num_return=2)[0] for f in [1, 5, 8]]
    assert batch == alone


def test_sampling_is_seeded_and_streaming_equals_generate():
    model = Markov(vocab=12, length=16, seed=5)
    kw = {"max_new_tokens": 16, "sample": True, "seed": 7, "num_return": 3, "top_p": 0.9, "temperature": 1.3}
    a = run(model, [1, 2], **kw)
    b = run(model, [1, 2], **kw)
    assert a == b and len(a) == 2 and all(len(x) == 3 for x in a)
    logits, state = model.start([1, 2])
    streamed: list[list[int]] = [[] for _ in range(6)]
    for rows, toks in iter_generate(model, logits, state, DecodeConfig(**kw), [EOS], [[1], [2]]):
        for r, t in zip(rows.tolist(), toks.tolist()):
            streamed[r].append(t)
    assert [streamed[0:3], streamed[3:6]] == a
    others = [run(model, [1, 2], **{**kw, "seed": s}) for s in range(8, 12)]
    assert any(o != a for o in others)


def test_top_k_one_sampling_is_greedy():
    model = Markov(vocab=10, length=10, seed=6)
    assert run(model, [3, 4], max_new_tokens=10, sample=True, top_k=1, seed=0) == \
        run(model, [3, 4], max_new_tokens=10)


def test_min_new_tokens_and_finished_rows_leave_the_batch():
    model = Markov(vocab=5, length=10, seed=7)
    model.table[:, EOS] = 5.0  # EOS is by far the likeliest token everywhere
    assert run(model, [1, 2], max_new_tokens=10) == [[[]], [[]]]
    out = run(model, [1, 2], max_new_tokens=10, min_new_tokens=4)
    assert all(len(o[0]) == 4 for o in out)
    model.calls = 0
    assert run(model, [1], max_new_tokens=10, beam=3, min_new_tokens=2, length_penalty=0.0)[0][0].__len__() == 2
    assert model.calls <= 3  # settled searches stop stepping


def test_no_repeat_ngram_output_has_no_repeated_ngram():
    model = Markov(vocab=4, length=30, seed=8)
    model.table[:, EOS] = -50.0
    for n in (2, 3):
        for kw in ({}, {"beam": 3}, {"sample": True, "seed": 1}):
            out = run(model, [1, 2, 3], max_new_tokens=30, no_repeat_ngram=n, **kw)
            for f, seqs in zip([1, 2, 3], out):
                seq = [f] + seqs[0]
                grams = [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]
                assert len(grams) == len(set(grams))


def reference(processor, ids: list[list[int]], scores: torch.Tensor) -> torch.Tensor:
    return processor(torch.tensor(ids), scores.clone())


@pytest.mark.parametrize("penalty", [1.3, 0.7])
def test_repetition_penalty_equals_transformers_and_is_sign_correct(penalty):
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 20, generator=g) * 3
    ids = [[1, 2, 3, 4], [5, 5, 6, 7], [8, 9, 10, 11]]
    opts = DecodeConfig(repetition_penalty=penalty)
    ours = process_logits(scores, opts, 5, [EOS], _Tracker(opts, ids, 20, scores.device))
    ref = reference(RepetitionPenaltyLogitsProcessor(penalty), ids, scores)
    assert torch.allclose(ours, ref)
    before = torch.softmax(scores, -1)
    after = torch.softmax(ours, -1)
    for row, seen in enumerate(ids):
        for tok in set(seen):
            if penalty > 1:  # whatever the sign of its logit, a penalised token loses probability
                assert after[row, tok] < before[row, tok]
    assert (scores[0, [1, 2, 3, 4]] < 0).any() and (scores[0, [1, 2, 3, 4]] > 0).any()


def test_no_repeat_ngram_scores_equal_transformers():
    ids = [[1, 2, 3, 1, 2], [4, 4, 4, 4, 4], [1, 2, 1, 3, 1]]
    scores = torch.randn(3, 8)
    for n in (2, 3):
        opts = DecodeConfig(no_repeat_ngram=n)
        ours = process_logits(scores, opts, 0, [EOS], _Tracker(opts, ids, 8, scores.device))
        ref = reference(NoRepeatNGramLogitsProcessor(n), ids, scores)
        assert torch.equal(torch.isinf(ours), torch.isinf(ref))


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.7, 0, 1.0), (1.0, 5, 1.0), (1.0, 0, 0.8),
                                                     (1.5, 10, 0.6), (1.0, 0, 0.05)])
def test_warpers_equal_transformers(temperature, top_k, top_p):
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(4, 50, generator=g) * 2
    opts = DecodeConfig(sample=True, temperature=temperature, top_k=top_k, top_p=top_p)
    ours = process_logits(scores, opts, 0, [EOS])
    ref = scores.clone()
    ids = torch.zeros(4, 1, dtype=torch.long)
    if temperature != 1.0:
        ref = TemperatureLogitsWarper(temperature)(ids, ref)
    if top_k:
        ref = TopKLogitsWarper(top_k)(ids, ref)
    if top_p < 1:
        ref = TopPLogitsWarper(top_p)(ids, ref)
    assert torch.equal(torch.isinf(ours), torch.isinf(ref))
    finite = ~torch.isinf(ref)
    assert torch.allclose(ours[finite], ref[finite])


@pytest.mark.parametrize("kw", [{"temperature": 0}, {"top_p": 0}, {"top_p": 1.5}, {"beam": 0},
                                {"beam": 2, "sample": True}, {"beam": 2, "num_return": 3},
                                {"max_new_tokens": 2, "min_new_tokens": 3}, {"repetition_penalty": 0},
                                {"top_k": -1}])
def test_bad_options_raise_one_clear_error(kw):
    with pytest.raises(ZhtextError, match="bad decoding options"):
        DecodeConfig(**kw)


def test_zero_new_tokens_and_beam_streaming():
    model = Markov()
    logits, state = model.start([1])
    assert generate(model, logits, state, DecodeConfig(max_new_tokens=0), [EOS]) == [[[]]]
    with pytest.raises(ZhtextError):
        next(iter_generate(model, logits, state, DecodeConfig(beam=2), [EOS]))
    assert generate(model, logits, state, DecodeConfig(max_new_tokens=0, num_return=2), [EOS]) == [[[], []]]
