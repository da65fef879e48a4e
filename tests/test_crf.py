"""CRF layer: likelihood and marginals against brute force, constraints, spans, window mode."""

from __future__ import annotations

import functools
import itertools
import random

import numpy as np
import pytest
import torch

from zhtext.errors import ZhtextError
from zhtext.labels.schemes import (
    SCHEMES,
    allowed_transitions,
    spans,
    spans_to_tags,
    tags_to_spans,
)
from zhtext.neural.crf import CRF, _log_partition_cpu

LABELS = {
    "BIO": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
    "BIOES": ["O", "B-PER", "I-PER", "E-PER", "S-PER"],
    "BMES": ["B", "M", "E", "S"],
}


@pytest.fixture(scope="module", autouse=True)
def one_thread(request):
    """Tiny tensors run fastest on one thread, and far faster than on threads that a Numba kernel
    left busy on a loaded machine."""
    request.addfinalizer(functools.partial(torch.set_num_threads, torch.get_num_threads()))
    torch.set_num_threads(1)


def make_crf(scheme: str | None, n_tags: int = 3, seed: int = 0, **kwargs) -> CRF:
    torch.manual_seed(seed)
    labels = LABELS[scheme] if scheme else None
    crf = CRF(len(labels) if labels else n_tags, labels, scheme, **kwargs).double()
    with torch.no_grad():  # larger than the default init, so paths differ clearly
        for p in crf.parameters():
            p.normal_()
    return crf


def random_batch(n_tags: int, seed: int, n_batch: int = 5, max_len: int = 4):
    gen = torch.Generator().manual_seed(seed)
    emissions = torch.randn(n_batch, max_len, n_tags, generator=gen, dtype=torch.float64)
    lengths = torch.randint(0, max_len + 1, (n_batch,), generator=gen)
    lengths[0], lengths[1] = 0, 1
    mask = torch.arange(max_len)[None, :] < lengths[:, None]
    tags = torch.randint(0, n_tags, (n_batch, max_len), generator=gen)
    return emissions, mask, tags.masked_fill(~mask, -100)


def enumerate_paths(crf: CRF, emissions: torch.Tensor, length: int):
    """Every path of ``length`` tokens and its unnormalised score, with the constrained parameters."""
    trans, start, end = (p.detach() for p in crf.constrained())
    for path in itertools.product(range(crf.num_tags), repeat=length):
        score = start[path[0]] + end[path[-1]] + sum(emissions[t, tag] for t, tag in enumerate(path))
        score = score + sum(trans[a, b] for a, b in zip(path, path[1:]))
        yield path, score


def is_allowed(path, allowed, start_ok, end_ok) -> bool:
    return bool(start_ok[path[0]] and end_ok[path[-1]] and all(allowed[a, b] for a, b in zip(path, path[1:])))


