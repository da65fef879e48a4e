"""Bounded memory on long lines: what a model command tokenizes of a long text (the same tokens as
the whole text gives, at most a few thousand characters), and the tagger's streamed decoding of a
long text (the same spans as decoding it whole). The long lines themselves, under a memory limit,
are tried in test_faults.py."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from test_tagger import random_tagger

import zhtext.labels.stream as stream
import zhtext.tasks.tagger as tagger_mod
from zhtext.labels.marginals import (
    ChainScores,
    backward_block,
    forward_backward,
    forward_block,
    log_partition,
)
from zhtext.labels.viterbi import FORBIDDEN, ViterbiBlocks, viterbi_topk
from zhtext.neural.scratch import build_char_vocab, char_tokenizer
from zhtext.neural.tokens import CHARS_PER_TOKEN, TOKEN_MARGIN, clip_for_tokens

PIECES = ["北京是中国的首都，", "上海是最大的城市。", "张三在2024年3月15日买了iPhone 15 Pro Max，",
          "花了8999元；", " The quick brown fox jumps over 13 lazy dogs. ", "unbelievably ",
          "transformers ", "1234567890 ", "3.1415926 ", "😀", "e\u0301t\u00e9 ", "\t", "  ",
          "https://example.com/a_b?c=1 ", "GPT-4o于5月发布，", "x" * 150 + " "]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_thread(request):
    request.addfinalizer(functools.partial(torch.set_num_threads, torch.get_num_threads()))
    torch.set_num_threads(1)


def mixed_text(seed: int, chars: int) -> str:
    rng = np.random.default_rng(seed)
    out: list[str] = []
    while sum(map(len, out)) < chars:
        out.append(PIECES[rng.integers(len(PIECES))])
    return "".join(out)


# --------------------------------------------------------------------------- the clip


@functools.cache
def tokenizers() -> dict:
    """A character tokenizer (zhtext's from-scratch models), a WordPiece one with ``##`` pieces that
    merge letters and digits (bert-base-chinese's kind) and a byte-level BPE (GPT-2's kind), the
    latter two trained here on the test's pieces."""
    from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    corpus = [mixed_text(seed, 2000) for seed in range(20)]
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(corpus, vocab_size=400, min_frequency=2)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=600, min_frequency=2)
    return {
        "chars": char_tokenizer(build_char_vocab(corpus)),
        "wordpiece": PreTrainedTokenizerFast(tokenizer_object=wordpiece._tokenizer, unk_token="[UNK]",
                                             pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"),
        "bpe": PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer),
    }


def long_texts() -> list[str]:
    texts = [mixed_text(seed, 6000) for seed in range(6)]
    texts.append("天" * 20000)
    texts.append("word " * 4000)
    texts.append(" " * 5000 + mixed_text(7, 20000))  # spaces first: the clip must read further
    texts.append(mixed_text(8, 3000) + "\u0007" * 9000)  # a tail a tokenizer drops
    texts.append("z" * 12000)  # one word, far over WordPiece's 100 characters
    return texts


@pytest.mark.parametrize("kind", ["chars", "wordpiece", "bpe"])
@pytest.mark.parametrize("tokens", [16, 256])
def test_the_clip_never_changes_the_tokens_a_model_reads(kind, tokens):
    tok = tokenizers()[kind]
    texts = long_texts()
    bound = CHARS_PER_TOKEN * (tokens + TOKEN_MARGIN)

    def ids(batch):
        return tok(batch, add_special_tokens=False, verbose=False)["input_ids"]

    whole = ids(texts)
    heads = clip_for_tokens(tok, texts, tokens)
    tails = clip_for_tokens(tok, texts, tokens, keep="tail")
    for i, (text, full, head, tail) in enumerate(zip(texts, whole, heads, tails)):
        head_ids, tail_ids = ids([head, tail])
        assert text.startswith(head) and text.endswith(tail)
        assert head_ids[:tokens] == full[:tokens], (kind, text[:40])
        assert tail_ids[-tokens:] == full[-tokens:], (kind, text[-40:])
        if i < 8 and len(full) > 4 * (tokens + TOKEN_MARGIN):  # dense text: cut at both ends
            assert len(head) < len(text) and len(tail) < len(text)
    assert len(heads[6]) == bound  # Chinese: one cut of CHARS_PER_TOKEN characters a token
    short = [mixed_text(9, 100), ""]  # short texts come back whole
    if kind != "bpe":  # to WordPiece spaces are no tokens: the clip reads further, not all
        assert bound < len(heads[8]) < len(texts[8])
        short.append(" " * (bound + 10))  # nothing but spaces: whole
    assert clip_for_tokens(tok, short, tokens) == short


