"""Copying from the article (TitleCopy): the mixture against a brute-force sum, a closed gate
changes nothing, cached = recomputed with copying on (with and without the prior), save/load,
models saved before it, training, the CLI option."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import run_cli
from test_title_prior import loss, titles
from test_unilm import PAIRS, TEXTS

from zhtext.errors import ZhtextError
from zhtext.tasks.title import (
    COPY_FILE,
    CachedStep,
    RecomputeStep,
    TitleCopy,
    TitleGenerator,
    TitleTrainConfig,
)

SMALL = {"layers": 2, "hidden": 32, "max_source_len": 48, "max_target_len": 8, "dropout": 0.0}


def tiny(seed: int = 0, strong: bool = True, **kw) -> TitleGenerator:
    """An untrained model with copying; ``strong``: a gate and attention that decide most tokens."""
    torch.manual_seed(seed)
    gen = TitleGenerator.from_scratch([t for p in PAIRS for t in p], **{**SMALL, **kw})
    if strong and gen.model.copy is not None:
        with torch.no_grad():
            gen.model.copy.query.weight.normal_(0.0, 2.0)
            gen.model.copy.gate.bias.fill_(-1.0)
    return gen


def test_from_scratch_copies_by_default():
    assert [tiny(**kw).model.copy is not None for kw in ({}, {"copy": True}, {"copy": False})] == [
        True, True, False]


def before_ids(ids: torch.Tensor) -> torch.Tensor:
    return torch.tensor([[-1] + row[:-1] for row in ids.tolist()])


@pytest.mark.parametrize(("follow", "cover"), [((0.0, 0.0), (0.0, 0.0)), ((1.5, 0.7), (-0.8, -1.3)),
                                               ((30.0, -2.0), (3.0, 0.5))])
def test_mixture_equals_a_brute_force_sum(follow, cover):
    """Per position: g * softmax(logits)[v] + (1 - g) * (attention on the article positions
    holding v), summed in plain Python; positions after an occurrence of the token the title
    position read get follow[0] on their scores, and the gate's logit loses follow[1] where
    there is one; positions whose token the title holds get cover[0], and the decoder's logits
    of those tokens cover[1]."""
    torch.manual_seed(0)
    head = TitleCopy(8, dim=4)
    hidden, logits = torch.randn(4, 8), torch.randn(4, 10)
    keys = torch.randn(4, 5, 4)
    ids = torch.tensor([[1, 2, 2, 7, 0], [3, 3, 3, 3, 3], [9, 8, 1, 1, 4], [5, 2, 6, 2, 6]])
    ok = torch.tensor([[False, True, True, True, False], [True] * 5, [False] * 5, [True] * 5])
    previous = torch.tensor([2, 3, 8, 6])
    held = torch.zeros(4, 10, dtype=torch.bool)
    for n, tokens in enumerate([[2, 5], [], [1, 9, 4], [6, 3]]):
        held[n, tokens] = True
    with torch.no_grad():
        head.follow.copy_(torch.tensor(follow))
        head.cover.copy_(torch.tensor(cover))
        got = head(hidden, logits, keys, ids, ok, before_ids(ids), held, previous)
        query = head.query(hidden)
        gate_logit = head.gate(hidden)[:, 0]
    for n in range(4):
        follows = [s > 0 and int(ids[n, s - 1]) == int(previous[n]) and bool(ok[n, s])
                   for s in range(5)]
        scores = [float(query[n] @ keys[n, s]) / math.sqrt(4) + follow[0] * follows[s]
                  + cover[0] * bool(held[n, ids[n, s]]) if ok[n, s] else None for s in range(5)]
        gate = [1 / (1 + math.exp(-(float(gate_logit[n]) - follow[1] * any(follows))))]
        live = [x for x in scores if x is not None]
        total = sum(math.exp(x) for x in live)
        probs = torch.softmax(logits[n] + cover[1] * held[n], -1)
        for v in range(10):
            copied = sum(math.exp(x) / total for s, x in enumerate(scores)
                         if x is not None and int(ids[n, s]) == v)
            expected = gate[0] * float(probs[v]) + (1 - gate[0]) * copied
            assert math.isclose(float(got[n, v].exp()), expected, rel_tol=1e-5, abs_tol=1e-7), (n, v)
        # A distribution: it sums to 1 where the article has content to copy.
        if live:
            assert math.isclose(float(got[n].exp().sum()), 1.0, rel_tol=1e-5)


def test_a_closed_gate_changes_nothing():
    """Gate fully open to generating (g = 1) and no penalty on repeats: every step's scores are
    the decoder's own log-softmax, so every title equals the model's without the copy head."""
    gen = tiny(1, strong=False)
    with torch.no_grad():
        gen.model.copy.gate.weight.zero_()
        gen.model.copy.gate.bias.fill_(1e4)  # log sigmoid = 0 exactly, log(1 - g) = -1e4
        gen.model.copy.cover[1] = 0.0  # the head's own penalty on the decoder's repeats
    with_head = titles(gen), titles(gen, False)
    ids, lengths = gen.source_batch(TEXTS)
    scores = CachedStep(gen.model).prefill(ids, lengths)[0]
    gen.model.copy = None
    plain = CachedStep(gen.model).prefill(ids, lengths)[0]
    assert torch.allclose(scores, torch.log_softmax(plain, -1), atol=1e-6)
    assert with_head == (titles(gen), titles(gen, False))


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_loss_is_the_mixtures_mean_negative_log_likelihood(smoothing):
    """With label smoothing ε, each position's term is (1 - ε) times that plus ε times the mean
    over the vocabulary of the generated distribution's negative log-probabilities."""
    gen = tiny(2)
    gen.model.label_smoothing = smoothing
    batch = gen.collate(gen.training_rows(PAIRS))
    ids, types, valid = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
    with torch.no_grad():
        hidden = gen.model.hidden(**batch)
        logits = gen.model.lm.cls(hidden) + gen.model.prior_logits(ids, ((types == 0) & valid.bool()).sum(1))[:, None]
        losses = []
        for b in range(ids.shape[0]):
            n_source = int(((types[b] == 0) & valid[b].bool()).sum())
            ok = torch.zeros(1, ids.shape[1], dtype=torch.bool)
            ok[0, 1:n_source - 1] = True
            keys = gen.model.copy.keys(hidden[b])[None]
            for i in range(ids.shape[1] - 1):
                if types[b, i + 1] == 1 and valid[b, i + 1]:
                    # The title so far: its tokens at positions 1..i of the title part.
                    held = torch.zeros(1, logits.shape[-1], dtype=torch.bool)
                    for j in range(i + 1):
                        if types[b, j] == 1 and valid[b, j]:
                            held[0, ids[b, j]] = True
                    scores = gen.model.copy(hidden[b, i][None], logits[b, i][None], keys,
                                            ids[b][None], ok, before_ids(ids[b][None]), held,
                                            ids[b, i][None])
                    generated = torch.log_softmax(
                        logits[b, i] + gen.model.copy.cover[1] * held[0], -1)
                    losses.append(-(1 - smoothing) * scores[0, ids[b, i + 1]]
                                  - smoothing * generated.mean())
    assert torch.allclose(loss(gen), torch.stack(losses).mean(), atol=1e-5)
    if smoothing:  # and without copying, torch's own smoothed cross-entropy, by definition
        gen.model.copy = None
        with torch.no_grad():
            target = (types[:, 1:] == 1) & valid[:, 1:].bool()
            scores = torch.log_softmax(logits[:, :-1][target], -1)
            gold = ids[:, 1:][target]
            expected = -((1 - smoothing) * scores.gather(1, gold[:, None])[:, 0]
                         + smoothing * scores.mean(-1)).mean()
        assert torch.allclose(loss(gen), expected, atol=1e-5)


