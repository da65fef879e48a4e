"""Shared model layer: loading by path or hub id, character vocabularies and tokenizers, metadata."""

from __future__ import annotations

import json
import warnings

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


def test_missing_weights_are_one_warning_not_transformers_report(tiny_dir, tmp_path, capfd):
    from transformers import BertForMaskedLM

    path, model, _ = tiny_dir
    mlm = BertForMaskedLM(model.config)  # a masked-LM folder, as `zhtext train mlm` saves: no pooler
    mlm.save_pretrained(tmp_path)
    capfd.readouterr()
    with pytest.warns(UserWarning) as caught:
        encoder = load_model(tmp_path)  # the bare encoder: its pooler starts from random values
    assert [str(w.message) for w in caught] == [
        f"{tmp_path}: 2 weight(s) of BertModel are not in the checkpoint and start from random "
        "values (pooler.dense.bias, pooler.dense.weight)"
    ]
    assert torch.equal(encoder.embeddings.word_embeddings.weight,
                       mlm.bert.embeddings.word_embeddings.weight)
    # transformers' own multi-line report (unused heads, missing keys) is not printed
    assert "REPORT" not in capfd.readouterr().err
    with warnings.catch_warnings():  # nothing to say when the caller never runs what is missing
        warnings.simplefilter("error")
        load_model(tmp_path, unused=("pooler.",))


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


# ---------------------------------------------------------------- weights checked on loading