def test_models_see_the_same_tokens_with_the_clip(tmp_path, monkeypatch):
    """The old path (the whole text tokenized) and the clipped one give the same vectors, titles
    and continuations for texts far longer than their models read."""
    from transformers import BertModel

    from zhtext.neural.scratch import small_bert_config
    from zhtext.tasks.embed import Embedder
    from zhtext.tasks.generate import TextGenerator
    from zhtext.tasks.title import TitleGenerator

    texts = [mixed_text(seed, 12000) for seed in range(3)] + ["短句"]
    vocab = build_char_vocab(texts)
    char_tokenizer(vocab, tmp_path / "encoder")
    torch.manual_seed(0)
    BertModel(small_bert_config(len(vocab), layers=1, hidden=16, heads=2)).save_pretrained(tmp_path / "encoder")
    embedder = Embedder.load(tmp_path / "encoder", max_len=64)
    title = TitleGenerator.from_scratch(texts, layers=1, hidden=16, heads=2, max_source_len=40,
                                        max_target_len=8)  # fmt: skip
    gpt = TextGenerator.from_scratch(texts, layers=1, hidden=16, heads=2, block_size=48)

    def run():
        return (embedder(texts), title(texts, beam=2, max_new_tokens=5),
                gpt(texts, max_new_tokens=5, seed=0))

    clipped = run()
    for module in ("zhtext.tasks.embed", "zhtext.tasks.title", "zhtext.tasks.generate"):
        monkeypatch.setattr(f"{module}.clip_for_tokens", lambda tok, texts, n, keep="head": list(texts))
    whole = run()
    np.testing.assert_array_equal(clipped[0], whole[0])
    assert clipped[1:] == whole[1:]


# --------------------------------------------------------------------------- the kernels in blocks


def random_chain(rng, n_tags: int, constrained: bool):
    trans = rng.standard_normal((n_tags, n_tags)).astype(np.float32)
    start = rng.standard_normal(n_tags).astype(np.float32)
    end = rng.standard_normal(n_tags).astype(np.float32)
    if constrained:
        trans[rng.random((n_tags, n_tags)) < 0.3] = FORBIDDEN
        start[rng.random(n_tags) < 0.25] = FORBIDDEN
        end[rng.random(n_tags) < 0.25] = -np.inf
    return trans, start, end


def cuts_of(rng, length: int) -> list[int]:
    """Block bounds of a sequence: 0, a few random ones, its length."""
    return sorted({0, length, *(rng.integers(1, length, 5).tolist() if length > 1 else [])})


@pytest.mark.parametrize("constrained", [False, True])
def test_viterbi_in_blocks_is_viterbi_topk(constrained):
    rng = np.random.default_rng(constrained)
    for case in range(150):
        n_tags, length, k = int(rng.integers(1, 7)), int(rng.integers(1, 40)), int(rng.integers(1, 5))
        em = rng.standard_normal((1, length, n_tags)).astype(np.float32)
        trans, start, end = random_chain(rng, n_tags, constrained)
        if case % 3 == 0:  # ties: the rules that break them must agree too
            em, trans, start, end = (np.round(x) for x in (em, trans, start, end))
        paths, scores = viterbi_topk(em, [length], trans, start, end, k)
        cuts = cuts_of(rng, length)
        blocks = ViterbiBlocks(trans, start, end, k)
        for a, b in zip(cuts, cuts[1:]):
            blocks.forward(em[0, a:b])
        np.testing.assert_array_equal(blocks.finish(), scores[0])
        got = [blocks.backward(i, em[0, a:b]) for i, (a, b) in reversed(list(enumerate(zip(cuts, cuts[1:]))))]
        got = np.concatenate(got[::-1], axis=1)
        for m in range(k):
            if scores[0, m] > -np.inf:
                np.testing.assert_array_equal(got[m], paths[0, m])


