"""Lexicon-aware tagging: the per-character lexicon features, the tagger that uses them, the CLI."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from conftest import run_cli
from test_tagger import TRAIN_SETTINGS, random_tagger, toy_examples

from zhtext.errors import ZhtextError
from zhtext.lexical.lexicon import Lexicon
from zhtext.lexical.softlex import (
    FEATURE_DIM,
    LEXICON_FILE,
    N_LENGTHS,
    PER_SET,
    LexiconFeatures,
    read_lexicon,
)
from zhtext.tasks.tagger import HEAD_FILE, Tagger, TaggerModel, TaggerTrainConfig

TOY_LEXICON = Lexicon({"张三": 50, "李四": 40, "王小明": 10, "北京": 80, "上海": 70, "广州市": 5,
                       "广州": 30, "小明": 3, "我们": 20, "的": 900, "了": 500})


@pytest.fixture(scope="module", autouse=True)
def one_thread(request):
    request.addfinalizer(functools.partial(torch.set_num_threads, torch.get_num_threads()))
    torch.set_num_threads(1)


def brute_force(lexicon: Lexicon, text: str) -> np.ndarray:
    """The features by definition: every substring looked up in the lexicon."""
    counts = {w: c for w, c in lexicon.counts.items() if c > 0}
    values = np.array(list(counts.values()), dtype=np.float64)
    edges = np.quantile(values, [0.25, 0.5, 0.75])
    out = np.zeros((len(text), FEATURE_DIM), dtype=np.uint8)
    for i in range(len(text)):
        for j in range(i + 1, len(text) + 1):
            word = text[i:j]
            if word not in counts:
                continue
            f = N_LENGTHS + int(np.searchsorted(edges, counts[word], side="right"))
            length = min(len(word), 5) - 2
            if len(word) == 1:
                marks = [(i, 3, 0)]
            else:
                marks = [(i, 0, length), (j - 1, 2, length)]
                marks += [(k, 1, length) for k in range(i + 1, j - 1)]
            for pos, which, bucket in marks:
                out[pos, which * PER_SET + bucket] = 1
                out[pos, which * PER_SET + f] = 1
    return out


def brute_force_slots(lexicon: Lexicon, text: str, slots: int) -> np.ndarray:
    """The word slots by definition: every occurrence of a word, in the set it gives each
    character it covers; per set the smallest ids (ids by falling count, then word) first."""
    ranked = [w for w, c in lexicon.most_common() if c > 0]
    ids = {w: i + 1 for i, w in enumerate(ranked)}
    weight = {w: np.log1p(lexicon.counts[w]) for w in ranked}
    sets = [[[] for _ in range(4)] for _ in text]
    for i in range(len(text)):
        for j in range(i + 1, len(text) + 1):
            word = text[i:j]
            if word in ids:
                for k in range(i, j):
                    which = 3 if j - i == 1 else 0 if k == i else 2 if k == j - 1 else 1
                    sets[k][which].append(word)
    out = np.zeros((len(text), 2, 4, slots), dtype=np.float64)
    for k, per_set in enumerate(sets):
        total = sum(weight[w] for words in per_set for w in words)
        for which, words in enumerate(per_set):
            for m, w in enumerate(sorted(words, key=ids.get)[:slots]):
                out[k, :, which, m] = ids[w], 4 * weight[w] / total
    return np.concatenate([brute_force(lexicon, text), out[:, 0].reshape(len(text), -1),
                           out[:, 1].reshape(len(text), -1)], axis=1)


def random_lexicon(rng, alphabet: str) -> Lexicon:
    words = {"".join(rng.choice(list(alphabet), rng.integers(1, 8)))
             for _ in range(rng.integers(1, 40))}
    return Lexicon({w: int(rng.integers(0, 100)) for w in words} | {alphabet[0] * 2: 7})


@pytest.mark.parametrize("seed", range(6))
def test_features_equal_brute_force(seed):
    rng = np.random.default_rng(seed)
    alphabet = "北京大学生的人😀a"[: 3 + seed]  # small alphabets: many overlapping matches
    lexicon = random_lexicon(rng, alphabet)
    features = LexiconFeatures(lexicon)
    for _ in range(20):
        text = "".join(rng.choice(list(alphabet + " ，"), rng.integers(0, 60)))
        expected = brute_force(lexicon, text)
        assert np.array_equal(features(text), expected), (text, dict(lexicon))
        a = int(rng.integers(0, len(text) + 1))
        b = int(rng.integers(a, len(text) + 1))
        assert np.array_equal(features.window(text, a, b), expected[a:b])


@pytest.mark.parametrize("seed", range(4))
def test_word_slots_equal_brute_force(seed):
    rng = np.random.default_rng(seed)
    alphabet = "北京大学生的人😀a"[: 3 + seed]
    lexicon = random_lexicon(rng, alphabet)
    slots = 1 + seed % 3
    features = LexiconFeatures(lexicon, slots)
    assert features.dim == FEATURE_DIM + 8 * slots
    for _ in range(20):
        text = "".join(rng.choice(list(alphabet + " ，"), rng.integers(0, 60)))
        expected = brute_force_slots(lexicon, text, slots)
        got = features(text)
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.allclose(got, expected, rtol=1e-6, atol=0), (text, dict(lexicon))
        a = int(rng.integers(0, len(text) + 1))
        b = int(rng.integers(a, len(text) + 1))
        assert np.array_equal(features.window(text, a, b), got[a:b])
    seen = features.seen(["", alphabet * 3])
    ids = features(alphabet * 3)[:, FEATURE_DIM : FEATURE_DIM + 4 * slots]
    assert seen.tolist() == sorted({int(v) - 1 for v in ids.ravel() if v > 0})


def test_lexicon_files_and_errors(tmp_path):
    features = read_lexicon(TOY_LEXICON)
    features.save(tmp_path)
    again = LexiconFeatures.load(tmp_path)
    text = "我们在北京的王小明和广州市"
    assert dict(again.lexicon) == dict(features.lexicon)
    assert np.array_equal(again(text), features(text))
    jieba = read_lexicon("jieba")
    assert len(jieba) > 300_000 and jieba("北京大学")[0, 0:PER_SET].any()  # 北京 begins at 北
    bad = tmp_path / "bad.tsv"
    bad.write_text("北京\t3\n上海\tmany\n", encoding="utf-8")
    with pytest.raises(ZhtextError, match=r"bad\.tsv:2: count 'many' is not a whole number"):
        read_lexicon(bad)
    bad.write_text("北京\t0\n", encoding="utf-8")
    with pytest.raises(ZhtextError, match="no words with a count above zero"):
        read_lexicon(bad)
    with pytest.raises(ZhtextError, match="lexicon not found"):
        read_lexicon(tmp_path / "none.tsv")


def test_without_a_lexicon_the_tagger_is_unchanged(tmp_path):
    """No lexicon: emissions as the encoder alone gives them, and a saved folder as before. A
    lexicon whose projection is zero changes nothing either (inputs_embeds = the token
    embeddings)."""
    plain = random_tagger("BIOES")
    net = plain.model
    assert net.lexicon is None
    rows = [plain.char_ids("张三在北京"), plain.char_ids("了")]
    input_ids, mask = plain._encoder_inputs(rows)
    with torch.no_grad():
        expected = net.emit(net.encoder(input_ids=input_ids, attention_mask=mask)
                            .last_hidden_state[:, 1:-1])
        assert torch.equal(net.emissions(input_ids, mask), expected)
    plain.save(tmp_path / "plain")
    assert not (tmp_path / "plain" / LEXICON_FILE).exists()
    assert "lexicon" not in json.loads((tmp_path / "plain" / "zhtext.json").read_text())

    lexical = TaggerModel(net.encoder, plain.tags, plain.scheme, 0.0, FEATURE_DIM)
    lexical.emit, lexical.crf = net.emit, net.crf
    torch.nn.init.zeros_(lexical.lexicon.weight)
    tagger = Tagger(lexical, plain.tokenizer, plain.labels, plain.scheme, plain.max_len,
                    lexicon=read_lexicon(TOY_LEXICON))
    texts = ["张三在北京的王小明", "上海了广州市", ""]
    for a, b in zip(tagger.emissions(texts), plain.emissions(texts)):
        assert torch.allclose(a, b, atol=1e-6)
    assert tagger(texts) == plain(texts)


def lexicon_tagger(seed: int = 0) -> Tagger:
    """An untrained lexicon-aware tagger with a projection big enough to matter."""
    plain = random_tagger("BIOES", seed=seed, max_len=16)
    net = TaggerModel(plain.model.encoder, plain.tags, plain.scheme, 0.0, FEATURE_DIM)
    net.emit, net.crf = plain.model.emit, plain.model.crf
    with torch.no_grad():
        net.lexicon.weight.mul_(50)
    return Tagger(net, plain.tokenizer, plain.labels, plain.scheme, plain.max_len,
                  lexicon=read_lexicon(TOY_LEXICON))


def test_lexicon_tagger_windows_save_load_and_int8(tmp_path):
    tagger = lexicon_tagger()
    text = "我们在北京的王小明和广州市见了张三，上海的李四" * 3  # several windows of 14
    # A long text's streamed windows see the same features as the batched path.
    with torch.no_grad():  # as nbest calls it
        streamed = np.concatenate(list(tagger._window_rows(text)))
    assert np.allclose(streamed, tagger.emissions([text])[0].numpy(), atol=1e-6)
    zero = lexicon_tagger()
    torch.nn.init.zeros_(zero.model.lexicon.weight)
    assert not torch.allclose(tagger.emissions([text])[0], zero.emissions([text])[0])

    texts = [text, "张三", "广州市的小明", ""]
    tagger.save(tmp_path / "m")
    assert (tmp_path / "m" / LEXICON_FILE).is_file()
    loaded = Tagger.load(tmp_path / "m")
    assert loaded.nbest(texts, 2) == tagger.nbest(texts, 2)
    quantized = Tagger.load(tmp_path / "m", quantize="int8")
    assert [len(s) for s in quantized(texts)] and quantized.lexicon is not None

    (tmp_path / "m" / LEXICON_FILE).unlink()
    with pytest.raises(ZhtextError, match=f"has no {LEXICON_FILE}"):
        Tagger.load(tmp_path / "m")
    with pytest.raises(ZhtextError, match="cannot be exported to ONNX"):
        tagger.export_onnx(tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()


def test_training_with_a_lexicon_learns(tmp_path):
    config = TaggerTrainConfig(train=toy_examples(60, 1), dev=toy_examples(10, 2),
                               output=tmp_path / "m", lexicon=TOY_LEXICON,
                               **{**TRAIN_SETTINGS, "epochs": 6})
    tagger = Tagger.train(config)
    losses = [h["loss"] for h in tagger.history]
    assert losses[-1] < 0.5 * losses[0]
    assert tagger.lexicon is not None and dict(tagger.lexicon.lexicon) == dict(TOY_LEXICON)
    assert tagger.meta["lexicon"]["words"] == len(TOY_LEXICON)
    with torch.no_grad():
        assert tagger.model.lexicon.weight.abs().sum() > 0
    test = toy_examples(10, 5)
    assert tagger.evaluate(test)["f1"] > 0.8


def test_word_embeddings_rows_save_load_and_marks_only(tmp_path):
    """Words the training texts show get their own rows (the rest share row 1), trained; the
    model saves and loads to the same output; word_dim=0 trains the marks-only tagger."""
    train = toy_examples(40, 1)
    config = TaggerTrainConfig(train=train, output=tmp_path / "m", lexicon=TOY_LEXICON,
                               word_dim=8, **{**TRAIN_SETTINGS, "epochs": 2})
    tagger = Tagger.train(config)
    net = tagger.model
    seen = tagger.lexicon.seen(ex.text for ex in train)
    assert 0 < len(seen) < len(TOY_LEXICON) + 1 and net.lexicon_words.num_embeddings == len(seen) + 2
    rows = net.word_row.tolist()
    assert rows[0] == 0 and sorted(rows[i + 1] for i in seen) == list(range(2, len(seen) + 2))
    assert all(rows[i + 1] == 1 for i in range(len(TOY_LEXICON)) if i not in set(seen.tolist()))
    assert net.lexicon_words.weight[2:].abs().sum() > 0 and not net.lexicon_words.weight[0].any()
    assert tagger.meta["lexicon"]["word_dim"] == 8
    texts = ["张三在北京的王小明", "上海了广州市" * 9, ""]
    loaded = Tagger.load(tmp_path / "m")
    assert loaded.lexicon.slots == tagger.lexicon.slots > 0
    assert loaded.nbest(texts, 2) == tagger.nbest(texts, 2)
    for a, b in zip(loaded.emissions(texts), tagger.emissions(texts)):
        assert torch.equal(a, b)

    plain = Tagger.train(TaggerTrainConfig(train=train, output=tmp_path / "p", lexicon=TOY_LEXICON,
                                           word_dim=0, **{**TRAIN_SETTINGS, "epochs": 1}))
    assert plain.model.lexicon_words is None and plain.lexicon.slots == 0
    assert "word_dim" not in json.loads((tmp_path / "p" / "zhtext.json").read_text())["lexicon"]
    assert Tagger.load(tmp_path / "p").nbest(texts, 2) == plain.nbest(texts, 2)
    with pytest.raises(ZhtextError, match="word_dim must be >= 0"):
        Tagger.train(TaggerTrainConfig(train=train, output=tmp_path / "q", word_dim=-1))


def test_word_dropout_shows_training_words_as_unseen():
    """The unseen words' row starts at zero; in training, ``word_dropout`` of the words met are
    looked up as that row (all at 1, none at 0), and never a slot without a word; in evaluation
    nothing changes."""
    plain = random_tagger("BIOES", seed=0, max_len=16)
    net = TaggerModel(plain.model.encoder, plain.tags, plain.scheme, 0.0, FEATURE_DIM, word_slots=2,
                      word_rows=6, word_dim=4, lexicon_size=9)
    net.give_rows(np.array([0, 3, 5, 7]))  # word ids 0, 3, 5, 7: rows 2..5; the rest row 1
    assert not net.lexicon_words.weight[1].any() and net.lexicon_words.weight[2:].abs().sum() > 0
    ids = torch.tensor([[[1, 4, 6, 8, 2, 0, 9, 0]]], dtype=torch.float32)  # ids + 1; 0: none
    features = torch.cat([torch.zeros(1, 1, FEATURE_DIM), ids, torch.ones(1, 1, 8)], dim=-1)
    rows_met: list[torch.Tensor] = []
    original = net.lexicon_words.forward
    net.lexicon_words.forward = lambda rows: rows_met.append(rows.clone()) or original(rows)
    expected = net.word_row[ids.long()]
    assert expected[0, 0].tolist() == [2, 3, 4, 5, 1, 0, 1, 0]

    for p, training, want in ((1.0, True, torch.where(expected > 1, 1, expected)),
                              (0.0, True, expected), (1.0, False, expected)):
        net.word_dropout = p
        net.train(training)
        first = net.lexicon_input(features)
        assert torch.equal(rows_met[-1], want)
        if p == 1.0 and training:  # every word as unseen: the pooled part is zero, marks unchanged
            assert not first[..., FEATURE_DIM:].any()
    net.word_dropout = 0.5
    net.train()
    torch.manual_seed(0)
    for _ in range(200):
        net.lexicon_input(features)
    shown = torch.stack(rows_met[-200:])
    words = expected > 1
    share = (shown[:, words] == 1).float().mean().item()
    assert 0.4 < share < 0.6 and torch.equal(shown[:, ~words], expected[~words].expand(200, -1))
    with pytest.raises(ZhtextError, match="word_dropout must be in"):
        Tagger.train(TaggerTrainConfig(train=toy_examples(4, 1), output="unused", word_dropout=1.0))


def test_cli_train_with_lexicon_then_tag(tmp_path, monkeypatch, capsys):
    train, dev = tmp_path / "train.json", tmp_path / "dev.json"
    for path, examples in ((train, toy_examples(40, 1)), (dev, toy_examples(8, 2))):
        path.write_text("".join(json.dumps({"text": ex.text, "label": {
            label: {ex.text[s:e]: [[s, e - 1]]} for s, e, label in ex.spans}},
            ensure_ascii=False) + "\n" for ex in examples), encoding="utf-8")
    lexicon = tmp_path / "lexicon.tsv"
    TOY_LEXICON.save(lexicon)
    model = tmp_path / "m"
    args = ["train", "tagger", "--train", str(train), "--dev", str(dev), "--from-scratch",
            "--layers", "1", "--hidden", "32", "--epochs", "2", "--batch-size", "8",
            "--max-len", "24", "--quiet", "-o", str(model)]
    code, _, err = run_cli(monkeypatch, capsys, *args, "--lexicon", str(lexicon))
    assert code == 0, err
    assert (model / LEXICON_FILE).is_file() and (model / HEAD_FILE).is_file()
    texts = tmp_path / "in.txt"
    texts.write_text("张三在北京\n广州市的李四\n", encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "tag", str(texts), "-m", str(model))
    assert code == 0, err
    tagger = Tagger.load(model)
    expected = [[s.as_dict() for s in spans] for spans in tagger(["张三在北京", "广州市的李四"])]
    assert [json.loads(line)["spans"] for line in out.splitlines()] == expected
    code, out, err = run_cli(monkeypatch, capsys, "pipe", str(texts), "--steps", "tag", "--set",
                             f"tag.model={model}", "-q")
    assert code == 0, err
    assert [json.loads(line)["spans"] for line in out.splitlines()] == expected

    lexicon.write_text("北京\t3\n上海\t3.5\n", encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, *args[:-1], str(tmp_path / "m2"), "--lexicon",
                             str(lexicon))
    assert code == 1 and out == "" and err.count("\n") == 1
    assert err.startswith("zhtext: error: ") and "lexicon.tsv:2: count '3.5'" in err
    assert not (tmp_path / "m2").exists()
    code, out, err = run_cli(monkeypatch, capsys, *args[:-1], str(tmp_path / "m3"), "--lexicon",
                             "jieba", "--word-dim", "8", "--word-dropout", "1")
    assert code == 2 and "--word-dropout" in err and not (tmp_path / "m3").exists()