@pytest.mark.parametrize("scheme", [None, *SCHEMES])
def test_log_likelihood_and_marginals_match_brute_force(scheme):
    crf = make_crf(scheme)
    emissions, mask, tags = random_batch(crf.num_tags, seed=len(scheme or ""))
    log_lik = crf.log_likelihood(emissions, tags, mask)
    marginals = crf.marginals(emissions, mask)
    assert log_lik.shape == (emissions.shape[0],) and marginals.shape == emissions.shape
    for b, n in enumerate(mask.sum(1).tolist()):
        if n == 0:
            assert log_lik[b] == 0 and (marginals[b] == 0).all()
            continue
        scored = list(enumerate_paths(crf, emissions[b], n))
        log_z = torch.logsumexp(torch.stack([s for _, s in scored]), 0)
        gold = dict(scored)[tuple(tags[b, :n].tolist())]
        torch.testing.assert_close(log_lik[b], gold - log_z)
        expected = torch.zeros(n, crf.num_tags, dtype=torch.float64)
        for path, score in scored:
            expected[torch.arange(n), torch.tensor(path)] += torch.exp(score - log_z)
        torch.testing.assert_close(marginals[b, :n], expected)
        assert (marginals[b, n:] == 0).all()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_decode_matches_brute_force_argmax_and_respects_constraints(scheme):
    crf = make_crf(scheme).float()
    allowed, start_ok, end_ok = allowed_transitions(crf.labels, scheme)
    gen = torch.Generator().manual_seed(7)
    emissions = 3 * torch.randn(40, 4, crf.num_tags, generator=gen)
    lengths = torch.randint(0, 5, (40,), generator=gen)
    mask = torch.arange(4)[None, :] < lengths[:, None]
    paths, scores = crf.decode(emissions, mask)
    top, top_scores = crf.decode(emissions, mask, top_k=3)
    np.testing.assert_array_equal(top[:, 0], paths)
    for b, n in enumerate(lengths.tolist()):
        if n == 0:
            assert scores[b] == 0 and (paths[b] == -1).all()
            continue
        best = max(enumerate_paths(crf, emissions[b].double(), n), key=lambda item: item[1])
        assert tuple(paths[b, :n]) == best[0]
        assert scores[b] == pytest.approx(float(best[1]), abs=1e-4)
        for path in top[b, :, :n]:
            assert is_allowed(path, allowed, start_ok, end_ok)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_constraints_hold_even_against_huge_emissions(scheme):
    crf = make_crf(scheme).float()
    allowed, start_ok, end_ok = allowed_transitions(crf.labels, scheme)
    gen = torch.Generator().manual_seed(11)
    emissions = 1e6 * torch.randn(64, 12, crf.num_tags, generator=gen)  # dwarfs the -1e4 penalty
    paths, scores = crf.decode(emissions)
    assert np.isfinite(scores).all()
    for path in paths:
        assert is_allowed(path, allowed, start_ok, end_ok)


def test_gradient_flows_and_forbidden_moves_stay_forbidden():
    crf = make_crf("BIO").float()
    emissions, mask, tags = random_batch(crf.num_tags, seed=3, n_batch=8, max_len=6)
    emissions = emissions.float().requires_grad_()
    tags = torch.where(mask, torch.tensor(0), tags)  # all "O": a legal path
    loss = crf(emissions, tags, mask)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert emissions.grad.abs().sum() > 0 and crf.transitions.grad[crf.allowed].abs().sum() > 0
    assert (crf.transitions.grad[~crf.allowed] == 0).all() and (crf.start.grad[~crf.start_ok] == 0).all()
    # However far an optimiser pushes the raw parameters, the moves stay forbidden.
    with torch.no_grad():
        crf.transitions.add_(1e5)
        crf.start.add_(1e5)
    trans, start, _ = crf.constrained()
    assert (trans[~crf.allowed] == -1e4).all() and (start[~crf.start_ok] == -1e4).all()
    paths, _ = crf.decode(emissions.detach(), mask)
    allowed, start_ok, end_ok = allowed_transitions(crf.labels, "BIO")
    for path, n in zip(paths, mask.sum(1).tolist()):
        if n:
            assert is_allowed(path[:n], allowed, start_ok, end_ok)


def _log_space_log_likelihood(crf: CRF, emissions, tags, mask):
    """The log-likelihood by autograd through the log-space forward recursion (the GPU's path)."""
    return crf._path_score(emissions, tags, mask) - crf._forward_scores(emissions, mask)[1]


@pytest.mark.parametrize("scheme", [None, *SCHEMES])
def test_cpu_log_partition_and_gradients_equal_the_log_space_recursion(scheme):
    crf = make_crf(scheme, n_tags=4)
    emissions, mask, _ = random_batch(crf.num_tags, seed=5, n_batch=9, max_len=7)
    emissions = (3 * emissions).requires_grad_()
    paths, _ = crf.decode(emissions.detach(), mask)  # legal gold paths
    tags = torch.from_numpy(np.where(paths < 0, 0, paths)).long()
    weights = torch.linspace(-1.0, 2.0, emissions.shape[0], dtype=torch.float64)

    def grads(log_lik):
        crf.zero_grad()
        emissions.grad = None
        (log_lik * weights).sum().backward()  # a different upstream gradient per sequence
        return [log_lik.detach(), emissions.grad, crf.transitions.grad, crf.start.grad, crf.end.grad]

    fast = grads(crf.log_likelihood(emissions, tags, mask))
    reference = grads(_log_space_log_likelihood(crf, emissions, tags, mask))
    for got, want in zip(fast, reference):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    trans, start, end = crf.constrained()
    torch.autograd.gradcheck(
        lambda e, tr, st, en: _log_partition_cpu(e, mask.sum(1), tr, st, en),
        (emissions.detach().requires_grad_(), trans.detach().requires_grad_(),
         start.detach().requires_grad_(), end.detach().requires_grad_()),
    )


