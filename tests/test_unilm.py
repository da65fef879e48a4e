"""UniLM titles: the mask, the loss, cached == recomputed decoding, padding, save/load, training,
data reading, ROUGE on hand-computed cases, and the CLI."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from conftest import run_cli

from zhtext.neural.decoding import DecodeConfig
from zhtext.errors import ZhtextError
from zhtext.eval.metrics import average_rouge, rouge_char
from zhtext.tasks.titledata import TitlePair, read_articles, read_pairs
from zhtext.tasks.title import CachedStep, RecomputeStep, TitleGenerator, UniLM, unilm_allowed

PAIRS = [
    TitlePair("股市大涨", "今天上证指数上涨百分之三，成交量创下新高，券商股领涨。"),
    TitlePair("暴雨来袭", "气象台发布暴雨红色预警，明天全市将有大暴雨，请市民减少出行。"),
    TitlePair("新药获批", "国家药监局批准一种治疗肺癌的新药上市，患者将很快用上。"),
    TitlePair("球队夺冠", "在昨晚的决赛中，主队以三比一击败对手，第一次获得联赛冠军。"),
]
TEXTS = [p.content for p in PAIRS]


def tiny(seed: int = 0, **kw) -> TitleGenerator:
    torch.manual_seed(seed)
    return TitleGenerator.from_scratch([t for p in PAIRS for t in p], layers=2, hidden=32,
                                       max_source_len=48, max_target_len=8, dropout=0.0, **kw)


@functools.cache
def trained(tmp_root: str) -> TitleGenerator:
    return TitleGenerator.train(PAIRS * 30, out_dir=tmp_root, layers=2, hidden=32, epochs=4,
                                batch_size=4, lr=5e-3, warmup=0.05, dropout=0.0, progress=False,
                                max_source_len=48, max_target_len=8)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("title-model")
    trained(str(out))
    return out


# --------------------------------------------------------------------------- mask and loss


def test_mask_pattern_matches_the_definition():
    types = torch.tensor([[0, 0, 0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 1, 1, 0]])
    valid = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1, 0]])
    allowed = unilm_allowed(types, valid)
    for b in range(2):
        n = int(valid[b].sum())
        src = int((types[b, :n] == 0).sum())
        for i in range(n):
            for j in range(types.shape[1]):
                expect = j < n and (j < src or (i >= src and j <= i))
                assert bool(allowed[b, i, j]) == expect, (b, i, j)


def test_loss_covers_title_tokens_only():
    gen = tiny()
    rows = gen.training_rows(PAIRS[:2])
    batch = gen.collate(rows)
    gen.model.eval()
    base = gen.model(**batch)
    # Changing a content token changes the loss only through attention; changing the last title
    # token (the closing [SEP] excluded) must change it; the loss is the mean over title tokens.
    logits = gen.model.lm.cls(gen.model.hidden(**batch))
    ids, types, valid = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
    losses = []
    for b in range(ids.shape[0]):
        for i in range(ids.shape[1] - 1):
            if types[b, i + 1] == 1 and valid[b, i + 1]:
                losses.append(torch.nn.functional.cross_entropy(logits[b, i][None], ids[b, i + 1][None]))
    expected = torch.stack(losses).mean()
    assert torch.allclose(base, expected, atol=1e-6)
    n_title = sum(len(gen._ids([p.title], 8)[0]) + 1 for p in PAIRS[:2])
    assert len(losses) == n_title


def test_content_never_sees_the_title():
    gen = tiny()
    batch = gen.collate(gen.training_rows(PAIRS[:1]))
    other = {k: v.clone() for k, v in batch.items()}
    title_at = batch["token_type_ids"][0].nonzero().squeeze(1)
    other["input_ids"][0, title_at] = 7
    h1, h2 = gen.model.hidden(**batch), gen.model.hidden(**other)
    src = int(title_at[0])
    assert torch.equal(h1[0, :src], h2[0, :src])
    assert not torch.allclose(h1[0, src:], h2[0, src:])


# --------------------------------------------------------------------------- exact cache


def test_cached_logits_equal_recomputation():
    gen = tiny(1)
    ids, lengths = gen.source_batch(TEXTS)
    cached, full = CachedStep(gen.model), RecomputeStep(gen.model)
    a, sa = cached.prefill(ids, lengths)
    b, sb = full.prefill(ids, lengths)
    assert torch.allclose(a, b, atol=1e-5)
    for _ in range(6):  # a plain greedy loop
        tokens = a.argmax(-1)
        assert torch.equal(tokens, b.argmax(-1))
        a, sa = cached.step(tokens, sa)
        b, sb = full.step(tokens, sb)
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("options", [
    DecodeConfig(max_new_tokens=8, beam=3),
    DecodeConfig(max_new_tokens=8, beam=4, length_penalty=0.6, num_return=2),
    DecodeConfig(max_new_tokens=8),
    DecodeConfig(max_new_tokens=8, sample=True, top_k=5, top_p=0.9, seed=3),
])
def test_cached_and_recomputed_decoding_are_identical(options):
    gen = tiny(2)
    assert gen.generate_ids(TEXTS, options) == gen.generate_ids(TEXTS, options, cached=False)


def test_padding_in_a_batch_changes_no_title():
    gen = tiny(3, batch_size=len(TEXTS))
    together = gen.generate(TEXTS, beam=3, max_len=8)
    alone = [gen.generate([t], beam=3, max_len=8)[0] for t in TEXTS]
    assert together == alone
    ids, lengths = gen.source_batch(TEXTS)
    assert len(set(lengths.tolist())) > 1  # the batch really was padded
    logits, _ = CachedStep(gen.model).prefill(ids, lengths)
    for i, text in enumerate(TEXTS):
        one, n = gen.source_batch([text])
        assert torch.allclose(CachedStep(gen.model).prefill(one, n)[0][0], logits[i], atol=1e-5)


def test_decoding_options_are_respected():
    gen = tiny(4)
    ids = gen.generate_ids(TEXTS, DecodeConfig(max_new_tokens=5, min_new_tokens=5, beam=2))
    assert all(len(out[0]) == 5 for out in ids)
    a = gen.generate(TEXTS, sample=True, top_p=0.8, seed=11, max_len=6)
    assert a == gen.generate(TEXTS, sample=True, top_p=0.8, seed=11, max_len=6)
    assert gen(TEXTS[0], beam=1) == gen([TEXTS[0]], beam=1)[0]


def test_no_repeat_ngram_keeps_every_bigram_of_a_title_unique():
    gen = tiny(5)
    # Untrained, the model loops; with the ban no two tokens in a row appear twice.
    loose = gen.generate_ids(TEXTS, DecodeConfig(max_new_tokens=24, min_new_tokens=24))
    assert any(_has_repeat(out[0], 2) for out in loose)
    for beam in (1, 3):
        titles = gen.generate(TEXTS, beam=beam, max_len=24, min_len=24, no_repeat_ngram=2)
        for title in titles:
            ids = gen.tokenizer(title, add_special_tokens=False)["input_ids"]
            assert not _has_repeat(ids, 2)


def _has_repeat(ids: list[int], n: int) -> bool:
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    return len(grams) != len(set(grams))


# --------------------------------------------------------------------------- training and files


def test_tiny_model_overfits_and_round_trips(model_dir, tmp_path):
    gen = TitleGenerator.load(model_dir)
    assert gen(TEXTS, beam=3) == [p.title for p in PAIRS]
    assert gen(TEXTS, beam=1) == [p.title for p in PAIRS]
    assert gen.evaluate(PAIRS, beam=3)["rouge-l"] == pytest.approx(1.0)
    # An in-memory model saved and loaded back: same loss, same titles.
    fresh = tiny(3)
    fresh.save(tmp_path / "saved")
    again = TitleGenerator.load(tmp_path / "saved")
    batch = fresh.collate(fresh.training_rows(PAIRS))
    assert torch.equal(fresh.model(**batch), again.model(**batch))
    assert again(TEXTS, beam=2, max_len=6) == fresh(TEXTS, beam=2, max_len=6)


def test_pretrained_path_keeps_the_mlm_head(tmp_path, model_dir):
    """The by-name path (bert-base-chinese) with a local checkpoint: every weight loads."""
    from transformers import BertForMaskedLM, BertLMHeadModel

    gen = TitleGenerator.load(model_dir)
    mlm = BertForMaskedLM(gen.model.lm.config.__class__(**{**gen.model.lm.config.to_dict(),
                                                            "is_decoder": False}))
    mlm.load_state_dict(gen.model.lm.state_dict(), strict=False)
    mlm.save_pretrained(tmp_path)
    gen.tokenizer.save_pretrained(tmp_path)
    _, info = BertLMHeadModel.from_pretrained(tmp_path, is_decoder=True, output_loading_info=True)
    assert not info["missing_keys"]
    fresh = TitleGenerator.from_pretrained(str(tmp_path), max_source_len=48, max_target_len=8)
    assert fresh(TEXTS, beam=3) == [p.title for p in PAIRS]


def test_interrupted_then_resumed_training_matches_an_uninterrupted_run(tmp_path):
    from zhtext.neural.trainer import checkpoint_path

    kw = {"layers": 2, "hidden": 32, "epochs": 3, "batch_size": 2, "progress": False, "max_source_len": 48,
              "max_target_len": 8}
    whole = TitleGenerator.train(PAIRS, out_dir=tmp_path / "a", **kw)
    first = TitleGenerator.train(PAIRS, out_dir=tmp_path / "b", max_seconds=0.0, **kw)
    assert [h["step"] for h in first.history] == [1] and checkpoint_path(tmp_path / "b").is_file()
    resumed = TitleGenerator.train(PAIRS, out_dir=tmp_path / "b", resume=True, **kw)
    assert [h["step"] for h in resumed.history] == [1, 2, 4, 6]
    assert not checkpoint_path(tmp_path / "b").exists()
    batch = whole.collate(whole.training_rows(PAIRS))
    assert torch.allclose(whole.model(**batch), resumed.model(**batch), atol=1e-6)


def test_unilm_rejects_a_non_bert_model():
    from transformers import GPT2Config, GPT2LMHeadModel

    with pytest.raises(ZhtextError):
        UniLM(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10)))


def test_read_pairs_tsv_and_jsonl(tmp_path):
    tsv = tmp_path / "a.tsv"
    tsv.write_text("标题一\t内容一\n\n标题二\t内容\t二\n", encoding="utf-8")
    assert read_pairs(tsv) == [TitlePair("标题一", "内容一"), TitlePair("标题二", "内容\t二")]
    jl = tmp_path / "a.jsonl"
    jl.write_text('{"title": "甲", "content": "乙"}\n{"title": "丙", "text": "丁"}\n', encoding="utf-8")
    assert read_pairs(jl) == [TitlePair("甲", "乙"), TitlePair("丙", "丁")]
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nno tab here\n", encoding="utf-8")
    with pytest.raises(ZhtextError, match="bad.tsv:2"):
        read_pairs(bad)
    jl.write_text('{"title": "甲", "content": "乙"}\n[1]\n', encoding="utf-8")
    with pytest.raises(ZhtextError, match="a.jsonl:2"):
        read_pairs(jl)


def test_read_articles(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("第一段\n第二段\n", encoding="utf-8")
    assert [t for t, _ in read_articles(f)] == ["第一段\n第二段"]
    assert [t for t, _ in read_articles(f, lines=True)] == ["第一段", "第二段"]
    f.write_text('{"id": 1, "content": "甲"}\n\n{"id": 2, "text": "乙"}\n', encoding="utf-8")
    assert list(read_articles(f)) == [("甲", {"id": 1, "content": "甲"}), ("乙", {"id": 2, "text": "乙"})]


# --------------------------------------------------------------------------- ROUGE by hand


def test_rouge_against_hand_computed_cases():
    # ref 我爱北京 / hyp 我爱上海: unigrams 2 of 4 each side -> F 0.5; bigrams 1 of 3 -> 1/3;
    # LCS 我爱 = 2 -> 0.5.
    r = rouge_char("我爱北京", "我爱上海")
    assert r == pytest.approx({"rouge-1": 0.5, "rouge-2": 1 / 3, "rouge-l": 0.5})
    # ref 北京欢迎你 (5) / hyp 欢迎北京 (4): unigrams 4 -> P 1, R 0.8, F 8/9; bigrams 北京, 欢迎 -> P 2/3,
    # R 2/4, F 4/7; LCS 2 (欢迎 or 北京) -> P 0.5, R 0.4, F 4/9.
    r = rouge_char("北京欢迎你", "欢迎北京")
    assert r == pytest.approx({"rouge-1": 8 / 9, "rouge-2": 4 / 7, "rouge-l": 4 / 9})
    avg = average_rouge([("我爱北京", "我爱上海"), ("甲乙", "甲乙")])
    assert avg["rouge-l"] == pytest.approx(0.75) and avg["count"] == 2


# --------------------------------------------------------------------------- CLI


def test_cli_train_title_evaluate(tmp_path, monkeypatch, capsys, model_dir):
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{p.title}\t{p.content}\n" for p in PAIRS), encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "title", str(data), "--lines", "--model",
                             str(model_dir), "--format", "jsonl")
    assert code == 0, err
    # TSV lines are plain text to `zhtext title`: each whole line is an article.
    assert len(out.splitlines()) == len(PAIRS)
    article = tmp_path / "a.txt"
    article.write_text(PAIRS[1].content, encoding="utf-8")
    code, out, _ = run_cli(monkeypatch, capsys, "title", str(article), "--model", str(model_dir))
    assert (code, out) == (0, PAIRS[1].title + "\n")
    jl = tmp_path / "in.jsonl"
    jl.write_text("".join(json.dumps({"title": p.title, "content": p.content}, ensure_ascii=False)
                          + "\n" for p in PAIRS), encoding="utf-8")
    result = tmp_path / "out.jsonl"
    code, _, _ = run_cli(monkeypatch, capsys, "title", str(jl), "--model", str(model_dir),
                         "-o", str(result), "--format", "jsonl")
    records = [json.loads(line) for line in result.read_text(encoding="utf-8").splitlines()]
    assert code == 0 and [r["title"] for r in records] == [r["reference"] for r in records]
    code, out, _ = run_cli(monkeypatch, capsys, "evaluate", "title", "--model", str(model_dir),
                           "--data", str(data), "--json")
    scores = json.loads(out)
    assert code == 0 and scores["rouge-l"] == pytest.approx(1.0) and scores["count"] == 4
    code, _, err = run_cli(monkeypatch, capsys, "train", "title", "--train", str(data), "--out",
                           str(tmp_path / "m"), "--dev", str(data), "--from-scratch", "--layers", "1",
                           "--hidden", "16",
                           "--epochs", "1", "--max-source-len", "40", "--max-target-len", "8")
    assert code == 0, err
    meta = json.loads((tmp_path / "m" / "zhtext.json").read_text(encoding="utf-8"))
    assert meta["task"] == "title" and 0.0 <= meta["best"]["rouge-l"] <= 1.0
    assert isinstance(TitleGenerator.load(tmp_path / "m")(TEXTS[0], beam=1), str)


@pytest.mark.parametrize("args, message", [
    (["title", "missing.txt", "--model", "{model}"], "missing.txt"),
    (["title", "{bad}", "--model", "no-such-dir/x/y"], "not a zhtext model directory"),
    (["train", "title", "--train", "{bad}", "--out", "{tmp}/o", "--from-scratch"], "bad.tsv:1"),
    (["train", "title", "--train", "{bad}", "--out", "{tmp}/o"], "--from-scratch"),
    (["title", "{bad}", "--model", "{model}", "--top-p", "0"], "top_p"),
])
def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys, model_dir, args, message):
    bad = tmp_path / "bad.tsv"
    bad.write_text("no tab\n", encoding="utf-8")
    args = [a.format(model=model_dir, bad=bad, tmp=tmp_path) for a in args]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1 and not out
    assert not (tmp_path / "o" / "zhtext.json").exists()