def test_gold_scores_equal_the_mixtures_with_keys_per_article():
    """Training's path (the gold token only; keys once per article, ``rows`` naming each
    position's) gives the full mixture's values and gradients, an article without content too."""
    torch.manual_seed(0)
    head = TitleCopy(hidden=8, dim=4)
    with torch.no_grad():
        head.follow.copy_(torch.tensor([1.5, 0.5]))
        head.cover.copy_(torch.tensor([-0.7, -0.3]))
    vocab, width, rows = 11, 6, torch.tensor([0, 0, 0, 1, 2, 2])
    n = len(rows)
    ids = torch.randint(0, vocab, (3, width))
    ok = torch.ones(3, width, dtype=torch.bool)
    ok[1] = False  # nothing to copy
    ok[2, 4:] = False
    before = torch.cat([torch.full((3, 1), -1), ids[:, :-1]], 1)
    held = torch.rand(n, vocab) < 0.3
    previous, gold = torch.randint(0, vocab, (n,)), ids[rows, 1]
    gold[2] = min(set(range(vocab)) - set(ids[0].tolist()))  # a token the article lacks
    hidden = torch.randn(n, 8, requires_grad=True)
    logits = torch.randn(n, vocab, requires_grad=True)
    article = torch.randn(3, width, 8, requires_grad=True)

    def grads(value):
        return torch.autograd.grad(value.sum(), (hidden, logits, article))

    per_row = [t[rows] for t in (ids, ok, before)]
    full = head(hidden, logits, head.keys(article)[rows], *per_row, held, previous)
    full = full.gather(1, gold[:, None])[:, 0]
    fast = head.gold(hidden, logits, head.keys(article), *per_row, held, previous, gold, rows)
    assert torch.isfinite(fast).all()
    assert torch.allclose(fast, full, atol=1e-6)
    for a, b in zip(grads(fast), grads(full)):
        assert torch.allclose(a, b, atol=1e-6)
    copied = head.gold(hidden, logits, head.keys(article)[rows], *per_row, held, previous, gold)
    assert torch.allclose(copied, full, atol=1e-6)