def _edited_copy(tiny_dir, folder, edit):
    """A copy of the tiny model's folder whose weights went through ``edit(state_dict)``."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_dir[0], folder)
    weights = load_file(str(folder / "model.safetensors"))
    edit(weights)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    return folder


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -3e30])
def test_damaged_weights_are_one_line_naming_the_folder(tiny_dir, tmp_path, value):
    key = "encoder.layer.1.output.dense.weight"

    def damage(weights):
        weights[key][3, 5] = value

    folder = _edited_copy(tiny_dir, tmp_path / "damaged", damage)
    with pytest.raises(ZhtextError) as err:
        load_model(folder)
    message = str(err.value)
    assert message.startswith(f"cannot load model from {folder}: its weights are damaged ({key} ")
    assert "\n" not in message


def test_weights_that_do_not_fit_the_config_or_lack_a_tensor(tiny_dir, tmp_path):
    def shrink(weights):
        weights["embeddings.word_embeddings.weight"] = weights["embeddings.word_embeddings.weight"][:-2]

    folder = _edited_copy(tiny_dir, tmp_path / "shrunk", shrink)
    rows = len(tiny_dir[2])
    with pytest.raises(ZhtextError, match=rf"do not fit config.json \(embeddings.word_embeddings."
                                          rf"weight has shape \[{rows - 2}, 32\], the config "
                                          rf"implies \[{rows}, 32\]\)"):
        load_model(folder)

    def drop(weights):
        del weights["encoder.layer.0.attention.self.query.weight"]

    folder = _edited_copy(tiny_dir, tmp_path / "lacking", drop)
    load_model(folder)  # a hub checkpoint may lack weights (a head's): transformers draws them
    with pytest.raises(ZhtextError, match="lacks encoder.layer.0.attention.self.query.weight"):
        load_model(folder, strict=True)  # a folder zhtext saved may not


def test_check_weights_passes_real_weights_and_names_a_bad_tensor(tiny_dir):
    from zhtext.neural.hub import check_weights

    tensors = dict(tiny_dir[1].named_parameters())
    tensors["ids"] = torch.arange(5)  # not floating point: not checked
    tensors["empty"] = torch.zeros(0)
    check_weights(tensors.items(), "here")
    tensors["crf.transitions"] = torch.tensor([[0.0, float("-inf")]])
    with pytest.raises(ZhtextError, match=r"^here: its weights are damaged \(crf.transitions "):
        check_weights(tensors.items(), "here")


def _tiny_tagger(tiny_dir):
    from zhtext.tasks.tagger import Tagger, TaggerModel, tag_names

    encoder = load_model(tiny_dir[0])
    net = TaggerModel(encoder, tag_names(["LOC"], "BIOES"), "BIOES")
    return Tagger(net, load_tokenizer(tiny_dir[0]), ["LOC"], "BIOES", 16)


def test_a_tagger_head_is_checked_and_a_failure_at_run_time_names_the_folder(tiny_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    from zhtext.labels.formats import Example
    from zhtext.tasks.tagger import HEAD_FILE, Tagger

    folder = _tiny_tagger(tiny_dir).save(tmp_path / "tagger")
    tagger = Tagger.load(folder)
    assert tagger.source == str(folder) and len(tagger(["我爱北京"])) == 1
    # Weights that pass the checks on loading but break the model: one line naming the folder.
    with torch.no_grad():
        tagger.model.emit.weight.fill_(float("nan"))
    with pytest.raises(ZhtextError, match=f"^the model in {folder} failed while running "
                                          r"\(FloatingPointError: the emission scores are "
                                          r"not finite\); its folder may be damaged"):
        tagger(["我爱北京"])
    with pytest.raises(ZhtextError, match=f"the model in {folder} failed"):
        tagger.evaluate([Example("我爱北京", ((2, 4, "LOC"),))])  # every method, the same way
    head = load_file(str(folder / HEAD_FILE))
    head["crf.transitions"][0, 0] = float("nan")
    save_file(head, str(folder / HEAD_FILE))
    with pytest.raises(ZhtextError, match=f"cannot load {folder / HEAD_FILE}: its weights are "
                                          r"damaged \(crf.transitions "):
        Tagger.load(folder)
    (folder / HEAD_FILE).write_bytes(b"\xff" * 64)  # not even a header
    with pytest.raises(ZhtextError, match=f"cannot load {folder / HEAD_FILE}: "):
        Tagger.load(folder)


def test_run_failures_are_caught_once_for_every_model_class():
    from zhtext.tasks.base import Model

    class Broken(Model):
        task = "broken"

        def predict(self, texts):
            raise IndexError("list index out of range")  # as damaged weights give

        def stream(self, texts):
            yield "first"
            raise ZeroDivisionError("division by zero")

        def evaluate(self, data):
            return data.no_such_field  # a caller's mistake stays what it is

    model = Broken()
    model.source = "some/folder"
    with pytest.raises(ZhtextError, match=r"^the model in some/folder failed while running "
                                          r"\(IndexError: list index out of range\)"):
        model("text")
    stream = model.stream(["text"])
    assert next(stream) == "first"
    with pytest.raises(ZhtextError, match="ZeroDivisionError"):
        next(stream)
    with pytest.raises(AttributeError):
        model.evaluate(object())


# ---------------------------------------------------------------- model folders on disk


def test_a_saved_model_folder_has_the_umask_mode_in_every_file(tiny_dir, tmp_path):
    """transformers writes weights 0600; every file of a save (weights, tokenizer, head,
    whitening, zhtext.json) and of a checkpoint gets the mode the umask gives instead."""
    import os
    import stat

    from zhtext.neural.trainer import TrainConfig, Trainer
    from zhtext.tasks.embed import Embedder

    class Squares(torch.nn.Linear):
        def forward(self, batch):
            return super().forward(batch).pow(2).mean()

    embedder = Embedder(tiny_dir[0], batch_size=2)
    embedder.fit_whitening(TEXTS * 3, dim=4)
    for umask, file_mode, dir_mode in ((0o022, 0o644, 0o755), (0o077, 0o600, 0o700)):
        old = os.umask(umask)
        try:
            tagger = _tiny_tagger(tiny_dir).save(tmp_path / f"tagger-{umask:o}")
            embed = embedder.save(tmp_path / f"embed-{umask:o}")
            run = tmp_path / f"run-{umask:o}"
            with pytest.warns(UserWarning, match="checkpoint .* is kept"):
                Trainer(Squares(2, 1), TrainConfig(output=run, max_seconds=0, progress=False),
                        lambda epoch: iter([torch.ones(1, 2)] * 2), 2).fit()
        finally:
            os.umask(old)
        files = {"tagger_head.safetensors", "model.safetensors", "whitening.npz", "tokenizer.json",
                 "config.json", "zhtext.json", "state.pt"}
        seen = set()
        for folder in (tagger, embed, run):
            for path in folder.rglob("*"):
                seen.add(path.name)
                expected = dir_mode if path.is_dir() else file_mode
                assert stat.S_IMODE(path.stat().st_mode) == expected, (oct(umask), path)
        assert files <= seen


def test_which_folders_a_training_run_may_write_into(tmp_path):
    from zhtext.neural.modeldir import check_output_folder

    def refused(folder, *fragments, **options):
        with pytest.raises(ZhtextError) as err:
            check_output_folder(folder, "tagger", **options)
        for fragment in fragments:
            assert fragment in str(err.value), str(err.value)

    check_output_folder(tmp_path / "new", "tagger")  # a new folder, not made yet
    assert not (tmp_path / "new").exists()
    check_output_folder(tmp_path, "tagger")  # an empty one
    mine = tmp_path / "mine"
    mine.mkdir()
    save_task_meta(mine, "tagger")
    (mine / "config.json").write_text("{}", encoding="utf-8")
    (mine / ".saving-1-x").mkdir()  # a killed save's temporary folder
    check_output_folder(mine, "tagger")  # this task's model: trained again in place
    refused(mine, "nothing to resume: no ", "state.pt", "drop --resume", resume=True)
    (mine / "checkpoint").mkdir()
    (mine / "checkpoint" / "state.pt").write_bytes(b"state")
    refused(mine, "holds a training checkpoint", "--resume continues", "--overwrite starts again")
    check_output_folder(mine, "tagger", resume=True)
    check_output_folder(mine, "tagger", overwrite=True)
    with pytest.raises(ZhtextError, match="nothing to resume in .*: it holds a zhtext tagger model, "
                                          "not a title model"):
        check_output_folder(mine, "title", resume=True)
    with pytest.raises(ZhtextError, match="not empty and not a zhtext title model \\(it holds a "
                                          "zhtext tagger model\\); give --overwrite"):
        check_output_folder(mine, "title")
    check_output_folder(mine, "title", overwrite=True)

    users = tmp_path / "users"
    users.mkdir()
    for name in ("config.json", "a.txt", "b.txt", "c.txt", "d.txt"):
        (users / name).write_text("mine", encoding="utf-8")
    refused(users, "not empty and not a zhtext tagger model (it holds a.txt, b.txt, c.txt, "
            "config.json, ...); give --overwrite")
    refused(users, "nothing to resume: no ", resume=True)
    check_output_folder(users, "tagger", overwrite=True)
    refused(tmp_path / "none", "nothing to resume: ", "does not exist", resume=True)
    refused(users / "a.txt", "is a file")
    assert sorted(p.name for p in users.iterdir()) == ["a.txt", "b.txt", "c.txt", "config.json", "d.txt"]


def test_a_folder_a_failed_run_created_is_removed(tmp_path):
    from zhtext.neural.modeldir import removed_if_failed

    with pytest.raises(ZhtextError), removed_if_failed(tmp_path / "new") as folder:
        (folder / "checkpoint" / ".saving-1-x").mkdir(parents=True)
        (folder / "checkpoint" / ".saving-1-x" / "half.bin").write_bytes(b"x")
        raise ZhtextError("bad data")
    assert not (tmp_path / "new").exists()
    with pytest.raises(KeyboardInterrupt), removed_if_failed(tmp_path / "kept") as folder:
        (folder / "checkpoint").mkdir(parents=True)
        (folder / "checkpoint" / "state.pt").write_bytes(b"x")  # an interrupted run's state
        raise KeyboardInterrupt
    assert (tmp_path / "kept" / "checkpoint" / "state.pt").is_file()
    (tmp_path / "old").mkdir()
    with pytest.raises(ZhtextError), removed_if_failed(tmp_path / "old"):
        raise ZhtextError("bad data")
    assert (tmp_path / "old").is_dir()  # not this run's to remove


def test_a_damaged_whitening_is_one_line(tiny_dir, tmp_path):
    from zhtext.tasks.embed import WHITENING_FILE, Embedder

    embedder = Embedder(tiny_dir[0], batch_size=2)
    embedder.fit_whitening(TEXTS * 3, dim=4)
    folder = embedder.save(tmp_path / "embedder")
    data = bytearray((folder / WHITENING_FILE).read_bytes())
    data[200:240] = bytes(b ^ 0xFF for b in data[200:240])  # inside the arrays, past the header
    (folder / WHITENING_FILE).write_bytes(bytes(data))
    with pytest.raises(ZhtextError, match=f"{folder / WHITENING_FILE} is not a zhtext whitening "
                                          "file or is damaged"):
        Embedder.load(folder)


def test_zhtext_debug_shows_the_real_error_of_a_failing_model(monkeypatch):
    from zhtext.tasks.base import Model

    class Broken(Model):
        source = "broken-folder"

        def predict(self, texts, **options):
            raise IndexError("index 7 is out of bounds")

    with pytest.raises(ZhtextError, match="the model in broken-folder failed while running"):
        Broken()(["x"])
    monkeypatch.setenv("ZHTEXT_DEBUG", "1")
    with pytest.raises(IndexError, match="index 7"):
        Broken()(["x"])
