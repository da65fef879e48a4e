"""int8 inference: every model class quantizes its linear layers the same way, keeps its outputs
close to fp32 (a trained tagger's tags on >= 99 % of characters), and says so in one line when it
cannot."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch

from conftest import run_cli
from test_tagger import TRAIN_SETTINGS, toy_examples
from zhtext.errors import ZhtextError
from zhtext.neural.quantize import _conv1d_to_linear, quantize_module
from zhtext.tasks.embed import Embedder
from zhtext.tasks.generate import TextGenerator
from zhtext.tasks.tagger import Tagger, TaggerTrainConfig
from zhtext.tasks.title import TitleGenerator


@pytest.fixture(scope="module", autouse=True)
def one_thread(request):
    request.addfinalizer(functools.partial(torch.set_num_threads, torch.get_num_threads()))
    torch.set_num_threads(1)


def _quantized_linears(module: torch.nn.Module) -> int:
    return sum(type(m).__name__ == "Linear" and "quantized" in type(m).__module__
               for m in module.modules())


def _char_labels(text: str, spans) -> list[str]:
    labels = ["O"] * len(text)
    for span in spans:
        for i in range(span.start, span.end):
            labels[i] = span.label
    return labels


@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ner")
    Tagger.train(TaggerTrainConfig(train=toy_examples(60, 1), dev=toy_examples(10, 2), output=out,
                                   **TRAIN_SETTINGS))
    return out


def test_int8_tagger_keeps_the_tags(tagger_dir):
    fp32 = Tagger.load(tagger_dir)
    int8 = Tagger.load(tagger_dir, quantize="int8")
    assert int8.quantized == "int8" and fp32.quantized is None
    assert _quantized_linears(int8.model) > 0 and _quantized_linears(fp32.model) == 0
    texts = [e.text for e in toy_examples(150, 3)]
    same = total = 0
    for text, a, b in zip(texts, fp32(texts), int8(texts)):
        la, lb = _char_labels(text, a), _char_labels(text, b)
        same += sum(x == y for x, y in zip(la, lb))
        total += len(text)
    assert total > 500 and same / total >= 0.99
    assert fp32.evaluate(toy_examples(10, 2))["f1"] - int8.evaluate(toy_examples(10, 2))["f1"] < 0.05


def test_int8_embedder_vectors_stay_close(tmp_path):
    from transformers import AutoModel

    from zhtext.neural.scratch import build_char_vocab, char_tokenizer, small_bert_config

    texts = ["今天天气很好", "我们去公园散步", "北京是中国的首都", "话说天下大势"]
    torch.manual_seed(0)
    vocab = build_char_vocab(texts)
    AutoModel.from_config(small_bert_config(len(vocab), layers=2, hidden=64, heads=2,
                                            max_position=64)).save_pretrained(tmp_path)
    char_tokenizer(vocab).save_pretrained(tmp_path)
    a = Embedder.load(tmp_path)(texts)
    b = Embedder.load(tmp_path, quantize="int8")(texts)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.99


def test_gpt2_conv1d_becomes_an_exact_linear_then_int8():
    torch.manual_seed(0)
    gen = TextGenerator.from_scratch(["我爱北京天安门", "北京是中国的首都"] * 3, layers=2,
                                     hidden=32, block_size=32, dropout=0.0)
    ids = torch.tensor([[2, 5, 6, 7, 8]])
    with torch.no_grad():
        want = gen.lm(ids).logits
        converted = copy.deepcopy(gen.lm)
        _conv1d_to_linear(converted)
        assert not any(type(m).__name__ == "Conv1D" for m in converted.modules())
        torch.testing.assert_close(converted(ids).logits, want, rtol=1e-5, atol=1e-5)
        gen.quantize("int8")
        assert _quantized_linears(gen.lm) >= 8  # 4 projections a layer, and the output layer
        got = gen.lm(ids).logits
    assert torch.corrcoef(torch.stack([got.flatten(), want.flatten()]))[0, 1] > 0.99
    assert len(gen.generate(["我爱"], max_new_tokens=5, sample=False)[0][0]) > 0  # cached steps run


def test_int8_titles_run_through_the_cached_steps():
    torch.manual_seed(0)
    texts = ["气象台发布暴雨红色预警", "暴雨来袭", "国家药监局批准一种新药", "新药获批"]
    gen = TitleGenerator.from_scratch(texts, layers=1, hidden=32, max_source_len=32,
                                      max_target_len=6, dropout=0.0)
    fp32 = gen(texts[0], beam=2)
    gen.quantize("int8")
    assert _quantized_linears(gen.model) > 0
    assert isinstance(gen(texts[0], beam=2), str) and isinstance(fp32, str)


def test_quantize_errors_are_one_line(tagger_dir):
    with pytest.raises(ZhtextError, match="quantize must be one of int8, not 'int4'"):
        Tagger.load(tagger_dir, quantize="int4")
    with pytest.raises(ZhtextError, match="runs on the CPU"):
        quantize_module(torch.nn.Linear(2, 2), "int8", torch.device("cuda"))


def test_cli_quantize(tagger_dir, tmp_path, monkeypatch, capsys):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(e.text for e in toy_examples(5, 4)) + "\n", encoding="utf-8")
    code, out_fp32, _ = run_cli(monkeypatch, capsys, "tag", str(src), "-m", str(tagger_dir))
    assert code == 0
    code, out_int8, err = run_cli(monkeypatch, capsys, "tag", str(src), "-m", str(tagger_dir),
                                  "--quantize", "int8")
    assert (code, err) == (0, "")
    assert len(out_int8.splitlines()) == len(out_fp32.splitlines()) == 5
    code, _, err = run_cli(monkeypatch, capsys, "tag", str(src), "-m", str(tagger_dir),
                           "--quantize", "int4")
    assert code == 2 and "int4" in err


def test_pipeline_quantizes_every_model_step(tagger_dir, tmp_path, monkeypatch, capsys):
    from zhtext.pipeline import Pipeline

    texts = [e.text for e in toy_examples(20, 5)]
    pipeline = Pipeline(["segment", "tag"], tag={"model": str(tagger_dir)}, quantize="int8")
    tagger = pipeline.steps[1].model
    assert tagger.quantized == "int8" and _quantized_linears(tagger.model) > 0
    want = Tagger.load(tagger_dir, quantize="int8")(texts)
    assert [d.results["tag"] for d in pipeline.pipe(texts)] == want
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "pipe", str(src), "--steps", "tag", "--set",
                             f"tag.model={tagger_dir}", "--quantize", "int8", "-q")
    assert (code, err) == (0, "") and len(out.splitlines()) == 20
