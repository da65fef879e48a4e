"""Masked-LM pretraining (zhtext.tasks.mlm): whole-word and character masking, training, saving,
resuming, the output as a starting point for the other models, and ``zhtext train mlm``."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli

from zhtext.errors import ZhtextError
from zhtext.lexical.lexicon import Lexicon
from zhtext.neural.masking import IGNORE, choose_groups, token_groups
from zhtext.neural.scratch import scratch_model
from zhtext.neural.trainer import checkpoint_path
from zhtext.tasks.mlm import MaskedLM, MLMTrainConfig

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus.txt"
WORDS = ["北京", "大学", "清华大学", "我们", "喜欢", "天安门", "的", "和", "长城", "人", "学生",
         "中国人民", "银行", "x", "研究", "生命", "起源"]
TINY = {"layers": 1, "hidden": 32, "heads": 1, "max_len": 24, "batch_size": 8, "seed": 0,
        "progress": False}


def random_lines(n: int, seed: int, fewest: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(WORDS, rng.integers(fewest, 12))) for _ in range(n)]


def corpus_lines(n: int) -> list[str]:
    return [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()][:n]


def tiny_model(texts: list[str], masking: str, lexicon: Lexicon | None = None) -> MaskedLM:
    config = MLMTrainConfig(**TINY, masking=masking)
    torch.manual_seed(0)
    lm, tokenizer, meta = scratch_model("bert-mlm", texts, config, config.max_len)
    return MaskedLM(lm, tokenizer, max_len=config.max_len, masking=masking, lexicon=lexicon,
                    batch_size=8, meta=meta)


@pytest.fixture(scope="module", autouse=True)
def one_thread(request):
    """Tiny models run fastest on one thread."""
    request.addfinalizer(functools.partial(torch.set_num_threads, torch.get_num_threads()))
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    # Single characters too, as a discovered lexicon has them: a piece may end inside a word.
    return Lexicon({**{c: 1 for w in WORDS for c in w}, **{w: 10 * len(w) for w in WORDS}})


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> MaskedLM:
    """A tiny BERT pretrained from scratch with whole-word masking over a discovered lexicon."""
    out = tmp_path_factory.mktemp("mlm") / "model"
    config = MLMTrainConfig(train=corpus_lines(400), output=out, heldout_every=10, eval_every=5,
                            **{**TINY, "hidden": 64, "max_len": 48, "batch_size": 16, "lr": 3e-3})
    return MaskedLM.train(config)


def masked_rows(model: MaskedLM, lines: list[str], seed: int):
    """Per line: its tokens' offsets, the model's input ids and the labels of one masking."""
    batch = model.masked_batch(lines, seed)
    enc = model.tokenizer(lines, return_offsets_mapping=True, truncation=True,
                          max_length=model.max_len)
    for i, offsets in enumerate(enc["offset_mapping"]):
        n = len(offsets)
        yield offsets, batch["input_ids"][i, :n].tolist(), batch["labels"][i, :n].tolist()


# ---------------------------------------------------------------- masking


def test_token_groups_follow_the_words():
    # [CLS] 清 华大 学 [SEP] over the words 清华 | 大学: a token joins the word it starts in.
    offsets = [(0, 0), (0, 1), (1, 3), (3, 4), (0, 0)]
    assert token_groups(offsets, [(0, 2), (2, 4)]) == [[1, 2], [3]]
    assert token_groups(offsets) == [[1], [2], [3]]
    rng = np.random.default_rng(0)
    assert choose_groups([], 0.15, rng) == []
    # Every group is larger than the budget of 1: the smallest is taken alone.
    assert choose_groups([[0, 1, 2], [3, 4]], 0.15, rng) == [[3, 4]]


def test_whole_word_masking_masks_whole_lexicon_words_only(lexicon):
    model = tiny_model(random_lines(300, 1), "word", lexicon)
    # Cut to the model's width, as in training. (Lines of a word or two mask more than 15 %: one
    # word at least is masked in each.)
    lines = list(model.pieces(random_lines(300, 1, fewest=5)))
    spans = model.word_spans(lines)
    masked = total = words_masked = words_with_mask_token = 0
    for i, (offsets, inputs, labels) in enumerate(masked_rows(model, lines, 7)):
        chars = {offsets[p][0]: p for p in range(len(offsets)) if offsets[p][1] > offsets[p][0]}
        total += len(chars)
        row_masked = 0
        for start, end in spans[i]:
            word = lines[i][start:end]
            assert word in lexicon or word.isascii()  # the lexicon's words (a letter run is one)
            positions = [chars[c] for c in range(start, end) if c in chars]
            chosen = [labels[p] != IGNORE for p in positions]
            assert all(chosen) or not any(chosen), (lines[i], lines[i][start:end])  # never split
            if all(chosen) and positions:
                words_masked += 1
                row_masked += len(positions)
                as_mask = [inputs[p] == model.tokenizer.mask_token_id for p in positions]
                assert all(as_mask) or not any(as_mask)  # one 80/10/10 draw per word
                words_with_mask_token += all(as_mask)
        budget = max(1, round(0.15 * len(chars)))
        smallest = min(e - s for s, e in spans[i])
        assert row_masked <= budget or row_masked == smallest
        # Labels are the original tokens, and nothing outside a chosen word is predicted.
        gold = model.tokenizer(lines[i], truncation=True, max_length=model.max_len)["input_ids"]
        assert all(y in (IGNORE, gold[p]) for p, y in enumerate(labels))
        masked += row_masked
    assert 0.12 <= masked / total <= 0.16
    assert 0.7 <= words_with_mask_token / words_masked <= 0.9


def test_char_masking_rate_and_determinism():
    model = tiny_model(random_lines(200, 2), "char")
    lines = list(model.pieces(random_lines(200, 2, fewest=5)))
    masked = total = 0
    for offsets, _, labels in masked_rows(model, lines, 3):
        n = sum(1 for s, e in offsets if e > s)
        k = sum(1 for y in labels if y != IGNORE)
        assert k == max(1, round(0.15 * n))
        masked, total = masked + k, total + n
    assert 0.14 <= masked / total <= 0.16
    first, again = model.masked_batch(lines, [5, 1]), model.masked_batch(lines, [5, 1])
    assert all(torch.equal(first[k], again[k]) for k in first)
    other = model.masked_batch(lines, [5, 2])
    assert not torch.equal(first["labels"], other["labels"])


# ---------------------------------------------------------------- training, saving, resuming


def test_training_from_scratch_lowers_the_loss(trained):
    history = trained.history
    assert len(history) >= 3
    assert history[-1]["ppl"] < 0.9 * history[0]["ppl"]
    assert history[-1]["ppl"] < 0.6 * trained.lm.config.vocab_size  # far better than a guess
    assert history[-1]["loss"] < history[0]["loss"]
    assert trained.masking == "word" and trained.lexicon is not None and len(trained.lexicon) > 50
    assert trained.meta["lexicon_source"] == "discovered"


def test_save_load_round_trip(trained, tmp_path):
    texts = corpus_lines(520)[500:]
    before = trained.evaluate(texts, seed=3)
    trained.save(tmp_path / "copy")
    loaded = MaskedLM.load(tmp_path / "copy", batch_size=trained.batch_size)
    assert loaded.evaluate(texts, seed=3) == before
    # The masks do not depend on the batches (only float sums over other padding might).
    other = MaskedLM.load(tmp_path / "copy", batch_size=5).evaluate(texts, seed=3)
    assert other == {**before, "ppl": pytest.approx(before["ppl"], rel=1e-5)}
    assert trained.evaluate(texts, seed=4)["ppl"] != before["ppl"]
    assert dict(loaded.lexicon) == dict(trained.lexicon)
    assert (loaded.masking, loaded.max_len, loaded.mask_rate) == ("word", 48, 0.15)
    prompt = ["在广州里，老师特别[MASK][MASK]新的计划。", "没有掩码"]
    filled = loaded(prompt)
    assert filled == trained(prompt)
    assert filled[1] == "没有掩码" and "[MASK]" not in filled[0] and len(filled[0]) == 16
    # A plain Hugging Face folder: config, weights, tokenizer.
    names = {p.name for p in (tmp_path / "copy").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "zhtext.json",
            "lexicon.tsv"} <= names
    config = json.loads((tmp_path / "copy" / "config.json").read_text())
    assert config["model_type"] == "bert" and config["architectures"] == ["BertForMaskedLM"]


def test_the_head_runs_on_the_masked_positions_alone(trained):
    from zhtext.tasks.mlm import masked_logits

    batch = trained.masked_batch(corpus_lines(520)[500:], 1)
    chosen = batch["labels"] != IGNORE
    with torch.no_grad():
        full = trained.lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        fast = masked_logits(trained.lm, batch["input_ids"], batch["attention_mask"], chosen)
    assert int(chosen.sum()) > 20 and torch.allclose(fast, full.logits[chosen], atol=1e-5)


def test_resume_reaches_the_uninterrupted_weights(tmp_path):
    data = corpus_lines(120)
    settings = {"train": data, "epochs": 2, "heldout_every": 6, **TINY}
    whole = MaskedLM.train(MLMTrainConfig(output=tmp_path / "whole", **settings))
    first = MaskedLM.train(MLMTrainConfig(output=tmp_path / "part", max_seconds=0.0, **settings))
    assert [h["step"] for h in first.history] == [1]
    assert checkpoint_path(tmp_path / "part").is_file()
    resumed = MaskedLM.train(MLMTrainConfig(output=tmp_path / "part", resume=True, **settings))
    assert resumed.history[0]["step"] == 1
    assert resumed.history[-1]["step"] == whole.history[-1]["step"]
    assert not checkpoint_path(tmp_path / "part").exists()
    for (name, a), (_, b) in zip(whole.lm.state_dict().items(), resumed.lm.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name
    # Another corpus cannot continue that checkpoint.
    MaskedLM.train(MLMTrainConfig(output=tmp_path / "other", max_seconds=0.0, **settings))
    with pytest.raises(ZhtextError, match="other data or settings"):
        MaskedLM.train(MLMTrainConfig(**{**settings, "train": data[:60]}, resume=True,
                                      output=tmp_path / "other"))


# ---------------------------------------------------------------- the output as a start


def test_output_starts_a_tagger_an_embedder_and_titles(trained, tmp_path):
    from test_tagger import TRAIN_SETTINGS, toy_examples

    from zhtext.tasks.embed import Embedder
    from zhtext.tasks.tagger import Tagger, TaggerTrainConfig
    from zhtext.tasks.title import TitleGenerator

    source = Path(trained.source)
    encoder = trained.lm.bert.state_dict()
    settings = {**TRAIN_SETTINGS, "max_steps": 1, "lr": 1e-12, "max_len": 48}
    tagger = Tagger.train(TaggerTrainConfig(train=toy_examples(8, 0), output=tmp_path / "tagger",
                                            model=str(source), **settings))
    assert tagger.meta["base_model"] == str(source)
    loaded = tagger.model.encoder.state_dict()
    assert all(torch.allclose(loaded[k], encoder[k], atol=1e-6) for k in encoder if k in loaded)
    assert "embeddings.word_embeddings.weight" in loaded

    embedder = Embedder.load(source, pooling="cls")
    assert embedder.meta == {}
    vectors = embedder.encode(["北京的天安门", "我们"])
    assert vectors.shape == (2, 64)
    ids = trained.tokenizer(["我们"], return_tensors="pt")
    expected = trained.lm.bert(**ids).last_hidden_state[0, 0]
    assert np.allclose(vectors[1], expected.detach().numpy(), atol=1e-5)

    titles = TitleGenerator.load(source, max_source_len=30, max_target_len=10)
    head = titles.model.lm.cls.predictions.decoder.weight
    assert torch.equal(head, trained.lm.cls.predictions.decoder.weight)


# ---------------------------------------------------------------- the CLI


def test_cli_train_mlm_end_to_end(monkeypatch, capsys, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(corpus_lines(150)) + "\n", encoding="utf-8")
    out = tmp_path / "bert"
    code, stdout, err = run_cli(monkeypatch, capsys, "train", "mlm", str(corpus), "--from-scratch",
                                "-o", str(out), "--layers", "1", "--hidden", "32", "--max-len",
                                "32", "--max-steps", "4", "--heldout-every", "10", "--masking",
                                "char", "-q")
    assert (code, stdout, err) == (0, "", "")
    model = MaskedLM.load(out)
    assert model.masking == "char" and model.lexicon is None
    assert [h["step"] for h in model.history] == [4]


@pytest.mark.parametrize("args, message", [
    (["missing.txt", "--from-scratch"], "zhtext: error: no such file"),
    (["CORPUS"], "zhtext: error: give either -m/--model NAME_OR_DIR or --from-scratch"),
    (["CORPUS", "--from-scratch", "--masking", "char", "--lexicon", "CORPUS"],
     "zhtext: error: bad training settings: a lexicon serves whole-word masking"),
    (["-", "--from-scratch"], "zhtext: error: the corpus is read more than once"),
    (["EMPTY", "--from-scratch"], "zhtext: error: no training text"),
])
def test_cli_train_mlm_bad_input_is_one_line(monkeypatch, capsys, tmp_path, args, message):
    (tmp_path / "corpus.txt").write_text("北京大学\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    paths = {"CORPUS": str(tmp_path / "corpus.txt"), "EMPTY": str(tmp_path / "empty.txt")}
    args = [paths.get(a, a) for a in args]
    code, stdout, err = run_cli(monkeypatch, capsys, "train", "mlm", *args, "-o",
                                str(tmp_path / "out"), "-q")
    assert code == 1 and stdout == ""
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_cli_mask_rate_range(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "train", "mlm", str(CORPUS), "--from-scratch",
                           "-o", str(tmp_path / "out"), "--mask-rate", "1.5")
    assert code == 2 and "--mask-rate" in err


def test_scratch_mlm_starts_untied_with_sinusoidal_positions():
    """From scratch a masked LM gets its own output layer, the wider initialisation, no dropout and
    sine/cosine position embeddings (what lets it leave the unigram plateau within minutes); the
    tagger's bare encoder keeps BERT's tied, 0.02 start."""
    config = MLMTrainConfig(**TINY)
    torch.manual_seed(0)
    lm, _, _ = scratch_model("bert-mlm", ["北京大学的学生"], config, 16)
    assert config.dropout == 0.0 and lm.config.hidden_dropout_prob == 0.0
    assert lm.cls.predictions.decoder.weight is not lm.bert.embeddings.word_embeddings.weight
    assert lm.config.initializer_range == 0.05
    assert 0.04 < float(lm.bert.encoder.layer[0].attention.self.query.weight.std()) < 0.06
    table = lm.bert.embeddings.position_embeddings.weight.detach().double()
    n, width = table.shape
    assert (n, width) == (16, 32)
    raw = torch.tensor([[(math.sin if k % 2 == 0 else math.cos)(p / 10000 ** ((k - k % 2) / width))
                         for k in range(width)] for p in range(n)], dtype=torch.float64)
    assert torch.allclose(table, raw / raw.std() * 0.1, atol=1e-6)
    encoder, _, _ = scratch_model("bert", ["北京大学的学生"], MLMTrainConfig(**TINY, dropout=0.1), 16)
    assert encoder.config.initializer_range == 0.02 and encoder.config.hidden_dropout_prob == 0.1