@pytest.mark.parametrize("prior", [True, False])
def test_cached_equals_recomputed_with_copying(prior):
    gen = tiny(3, prior=prior)
    ids, lengths = gen.source_batch(TEXTS)
    cached, state = CachedStep(gen.model).prefill(ids, lengths)
    recomputed, _ = RecomputeStep(gen.model).prefill(ids, lengths)
    assert torch.allclose(cached, recomputed, atol=1e-5)
    # Keys, ids, content mask, the ids before them and what the title holds ride along.
    assert len(state.source) == 5
    assert titles(gen) == titles(gen, False)
    # Copying decides: the titles are not those of the same model without it.
    first = titles(gen)
    gen.model.copy = None
    assert titles(gen) != first


def test_an_article_without_content_still_gets_scores():
    """Nothing to copy (only special tokens): the decoder's distribution alone, no NaN."""
    gen = tiny(4)
    ids = torch.tensor([[gen.cls_id, gen.sep_id]])
    scores, _ = CachedStep(gen.model).prefill(ids, torch.tensor([2]))
    assert torch.isfinite(scores).all()


def test_save_load_round_trip_keeps_the_copy_head(tmp_path):
    gen = tiny(5)
    gen.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "zhtext.json").read_text())["copy"] is True
    assert (tmp_path / "m" / COPY_FILE).is_file()
    again = TitleGenerator.load(tmp_path / "m")
    for a, b in zip(gen.model.copy.state_dict().values(), again.model.copy.state_dict().values()):
        assert torch.equal(a, b)
    assert titles(again) == titles(gen)
    # Dropped on request, or added fresh to a model without one.
    assert TitleGenerator.load(tmp_path / "m", copy=False).model.copy is None
    tiny(5, copy=False).save(tmp_path / "plain")
    assert "copy" in json.loads((tmp_path / "plain" / "zhtext.json").read_text())
    assert TitleGenerator.load(tmp_path / "plain").model.copy is None
    assert TitleGenerator.load(tmp_path / "plain", copy=True).model.copy is not None


def test_models_saved_before_copying_load_without_it(tmp_path):
    gen = tiny(6, copy=False)
    gen.save(tmp_path / "old")
    meta_file = tmp_path / "old" / "zhtext.json"
    meta = json.loads(meta_file.read_text())
    del meta["copy"]
    meta_file.write_text(json.dumps(meta))
    old = TitleGenerator.load(tmp_path / "old")
    assert old.model.copy is None
    assert titles(old) == titles(gen)


