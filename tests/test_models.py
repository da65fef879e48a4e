"""Shared model layer: loading by path or hub id, character vocabularies and tokenizers, metadata."""

from __future__ import annotations

import json

import huggingface_hub.constants
import pytest
import torch


from zhtext.errors import ZhtextError
from zhtext.neural.scratch import (
    SPECIAL_TOKENS,
    build_char_vocab,
    char_tokenizer,
    small_bert_config,
)
from zhtext.neural.tokens import decode_text
from zhtext.neural import hub
from zhtext.neural.hub import load_model, load_tokenizer, pick_device
from zhtext.neural.modeldir import load_task_meta, save_task_meta, update_task_meta

TEXTS = ["我爱北京天安门", "北京是中国的首都", "今天天气很好，我们去公园", "GPU 2023年"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A 2-layer BERT over a character vocabulary, saved with its tokenizer."""
    from transformers import BertModel

    out = tmp_path_factory.mktemp("tiny_bert")
    vocab = build_char_vocab(TEXTS)
    char_tokenizer(vocab, out)
    torch.manual_seed(0)
    model = BertModel(small_bert_config(len(vocab), layers=2, hidden=32, heads=2)).eval()
    model.save_pretrained(out)
    return out, model, vocab


def test_char_vocab_orders_specials_then_frequency():
    vocab = build_char_vocab(["abca", "b a", "c\tz"])
    assert vocab[:5] == list(SPECIAL_TOKENS)
    # a:3 b:2 c:2 z:1, ties by codepoint; whitespace is not a token
    assert vocab[5:] == ["a", "b", "c", "z"]
    assert build_char_vocab(["abca", "b a", "c\tz"], min_count=2)[5:] == ["a", "b", "c"]
    assert build_char_vocab(["abca", "b a"], max_size=6) == [*SPECIAL_TOKENS, "a"]
    with pytest.raises(ZhtextError):
        build_char_vocab(["a"], max_size=3)


def test_char_tokenizer_one_token_per_character(tmp_path):
    vocab = build_char_vocab(TEXTS)
    tok = char_tokenizer(vocab, tmp_path)
    text = "我爱北京 GPU，X"
    tokens = tok.tokenize(text)
    # every non-space character is one token; unknown ones become [UNK]
    expected = [ch if ch in vocab else "[UNK]" for ch in text if not ch.isspace()]
    assert tokens == expected
    enc = tok("我爱", "北京")
    ids = {t: i for i, t in enumerate(vocab)}
    assert enc["input_ids"] == [ids[t] for t in ["[CLS]", "我", "爱", "[SEP]", "北", "京", "[SEP]"]]
    assert enc["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]
    assert tok.decode(tok("我爱北京")["input_ids"], skip_special_tokens=True) == "我爱北京"
    # the saved directory loads back to the same tokenizer
    again = load_tokenizer(tmp_path)
    assert again(TEXTS)["input_ids"] == tok(TEXTS)["input_ids"]
    assert (tmp_path / "vocab.txt").read_text(encoding="utf-8").splitlines() == vocab


def test_decode_text_joins_characters_and_wordpieces_without_stray_spaces(tmp_path):
    vocab = build_char_vocab(TEXTS)
    tok = char_tokenizer(vocab)
    ids = tok("我爱GPU，2023年")["input_ids"]
    # A character tokenizer: Latin letters and digits come back as written, not "G P U".
    assert decode_text(tok, ids) == "我爱GPU，2023年"
    # A WordPiece vocabulary like bert-base-chinese's: pieces joined, Latin words kept apart.
    from transformers import BertTokenizerFast

    pieces = [*SPECIAL_TOKENS, "我", "爱", "hello", "world", "go", "##od", "。"]
    wp = BertTokenizerFast(vocab={t: i for i, t in enumerate(pieces)})
    ids = wp("我爱hello world good。")["input_ids"]
    assert wp.convert_ids_to_tokens(ids)[-3:-1] == ["##od", "。"]
    assert decode_text(wp, ids) == "我爱hello world good。"


def test_char_tokenizer_rejects_bad_vocab():
    with pytest.raises(ZhtextError, match="duplicate"):
        char_tokenizer([*SPECIAL_TOKENS, "a", "a"])
    with pytest.raises(ZhtextError, match=r"\[MASK\]"):
        char_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"])


def test_model_round_trip_by_path(tiny_dir):
    path, model, _ = tiny_dir
    tok = load_tokenizer(str(path))
    loaded = load_model(str(path)).eval()
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        assert torch.equal(model(**batch).last_hidden_state, loaded(**batch).last_hidden_state)


def test_load_model_with_head_class(tiny_dir):
    from transformers import BertForMaskedLM

    path, model, _ = tiny_dir
    mlm = load_model(path, BertForMaskedLM)
    assert isinstance(mlm, BertForMaskedLM)
    assert torch.equal(
        mlm.bert.embeddings.word_embeddings.weight, model.embeddings.word_embeddings.weight
    )


@pytest.mark.parametrize("name", ["./no-such-model", "/no/such/dir", "a/b/c"])
def test_missing_directory_is_one_line_error(name):
    with pytest.raises(ZhtextError, match="no such directory"):
        load_model(name)


def test_file_and_empty_directory_are_errors(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"xx")
    with pytest.raises(ZhtextError, match="is a file"):
        load_model(tmp_path / "weights.bin")
    with pytest.raises(ZhtextError, match="config.json"):
        load_model(tmp_path)
    with pytest.raises(ZhtextError, match="tokenizer.json"):
        load_tokenizer(tmp_path)


def test_broken_config_is_one_line_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ZhtextError, match=f"cannot load model from {tmp_path}") as err:
        load_model(tmp_path)
    assert "\n" not in str(err.value)


def test_unreachable_hub_is_one_line_error(monkeypatch):
    monkeypatch.setattr(hub, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ZhtextError) as err:
        load_model("zhtext-tests/no-such-model")
    assert str(err.value) == (
        "cannot load model 'zhtext-tests/no-such-model': not a local directory and the "
        "Hugging Face hub is unreachable"
    )
    with pytest.raises(ZhtextError, match="hub is unreachable"):
        load_tokenizer("bert-base-chinese-zhtext-test")


def test_offline_mode_is_one_line_error(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ZhtextError, match="HF_HUB_OFFLINE is set"):
        load_model("zhtext-tests/no-such-model")


def test_task_meta_round_trip(tmp_path):
    path = save_task_meta(tmp_path, "tagger", labels=["O", "B-PER", "I-PER"], scheme="BIO")
    assert path == tmp_path / "zhtext.json"
    meta = load_task_meta(tmp_path, task="tagger")
    assert meta["task"] == "tagger" and meta["labels"] == ["O", "B-PER", "I-PER"]
    assert load_task_meta(tmp_path) == meta
    with pytest.raises(ZhtextError, match="is a zhtext tagger model, not a title model"):
        load_task_meta(tmp_path, task="title")
    # Adding settings keeps the others and the task.
    updated = update_task_meta(tmp_path, history=[{"step": 1}], scheme="BIOES")
    assert updated == {**meta, "history": [{"step": 1}], "scheme": "BIOES"}
    assert load_task_meta(tmp_path, task="tagger") == updated


def test_task_meta_errors(tmp_path):
    with pytest.raises(ZhtextError, match="not a zhtext model directory"):
        load_task_meta(tmp_path)
    (tmp_path / "zhtext.json").write_text("[1, 2", encoding="utf-8")
    with pytest.raises(ZhtextError, match="cannot read"):
        load_task_meta(tmp_path)
    (tmp_path / "zhtext.json").write_text(json.dumps({"labels": []}), encoding="utf-8")
    with pytest.raises(ZhtextError, match="does not name a task"):
        load_task_meta(tmp_path)
    with pytest.raises(ZhtextError, match="JSON"):
        save_task_meta(tmp_path, "tagger", bad={1, 2})


def test_small_bert_config():
    cfg = small_bert_config(100, layers=3, hidden=64, heads=4)
    assert (cfg.vocab_size, cfg.num_hidden_layers, cfg.hidden_size) == (100, 3, 64)
    assert cfg.num_attention_heads == 4 and cfg.intermediate_size == 256
    assert small_bert_config(10, is_decoder=True).is_decoder
    with pytest.raises(ZhtextError, match="multiple"):
        small_bert_config(100, hidden=30, heads=4)


def test_pick_device():
    assert pick_device("cpu").type == "cpu"
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ZhtextError, match="unknown device"):
        pick_device("tpu-9000")
    if not torch.cuda.is_available():
        with pytest.raises(ZhtextError, match="CUDA is not available"):
            pick_device("cuda")
