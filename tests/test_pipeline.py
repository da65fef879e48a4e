"""The pipeline: each step equals its standalone command, order across batches, config round trip,
bad lines reported with their numbers, the streamed .npy, and a step added in this file."""

from __future__ import annotations

import functools
import io
import json
import shutil
import sys
import types
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pytest
import torch
from conftest import run_cli

from zhtext.errors import ZhtextError
from zhtext.io.config import load_config
from zhtext.lexical.segment import Segmenter
from zhtext.neural.scratch import build_char_vocab, char_tokenizer, small_bert_config
from zhtext.pipeline import (
    STEPS,
    Doc,
    Lines,
    Pipeline,
    Step,
    read_numbered,
    register,
    setting,
)
from zhtext.pipeline.steps import EmbedStep
from zhtext.pipeline.vectors import VectorFile
from zhtext.tasks.embed import POOLINGS, Embedder
from zhtext.tasks.vectors import load_index
from zhtext.tasks.tagger import Tagger, TaggerModel, tag_names

TEXTS = [
    "我爱北京天安门",
    "北京是中国的首都，上海是中国最大的城市",
    "好",
    "今天天气很好我们去公园散步吧他在公园里跑步",  # longer than the tagger's window (10)
    "天安门广场在北京市中心每天都有很多游客来看升旗",  # longer than the embedder's 16 tokens too
    "李四说ab1",
    "中国",
]
WORDS = {"北京": 50, "天安门": 20, "中国": 40, "首都": 10, "上海": 30, "城市": 12, "今天": 25,
         "天气": 22, "公园": 15, "散步": 5, "跑步": 6, "广场": 8, "游客": 4, "我们": 30}  # fmt: skip
TAG_MAX_LEN = 12  # a window of 10 characters
EMBED_MAX_LEN = 16
TOO_LONG_TAG = "tag: longer than the tagger's window of 10 characters, tagged in overlapping windows"
TOO_LONG_EMBED = f"embed: longer than the embedder's {EMBED_MAX_LEN} tokens, truncated"


@pytest.fixture(scope="module", autouse=True)
def one_thread(request):
    """Tiny models run fastest on one thread."""
    request.addfinalizer(functools.partial(torch.set_num_threads, torch.get_num_threads()))
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    """A dictionary, a tagger with random weights and a random BERT encoder, saved to disk."""
    from transformers import AutoModel, BertModel

    root = tmp_path_factory.mktemp("pipeline-models")
    dictionary = root / "dict.tsv"
    dictionary.write_text("".join(f"{w}\t{c}\n" for w, c in WORDS.items()), encoding="utf-8")
    vocab = build_char_vocab(TEXTS)
    torch.manual_seed(0)
    encoder = AutoModel.from_config(
        small_bert_config(len(vocab), layers=1, hidden=16, heads=1, max_position=TAG_MAX_LEN)
    )
    model = TaggerModel(encoder, tag_names(["PER", "LOC"], "BIOES"), "BIOES", dropout=0.0)
    with torch.no_grad():
        for param in model.crf.parameters():
            param.add_(torch.randn_like(param))
        model.emit.weight.mul_(20)  # spread the emissions so that spans come out
    Tagger(model, char_tokenizer(vocab), ["PER", "LOC"], "BIOES", TAG_MAX_LEN).save(root / "tagger")
    char_tokenizer(vocab, root / "encoder")
    BertModel(small_bert_config(len(vocab), layers=2, hidden=32, heads=4)).save_pretrained(
        root / "encoder"
    )
    return {"dict": str(dictionary), "tagger": str(root / "tagger"), "encoder": str(root / "encoder")}


def three_steps(models) -> dict:
    """The settings of a segment, tag, embed pipeline over the test models, by step."""
    return {"segment": {"dict": models["dict"]}, "tag": {"model": models["tagger"]},
            "embed": {"model": models["encoder"], "max_len": EMBED_MAX_LEN}}  # fmt: skip


@pytest.fixture(scope="module")
def nlp(models) -> Pipeline:
    return Pipeline(["segment", "tag", "embed"], **three_steps(models))


def pipe_args(models, *extra: str) -> list[str]:
    return ["pipe", "--steps", "segment,tag,embed", "--set", f"segment.dict={models['dict']}", "--set",
            f"tag.model={models['tagger']}", "--set", f"embed.model={models['encoder']}", "--set",
            f"embed.max_len={EMBED_MAX_LEN}", "-q", *extra]  # fmt: skip


def assert_same_spans(ours: list[list[dict]], theirs: list[list[dict]]) -> None:
    """Same spans; scores to 1e-5 (other batch sizes change the encoder's last float bits)."""
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert [{**s, "score": None} for s in a] == [{**s, "score": None} for s in b]
        np.testing.assert_allclose([s["score"] for s in a], [s["score"] for s in b], atol=1e-5)


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --------------------------------------------------------------------------- equal to standalone