def test_emissions_beyond_float64s_range_take_the_log_space_recursion():
    crf = make_crf("BIOES")
    emissions, mask, _ = random_batch(crf.num_tags, seed=2, n_batch=4, max_len=30)
    emissions = 2000 * emissions  # a scaled step underflows to all zeros
    tags = torch.zeros(mask.shape, dtype=torch.long)
    assert _log_partition_cpu(emissions, mask.sum(1), *crf.constrained()) is None
    got = crf.log_likelihood(emissions, tags, mask)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, _log_space_log_likelihood(crf, emissions, tags, mask))


# Emission rows of four kinds of token over O, B-PER, I-PER, B-LOC, I-LOC. "x" slightly prefers O
# and cannot tell O, I-PER and I-LOC apart otherwise: only the tag before it can.
TOKEN_EMISSIONS = {
    "o": [3.0, -3.0, -3.0, -3.0, -3.0],
    "p": [0.0, 4.0, 0.0, 0.0, 0.0],
    "l": [0.0, 0.0, 0.0, 4.0, 0.0],
    "x": [0.5, -3.0, 0.0, -3.0, 0.0],
}


def context_batch(seed: int, n_batch: int, max_len: int):
    """Random token strings; gold tags continue the entity an "x" follows (O after "o" or at the start)."""
    rng = random.Random(seed)
    rows, tags, lengths = [], [], []
    for _ in range(n_batch):
        n, tag = rng.randint(2, max_len), 0
        kinds = [rng.choice("oplxxx") for _ in range(n)]
        row_tags = []
        for kind in kinds:
            tag = {"o": 0, "p": 1, "l": 3, "x": {0: 0, 1: 2, 2: 2, 3: 4, 4: 4}[tag]}[kind]
            row_tags.append(tag)
        padding = max_len - n
        rows.append([TOKEN_EMISSIONS[kind] for kind in kinds] + [[0.0] * 5] * padding)
        tags.append(row_tags + [-100] * padding)
        lengths.append(n)
    mask = torch.arange(max_len)[None, :] < torch.tensor(lengths)[:, None]
    return torch.tensor(rows), mask, torch.tensor(tags)


def test_learned_transitions_decide_the_path_as_brute_force_does():
    # Unconstrained, with fixed emissions: whatever the decoder gets right about an "x" it owes to
    # the transition scores the CRF learned.
    torch.manual_seed(0)
    crf = CRF(5)
    emissions, mask, gold = context_batch(seed=1, n_batch=256, max_len=6)
    optimiser = torch.optim.Adam(crf.parameters(), lr=0.1)
    for _ in range(100):
        optimiser.zero_grad()
        crf(emissions, gold, mask).backward()
        optimiser.step()
    # Fresh sentences, the first ones checked by brute force.
    emissions, mask, gold = context_batch(seed=2, n_batch=64, max_len=5)
    paths, scores = crf.decode(emissions, mask)
    np.testing.assert_array_equal(np.where(mask, paths, -100), gold)
    for b, n in enumerate(mask[:8].sum(1).tolist()):
        best = max(enumerate_paths(crf, emissions[b].double(), n), key=lambda item: item[1])
        assert tuple(paths[b, :n]) == best[0]
        assert scores[b] == pytest.approx(float(best[1]), abs=1e-4)
    trans = crf.transitions.detach()
    assert trans[1, 2] > trans[1, 0] + 0.5 and trans[3, 4] > trans[3, 0] + 0.5  # B-X -> I-X learned
    assert trans[0, 0] > max(trans[0, 2], trans[0, 4])
    # Without the transitions every "x" falls back to its emissions' O, so the answers change.
    with torch.no_grad():
        crf.transitions.zero_()
    plain, _ = crf.decode(emissions, mask)
    continued = (gold == 2) | (gold == 4)
    assert continued.any()
    assert (torch.from_numpy(plain).long()[continued] == 0).all()