def test_copy_heads_saved_before_run_following_load_without_it(tmp_path):
    """A head saved before ``follow`` existed loads with it at 0: the head it was. A file with a
    weight this version does not know is one line."""
    from safetensors.torch import load_file, save_file

    gen = tiny(8)
    with torch.no_grad():
        gen.model.copy.follow.zero_()
        gen.model.copy.cover.zero_()
    gen.save(tmp_path / "m")
    weights = load_file(str(tmp_path / "m" / COPY_FILE))
    del weights["follow"], weights["cover"]
    save_file(weights, str(tmp_path / "m" / COPY_FILE))
    old = TitleGenerator.load(tmp_path / "m")
    assert old.model.copy.follow.tolist() == old.model.copy.cover.tolist() == [0.0, 0.0]
    assert titles(old) == titles(gen)
    # Each feature decides: the same head with it on gives other titles.
    for name in ("follow", "cover"):
        with torch.no_grad():
            getattr(old.model.copy, name).fill_(-20.0 if name == "cover" else 20.0)
        assert titles(old) != titles(gen), name
        with torch.no_grad():
            getattr(old.model.copy, name).zero_()
    save_file({**weights, "extra": torch.zeros(1)}, str(tmp_path / "m" / COPY_FILE))
    with pytest.raises(ZhtextError, match="cannot load .*: it has unknown \\['extra'\\]: not a"):
        TitleGenerator.load(tmp_path / "m")
    # A weight that was always there, missing, is no neutral value either.
    del weights["gate.bias"]
    save_file(weights, str(tmp_path / "m" / COPY_FILE))
    with pytest.raises(ZhtextError, match="cannot load .*: it lacks \\['gate.bias'\\]: not a"):
        TitleGenerator.load(tmp_path / "m")


def test_a_missing_or_damaged_copy_file_is_one_line(tmp_path):
    tiny(7).save(tmp_path / "m")
    (tmp_path / "m" / COPY_FILE).write_bytes(b"not safetensors")
    with pytest.raises(ZhtextError, match=f"cannot load .*{COPY_FILE}"):
        TitleGenerator.load(tmp_path / "m")
    (tmp_path / "m" / COPY_FILE).unlink()
    with pytest.raises(ZhtextError, match="has no title_copy.safetensors .* a copy head"):
        TitleGenerator.load(tmp_path / "m")


def test_training_with_copying_learns_the_pairs(tmp_path):
    gen = TitleGenerator.train(TitleTrainConfig(
        train=PAIRS * 30, output=tmp_path / "m", layers=2, hidden=32, epochs=4, batch_size=4,
        lr=5e-3, warmup=0.05, dropout=0.0, progress=False, max_source_len=48, max_target_len=8))
    assert gen.model.copy is not None
    assert gen(TEXTS, beam=3) == [p.title for p in PAIRS]
    assert gen.meta["copy"] is True


def test_cli_trains_without_copying_on_request(tmp_path, monkeypatch, capsys):
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{p.title}\t{p.content}\n" for p in PAIRS * 5), encoding="utf-8")
    for flag, has in (("--no-copy", False), ("--copy", True)):
        out = tmp_path / flag.strip("-")
        code, _, err = run_cli(monkeypatch, capsys, "train", "title", "--train", str(data),
                               "--from-scratch", "-o", str(out), "--layers", "1", "--hidden", "16",
                               "--max-source-len", "40", "--max-target-len", "6", "--epochs", "1",
                               flag, "-q")
        assert code == 0, err
        assert json.loads((out / "zhtext.json").read_text())["copy"] is has
        assert (out / COPY_FILE).exists() is has


def test_cli_label_smoothing_reaches_the_loss_and_is_checked(tmp_path, monkeypatch, capsys):
    from safetensors.torch import load_file

    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{p.title}\t{p.content}\n" for p in PAIRS * 5), encoding="utf-8")
    common = ("train", "title", "--train", str(data), "--from-scratch", "--layers", "1",
              "--hidden", "16", "--max-source-len", "40", "--max-target-len", "6", "--epochs", "1",
              "-q")
    weights = {}
    for value in ("0", "0.3"):
        out = tmp_path / f"m{value}"
        code, _, err = run_cli(monkeypatch, capsys, *common, "--label-smoothing", value,
                               "-o", str(out))
        assert code == 0, err
        weights[value] = load_file(str(out / COPY_FILE))
    assert any(not torch.equal(weights["0"][k], weights["0.3"][k]) for k in weights["0"])
    code, _, err = run_cli(monkeypatch, capsys, *common, "--label-smoothing", "1",
                           "-o", str(tmp_path / "bad"))
    assert code == 2 and "--label-smoothing" in err and not (tmp_path / "bad").exists()
    with pytest.raises(ZhtextError, match=r"label_smoothing must lie in \[0, 1\)"):
        TitleGenerator.train(TitleTrainConfig(train=PAIRS, output=tmp_path / "api",
                                              label_smoothing=-0.1))
