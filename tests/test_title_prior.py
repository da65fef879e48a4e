"""The title prior: a zero prior changes nothing, the loss equals a brute-force sum, cached =
recomputed with the prior on, save/load (and models saved before it), training, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli
from test_unilm import PAIRS, TEXTS

from zhtext.errors import ZhtextError
from zhtext.neural.decoding import DecodeConfig
from zhtext.tasks.title import CachedStep, RecomputeStep, TitleGenerator, TitleTrainConfig

SMALL = {"layers": 2, "hidden": 32, "max_source_len": 48, "max_target_len": 8, "dropout": 0.0,
         "copy": False}  # the prior alone: copying has its own tests (test_title_copy.py)
OPTIONS = [
    DecodeConfig(max_new_tokens=8),
    DecodeConfig(max_new_tokens=8, beam=3),
    DecodeConfig(max_new_tokens=8, beam=4, length_penalty=0.6, num_return=2),
    DecodeConfig(max_new_tokens=8, sample=True, top_k=5, top_p=0.9, seed=3),
    DecodeConfig(max_new_tokens=8, sample=True, seed=1, num_return=3),
]


def tiny(seed: int = 0, strong: bool = False, **kw) -> TitleGenerator:
    """An untrained model; ``strong``: a prior large enough to decide most tokens."""
    torch.manual_seed(seed)
    gen = TitleGenerator.from_scratch([t for p in PAIRS for t in p], **{**SMALL, **kw})
    if strong:
        with torch.no_grad():
            gen.model.prior.scale.uniform_(0.0, 6.0)
            gen.model.prior.shift.normal_(0.0, 1.0)
    return gen


def titles(gen: TitleGenerator, cached: bool = True) -> list:
    return [gen.generate_ids(TEXTS, options, cached=cached) for options in OPTIONS]


def loss(gen: TitleGenerator) -> torch.Tensor:
    with torch.no_grad():
        return gen.model(**gen.collate(gen.training_rows(PAIRS)))


def test_from_scratch_has_the_prior_by_default():
    assert tiny().model.prior is not None
    assert tiny(prior=True).model.prior is not None
    assert tiny(prior=False).model.prior is None


def test_a_zero_prior_changes_nothing():
    """scale = shift = 0: the loss, every logit and every title exactly as without a prior."""
    gen = tiny(1)
    with torch.no_grad():
        gen.model.prior.scale.zero_()
        gen.model.prior.shift.zero_()
    ids, lengths = gen.source_batch(TEXTS)
    with_zero = (loss(gen), CachedStep(gen.model).prefill(ids, lengths)[0],
                 RecomputeStep(gen.model).prefill(ids, lengths)[0], titles(gen), titles(gen, False))
    gen.model.prior = None
    without = (loss(gen), CachedStep(gen.model).prefill(ids, lengths)[0],
               RecomputeStep(gen.model).prefill(ids, lengths)[0], titles(gen), titles(gen, False))
    for a, b in zip(with_zero[:3], without[:3]):
        assert torch.equal(a, b)
    assert with_zero[3:] == without[3:]


def test_loss_adds_the_prior_of_each_pairs_own_content():
    """Brute force: each title position's logits + scale * (the content's 0/1 bag) + shift."""
    gen = tiny(2, strong=True)
    prior = gen.model.prior
    batch = gen.collate(gen.training_rows(PAIRS))
    with torch.no_grad():
        logits = gen.model.lm.cls(gen.model.hidden(**batch))
        ids, types = batch["input_ids"], batch["token_type_ids"]
        losses = []
        for b, pair in enumerate(PAIRS):
            x = torch.zeros(prior.scale.shape[0])
            x[sorted(set(gen._ids([pair.content], 48)[0]))] = 1.0
            bias = prior.scale * x + prior.shift
            for i in range(ids.shape[1] - 1):
                if types[b, i + 1] == 1 and batch["attention_mask"][b, i + 1]:
                    losses.append(torch.nn.functional.cross_entropy(
                        (logits[b, i] + bias)[None], ids[b, i + 1][None]))
        assert torch.allclose(gen.model(**batch), torch.stack(losses).mean(), atol=1e-5)
        # Without the prior the loss differs: the prior is really in it.
        assert not torch.allclose(loss(tiny(2, prior=False)), gen.model(**batch), atol=1e-3)


def test_cached_logits_equal_recomputation_with_the_prior():
    gen = tiny(3, strong=True)
    ids, lengths = gen.source_batch(TEXTS)
    cached, full = CachedStep(gen.model), RecomputeStep(gen.model)
    a, sa = cached.prefill(ids, lengths)
    b, sb = full.prefill(ids, lengths)
    assert torch.allclose(a, b, atol=1e-5)
    # Rows reordered as beam search does (repeated, moved, dropped): each keeps its own prior.
    index = torch.tensor([3, 3, 0, 2, 2, 2])
    a, sa, b, sb = a[index], cached.reorder(sa, index), b[index], full.reorder(sb, index)
    for _ in range(5):
        tokens = a.argmax(-1)
        a, sa = cached.step(tokens, sa)
        b, sb = full.step(tokens, sb)
        assert torch.allclose(a, b, atol=1e-5)


def test_cached_and_recomputed_titles_are_identical_with_the_prior():
    gen = tiny(4, strong=True)
    with_prior = titles(gen)
    assert with_prior == titles(gen, cached=False)
    # The prior decides titles here: without it they differ, and they use the contents' tokens.
    plain = tiny(4, prior=False)
    assert with_prior != titles(plain)
    bags = [set(gen._ids([t], 48)[0]) for t in TEXTS]
    greedy = with_prior[0]
    inside = sum(tok in bags[i] for i, outs in enumerate(greedy) for tok in outs[0])
    assert inside > 0.8 * sum(len(outs[0]) for outs in greedy)


def test_save_and_load_keep_the_prior_and_the_titles(tmp_path):
    gen = tiny(5, strong=True)
    gen.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "zhtext.json").read_text(encoding="utf-8"))
    assert meta["prior"] is True and (tmp_path / "m" / "title_prior.safetensors").is_file()
    again = TitleGenerator.load(tmp_path / "m")
    for name in ("scale", "shift"):
        assert torch.equal(getattr(again.model.prior, name), getattr(gen.model.prior, name))
    assert torch.equal(loss(again), loss(gen))
    assert titles(again) == titles(gen)
    # prior=False drops it: the titles of the same BERT without a prior.
    dropped = TitleGenerator.load(tmp_path / "m", prior=False)
    gen.model.prior = None
    assert dropped.model.prior is None and titles(dropped) == titles(gen)
    dropped.save(tmp_path / "plain")
    meta = json.loads((tmp_path / "plain" / "zhtext.json").read_text(encoding="utf-8"))
    assert meta["prior"] is False and not (tmp_path / "plain" / "title_prior.safetensors").exists()


def test_a_model_saved_before_the_prior_still_loads(tmp_path):
    gen = tiny(6, prior=False)
    gen.save(tmp_path / "old")
    path = tmp_path / "old" / "zhtext.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    del meta["prior"]  # what zhtext wrote before the prior existed
    path.write_text(json.dumps(meta), encoding="utf-8")
    old = TitleGenerator.load(tmp_path / "old")
    assert old.model.prior is None
    assert titles(old) == titles(gen)
    # prior=True gives it a fresh one to train (scale 1, shift 0).
    fresh = TitleGenerator.load(tmp_path / "old", prior=True).model.prior
    assert torch.equal(fresh.scale, torch.ones_like(fresh.scale)) and not fresh.shift.any()


def test_a_missing_or_damaged_prior_file_is_one_error(tmp_path):
    tiny(7).save(tmp_path / "m")
    weights = tmp_path / "m" / "title_prior.safetensors"
    data = bytearray(weights.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    data[start:] = b"\xff" * (len(data) - start)  # NaN everywhere, the header intact
    weights.write_bytes(bytes(data))
    with pytest.raises(ZhtextError, match="title_prior.safetensors: its weights are damaged"):
        TitleGenerator.load(tmp_path / "m")
    weights.unlink()
    with pytest.raises(ZhtextError, match="has no title_prior.safetensors"):
        TitleGenerator.load(tmp_path / "m")


def test_training_with_the_prior_learns_it_and_the_loss_falls(tmp_path):
    config = TitleTrainConfig(train=PAIRS * 8, output=tmp_path / "m", epochs=4, batch_size=4,
                              lr=5e-3, warmup=0.05, progress=False, **SMALL)
    before = loss(tiny())
    gen = TitleGenerator.train(config)
    assert gen.meta["prior"] is True and gen.model.prior is not None
    losses = [h["loss"] for h in gen.history]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.8 * losses[0]
    assert loss(gen) < 0.8 * before
    # Learned jointly: the scale moved from 1 on the contents' tokens.
    seen = sorted({i for t in TEXTS for i in gen._ids([t], 48)[0]})
    assert (gen.model.prior.scale[seen] - 1).abs().max() > 0.02


def test_training_from_a_checkpoint_adds_the_prior_only_when_asked(tmp_path):
    tiny(8, prior=False).save(tmp_path / "base")
    kw = {"train": PAIRS, "max_steps": 1, "batch_size": 4, "progress": False,
          "max_source_len": 48, "max_target_len": 8, "model": str(tmp_path / "base")}
    kept = TitleGenerator.train(TitleTrainConfig(output=tmp_path / "a", **kw))
    added = TitleGenerator.train(TitleTrainConfig(output=tmp_path / "b", prior=True, **kw))
    assert kept.model.prior is None and not kept.meta["prior"]
    assert added.model.prior is not None and added.meta["prior"] is True


def test_cli_train_title_prior_option(tmp_path, monkeypatch, capsys):
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{p.title}\t{p.content}\n" for p in PAIRS), encoding="utf-8")
    common = ["train", "title", "--train", str(data), "--from-scratch", "--layers", "1",
              "--hidden", "16", "--max-steps", "1", "--max-source-len", "40",
              "--max-target-len", "8", "-q"]
    for flag, expected in (([], True), (["--no-prior"], False), (["--prior"], True)):
        out = tmp_path / f"m{len(flag)}{expected}"
        code, _, err = run_cli(monkeypatch, capsys, *common, "-o", str(out), *flag)
        assert code == 0, err
        meta = json.loads((out / "zhtext.json").read_text(encoding="utf-8"))
        assert meta["prior"] is expected
        assert (out / "title_prior.safetensors").is_file() is expected
