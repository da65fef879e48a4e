"""Numba Viterbi kernels against brute-force enumeration and a plain numpy Viterbi."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from zhtext.labels.viterbi import FORBIDDEN, viterbi_decode, viterbi_topk


def path_score(em, path, trans, start, end) -> np.float32:
    """Score of one path in float32, summed in the kernels' order."""
    score = np.float32(start[path[0]] + em[0, path[0]])
    for t in range(1, len(path)):
        score = np.float32(np.float32(score + trans[path[t - 1], path[t]]) + em[t, path[t]])
    return np.float32(score + end[path[-1]])


def all_paths(em, length, trans, start, end) -> list[tuple[tuple[int, ...], np.float32]]:
    """Every allowed path of the first ``length`` tokens with its score, best first."""
    if length == 0:
        return [((), np.float32(0.0))]
    n_tags = em.shape[1]
    found = []
    for path in itertools.product(range(n_tags), repeat=int(length)):
        score = path_score(em, path, trans, start, end)
        if score > FORBIDDEN / 2:  # a forbidden step contributes -1e4 or -inf
            found.append((path, score))
    found.sort(key=lambda item: -item[1])
    return found


def random_case(rng, constrained: bool):
    n_batch = int(rng.integers(1, 24))
    max_len = int(rng.integers(0, 6))
    n_tags = int(rng.integers(1, 5))
    em = rng.standard_normal((n_batch, max_len, n_tags)).astype(np.float32)
    lengths = rng.integers(0, max_len + 1, n_batch)
    lengths[: min(2, n_batch)] = [0, min(1, max_len)][: min(2, n_batch)]  # always test 0 and 1
    trans = rng.standard_normal((n_tags, n_tags)).astype(np.float32)
    start = rng.standard_normal(n_tags).astype(np.float32)
    end = rng.standard_normal(n_tags).astype(np.float32)
    if constrained:
        trans[rng.random((n_tags, n_tags)) < 0.3] = FORBIDDEN
        start[rng.random(n_tags) < 0.25] = -np.inf
        end[rng.random(n_tags) < 0.25] = FORBIDDEN
    return em, lengths, trans, start, end


@pytest.mark.parametrize("constrained", [False, True])
def test_decode_matches_brute_force(constrained):
    rng = np.random.default_rng(1 + constrained)
    for _ in range(60):
        em, lengths, trans, start, end = random_case(rng, constrained)
        paths, scores = viterbi_decode(em, lengths, trans, start, end)
        assert paths.shape == em.shape[:2] and paths.dtype == np.int32 and scores.dtype == np.float32
        for b, n in enumerate(lengths):
            ranked = all_paths(em[b], n, trans, start, end)
            assert (paths[b, n:] == -1).all()
            if not ranked:  # every path forbidden
                assert scores[b] == -np.inf and (paths[b] == -1).all()
                continue
            assert scores[b] == ranked[0][1]  # 0 for the empty path
            if n:  # the path returned is allowed and scores what the kernel says (robust to ties)
                assert path_score(em[b], paths[b, :n], trans, start, end) == scores[b]


@pytest.mark.parametrize("constrained", [False, True])
def test_topk_matches_brute_force(constrained):
    rng = np.random.default_rng(10 + constrained)
    for _ in range(60):
        em, lengths, trans, start, end = random_case(rng, constrained)
        k = int(rng.integers(1, 12))
        paths, scores = viterbi_topk(em, lengths, trans, start, end, k)
        assert paths.shape == (em.shape[0], k, em.shape[1]) and scores.shape == (em.shape[0], k)
        for b, n in enumerate(lengths):
            ranked = all_paths(em[b], n, trans, start, end)
            found = min(k, len(ranked))
            # Scores: exactly the k best, in descending order; padding is -inf and -1.
            np.testing.assert_array_equal(scores[b, :found], [score for _, score in ranked[:found]])
            assert (scores[b, found:] == -np.inf).all() and (paths[b, found:] == -1).all()
            assert (np.diff(scores[b, :found]) <= 0).all()
            # Paths: distinct, allowed, each scoring what it claims.
            returned = [tuple(paths[b, m, :n]) for m in range(found)]
            assert len(set(returned)) == found
            assert (paths[b, :, n:] == -1).all()
            for m, path in enumerate(returned):
                if n:
                    assert path_score(em[b], path, trans, start, end) == scores[b, m]