def test_forward_backward_in_blocks_is_bit_for_bit_the_whole():
    rng = np.random.default_rng(0)
    for _ in range(40):
        n_tags, length = int(rng.integers(1, 8)), int(rng.integers(1, 200))
        em = (rng.standard_normal((1, length, n_tags)) * 3).astype(np.float32)
        trans, start, end = random_chain(rng, n_tags, True)
        trans[0, 0] = 0.0  # at least one allowed path through tag 0
        start[0] = end[0] = 0.0
        alpha, beta, log_z = forward_backward(em, [length], trans, start, end)
        chain = ChainScores(trans, start, end)
        cuts = cuts_of(rng, length)
        state, alphas = None, []
        for a, b in zip(cuts, cuts[1:]):
            rows, state = forward_block(em[0, a:b], chain, state)
            alphas.append(rows)
        assert log_partition(state, chain) == log_z[0]
        state, betas = None, []
        for a, b in reversed(list(zip(cuts, cuts[1:]))):
            rows, state = backward_block(em[0, a:b], em[0, b] if b < length else None, chain, state)
            betas.append(rows)
        np.testing.assert_array_equal(np.concatenate(alphas), alpha[0])
        np.testing.assert_array_equal(np.concatenate(betas[::-1]), beta[0])


# --------------------------------------------------------------------------- the tagger


@pytest.mark.parametrize("scheme", ["BIO", "BIOES", "BMES"])
@pytest.mark.parametrize("block", [3, 97])
def test_a_long_text_streams_to_the_same_spans(scheme, block, monkeypatch):
    """Decoded whole (today's path) and streamed in blocks of ``block`` rows, some of them in the
    scratch file: the same n best taggings, span scores to the last bit. A path's probability is
    summed block by block in float64, where the whole text's is one float32 sum: they agree to
    the float32 sum's error, and as written (6 decimals) exactly."""
    tagger = random_tagger(scheme, seed=3, max_len=24)
    text = mixed_text(1, 3000)
    monkeypatch.setattr(tagger_mod, "LONG_TEXT", 10**9)
    whole = tagger.nbest([text, "张三"], 3)
    monkeypatch.setattr(tagger_mod, "LONG_TEXT", 50)
    monkeypatch.setattr(stream, "BLOCK", block)
    monkeypatch.setattr(stream, "HELD_BYTES", 20 * block * len(tagger.tags) * 4)  # spills
    streamed = tagger.nbest([text, "张三"], 3)
    assert streamed[1] == whole[1]
    assert len(streamed[0]) == len(whole[0]) == 3
    for ours, theirs in zip(streamed[0], whole[0]):
        assert ours.spans == theirs.spans
        assert ours.prob == pytest.approx(theirs.prob, rel=1e-2, abs=1e-300)
        assert round(ours.prob, 6) == round(theirs.prob, 6)
    assert len(whole[0][0].spans) > 100  # many spans, many cuts between them
    assert tagger.predict([text]) == [whole[0][0].spans]


def test_a_long_text_without_an_allowed_path_has_no_candidates(monkeypatch):
    tagger = random_tagger("BIOES", seed=0, max_len=24)
    with torch.no_grad():
        tagger.model.crf.end.fill_(FORBIDDEN * 2)  # no tag may end a text
    monkeypatch.setattr(tagger_mod, "LONG_TEXT", 10**9)
    whole = tagger.nbest(["北京是中国的首都" * 3], 2)
    monkeypatch.setattr(tagger_mod, "LONG_TEXT", 10)
    assert tagger.nbest(["北京是中国的首都" * 3], 2) == whole