def test_each_step_equals_its_standalone_command(models, tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS[:3] + [""] + TEXTS[3:]) + "\n", encoding="utf-8")
    code, _, err = run_cli(monkeypatch, capsys, *pipe_args(models, str(corpus), "--batch-size", "3",
                           "-o", str(tmp_path / "p.jsonl"), "--vectors", str(tmp_path / "p.npy")))  # fmt: skip
    assert code == 0, err
    records = read_jsonl(tmp_path / "p.jsonl")

    code, seg_out, err = run_cli(monkeypatch, capsys, "segment", str(corpus), "--dict", models["dict"])
    assert code == 0, err
    code, tag_out, err = run_cli(monkeypatch, capsys, "tag", str(corpus), "--model", models["tagger"])
    assert code == 0, err
    code, _, err = run_cli(monkeypatch, capsys, "embed", str(corpus), "-m", models["encoder"], "--max-len",
                           str(EMBED_MAX_LEN), "-o", str(tmp_path / "e.npy"), "-q")  # fmt: skip
    assert code == 0, err

    lines = corpus.read_text(encoding="utf-8").splitlines()
    assert [r["line"] for r in records] == list(range(1, len(lines) + 1))
    assert [r["text"] for r in records] == lines
    assert [" ".join(r["words"]) for r in records] == seg_out.splitlines()
    tagged = [json.loads(line) for line in tag_out.splitlines()]
    assert_same_spans([r["spans"] for r in records], [t["spans"] for t in tagged])
    assert any(r["spans"] for r in records)  # the random tagger does find spans
    vectors, meta = load_index(tmp_path / "p.npy")
    expected, expected_meta = load_index(tmp_path / "e.npy")
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert meta == expected_meta  # so 'zhtext similar' searches the pipeline's vectors the same way


def test_vectors_in_jsonl_without_npy_and_whitening(models, tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    code, _, err = run_cli(monkeypatch, capsys, "embed", str(corpus), "-m", models["encoder"], "--whiten",
                           "--dim", "4", "--save-whitening", str(tmp_path / "w.npz"), "-q",
                           "--format", "jsonl", "-o", str(tmp_path / "e.jsonl"))  # fmt: skip
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, "pipe", str(corpus), "--steps", "embed", "--set",
                             f"embed.model={models['encoder']}", "--set", f"embed.whitening={tmp_path / 'w.npz'}",
                             "-q")  # fmt: skip
    assert code == 0, err
    mine = [json.loads(line) for line in out.splitlines()]
    theirs = read_jsonl(tmp_path / "e.jsonl")
    assert [r["text"] for r in mine] == [r["text"] for r in theirs]
    np.testing.assert_allclose([r["vector"] for r in mine], [r["vector"] for r in theirs], atol=1e-5)


def test_a_long_line_through_pipe_equals_the_commands(models, tmp_path, monkeypatch, capsys):
    """A line longer than the tagger decodes with others (it is streamed), and than the title model
    and the embedder read (they tokenize its head only): pipe gives each command's result for it,
    with a note; and no line is refused for its length (0.1 refused lines over 1 MiB)."""
    from zhtext.tasks.tagger import LONG_TEXT
    from zhtext.tasks.title import TitleGenerator

    torch.manual_seed(0)
    TitleGenerator.from_scratch(TEXTS, layers=1, hidden=32, max_source_len=24, max_target_len=32,
                                dropout=0.0).save(tmp_path / "title")  # fmt: skip
    long_line = (TEXTS[4] + TEXTS[1] + TEXTS[5]) * (LONG_TEXT // 40)
    assert len(long_line) > LONG_TEXT
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join([TEXTS[0], long_line, TEXTS[5]]) + "\n", encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "pipe", str(corpus), "--steps", "tag,title,embed",
                             "--set", f"tag.model={models['tagger']}", "--set", f"title.model={tmp_path / 'title'}",
                             "--set", f"embed.model={models['encoder']}", "--set", f"embed.max_len={EMBED_MAX_LEN}",
                             "-o", str(tmp_path / "p.jsonl"), "-q")  # fmt: skip
    assert code == 0, err
    records = read_jsonl(tmp_path / "p.jsonl")
    code, tag_out, err = run_cli(monkeypatch, capsys, "tag", str(corpus), "--model", models["tagger"])
    assert code == 0, err
    code, title_out, err = run_cli(monkeypatch, capsys, "title", str(corpus), "--lines", "--model",
                                   str(tmp_path / "title"), "--format", "jsonl")  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(monkeypatch, capsys, "embed", str(corpus), "-m", models["encoder"], "--max-len",
                           str(EMBED_MAX_LEN), "-o", str(tmp_path / "e.npy"), "-q")  # fmt: skip
    assert code == 0, err

    assert [r["text"] for r in records] == [TEXTS[0], long_line, TEXTS[5]]
    assert_same_spans([r["spans"] for r in records], [json.loads(t)["spans"] for t in tag_out.splitlines()])
    assert len(records[1]["spans"]) > 50
    assert [r["title"] for r in records] == [json.loads(t)["title"] for t in title_out.splitlines()]
    np.testing.assert_allclose([r["vector"] for r in records], np.load(tmp_path / "e.npy"), atol=1e-5)
    n = len(long_line)
    assert records[1]["problems"] == [f"{TOO_LONG_TAG} ({n} characters)",
                                      f"title: longer than the title model's 24 tokens, its head read ({n} characters)",
                                      f"{TOO_LONG_EMBED} ({n} characters)"]  # fmt: skip


def test_lines_reads_a_line_of_any_length_whole(tmp_path):
    path = tmp_path / "long.txt"
    line = "北京" * (1 << 19)  # 3 MiB of UTF-8: 0.1 refused lines over 1 MiB
    path.write_text(f"上海\n{line}\n中国\n", encoding="utf-8")
    assert [(n, text, err) for n, _, text, err in Lines(path)] == [
        (1, "上海", None), (2, line, None), (3, "中国", None)]


# --------------------------------------------------------------------------- order and batching