def numpy_viterbi(em, n, trans, start, end):
    """Textbook per-sequence Viterbi in float32, first maximum winning."""
    score = start + em[0]
    back = np.zeros((n, em.shape[1]), dtype=np.int64)
    for t in range(1, n):
        cand = (score[:, None] + trans) + em[t][None, :]
        back[t] = cand.argmax(0)
        score = cand.max(0)
    score = score + end
    tag = int(score.argmax())
    path = [tag]
    for t in range(n - 1, 0, -1):
        tag = int(back[t, tag])
        path.append(tag)
    return path[::-1], score.max()


@pytest.mark.parametrize("n_tags", [3, 9, 21])
def test_decode_matches_numpy_viterbi_on_large_batches(n_tags):
    # Many groups of SIMD lanes, a ragged last group and lengths sorted across groups.
    rng = np.random.default_rng(n_tags)
    n_batch, max_len = 203, 40
    em = rng.standard_normal((n_batch, max_len, n_tags)).astype(np.float32)
    lengths = rng.integers(1, max_len + 1, n_batch)
    trans, start, end = (rng.standard_normal(s).astype(np.float32) for s in ((n_tags, n_tags), n_tags, n_tags))
    paths, scores = viterbi_decode(em, lengths, trans, start, end)
    top1_paths, top1_scores = viterbi_topk(em, lengths, trans, start, end, 1)
    np.testing.assert_array_equal(top1_paths[:, 0], paths)
    np.testing.assert_array_equal(top1_scores[:, 0], scores)
    for b, n in enumerate(lengths):
        path, score = numpy_viterbi(em[b], n, trans, start, end)
        assert paths[b, :n].tolist() == path and scores[b] == score


def test_ties_go_to_the_lowest_tag_like_argmax():
    # Small integer scores make exact ties common: the first maximum must win at every step,
    # as in torch's and numpy's max/argmax, so paths match those decoders exactly.
    rng = np.random.default_rng(8)
    n_batch, max_len, n_tags = 64, 10, 4
    em = rng.integers(0, 3, (n_batch, max_len, n_tags)).astype(np.float32)
    trans, start, end = (rng.integers(0, 2, s).astype(np.float32) for s in ((n_tags, n_tags), n_tags, n_tags))
    lengths = rng.integers(1, max_len + 1, n_batch)
    paths, scores = viterbi_decode(em, lengths, trans, start, end)
    top1, _ = viterbi_topk(em, lengths, trans, start, end, 1)
    np.testing.assert_array_equal(top1[:, 0], paths)
    for b, n in enumerate(lengths):
        path, score = numpy_viterbi(em[b], n, trans, start, end)
        assert paths[b, :n].tolist() == path and scores[b] == score
    flat, _ = viterbi_decode(np.zeros((1, 5, 3), np.float32), [5], np.zeros((3, 3)), np.zeros(3), np.zeros(3))
    assert flat[0].tolist() == [0, 0, 0, 0, 0]


def test_topk_orders_ties_by_reversed_path():
    # Among equal scores, the path whose reversed tag sequence is lexicographically smaller
    # comes first (the k=1 rule, extended to every rank).
    rng = np.random.default_rng(9)
    for _ in range(20):
        n_tags, length, k = int(rng.integers(2, 4)), int(rng.integers(1, 5)), int(rng.integers(2, 10))
        em = rng.integers(0, 2, (1, length, n_tags)).astype(np.float32)
        trans = rng.integers(0, 2, (n_tags, n_tags)).astype(np.float32)
        start, end = np.zeros(n_tags, np.float32), rng.integers(0, 2, n_tags).astype(np.float32)
        paths, scores = viterbi_topk(em, [length], trans, start, end, k)
        ranked = sorted(all_paths(em[0], length, trans, start, end), key=lambda item: (-item[1], item[0][::-1]))
        found = min(k, len(ranked))
        assert [tuple(p) for p in paths[0, :found]] == [path for path, _ in ranked[:found]]
        np.testing.assert_array_equal(scores[0, :found], [score for _, score in ranked[:found]])


