"""UniLM titles: the mask, the loss, cached == recomputed decoding, padding, save/load, training,
data reading, ROUGE on hand-computed cases, and the CLI."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from conftest import run_cli

from zhtext.errors import ZhtextError
from zhtext.eval.metrics import average_rouge, rouge_char
from zhtext.neural.decoding import DecodeConfig
from zhtext.neural.tokens import decode_text
from zhtext.neural.trainer import TrainConfig
from zhtext.tasks.title import (
    CachedStep,
    RecomputeStep,
    TitleGenerator,
    TitleTrainConfig,
    UniLM,
    unilm_allowed,
)
from zhtext.tasks.titledata import TitlePair, read_articles, read_pairs

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
    return TitleGenerator.train(TitleTrainConfig(
        train=PAIRS * 30, output=tmp_root, layers=2, hidden=32, epochs=4, batch_size=4, lr=5e-3,
        warmup=0.05, dropout=0.0, progress=False, max_source_len=48, max_target_len=8))


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
    gen = tiny(prior=False, copy=False)  # with the prior, copying: test_title_prior/_copy.py
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
    together = gen(TEXTS, beam=3, max_new_tokens=8)
    alone = [gen(t, beam=3, max_new_tokens=8) for t in TEXTS]
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
    a = gen(TEXTS, sample=True, top_p=0.8, seed=11, max_new_tokens=6)
    assert a == gen(TEXTS, sample=True, top_p=0.8, seed=11, max_new_tokens=6)
    assert all(len(gen.tokenizer(t, add_special_tokens=False)["input_ids"]) <= 6 for t in a)
    assert gen(TEXTS[0], beam=1) == gen([TEXTS[0]], beam=1)[0]


def test_no_repeat_ngram_keeps_every_bigram_of_a_title_unique():
    # Untrained, the decoder alone loops (copying would follow the article's runs instead); with
    # the ban no two tokens in a row appear twice.
    gen = tiny(5, copy=False)
    loose = gen.generate_ids(TEXTS, DecodeConfig(max_new_tokens=24, min_new_tokens=24))
    assert any(_has_repeat(out[0], 2) for out in loose)
    for beam in (1, 3):
        titles = gen(TEXTS, beam=beam, max_new_tokens=24, min_new_tokens=24, no_repeat_ngram=2)
        for title in titles:
            ids = gen.tokenizer(title, add_special_tokens=False)["input_ids"]
            assert not _has_repeat(ids, 2)
    # Titles ban a repeated trigram by default; 0 switches the ban off.
    assert any(_has_repeat(out[0], 3) for out in loose)
    for title in gen(TEXTS, max_new_tokens=24, min_new_tokens=24):
        assert not _has_repeat(gen.tokenizer(title, add_special_tokens=False)["input_ids"], 3)
    off = gen.generate_ids(TEXTS, gen.decode_config(max_new_tokens=24, min_new_tokens=24,
                                                    no_repeat_ngram=0))
    assert any(_has_repeat(out[0], 3) for out in off)


def _has_repeat(ids: list[int], n: int) -> bool:
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    return len(grams) != len(set(grams))


def test_one_decoding_vocabulary():
    gen = tiny(6)
    assert TitleGenerator.decoding == DecodeConfig(beam=3, max_new_tokens=32, min_new_tokens=1,
                                                        no_repeat_ngram=3)
    # No argument means the class default; overrides change single fields of it.
    assert gen(TEXTS) == gen(TEXTS, config=TitleGenerator.decoding)
    config = DecodeConfig(beam=2, max_new_tokens=5, length_penalty=0.6)
    assert gen(TEXTS, config=config) == gen(TEXTS, beam=2, max_new_tokens=5, length_penalty=0.6)
    assert gen(TEXTS, config=config, beam=1) == gen(TEXTS, max_new_tokens=5, length_penalty=0.6, beam=1)
    assert gen.predict(TEXTS, config) == [decode_text(gen.tokenizer, out[0])
                                          for out in gen.generate_ids(TEXTS, config)]
    # Sampling follows one path: the default beam width gives way instead of clashing.
    assert TitleGenerator.decode_config(sample=True, top_k=3).beam == 1
    assert TitleGenerator.decode_config(config, max_new_tokens=7) == DecodeConfig(
        beam=2, max_new_tokens=7, length_penalty=0.6)


@pytest.mark.parametrize("options, message", [
    ({"max_len": 8}, "unknown decoding option 'max_len'"),
    ({"min_len": 2}, "unknown decoding option 'min_len'"),
    ({"top_p": 0.0}, "top_p"),
    ({"min_new_tokens": 9, "max_new_tokens": 8}, "min_new_tokens"),
    ({"num_return": 2}, "one title per text"),
])
def test_bad_decoding_options_are_one_error(options, message):
    with pytest.raises(ZhtextError, match=message):
        tiny(6)(TEXTS[0], **options)


# --------------------------------------------------------------------------- training and files


def test_tiny_model_overfits_and_round_trips(model_dir, tmp_path):
    gen = TitleGenerator.load(model_dir)
    assert gen(TEXTS, beam=3) == [p.title for p in PAIRS]
    assert gen(TEXTS, beam=1) == [p.title for p in PAIRS]
    assert gen.evaluate(PAIRS, beam=3)["rouge-l"] == pytest.approx(1.0)
    assert gen.evaluate(PAIRS, beam=3)["empty"] == 0
    assert gen.evaluate(PAIRS, beam=1, max_new_tokens=0)["empty"] == len(PAIRS)
    # The figure tells models apart: the same architecture untrained is far from it.
    assert tiny(3).evaluate(PAIRS, beam=3)["rouge-l"] < 0.5
    # An in-memory model saved and loaded back: same loss, same titles.
    fresh = tiny(3)
    fresh.save(tmp_path / "saved")
    again = TitleGenerator.load(tmp_path / "saved")
    batch = fresh.collate(fresh.training_rows(PAIRS))
    assert torch.equal(fresh.model(**batch), again.model(**batch))
    assert again(TEXTS, beam=2, max_new_tokens=6) == fresh(TEXTS, beam=2, max_new_tokens=6)
    assert (again.max_source_len, again.max_target_len) == (48, 8)
    assert again.meta["from_scratch"] == fresh.meta["from_scratch"]


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
    assert not (tmp_path / "zhtext.json").exists()  # a plain checkpoint, not a zhtext folder
    fresh = TitleGenerator.load(str(tmp_path), max_source_len=48, max_target_len=8)
    # The same weights as the trained model without its prior and copy head, which a plain
    # checkpoint lacks.
    bare = TitleGenerator.load(model_dir, prior=False, copy=False)
    assert fresh(TEXTS, beam=3) == bare(TEXTS, beam=3)
    assert all(fresh(TEXTS, beam=3))
    assert (fresh.max_source_len, fresh.max_target_len, fresh.meta) == (48, 8, {})
    # Without settings a plain checkpoint takes the training defaults (256 + 32 tokens), which
    # this small model's 59 positions cannot hold: one clear error.
    with pytest.raises(ZhtextError, match="exceed the model's 59 positions"):
        TitleGenerator.load(tmp_path)


def test_load_rejects_what_is_not_a_title_model(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    gen = tiny()
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=len(gen.tokenizer))
                    ).save_pretrained(tmp_path / "gpt")
    gen.tokenizer.save_pretrained(tmp_path / "gpt")
    with pytest.raises(ZhtextError, match="is a gpt2 model: titles need a BERT"):
        TitleGenerator.load(tmp_path / "gpt")
    gen.save(tmp_path / "other")
    meta = json.loads((tmp_path / "other" / "zhtext.json").read_text(encoding="utf-8"))
    (tmp_path / "other" / "zhtext.json").write_text(json.dumps({**meta, "task": "tagger"}))
    with pytest.raises(ZhtextError, match="a zhtext tagger model, not a title model"):
        TitleGenerator.load(tmp_path / "other")
    with pytest.raises(ZhtextError, match="no such directory"):
        TitleGenerator.load(tmp_path / "missing" / "x" / "y")


def test_interrupted_then_resumed_training_matches_an_uninterrupted_run(tmp_path):
    from zhtext.neural.trainer import checkpoint_path

    kw = {"train": PAIRS, "layers": 2, "hidden": 32, "epochs": 3, "batch_size": 2, "progress": False,
          "max_source_len": 48, "max_target_len": 8}
    whole = TitleGenerator.train(TitleTrainConfig(output=tmp_path / "a", **kw))
    first = TitleGenerator.train(TitleTrainConfig(output=tmp_path / "b", max_seconds=0.0, **kw))
    assert [h["step"] for h in first.history] == [1] and checkpoint_path(tmp_path / "b").is_file()
    resumed = TitleGenerator.train(TitleTrainConfig(output=tmp_path / "b", resume=True, **kw))
    assert [h["step"] for h in resumed.history] == [1, 2, 4, 6]
    assert not checkpoint_path(tmp_path / "b").exists()
    batch = whole.collate(whole.training_rows(PAIRS))
    assert torch.allclose(whole.model(**batch), resumed.model(**batch), atol=1e-6)


def test_a_run_without_label_smoothing_resumes_only_without_it(tmp_path):
    """A checkpoint of a run without smoothing (as every run before the setting) names the setting
    when resumed with the default, and resumes with ``label_smoothing=0``."""
    from zhtext.neural.trainer import checkpoint_path

    kw = {"train": PAIRS, "layers": 1, "hidden": 16, "epochs": 2, "batch_size": 2,
          "progress": False, "max_source_len": 48, "max_target_len": 8, "output": tmp_path}
    TitleGenerator.train(TitleTrainConfig(max_seconds=0.0, label_smoothing=0.0, **kw))
    assert checkpoint_path(tmp_path).is_file()
    with pytest.raises(ZhtextError, match=r"label_smoothing: none in it, 0.1 now"):
        TitleGenerator.train(TitleTrainConfig(resume=True, **kw))
    resumed = TitleGenerator.train(TitleTrainConfig(resume=True, label_smoothing=0.0, **kw))
    assert resumed.history[-1]["step"] == 4


def test_training_reads_files_like_pairs_in_memory(tmp_path):
    """Paths in the config go through the pair reader: the same run, the same weights; the dev
    figures of the history are those of the model at that point."""
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"title": p.title, "content": p.content}, ensure_ascii=False)
                             + "\n" for p in PAIRS), encoding="utf-8")
    dev = tmp_path / "dev.tsv"
    dev.write_text("".join(f"{p.title}\t{p.content}\n" for p in PAIRS[:2]), encoding="utf-8")
    kw = {"layers": 1, "hidden": 16, "max_steps": 2, "batch_size": 2, "progress": False,
          "max_source_len": 48, "max_target_len": 8, "dev_limit": 1}
    a = TitleGenerator.train(TitleTrainConfig(train=train, dev=dev, output=tmp_path / "a", **kw))
    b = TitleGenerator.train(TitleTrainConfig(train=PAIRS, dev=PAIRS[:1], output=tmp_path / "b", **kw))
    assert a.history == [{**h, "seconds": a.history[i]["seconds"]} for i, h in enumerate(b.history)]
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # The best model was saved with its dev figure: scoring it again gives that figure.
    assert a.meta["best"]["rouge-l"] == max(h["rouge-l"] for h in a.history)
    assert a.evaluate(PAIRS[:1], beam=1, max_new_tokens=8)["rouge-l"] == a.meta["best"]["rouge-l"]
    assert a.evaluate(dev)["count"] == 2  # evaluate reads a pair file too


@pytest.mark.parametrize("config, message", [
    (lambda tmp: TitleTrainConfig(train=PAIRS, output=tmp, max_source_len=0), "max_source_len"),
    (lambda tmp: TitleTrainConfig(train=PAIRS, output=tmp, max_target_len=0), "max_target_len"),
    (lambda tmp: TitleTrainConfig(train=[TitlePair("", "内容")], output=tmp), "no training pairs"),
    (lambda tmp: TitleTrainConfig(train=PAIRS), "no output folder"),
    (lambda tmp: TrainConfig(train=PAIRS, output=tmp), "takes a TitleTrainConfig"),
])
def test_bad_training_settings_are_one_error_and_write_nothing(tmp_path, config, message):
    with pytest.raises(ZhtextError, match=message):
        TitleGenerator.train(config(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


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


@pytest.fixture
def pair_file(tmp_path):
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{p.title}\t{p.content}\n" for p in PAIRS), encoding="utf-8")
    return data


def test_cli_title_lines_as_jsonl(monkeypatch, capsys, model_dir, pair_file):
    code, out, err = run_cli(monkeypatch, capsys, "title", str(pair_file), "--lines", "-m",
                             str(model_dir), "--format", "jsonl")
    assert code == 0, err
    # TSV lines are plain text to `zhtext title`: each whole line is an article.
    lines = pair_file.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in out.splitlines()]
    gen = TitleGenerator.load(model_dir)
    assert records == [{"content": line, "title": title} for line, title in zip(lines, gen(lines))]


def test_cli_title_of_a_whole_file(tmp_path, monkeypatch, capsys, model_dir):
    article = tmp_path / "a.txt"
    article.write_text(PAIRS[1].content, encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "title", str(article), "--model", str(model_dir))
    assert (code, out, err) == (0, PAIRS[1].title + "\n", "")


def test_cli_title_jsonl_records_keep_their_fields(tmp_path, monkeypatch, capsys, model_dir):
    jl = tmp_path / "in.jsonl"
    jl.write_text("".join(json.dumps({"id": i, "title": p.title, "content": p.content},
                                     ensure_ascii=False) + "\n" for i, p in enumerate(PAIRS)),
                  encoding="utf-8")
    result = tmp_path / "out.jsonl"
    code, out, err = run_cli(monkeypatch, capsys, "title", str(jl), "-m", str(model_dir),
                             "-o", str(result), "--format", "jsonl")
    assert (code, out) == (0, ""), err
    records = [json.loads(line) for line in result.read_text(encoding="utf-8").splitlines()]
    assert records == [{"id": i, "title": p.title, "content": p.content, "reference": p.title}
                       for i, p in enumerate(PAIRS)]


def test_cli_title_decoding_options_reach_the_model(tmp_path, monkeypatch, capsys, model_dir):
    article = tmp_path / "a.txt"
    article.write_text("\n".join(TEXTS), encoding="utf-8")
    gen = TitleGenerator.load(model_dir)
    for args, options in [
        (["--beam", "1", "--max-new-tokens", "2"], {"beam": 1, "max_new_tokens": 2}),
        (["--sample", "--top-k", "5", "--temperature", "3", "--seed", "4"],
         {"sample": True, "top_k": 5, "temperature": 3.0, "seed": 4}),
        (["--min-new-tokens", "6", "--max-new-tokens", "6", "--no-repeat-ngram", "1",
          "--repetition-penalty", "1.5", "--length-penalty", "0.5"],
         {"min_new_tokens": 6, "max_new_tokens": 6, "no_repeat_ngram": 1,
          "repetition_penalty": 1.5, "length_penalty": 0.5}),
    ]:
        code, out, err = run_cli(monkeypatch, capsys, "title", str(article), "--lines", "-m",
                                 str(model_dir), *args)
        assert code == 0, err
        assert out.splitlines() == gen(TEXTS, **options)
    # The options really change the titles (else the comparison above proves little).
    assert gen(TEXTS, beam=1, max_new_tokens=2) != gen(TEXTS)
    unique = gen.decode_config(min_new_tokens=6, max_new_tokens=6, no_repeat_ngram=1)
    assert all(len(set(out[0])) == 6 for out in gen.generate_ids(TEXTS, unique))


def test_cli_evaluate_title_gives_the_figures_of_evaluate(monkeypatch, capsys, model_dir, pair_file):
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", "title", "-m", str(model_dir),
                             "--data", str(pair_file), "--json", "--beam", "1",
                             "--max-new-tokens", "3", "--limit", "3")
    assert code == 0, err
    scores = json.loads(out)
    expected = TitleGenerator.load(model_dir).evaluate(PAIRS[:3], beam=1, max_new_tokens=3)
    assert scores["count"] == expected["count"] == 3
    for key in ("rouge-1", "rouge-2", "rouge-l", "bleu"):
        assert scores[key] == round(expected[key], 6), key
    assert 0 < scores["rouge-l"] < 1  # three tokens cut the four-character titles short
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", "title", "-m", str(model_dir),
                             "--data", str(pair_file))
    assert code == 0 and not out and "ROUGE-L" in err and "100.00" in err


def test_cli_train_title_keeps_the_best_model(tmp_path, monkeypatch, capsys, pair_file):
    code, _, err = run_cli(monkeypatch, capsys, "train", "title", "--train", str(pair_file),
                           "-o", str(tmp_path / "m"), "--dev", str(pair_file), "--from-scratch",
                           "--layers", "1", "--hidden", "16", "--epochs", "2", "--batch-size", "2",
                           "--max-source-len", "40", "--max-target-len", "8")
    assert code == 0, err
    meta = json.loads((tmp_path / "m" / "zhtext.json").read_text(encoding="utf-8"))
    assert meta["task"] == "title" and (meta["max_source_len"], meta["max_target_len"]) == (40, 8)
    assert [h["step"] for h in meta["history"]] == [2, 4]
    assert meta["best"]["rouge-l"] == max(h["rouge-l"] for h in meta["history"])
    assert f"best dev ROUGE-L {meta['best']['rouge-l']:.4f}" in " ".join(err.split())
    # The saved model is the one that scored best: titling the dev set again (greedy, as in
    # training) gives the recorded figure.
    again = TitleGenerator.load(tmp_path / "m").evaluate(pair_file, beam=1, max_new_tokens=8)
    assert again["rouge-l"] == meta["best"]["rouge-l"]


def test_cli_old_spellings_still_work_and_warn_once(tmp_path, monkeypatch, capsys, model_dir):
    import zhtext_cli.base as cli_base

    monkeypatch.setattr(cli_base, "_warned", set())
    article = tmp_path / "a.txt"
    article.write_text(TEXTS[0], encoding="utf-8")
    expected = TitleGenerator.load(model_dir)(TEXTS[0], max_new_tokens=2, min_new_tokens=2) + "\n"
    for attempt in range(2):
        code, out, err = run_cli(monkeypatch, capsys, "title", str(article), "--model",
                                 str(model_dir), "--max-len", "2", "--min-len=2")
        assert (code, out) == (0, expected), err
        warnings = [line for line in err.splitlines() if "deprecated" in line]
        assert warnings == ([] if attempt else [
            f"zhtext: warning: --{old}-len is deprecated, use --{old}-new-tokens (the old spelling "
            "goes in the next release)" for old in ("max", "min")])
    code, out, err = run_cli(monkeypatch, capsys, "title", "--help")
    assert code == 0 and "--max-len" not in out and "--max-new-tokens" in out


def test_cli_train_title_old_out_option(tmp_path, monkeypatch, capsys, pair_file):
    import zhtext_cli.base as cli_base

    monkeypatch.setattr(cli_base, "_warned", set())
    code, _, err = run_cli(monkeypatch, capsys, "train", "title", "--train", str(pair_file),
                           "--out", str(tmp_path / "m"), "--from-scratch", "--layers", "1",
                           "--hidden", "16", "--max-steps", "1", "--max-source-len", "40",
                           "--max-target-len", "8")
    assert code == 0, err
    assert err.count("--out is deprecated, use --output") == 1
    assert json.loads((tmp_path / "m" / "zhtext.json").read_text(encoding="utf-8"))["task"] == "title"


@pytest.mark.parametrize("args, message", [
    (["title", "missing.txt", "-m", "{model}"], "missing.txt"),
    (["title", "{bad}", "-m", "no-such-dir/x/y"], "no-such-dir/x/y: no such directory"),
    (["train", "title", "--train", "{bad}", "-o", "{tmp}/o", "--from-scratch"], "bad.tsv:1"),
    (["train", "title", "--train", "{bad}", "-o", "{tmp}/o"], "--from-scratch"),
    (["train", "title", "--train", "{bad}", "-o", "{tmp}/o", "--from-scratch",
      "--max-source-len", "0"], "zhtext: error: --max-source-len must be at least 1, got 0"),
    (["title", "{bad}", "-m", "{model}", "--top-p", "0"], "zhtext: error: --top-p must be more than 0, got 0"),
    (["title", "{bad}", "-m", "{model}", "--max-new-tokens", "2", "--min-new-tokens", "3"],
     "zhtext: error: --min-new-tokens (3) cannot exceed --max-new-tokens (2)"),
    (["evaluate", "title", "-m", "{model}", "--data", "{bad}"], "bad.tsv:1"),
])
def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys, model_dir, args, message):
    bad = tmp_path / "bad.tsv"
    bad.write_text("no tab\n", encoding="utf-8")
    args = [a.format(model=model_dir, bad=bad, tmp=tmp_path) for a in args]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    usage = message.startswith("zhtext: error: --")  # a bad option value: a usage error, status 2
    assert code == (2 if usage else 1) and message in err and len(err.strip().splitlines()) == 1 and not out
    assert not (tmp_path / "o" / "zhtext.json").exists()


def test_a_title_is_never_empty_by_default():
    """A model that would end every title at once still writes one token: titles decode with
    ``min_new_tokens=1`` unless told otherwise, and a cap of 0 tokens lowers that floor."""
    gen = tiny(6, prior=False, copy=False)
    with torch.no_grad():
        gen.model.lm.cls.predictions.decoder.bias[gen.sep_id] = 1e4
    assert gen(TEXTS, beam=1, min_new_tokens=0) == [""] * len(TEXTS)
    for beam in (1, 3):
        assert all(title for title in gen(TEXTS, beam=beam))
    assert TitleGenerator.decode_config(max_new_tokens=0).min_new_tokens == 0
    assert gen(TEXTS[0], max_new_tokens=0) == ""