def test_order_preserved_across_batches_of_mixed_lengths(nlp, models):
    rng = np.random.default_rng(3)
    chars = "".join(TEXTS)
    texts = ["".join(rng.choice(list(chars), n)) for n in rng.integers(0, 30, 23)]
    singles = [nlp(t) for t in texts]
    segmenter = Segmenter(models["dict"])
    embedder = Embedder(models["encoder"], max_len=EMBED_MAX_LEN)
    for size in (1, 4, 23, 100):
        docs = list(nlp.pipe(texts, batch_size=size))
        assert [d.text for d in docs] == texts
        assert [d.line for d in docs] == list(range(1, len(texts) + 1))
        for doc, single, text in zip(docs, singles, texts):
            assert doc.words == single.words == segmenter.cut(text)
            assert_same_spans([[s.as_dict() for s in doc.spans]], [[s.as_dict() for s in single.spans]])
            np.testing.assert_allclose(doc.vector, single.vector, atol=1e-5)
    np.testing.assert_allclose(np.stack([d.vector for d in docs]), embedder.encode(texts), atol=1e-5)


def test_pipe_streams_lazily(nlp):
    """Documents of the first batch come out before the input is exhausted."""
    pulled = []

    def source():
        for i, text in enumerate(TEXTS * 3):
            pulled.append(i)
            yield text

    stream = nlp.pipe(source(), batch_size=2)
    first = next(stream)
    assert first.text == TEXTS[0] and len(pulled) == 2


# --------------------------------------------------------------------------- config