def test_forbidden_steps_are_never_taken_however_large_the_emissions():
    rng = np.random.default_rng(3)
    n_tags = 4
    trans = rng.standard_normal((n_tags, n_tags)).astype(np.float32)
    trans[:, 1] = FORBIDDEN  # nothing may move into tag 1 ...
    start = np.zeros(n_tags, dtype=np.float32)
    end = np.zeros(n_tags, dtype=np.float32)
    end[2] = -np.inf  # ... and no path may end in tag 2
    em = rng.standard_normal((50, 6, n_tags)).astype(np.float32)
    em[:, :, 1] += 1e6  # far larger than the -1e4 penalty
    em[:, :, 2] += 1e5
    lengths = rng.integers(1, 7, 50)
    paths, scores = viterbi_decode(em, lengths, trans, start, end)
    top, top_scores = viterbi_topk(em, lengths, trans, start, end, 3)
    for b, n in enumerate(lengths):
        for path in (paths[b, :n], *top[b, :, :n]):
            assert (path[1:] != 1).all() and path[-1] != 2
    assert np.isfinite(scores).all() and np.isfinite(top_scores).all()


def test_no_allowed_path_gives_minus_one_and_minus_inf():
    em = np.zeros((2, 3, 2), dtype=np.float32)
    trans = np.full((2, 2), FORBIDDEN, dtype=np.float32)
    paths, scores = viterbi_decode(em, np.array([3, 1]), trans, np.zeros(2), np.zeros(2))
    assert (paths[0] == -1).all() and scores[0] == -np.inf
    assert paths[1].tolist() == [0, -1, -1] and scores[1] == 0.0  # one token needs no transition
    top, top_scores = viterbi_topk(em, np.array([3, 1]), trans, np.zeros(2), np.zeros(2), 3)
    assert (top[0] == -1).all() and (top_scores[0] == -np.inf).all()
    assert top_scores[1].tolist() == [0.0, 0.0, -np.inf]


def test_empty_inputs():
    paths, scores = viterbi_decode(np.zeros((3, 0, 4), np.float32), np.zeros(3), np.zeros((4, 4)), np.zeros(4), np.zeros(4))
    assert paths.shape == (3, 0) and scores.tolist() == [0.0, 0.0, 0.0]
    paths, scores = viterbi_topk(np.zeros((0, 5, 4), np.float32), np.zeros(0), np.zeros((4, 4)), np.zeros(4), np.zeros(4), 2)
    assert paths.shape == (0, 2, 5) and scores.shape == (0, 2)


def test_inputs_are_not_modified_and_bad_shapes_raise():
    rng = np.random.default_rng(4)
    em = rng.standard_normal((2, 3, 3)).astype(np.float32)
    trans = np.full((3, 3), FORBIDDEN, dtype=np.float32)
    kept = trans.copy()
    viterbi_decode(em, [3, 2], trans, np.zeros(3), np.zeros(3))
    np.testing.assert_array_equal(trans, kept)
    with pytest.raises(ValueError, match="transitions"):
        viterbi_decode(em, [3, 2], np.zeros((2, 2)), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="lengths"):
        viterbi_decode(em, [4, 2], trans, np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="lengths"):
        viterbi_decode(em, [3], trans, np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="emissions"):
        viterbi_decode(em[0], [3], trans, np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="k must"):
        viterbi_topk(em, [3, 2], trans, np.zeros(3), np.zeros(3), 0)


def test_many_tags_use_wide_back_pointers_and_stay_exact():
    # K * k > 256 codes do not fit uint8 back-pointers; the kernel switches to int32, and a big K
    # also shrinks the SIMD groups to fit the cache.
    rng = np.random.default_rng(11)
    n_batch, max_len = 37, 7
    for n_tags, k in ((300, 1), (30, 10)):
        em = rng.standard_normal((n_batch, max_len, n_tags)).astype(np.float32)
        lengths = rng.integers(1, max_len + 1, n_batch)
        trans, start, end = (rng.standard_normal(s).astype(np.float32) for s in ((n_tags, n_tags), n_tags, n_tags))
        paths, scores = viterbi_decode(em, lengths, trans, start, end)
        top, top_scores = viterbi_topk(em, lengths, trans, start, end, k)
        np.testing.assert_array_equal(top[:, 0], paths)
        np.testing.assert_array_equal(top_scores[:, 0], scores)
        for b, n in enumerate(lengths):
            path, score = numpy_viterbi(em[b], n, trans, start, end)
            assert paths[b, :n].tolist() == path and scores[b] == score
            assert (np.diff(top_scores[b]) <= 0).all() and len({tuple(p[:n]) for p in top[b]}) == k
            for m in range(k):
                assert path_score(em[b], top[b, m, :n], trans, start, end) == top_scores[b, m]
