"""ONNX: a tagger's and an embedder's export run by onnxruntime give torch's outputs (emissions
and vectors within 1e-4, the same spans) for any batch and length; the CLI exports and runs them;
what cannot be done is one line."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from conftest import run_cli
from test_tagger import TRAIN_SETTINGS, one_thread, toy_examples  # noqa: F401 (a fixture)

from zhtext.errors import ZhtextError
from zhtext.tasks.embed import Embedder
from zhtext.tasks.tagger import Tagger, TaggerTrainConfig

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def tagger_dirs(tmp_path_factory):
    """A trained tiny tagger (windows of 24 tokens) and its export."""
    out = tmp_path_factory.mktemp("ner")
    Tagger.train(TaggerTrainConfig(train=toy_examples(60, 1), dev=toy_examples(10, 2),
                                   output=out, **TRAIN_SETTINGS))
    onnx = tmp_path_factory.mktemp("ner-onnx")
    Tagger.load(out).export_onnx(onnx)
    return out, onnx


@pytest.fixture(scope="module")
def embed_dirs(tmp_path_factory):
    """A from-scratch encoder saved as an embedder with a whitening, and its export."""
    from transformers import AutoModel

    from zhtext.neural.scratch import build_char_vocab, char_tokenizer, small_bert_config

    texts = [e.text for e in toy_examples(40, 5)]
    raw = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(0)
    vocab = build_char_vocab(texts)
    AutoModel.from_config(small_bert_config(len(vocab), layers=2, hidden=32, heads=2,
                                            max_position=64)).save_pretrained(raw)
    char_tokenizer(vocab).save_pretrained(raw)
    model = tmp_path_factory.mktemp("embedder")
    embedder = Embedder.load(raw, pooling="first-last-avg", max_len=64)
    embedder.fit_whitening(texts, dim=16)
    embedder.save(model)
    onnx = tmp_path_factory.mktemp("embed-onnx")
    Embedder.load(model).export_onnx(onnx)
    return model, onnx, texts


def _spans(spans) -> list[tuple[int, int, str]]:
    return [(s["start"], s["end"], s["label"]) if isinstance(s, dict) else (s.start, s.end, s.label)
            for s in spans]


def test_tagger_export_gives_torch_emissions_and_spans(tagger_dirs):
    model, onnx = tagger_dirs
    torch_tagger, onnx_tagger = Tagger.load(model), Tagger.load(onnx, onnx=True)
    assert onnx_tagger.exported and not torch_tagger.exported
    texts = [e.text for e in toy_examples(30, 3)] + ["", "王", "北京" * 40]  # windows of 22
    for batch in (texts[:1], texts[:7], texts):  # batches of 1, 7 and 33 windows of any length
        for a, b in zip(torch_tagger.emissions(batch), onnx_tagger.emissions(batch)):
            assert a.shape == b.shape
            assert torch.allclose(a, b, atol=1e-4)
    # the same spans and n-best paths; probabilities equal to float rounding. Paths of equal
    # probability (a repeated text has many: 北京 x 40 drops a span anywhere) may come in either
    # order, so a path's spans are compared where no neighbour ties with it (a fourth path shows
    # whether the third is tied)
    compared = 0
    for x, y in zip(onnx_tagger.nbest(texts, 4), torch_tagger.nbest(texts, 4)):
        probs = [c.prob for c in x]
        assert np.allclose(probs, [c.prob for c in y], atol=1e-5)
        for k, (a, b) in enumerate(zip(x[:3], y[:3])):
            if any(abs(probs[k] - probs[j]) < 1e-6 for j in (k - 1, k + 1) if 0 <= j < len(x)):
                continue
            assert _spans(a.spans) == _spans(b.spans)
            assert np.allclose([s.score for s in a.spans], [s.score for s in b.spans], atol=1e-5)
            compared += 1
    assert compared > 2 * len(texts)  # ties are the exception
    assert sum(len(spans) for spans in torch_tagger(texts)) > 20
    # an export loads without onnx= too, and the export's metadata says where it came from
    assert Tagger.load(onnx).exported
    meta = json.loads((onnx / "zhtext.json").read_text())
    assert meta["onnx"]["output"] == "emissions" and meta["exported_from"] == str(model)


def test_embedder_export_gives_torch_vectors(embed_dirs):
    model, onnx, texts = embed_dirs
    torch_embedder, onnx_embedder = Embedder.load(model), Embedder.load(onnx, onnx=True)
    assert onnx_embedder.whitening is not None and onnx_embedder.dim == 16
    for batch in (texts[:1], texts[:5], texts + ["", "北京" * 50]):  # cut at 64 tokens
        raw_t, raw_o = torch_embedder.encode_raw(batch), onnx_embedder.encode_raw(batch)
        assert raw_t.shape == raw_o.shape
        np.testing.assert_allclose(raw_o, raw_t, atol=1e-4)
        np.testing.assert_allclose(onnx_embedder(batch), torch_embedder(batch), atol=1e-4)


def test_cli_exports_and_runs(tagger_dirs, tmp_path, monkeypatch, capsys):
    model, _ = tagger_dirs
    out = tmp_path / "exp"
    assert run_cli(monkeypatch, capsys, "export", "onnx", str(model), "-o", str(out), "-q")[0] == 0
    texts = [e.text for e in toy_examples(8, 4)]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    code, a, _ = run_cli(monkeypatch, capsys, "tag", str(source), "-m", str(model), "-q")
    code2, b, _ = run_cli(monkeypatch, capsys, "tag", str(source), "-m", str(out), "--onnx", "-q")
    assert code == code2 == 0 and len(a.splitlines()) == len(texts)
    for x, y in zip(map(json.loads, a.splitlines()), map(json.loads, b.splitlines())):
        assert x["text"] == y["text"] and _spans(x["spans"]) == _spans(y["spans"])
        assert np.allclose([s["score"] for s in x["spans"]], [s["score"] for s in y["spans"]],
                           atol=1e-5)


def test_cli_embed_onnx(embed_dirs, tmp_path, monkeypatch, capsys):
    model, onnx, texts = embed_dirs
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts[:6]) + "\n", encoding="utf-8")
    rows = []
    for folder, flags in ((model, []), (onnx, ["--onnx"])):
        code, out, _ = run_cli(monkeypatch, capsys, "embed", str(source), "-m", str(folder),
                               *flags, "--format", "jsonl", "-q")
        assert code == 0
        rows.append([json.loads(line)["vector"] for line in out.splitlines()])
    assert len(rows[0]) == 6
    np.testing.assert_allclose(np.array(rows[1]), np.array(rows[0]), atol=1e-4)


def test_one_line_errors(tagger_dirs, embed_dirs, tmp_path, monkeypatch, capsys):
    model, onnx = tagger_dirs
    with pytest.raises(ZhtextError, match="is not an ONNX export"):
        Tagger.load(model, onnx=True)
    with pytest.raises(ZhtextError, match="is not an ONNX export"):
        Embedder.load(embed_dirs[0], onnx=True)
    with pytest.raises(ZhtextError, match="runs only through onnxruntime"):
        Tagger.load(onnx, onnx=False)
    with pytest.raises(ZhtextError, match="int8 quantization applies to torch models"):
        Tagger.load(onnx, quantize="int8")
    with pytest.raises(ZhtextError, match="save the torch model"):
        Tagger.load(onnx).save(tmp_path / "again")
    with pytest.raises(ZhtextError, match="exported with pooling"):
        Embedder.load(embed_dirs[1], pooling="cls")
    # a folder that holds something else is not written into; the model's own folder neither
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ZhtextError, match="not empty and not an ONNX export"):
        Tagger.load(model).export_onnx(tmp_path / "busy")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]
    with pytest.raises(ZhtextError, match="own folder"):
        Tagger.load(model).export_onnx(model)
    # a model that cannot be exported, and an export exported again
    (tmp_path / "title").mkdir()
    (tmp_path / "title" / "zhtext.json").write_text('{"task": "title"}')
    code, _, err = run_cli(monkeypatch, capsys, "export", "onnx", str(tmp_path / "title"), "-o",
                           str(tmp_path / "x"))
    assert code == 1 and err.strip() == (f"zhtext: error: {tmp_path / 'title'} is a zhtext title "
                                         "model: only taggers and embedders export to ONNX")
    code, _, err = run_cli(monkeypatch, capsys, "export", "onnx", str(onnx), "-o",
                           str(tmp_path / "x"))
    assert code == 1 and "is an ONNX export already" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()
    # onnxruntime missing: one line naming the extra
    source = tmp_path / "in.txt"
    source.write_text("北京\n", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code, _, err = run_cli(monkeypatch, capsys, "tag", str(source), "-m", str(onnx), "--onnx")
    assert code == 1 and err.strip() == ("zhtext: error: ONNX inference needs onnxruntime: "
                                         "pip install 'zhtext[onnx]'")