def test_window_mode_lets_a_sequence_start_and_end_inside_an_entity():
    allowed, start_ok, end_ok = allowed_transitions(LABELS["BIOES"], "BIOES")
    assert start_ok.tolist() == [True, True, False, False, True]
    assert end_ok.tolist() == [True, False, False, True, True]
    window = allowed_transitions(LABELS["BIOES"], "BIOES", allow_inside_start=True)
    np.testing.assert_array_equal(window[0], allowed)  # only the ends change
    assert window[1].all() and window[2].all()

    crf = make_crf("BIOES").float()
    emissions = torch.zeros(1, 3, 5)
    emissions[0, :, 2] = 50.0  # "I-PER I-PER I-PER": only legal inside a window
    normal, _ = crf.decode(emissions)
    assert normal[0, 0] != 2 and normal[0, -1] != 2
    by_argument, _ = crf.decode(emissions, allow_inside_start=True)
    assert by_argument[0].tolist() == [2, 2, 2]
    crf.set_window_mode(True)
    by_mode, _ = crf.decode(emissions)
    assert by_mode[0].tolist() == [2, 2, 2]
    assert crf.decode(emissions, allow_inside_start=False)[0].tolist() == normal.tolist()
    # Training in window mode: the likelihood sums over the wider set of paths (brute force).
    tags = torch.tensor([[2, 2, 2]])
    scored = list(enumerate_paths(crf, emissions[0], 3))
    expected = dict(scored)[(2, 2, 2)] - torch.logsumexp(torch.stack([s for _, s in scored]), 0)
    torch.testing.assert_close(crf.log_likelihood(emissions, tags)[0], expected)
    crf.set_window_mode(False)
    assert crf.decode(emissions)[0].tolist() == normal.tolist()


def test_state_dict_round_trip_keeps_decoding():
    crf = make_crf("BIO").float()
    emissions, mask, _ = random_batch(crf.num_tags, seed=9, n_batch=6)
    copy = CRF(5, LABELS["BIO"], "BIO")
    copy.load_state_dict(crf.state_dict())
    assert set(crf.state_dict()) == {"transitions", "start", "end"}
    for a, b in zip(crf.decode(emissions.float(), mask), copy.decode(emissions.float(), mask)):
        np.testing.assert_array_equal(a, b)


def random_spans(rng: random.Random, length: int, typed: bool) -> list[tuple[int, int, str]]:
    found, at = [], 0
    while at < length:
        size = rng.randint(1, 4)
        if at + size <= length and rng.random() < 0.6:
            found.append((at, at + size, rng.choice(["PER", "LOC", "ORG-X"]) if typed else ""))
        at += size
    return found


@pytest.mark.parametrize("scheme", SCHEMES)
def test_spans_and_tags_round_trip(scheme):
    rng = random.Random(scheme)
    for _ in range(200):
        length = rng.randint(0, 12)
        gold = random_spans(rng, length, typed=scheme != "BMES" or rng.random() < 0.5)
        tags = spans_to_tags(length, gold, scheme)
        assert len(tags) == length
        assert tags_to_spans(tags, scheme) == gold
        assert spans_to_tags(length, tags_to_spans(tags, scheme), scheme) == tags


def test_segmentation_tags():
    words = [(0, 2, ""), (2, 3, ""), (3, 6, "")]
    assert spans_to_tags(6, words, "BMES") == ["B", "E", "S", "B", "M", "E"]
    assert tags_to_spans(["B", "E", "S", "B", "M", "E"], "BMES") == words