def test_config_round_trip(models, tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    config = tmp_path / "run.toml"
    code, direct, err = run_cli(monkeypatch, capsys, *pipe_args(models, str(corpus), "--batch-size", "2",
                                "--save-config", str(config)))  # fmt: skip
    assert code == 0, err
    nlp = Pipeline(["segment", "tag", "embed"], batch_size=2, **three_steps(models))
    assert Pipeline.from_config(config).settings == nlp.settings  # defaults included
    nlp.save_config(tmp_path / "api.toml")
    assert (tmp_path / "api.toml").read_text(encoding="utf-8") == config.read_text(encoding="utf-8")
    # each step's settings in its own table, defaults written out
    assert config.read_text(encoding="utf-8").splitlines() == [
        "# zhtext pipe settings: zhtext pipe FILE --config THIS.toml -o OUT.jsonl",
        'steps = ["segment", "tag", "embed"]', "batch_size = 2",
        "", "[segment]", f"dict = {json.dumps(models['dict'])}", "hmm = true",
        "", "[tag]", f"model = {json.dumps(models['tagger'])}", "batch_size = 32",
        "", "[embed]", f"model = {json.dumps(models['encoder'])}", 'pooling = "first-last-avg"',
        f"max_len = {EMBED_MAX_LEN}", "batch_size = 64",
    ]  # fmt: skip
    settings = load_config(config)
    assert settings["steps"] == ["segment", "tag", "embed"] and settings["batch_size"] == 2
    assert settings["embed"]["max_len"] == EMBED_MAX_LEN and settings["embed"]["pooling"] == "first-last-avg"
    code, again, err = run_cli(monkeypatch, capsys, "pipe", str(corpus), "--config", str(config), "-q")
    assert code == 0, err
    assert again == direct
    # command-line options win over the file: --steps narrows it (its tag and embed tables are
    # dropped), the segment step keeps the file's dictionary
    code, narrowed, err = run_cli(monkeypatch, capsys, "pipe", str(corpus), "--config", str(config),
                                  "--steps", "segment", "-q")  # fmt: skip
    assert code == 0, err
    full = [json.loads(line) for line in direct.splitlines()]
    assert [json.loads(line) for line in narrowed.splitlines()] == [
        {"line": r["line"], "text": r["text"], "words": r["words"]} for r in full
    ]
    assert Pipeline.from_config(config, steps="segment", batch_size=5).settings == {
        "steps": ["segment"], "batch_size": 5, "device": None, "quantize": None,
        "segment": {"dict": models["dict"], "user_dict": None, "hmm": True},
    }  # fmt: skip
    # --set merges into the file's table: the model stays, the batch size changes
    assert Pipeline.from_config(config, tag={"batch_size": 4}).settings["tag"] == {
        "model": models["tagger"], "batch_size": 4,
    }  # fmt: skip
    # None keeps the file's value
    assert Pipeline.from_config(config, steps=None, batch_size=None, tag={"batch_size": None}).settings == \
        Pipeline.from_config(config).settings  # fmt: skip
    # without --steps, a setting of a step the file does not run is still an error
    with pytest.raises(ZhtextError, match="settings given for the title step, which is not in the steps"):
        Pipeline.from_config(config, title={"model": "x"})


def test_old_flat_settings_still_read_with_a_warning(models, tmp_path, monkeypatch, capsys):
    """zhtext 0.1's flat config files and keywords give the same pipeline, with a warning."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    old = tmp_path / "old.toml"
    old.write_text(
        'steps = ["segment", "tag", "embed"]\nbatch_size = 2\n'
        f"dict = {json.dumps(models['dict'])}\ntag_model = {json.dumps(models['tagger'])}\ntag_batch_size = 32\n"
        f"embed_model = {json.dumps(models['encoder'])}\npooling = \"first-last-avg\"\n"
        f"embed_max_len = {EMBED_MAX_LEN}\nembed_batch_size = 64\n",
        encoding="utf-8",
    )  # as zhtext 0.1's --save-config wrote it
    expected = Pipeline(["segment", "tag", "embed"], batch_size=2, **three_steps(models)).settings
    with pytest.warns(FutureWarning, match=r"old.toml: flat settings are the old layout.*tag_model -> tag.model"):
        assert Pipeline.from_config(old).settings == expected
    with pytest.warns(FutureWarning, match=r"Pipeline\(\): flat settings .*embed_max_len -> embed.max_len"):
        flat = Pipeline(["segment", "tag", "embed"], batch_size=2, dict=models["dict"], tag_model=models["tagger"],
                        embed_model=models["encoder"], embed_max_len=EMBED_MAX_LEN)  # fmt: skip
    assert flat.settings == expected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        with pytest.raises(ZhtextError, match="setting segment.dict is given twice"):
            Pipeline("segment", dict="a", segment={"dict": "b"})
    code, new_out, err = run_cli(monkeypatch, capsys, *pipe_args(models, str(corpus), "--batch-size", "2"))
    assert code == 0, err
    code, old_out, err = run_cli(monkeypatch, capsys, "pipe", str(corpus), "--config", str(old), "-q")
    assert code == 0 and old_out == new_out
    warning, *rest = err.splitlines()  # one line, however long: the console never wraps
    assert warning.startswith(f"zhtext: warning: {old}: flat settings are the old layout")
    assert not any("flat settings" in line for line in rest)


def test_old_options_are_hidden_aliases_that_warn_once(models, tmp_path, monkeypatch, capsys):
    from zhtext_cli import base

    monkeypatch.setattr(base, "_warned", set())  # as in a fresh process
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join([TEXTS[0], TEXTS[2], TEXTS[5], TEXTS[6]]) + "\n", encoding="utf-8")  # no bad line
    code, new_out, err = run_cli(monkeypatch, capsys, *pipe_args(models, str(corpus)))
    assert code == 0 and err == ""
    old = ["pipe", str(corpus), "--steps", "segment,tag,embed", f"--dict={models['dict']}", "--tag-model",
           models["tagger"], "--embed-model", models["encoder"], "--max-len", str(EMBED_MAX_LEN), "-q"]  # fmt: skip
    for _ in range(2):
        code, old_out, err = run_cli(monkeypatch, capsys, *old)
        assert code == 0 and old_out == new_out
    # warned in the first run only, one line each
    code, _, err = run_cli(monkeypatch, capsys, *old)
    assert err == ""
    base._warned.clear()
    code, _, err = run_cli(monkeypatch, capsys, *old)
    assert err.splitlines() == [
        f"zhtext: warning: {flag} is deprecated, use --set {key}=... (the old spelling goes in the next release)"
        for flag, key in [("--dict", "segment.dict"), ("--tag-model", "tag.model"),
                          ("--embed-model", "embed.model"), ("--max-len", "embed.max_len")]
    ]  # fmt: skip
    code, out, err = run_cli(monkeypatch, capsys, "pipe", "--help")
    assert code == 0 and "--set" in out and "--tag-model" not in out and "--max-len" not in out
    assert "embed: model (path, required): encoder folder or hub id (bert-base-chinese); pooling " \
        "(cls|last-avg|first-last-avg|pooler, first-last-avg)" in " ".join(out.split())  # fmt: skip
    # an old option without its value: click's own usage error for the new one
    code, _, err = run_cli(monkeypatch, capsys, "pipe", str(corpus), "--steps", "tag", "--tag-model")
    assert code == 2 and "'--set' requires an argument" in err


def test_config_relative_paths_and_errors(models, tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(models["dict"], folder / "dict.tsv")
    (folder / "run.toml").write_text('steps = ["segment"]\n[segment]\ndict = "dict.tsv"\n', encoding="utf-8")
    nlp = Pipeline.from_config(folder / "run.toml")
    assert nlp.settings["segment"]["dict"] == str((folder / "dict.tsv").resolve())
    assert nlp("我爱北京天安门").words == Segmenter(models["dict"]).cut("我爱北京天安门")
    # a name that is no file there (a hub id) is kept as it is
    (folder / "hub.toml").write_text('steps = ["tag"]\n[tag]\nmodel = "org/no-such-model"\n', encoding="utf-8")
    with pytest.raises(ZhtextError, match="org/no-such-model"):
        Pipeline.from_config(folder / "hub.toml")
    (folder / "bad.toml").write_text('steps = ["segment"\n', encoding="utf-8")
    with pytest.raises(ZhtextError, match="not valid TOML"):
        Pipeline.from_config(folder / "bad.toml")


@pytest.mark.parametrize(
    "steps, settings, message",
    [
        ("segment,parse", {}, "unknown step 'parse'"),
        ("segment,segment", {}, "named twice"),
        ("", {}, "no steps"),
        ("segment", {"colour": 1}, "unknown setting 'colour'"),
        ("segment", {"segment": {"colour": 1}}, r"unknown setting segment.colour \(the segment step's settings: dict"),
        ("segment", {"segment": 5}, "setting segment must be a table of the segment step's settings, got 5"),
        ("segment", {"tag": {"model": "x"}}, "settings given for the tag step, which is not in the steps"),
        ("segment,tag", {}, "the tag step needs the setting tag.model"),
        ("segment,tag", {"tag": {"batch_size": 2}}, "the tag step needs the setting tag.model"),
        ("segment", {"batch_size": 0}, "setting batch_size must be a positive integer, got 0"),
        ("segment", {"batch_size": True}, "setting batch_size must be a positive integer, got True"),
        ("segment", {"batch_size": "8"}, "setting batch_size must be a positive integer, got '8'"),
        ("segment", {"device": 5}, "setting device must be a string, got 5"),
        ("segment", {"segment": {"dict": 5}}, "setting segment.dict must be a string, got 5"),
        ("segment", {"segment": {"user_dict": ["a"]}}, r"setting segment.user_dict must be a string, got \['a'\]"),
        ("generate", {"generate": {"model": "g", "seed": 1.5}}, "setting generate.seed must be an integer, got 1.5"),
        ("generate", {"generate": {"model": "g", "max_new_tokens": 0}},
         "setting generate.max_new_tokens must be a positive integer, got 0"),
        ("embed", {"embed": {"model": "e", "pooling": "max"}},
         "setting embed.pooling must be one of cls, last-avg, first-last-avg, pooler, got 'max'"),
        (5, {}, "setting steps must be a list of step names or a comma-separated string, got 5"),
        (["segment", 1], {}, "setting steps must be a list"),
        (None, {}, "no steps given"),
    ],
)
def test_settings_errors(steps, settings, message):
    with pytest.raises(ZhtextError, match=message):
        list(Pipeline(steps, **settings).pipe(["中国"]))


def test_settings_of_the_right_type_pass():
    nlp = Pipeline(("segment",), batch_size=3, device="cpu")
    assert nlp.settings == {"steps": ["segment"], "batch_size": 3, "device": "cpu", "quantize": None,
                            "segment": {"dict": None, "user_dict": None, "hmm": True}}  # fmt: skip
    with pytest.raises(ZhtextError, match="setting batch_size must be a positive integer, got 0"):
        list(nlp.pipe(["中国"], batch_size=0))  # the pipe's own batch size is checked the same way


def test_embed_pooling_choices_are_the_embedders():
    assert EmbedStep.specs()["pooling"].choices == POOLINGS


def test_cli_errors_are_one_line(models, tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("中国\n", encoding="utf-8")
    for args, message in [
        (["pipe", str(corpus)], "give --steps"),
        (["pipe", str(corpus), "--steps", "segment", "--vectors", str(tmp_path / "v.npy")], "embed step"),
        (["pipe", str(tmp_path / "missing.txt"), "--steps", "segment"], "no such file"),
        # the input is opened before the models load: its error, not the missing model's
        (["pipe", str(tmp_path / "missing.txt"), "--steps", "tag", "--set", "tag.model=nope"], "no such file"),
        (["pipe", str(tmp_path), "--steps", "tag", "--set", "tag.model=nope"], "is a directory"),
        (["pipe", str(corpus), "--steps", "tag", "--set", f"tag.model={tmp_path / 'nope'}"], "nope"),
        (["pipe", str(corpus), "--config", str(tmp_path / "none.toml")], "no such config"),
    ]:
        code, _, err = run_cli(monkeypatch, capsys, *args)
        assert code == 1 and err.startswith("zhtext: error:") and message in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "v.npy").exists()


BAD_CONFIGS = {
    "steps = 5\n": "setting steps must be a list of step names or a comma-separated string, got 5",
    'steps = ["segment"]\n[segment]\ndict = 5\n': "setting segment.dict must be a string, got 5",
    'steps = ["segment"]\n[segment]\nuser_dict = 5\n': "setting segment.user_dict must be a string, got 5",
    'steps = ["segment"]\n[segment]\ncolour = 5\n': "unknown setting segment.colour",
    'steps = ["segment"]\nsegment = 5\n': "setting segment must be a table of the segment step's settings",
    'steps = ["segment"]\n[tag]\nmodel = "x"\n': "settings given for the tag step, which is not in the steps",
    'steps = ["segment"]\n[parse]\nx = 1\n': "unknown setting 'parse'",
    'steps = ["segment"]\nbatch_size = true\n': "setting batch_size must be a positive integer, got True",
    'steps = ["segment"]\ndevice = 5\n': "setting device must be a string, got 5",
}
BAD_SETS = {
    "segment.dict": "--set takes STEP.NAME=VALUE (e.g. tag.model=DIR), got 'segment.dict'",
    ".dict=x": "--set takes STEP.NAME=VALUE",
    "parse.x=1": "unknown step 'parse'",
    "segment.colour=1": "unknown setting segment.colour",
    "colour=1": "unknown setting 'colour' in --set colour=1",
    "batch_size=x": "setting batch_size must be a positive integer, got 'x'",
    "embed.max_len=-3": "setting embed.max_len must be a positive integer, got -3",
    "embed.pooling=max": "setting embed.pooling must be one of cls, last-avg, first-last-avg, pooler, got 'max'",
}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "segment", "--encoding", "nope"], "unknown encoding: nope"),
        *((["--config", text], message) for text, message in BAD_CONFIGS.items()),
        (["--config", b"\xff\xfe\x00s = 1"], "not UTF-8 text"),
        *((["--steps", "embed", "--set", "embed.model=e", "--set", item], message) for item, message in BAD_SETS.items()),
        (["--steps", "segment", "--input", b"\x00\x01\x02binary\n"], "looks like a binary file"),
        (["--steps", "segment", "--input", b"\x00\x01\x02binary\n", "--encoding", "gb18030"],
         "looks like a binary file"),
    ],
    ids=["encoding", *BAD_CONFIGS, "binary-config", *BAD_SETS, "binary-input",
         "binary-input-encoding"],
)
def test_cli_bad_settings_and_inputs_are_one_line(args, message, tmp_path, monkeypatch, capsys):
    """Each bad value gives exit 1, one 'zhtext: error:' line naming it, and no output file; a
    bad setting is refused before any model loads (the embed model "e" does not exist)."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("中国\n", encoding="utf-8")
    args = list(args)
    for flag in ("--config", "--input"):
        if flag in args:  # the value is the file's content: write it, pass its path
            i = args.index(flag)
            path = tmp_path / ("run.toml" if flag == "--config" else "input.txt")
            data = args[i + 1]
            path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
            args[i : i + 2] = ["--config", str(path)] if flag == "--config" else []
            if flag == "--input":
                corpus = path
    out = tmp_path / "out.jsonl"
    code, stdout, err = run_cli(monkeypatch, capsys, "pipe", str(corpus), *args, "-o", str(out), "-q")
    assert code == 1 and err.startswith("zhtext: error:") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err and stdout == ""
    assert not out.exists() and not list(tmp_path.glob(".out*"))


# --------------------------------------------------------------------------- bad lines


def test_bad_lines_reported_with_their_numbers(models, tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "bad.txt"
    raw = "我爱北京天安门\n\n北京".encode() + b"\xff\xfe\n"  # line 3: not UTF-8
    raw += ("\n".join(["   ", TEXTS[4], "中国"]) + "\n").encode("utf-8")  # 4 blank, 5 too long
    corpus.write_bytes(raw)
    out, vec = tmp_path / "out.jsonl", tmp_path / "out.npy"
    code, _, err = run_cli(monkeypatch, capsys, *pipe_args(models, str(corpus), "-o", str(out),
                           "--vectors", str(vec)))  # fmt: skip
    assert code == 0, err
    records = read_jsonl(out)
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5, 6]  # none dropped
    assert "error" in records[2] and "offset" in records[2]["error"] and "words" not in records[2]
    assert records[1]["problems"] == ["empty line"] and records[1]["words"] == []
    assert records[3]["problems"] == ["empty line"] and records[3]["words"] == [" "] * 3
    assert records[4]["problems"] == [f"{TOO_LONG_TAG} (23 characters)", f"{TOO_LONG_EMBED} (25 tokens)"]
    assert "problems" not in records[0] and "problems" not in records[5]
    vectors = np.load(vec)
    assert vectors.shape[0] == 6 and not vectors[2].any() and vectors[1].any()
    summary = err[err.index("4 bad line(s)") :].splitlines()
    assert summary[1:] == [
        "  unreadable: 1 line(s): 3",
        "  empty line: 2 line(s): 2, 4",
        f"  {TOO_LONG_TAG}: 1 line(s): 5",
        f"  {TOO_LONG_EMBED}: 1 line(s): 5",
    ]
    # --strict stops at the first bad line, and writes nothing
    out.unlink()
    vec.unlink()
    code, _, err = run_cli(monkeypatch, capsys, *pipe_args(models, str(corpus), "-o", str(out),
                           "--vectors", str(vec), "--strict"))  # fmt: skip
    last = err.splitlines()[-1]  # (transformers may draw a loading bar before it, in-process)
    assert code == 1 and last == f"zhtext: error: {corpus}:2: empty line (stopped by --strict)"
    assert not out.exists() and not vec.exists()
    assert not list(tmp_path.glob(".out*"))  # no temporary files left behind


def test_strict_stops_at_first_bad_line_in_input_order(nlp):
    long_then_empty = ["中国", TEXTS[3], ""]
    with pytest.raises(ZhtextError, match=r"^line 2: tag: longer .* \(21 characters\)$"):
        list(nlp.pipe(long_then_empty, strict=True))
    assert [d.problems for d in nlp.pipe(long_then_empty)] == [
        [],
        [f"{TOO_LONG_TAG} (21 characters)", f"{TOO_LONG_EMBED} (23 tokens)"],
        ["empty line"],
    ]  # fmt: skip


def test_stdin_to_stdout(models):
    from typer.testing import CliRunner

    from zhtext_cli.app import app

    result = CliRunner().invoke(app, ["pipe", "--steps", "segment", "--set", f"segment.dict={models['dict']}"],
                                input="我爱北京天安门\r\n\n中国")  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    segmenter = Segmenter(models["dict"])
    assert [(r["line"], r["words"]) for r in records] == [
        (1, segmenter.cut("我爱北京天安门")), (2, []), (3, segmenter.cut("中国"))
    ]


def test_read_numbered_decodes_each_line(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("北京\r\n上海\n".encode("gb18030") + b"\x81\n" + "广州".encode("gb18030"))
    got = list(read_numbered(path))
    assert got[:2] == [(1, "北京", None), (2, "上海", None)]
    assert got[2][0] == 3 and got[2][2] is not None and got[3] == (4, "广州", None)
    # mostly UTF-8 with one bad line in the first chunk: still read as UTF-8
    path.write_bytes("\ufeff中国\n".encode("utf-8") + b"\xe4\xb8\n" + "首都\n".encode())
    got = list(read_numbered(path))
    assert got[0] == (1, "中国", None) and got[2] == (3, "首都", None)
    assert got[1][2] == "cannot decode byte at offset 10 as utf-8"  # in the file: the BOM counts
    # (the start of an ELF executable; eight bytes such as b"\x00\x01binary" would also read as
    # UTF-16 text, and are named so: see tests/test_io.py)
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x03\x00>\x00")
    with pytest.raises(ZhtextError, match="binary"):
        list(read_numbered(path))
    with pytest.raises(ZhtextError, match="binary"):  # a named encoding does not make it text
        list(read_numbered(path, encoding="gb18030"))


def test_lines_offsets_and_long_lines(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    raw = "\ufeff中国\n".encode() + b"x" * 40 + b"\n\n" + "上海".encode() + b"y" * 50 + "\r\n末".encode()
    path.write_bytes(raw)
    lines = Lines(path, max_bytes=30)
    assert lines.size == len(raw)
    got = list(lines)
    assert [(n, text, err) for n, _, text, err in got] == [
        (1, "中国", None), (2, "", "longer than 30 bytes, not read"), (3, "", None),
        (4, "", "longer than 30 bytes, not read"), (5, "末", None),
    ]  # fmt: skip
    # file offsets past each line (BOM + 中国 + newline = 10, ...), the last one the file's size
    assert [end for _, end, _, _ in got] == [10, 10 + 41, 51 + 1, 52 + 6 + 50 + 2, len(raw)]
    # tiny chunks: a long line is dropped across reads, never held; the same records come
    with monkeypatch.context() as m:
        m.setattr("zhtext.io.reading.CHUNK_BYTES", 7)
        assert list(Lines(path, max_bytes=30)) == got
    # UTF-16 is read whole-file (its newline is not the byte \n), offsets still reach the end
    path.write_text("北京\n上海\n", encoding="utf-16")
    assert [(n, e, t) for n, e, t, _ in Lines(path, "utf-16")] == [(1, 8, "北京"), (2, 14, "上海")]
    with pytest.raises(ZhtextError, match="unknown encoding: nope"):
        Lines(path, "nope")
    with pytest.raises(ZhtextError, match="no such file"):
        Lines(tmp_path / "missing.txt")  # at once, before iterating


# --------------------------------------------------------------------------- steps


@register("upper")
class Upper(Step):
    """A step added here, as a user would: each text in capitals, ``times`` times, then ``end``."""

    @dataclass
    class Settings:
        times: int = setting(1, positive=True, help="copies")
        end: str = ""
        case: Literal["upper", "lower"] = "upper"

    def run(self, texts):
        s = self.settings
        return [(t.upper() if s.case == "upper" else t.lower()) * s.times + s.end for t in texts]


@pytest.fixture(scope="module", autouse=True)
def forget_test_steps():
    yield
    STEPS.pop("upper", None)


def test_a_step_is_one_class(models, tmp_path, monkeypatch, capsys):
    texts = ["ab", "", "中国c"]
    nlp = Pipeline("segment,upper", segment={"dict": models["dict"]}, upper={"times": 2, "end": "!"})
    docs = list(nlp.pipe(texts))
    assert [d.results["upper"] for d in docs] == [d.upper for d in docs] == ["ABAB!", "!", "中国C中国C!"]
    assert [d.words for d in docs] == [Segmenter(models["dict"]).cut(t) for t in texts]
    assert json.loads(docs[2].to_json()) == {"line": 3, "text": "中国c", "words": docs[2].words,
                                             "upper": "中国C中国C!"}  # fmt: skip
    assert nlp.settings == {"steps": ["segment", "upper"], "batch_size": 1024, "device": None,
                            "quantize": None,
                            "segment": {"dict": models["dict"], "user_dict": None, "hmm": True},
                            "upper": {"times": 2, "end": "!", "case": "upper"}}  # fmt: skip
    with pytest.raises(ZhtextError, match="setting upper.times must be a positive integer, got 0"):
        Pipeline("upper", upper={"times": 0})
    with pytest.raises(ZhtextError, match="setting upper.case must be one of upper, lower, got 'title'"):
        Pipeline("upper", upper={"case": "title"})
    # the command line: its settings from a TOML table, then from --set, and saved again
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    config = tmp_path / "upper.toml"
    config.write_text('steps = ["upper"]\n\n[upper]\ntimes = 3\nend = "?"\n', encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "pipe", str(corpus), "--config", str(config), "-q")
    assert code == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [
        {"line": 1, "text": "ab", "upper": "ABABAB?"},
        {"line": 2, "text": "", "upper": "?", "problems": ["empty line"]},
        {"line": 3, "text": "中国c", "upper": "中国C中国C中国C?"},
    ]  # fmt: skip
    code, out, err = run_cli(monkeypatch, capsys, "pipe", str(corpus), "--config", str(config), "--set",
                             "upper.case=lower", "--set", "upper.end=", "--save-config", str(tmp_path / "s.toml"),
                             "-q")  # fmt: skip
    assert code == 0, err
    assert [json.loads(line)["upper"] for line in out.splitlines()] == ["ababab", "", "中国c中国c中国c"]
    assert load_config(tmp_path / "s.toml") == {"steps": ["upper"], "batch_size": 1024,
                                                "upper": {"times": 3, "end": "", "case": "lower"}}  # fmt: skip
    code, out, err = run_cli(monkeypatch, capsys, "pipe", str(corpus), "--steps", "upper", "--set",
                             "upper.times=x")  # fmt: skip
    assert code == 1 and err == "zhtext: error: setting upper.times must be a positive integer, got 'x'\n"
    code, out, err = run_cli(monkeypatch, capsys, "pipe", "--help")
    assert 'upper: times (positive integer, 1): copies; end (text, ""); case (upper|lower, upper)' in " ".join(out.split())


def test_register_checks_the_step():
    class Named(Step):
        def run(self, texts):
            return texts

    for name in ("Upper", "two words", "text", "results", ""):
        with pytest.raises(ValueError, match="a step name is a lowercase word"):
            register(name)(Named)
    with pytest.raises(ValueError, match="clashes with step 'upper'"):
        register("upper")(Named)  # another class under a taken name
    with pytest.raises(ValueError, match="clashes with step 'tag'"):
        register("spans")(Named)  # a name that is another step's record key
    with pytest.raises(TypeError, match="decorates a Step subclass"):
        register("thing")(dict)

    class BadType(Step):
        @dataclass
        class Settings:
            names: list = None

    class NotDataclass(Step):
        class Settings:
            size: int = 1

    class BadDefault(Step):
        @dataclass
        class Settings:
            size: int = setting("1")

    for cls, message in [(BadType, "a setting is str, int, float, bool or a Literal"),
                         (NotDataclass, "must be a @dataclass"), (BadDefault, "setting size must be an integer")]:
        with pytest.raises((TypeError, ZhtextError), match=message):
            register("bad")(cls)
    assert "bad" not in STEPS and "thing" not in STEPS
    with pytest.raises(TypeError, match="Step.options is gone; declare the settings in a nested @dataclass"):

        class Old(Step):  # zhtext 0.1's way
            name, field = "old", "title"
            options = {"upper": False}  # noqa: RUF012
    # the same class defined again (a notebook cell run twice) replaces itself
    upper = STEPS["upper"]
    again = type("Upper", (Step,), {"__module__": upper.__module__, "__qualname__": upper.__qualname__,
                                    "run": upper.run})  # fmt: skip
    try:
        assert register("upper")(again) is STEPS["upper"] is again
    finally:
        STEPS["upper"] = upper


def test_doc_json_matches_fields(nlp):
    doc = nlp("我爱北京天安门")
    record = json.loads(doc.to_json())
    assert list(record) == ["line", "text", "words", "spans", "vector"]  # the steps' order
    assert record["words"] == doc.words == doc.results["segment"] == doc.segment and record["line"] == 1
    assert record["spans"] == [s.as_dict() for s in doc.spans] and doc.spans is doc.results["tag"]
    assert np.array_equal(np.array(record["vector"], dtype=np.float32), doc.vector)
    assert doc.as_dict() == {**record, "vector": doc.vector.tolist()}
    assert "vector" not in json.loads(doc.to_json(omit=("embed",)))
    assert Doc("x").as_dict() == {"line": None, "text": "x"}
    assert Doc("x").title is None  # a step that did not run
    with pytest.raises(AttributeError, match="no attribute 'colour'"):
        _ = Doc("x").colour


def test_vector_file_is_what_numpy_saves(tmp_path):
    rows = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    with open(tmp_path / "v.npy", "wb") as handle:
        vectors = VectorFile(handle, 3)
        for row in rows:
            vectors.write(row)
        vectors.close()
    saved = io.BytesIO()
    np.save(saved, rows)
    assert (tmp_path / "v.npy").read_bytes() == saved.getvalue()  # numpy's own header, byte for byte
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy", mmap_mode="r"), rows)
    with open(tmp_path / "e.npy", "wb") as handle:
        VectorFile(handle, 3).close()
    assert np.load(tmp_path / "e.npy").shape == (0, 3)
    with pytest.raises(ValueError, match="expected a vector of 3 values"):
        VectorFile(io.BytesIO(), 3).write(np.zeros(4))


def test_generate_step_loads_once_and_keeps_order(monkeypatch):
    """The step's wiring, against a stand-in with the one model API (load, then a call on a list)."""
    from zhtext.tasks.base import Model

    loads, calls = [], []

    class Writer(Model):
        @classmethod
        def load(cls, name_or_dir, **settings):
            loads.append((name_or_dir, settings))
            return cls()

        def predict(self, prompts, **options):
            calls.append((len(prompts), options))
            return [p + "啊" * options["max_new_tokens"] for p in prompts]

    monkeypatch.setitem(sys.modules, "zhtext.tasks.generate", types.SimpleNamespace(TextGenerator=Writer))
    nlp = Pipeline("segment,generate", device="cpu", generate={"model": "g", "max_new_tokens": 2, "batch_size": 5})
    docs = list(nlp.pipe(TEXTS, batch_size=3))
    assert loads == [("g", {"device": "cpu", "batch_size": 5})]
    assert calls == [(n, {"max_new_tokens": 2, "seed": 0}) for n in (3, 3, 1)]
    assert [d.generated for d in docs] == [t + "啊啊" for t in TEXTS]
    assert json.loads(docs[0].to_json())["generated"] == TEXTS[0] + "啊啊"
    # the defaults are zhtext generate's (but a fixed seed); blank lines are not sent to the model
    loads.clear()
    calls.clear()
    nlp = Pipeline("generate", generate={"model": "g"})
    docs = list(nlp.pipe(["中国", "", "  ", "北京"]))
    assert loads == [("g", {"device": None, "batch_size": 8})]
    assert calls == [(2, {"max_new_tokens": 64, "seed": 0})]
    assert [d.generated for d in docs] == ["中国" + "啊" * 64, "", "", "北京" + "啊" * 64]
    assert [d.problems for d in docs] == [[], ["empty line"], ["empty line"], []]


def test_generate_step_equals_text_generator(tmp_path):
    from zhtext.tasks.generate import TextGenerator

    TextGenerator.from_scratch(TEXTS, layers=1, hidden=32, heads=2, block_size=64).save(tmp_path / "g")
    gen = TextGenerator.load(tmp_path / "g")
    # one prompt at a time: the seed gives each prompt the same text whatever else is in its batch
    expect = [gen(text, max_new_tokens=4, seed=0) for text in TEXTS]
    nlp = Pipeline("generate", generate={"model": str(tmp_path / "g"), "max_new_tokens": 4})
    got = [d.generated for d in nlp.pipe(TEXTS, batch_size=len(TEXTS))]
    assert got == expect
    assert all(isinstance(g, str) for g in got) and len(set(got)) > 1


def test_title_step_equals_zhtext_title(tmp_path, monkeypatch, capsys):
    from zhtext.tasks.title import TitleGenerator

    torch.manual_seed(0)
    generator = TitleGenerator.from_scratch(TEXTS, layers=1, hidden=32, max_source_len=24,
                                            max_target_len=32, dropout=0.0)  # fmt: skip
    generator.save(tmp_path / "title")
    corpus = tmp_path / "articles.txt"
    lines = [TEXTS[0], "", TEXTS[1] + TEXTS[4], TEXTS[5]]  # a blank line; one over 24 tokens
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "title", str(corpus), "--lines", "--model",
                             str(tmp_path / "title"), "--format", "jsonl")  # fmt: skip
    assert code == 0, err
    standalone = [json.loads(line) for line in out.splitlines()]
    code, out, err = run_cli(monkeypatch, capsys, "pipe", str(corpus), "--steps", "title", "--set",
                             f"title.model={tmp_path / 'title'}", "--batch-size", "2", "-q")  # fmt: skip
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in records] == lines
    assert [r["title"] for r in records if r["text"]] == [t["title"] for t in standalone]
    assert records[1]["title"] == "" and records[1]["problems"] == ["empty line"]
    assert records[2]["problems"] == ["title: longer than the title model's 24 tokens, its head read (42 tokens)"]