def test_ill_formed_sequences_are_read_leniently():
    assert tags_to_spans(["I-PER", "I-PER", "O", "I-LOC"], "BIO") == [(0, 2, "PER"), (3, 4, "LOC")]
    assert tags_to_spans(["B-PER", "I-LOC", "B-PER", "B-PER"], "BIO") == [
        (0, 1, "PER"), (1, 2, "LOC"), (2, 3, "PER"), (3, 4, "PER")
    ]
    # BIOES: an entity left open is closed at the end; a stray E is a one-token entity.
    assert tags_to_spans(["B-PER", "I-PER"], "BIOES") == [(0, 2, "PER")]
    assert tags_to_spans(["O", "E-PER", "S-PER", "B-PER", "E-PER"], "BIOES") == [
        (1, 2, "PER"), (2, 3, "PER"), (3, 5, "PER")
    ]
    assert tags_to_spans(["M", "M", "B", "B", "E"], "BMES") == [(0, 2, ""), (2, 3, ""), (3, 5, "")]


def test_spans_of_a_decoded_path_drop_padding():
    labels = LABELS["BIO"]
    assert spans([1, 2, 0, 3, -1, -1], labels, "BIO") == [(0, 2, "PER"), (3, 4, "LOC")]
    crf = CRF(5, labels, "BIO")
    assert crf.spans(np.array([0, 3, 4, -1])) == [(1, 3, "LOC")]
    with pytest.raises(ZhtextError):
        CRF(3).spans([0, 1])


def test_bad_labels_schemes_and_masks_raise():
    with pytest.raises(ZhtextError, match="scheme"):
        allowed_transitions(["O"], "IOB2")
    with pytest.raises(ZhtextError, match="not a BIO label"):
        allowed_transitions(["O", "E-PER"], "BIO")
    with pytest.raises(ZhtextError, match="labels"):
        CRF(4, LABELS["BIO"], "BIO")
    with pytest.raises(ZhtextError, match="label names"):
        CRF(4, scheme="BIO")
    with pytest.raises(ZhtextError, match="overlaps"):
        spans_to_tags(5, [(0, 3, "PER"), (2, 4, "LOC")], "BIO")
    with pytest.raises(ZhtextError, match="does not fit"):
        spans_to_tags(3, [(1, 4, "PER")], "BIO")
    crf = CRF(3)
    with pytest.raises(ValueError, match="prefix"):
        crf.decode(torch.zeros(1, 3, 3), torch.tensor([[True, False, True]]))
    with pytest.raises(ValueError, match="emissions"):
        crf.log_likelihood(torch.zeros(1, 3, 4), torch.zeros(1, 3, dtype=torch.long))


def lenient_spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """The lenient reading, written out plainly: the reference for the Numba reader."""
    found, open_at, open_kind = [], -1, ""
    for i, tag in enumerate(tags):
        prefix, _, kind = tag.partition("-")
        role = {"M": "I"}.get(prefix, prefix)
        if not (open_at >= 0 and kind == open_kind and role in ("I", "E")):
            if open_at >= 0:
                found.append((open_at, i, open_kind))
                open_at = -1
            if role != "O":
                open_at, open_kind = i, kind
        if role in ("E", "S") and open_at >= 0:
            found.append((open_at, i + 1, open_kind))
            open_at = -1
    if open_at >= 0:
        found.append((open_at, len(tags), open_kind))
    return found


@pytest.mark.parametrize("scheme", SCHEMES)
def test_any_tag_sequence_reads_as_the_plain_lenient_reading(scheme):
    rng = random.Random(f"lenient {scheme}")
    prefixes = {"BIO": "BI", "BIOES": "BIES", "BMES": "BMES"}[scheme]
    kinds = [""] if scheme == "BMES" else ["PER", "LOC"]
    tags = ["O"] if scheme != "BMES" else []
    tags += [p + (f"-{k}" if k else "") for p in prefixes for k in kinds]
    for _ in range(300):
        seq = [rng.choice(tags) for _ in range(rng.randint(0, 15))]
        assert tags_to_spans(seq, scheme) == lenient_spans(seq)
