"""Unigram segmentation: the route against brute force, the text rules against jieba, the CLI."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from zhtext.io.reading import iter_lines
from zhtext.lexical.chars import join_lines
from zhtext.lexical.lexicon import Lexicon
from zhtext.lexical.route import unigram_route
from zhtext.lexical.segment import Segmenter, load_dictionary
from zhtext.lexical.trie import Trie, build_trie, trie_find

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

ALPHABET = "abc"


# ----------------------------------------------------------------------------------------------
# Brute force: every segmentation, chosen by jieba's rule


def _edges(text: str, i: int, weights: dict[str, tuple[float, int]], floor: float):
    """(end, weight, id) of every edge from i: the dictionary words, else one floor character."""
    found = [(j, *weights[text[i:j]]) for j in range(i + 1, len(text) + 1) if text[i:j] in weights]
    return found or [(i + 1, floor, -1)]


def _paths(text: str, i: int, weights, floor):
    """All routes from i as (key, tokens): key = (S0, e1, S1, e2, ...), S = score of the rest.

    jieba keeps at each position the max of (score, end) over edges, computed right to left; that
    equals the lexicographic max of this key over all complete routes.
    """
    if i == len(text):
        return [((0.0,), [])]
    out = []
    for j, w, wid in _edges(text, i, weights, floor):
        for key, toks in _paths(text, j, weights, floor):
            out.append(((w + key[0], j, *key), [(j, wid), *toks]))
    return out


def brute_route(text: str, weights, floor):
    """Best route of ``text``: its tokens [(end, id)] and its score."""
    key, toks = max(_paths(text, 0, weights, floor), key=lambda p: p[0])
    return toks, key[0]


def small_dicts():
    """Random dictionaries over a 3-letter alphabet with small counts, so that ties happen."""
    word = st.text(alphabet=ALPHABET, min_size=1, max_size=4)
    return st.dictionaries(word, st.integers(1, 3), min_size=1, max_size=12)


# ----------------------------------------------------------------------------------------------
# unigram_route


@settings(max_examples=300, deadline=None)
@given(small_dicts(), st.lists(st.text(alphabet=ALPHABET + "d", max_size=8), max_size=5))
def test_unigram_route_matches_brute_force(counts, spans):
    words = list(counts)
    total = sum(counts.values())
    logw = np.array([math.log(counts[w]) - math.log(total) for w in words])
    floor = math.log(1) - math.log(total)
    trie = build_trie(words, logw)
    codes, offsets = join_lines(spans)

    ends, ids, logp = unigram_route(codes, offsets, trie, floor)

    table = {w: (logw[k], k) for k, w in enumerate(words)}
    want, want_logp, base = [], 0.0, 0
    for span in spans:
        toks, score = brute_route(span, table, floor) if span else ([], 0.0)
        want += [(base + end, wid) for end, wid in toks]
        want_logp += score if span else 0.0
        base += len(span)
    assert list(zip(ends.tolist(), ids.tolist())) == want
    assert logp == want_logp
    assert ends.dtype == np.int64 and ids.dtype == np.int32


def test_unigram_route_tie_takes_the_longer_first_word():
    # "ab|c" and "a|bc" weigh the same: jieba keeps the longer first edge, "ab".
    words = ["a", "b", "c", "ab", "bc"]
    logw = np.array([-1.0, -1.0, -1.0, -2.0, -2.0])
    codes, offsets = join_lines(["abc"])
    ends, ids, logp = unigram_route(codes, offsets, build_trie(words, logw), -10.0)
    assert ends.tolist() == [2, 3] and ids.tolist() == [3, 2] and logp == -3.0


def test_unigram_route_floor_and_empty_spans():
    trie = build_trie(["ab"], np.array([-1.0]))
    codes, offsets = join_lines(["", "xab", "", "a"])
    ends, ids, logp = unigram_route(codes, offsets, trie, -5.0)
    assert ends.tolist() == [1, 3, 4]
    assert ids.tolist() == [-1, 0, -1]
    assert logp == -5.0 + -1.0 + -5.0


def test_unigram_route_rejects_bad_offsets():
    trie = build_trie(["a"], np.array([0.0]))
    with pytest.raises(ValueError):
        unigram_route(np.array([97], np.int32), np.array([0, 2]), trie, -1.0)
    with pytest.raises(ValueError):
        unigram_route(np.array([-3], np.int32), np.array([0, 1]), trie, -1.0)


# ----------------------------------------------------------------------------------------------
# Trie


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=5), max_size=30), st.text(max_size=5))
def test_trie_finds_exactly_the_words_and_their_prefixes(words, probe):
    trie = build_trie(words, np.zeros(len(words)))
    paths = {w[:k] for w in words for k in range(1, len(w) + 1)}
    for s in [*paths, probe]:
        node = trie_find(trie, s)
        assert (node > 0) == (s in paths) or s == ""
        if s in paths:
            last = max((k for k, w in enumerate(words) if w == s), default=-1)
            assert trie.word[node] == last  # a repeated word keeps its last id


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(alphabet="甲乙丙丁ab", min_size=1, max_size=6), min_size=1, max_size=40))
def test_a_built_trie_numbers_its_nodes_by_depth(words):
    trie = build_trie(words, np.zeros(len(words)))
    # every prefix's node: the shorter the prefix, the smaller its number (the first characters'
    # weights together at the front, where the route reads them most)
    depth_of = {trie_find(trie, w[:k]): k for w in words for k in range(1, len(w) + 1)}
    assert sorted(depth_of) == list(range(1, trie.n_nodes))
    depths = [depth_of[node] for node in sorted(depth_of)]
    assert depths == sorted(depths)


def test_trie_grows_past_its_first_table():
    words = [chr(0x4E00 + k) + chr(0x4E00 + k * 7 % 5000) + "x" for k in range(5000)]
    trie = build_trie(words, np.arange(len(words), dtype=np.float64))
    assert all(trie.weight[trie_find(trie, w)] == k for k, w in enumerate(words))
    assert trie_find(trie, "x") == -1


# ----------------------------------------------------------------------------------------------
# Segmenter against brute force and jieba

HAN3 = "甲乙丙"  # Han characters: one block, so the route alone decides (no ASCII gluing)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text(alphabet=HAN3, min_size=1, max_size=4), st.integers(0, 3), min_size=1),
    st.text(alphabet=HAN3 + "丁", max_size=8),
)
def test_segmenter_route_matches_brute_force(counts, text):
    total = sum(counts.values())
    assume(total > 0)
    lexicon = Lexicon(counts)
    table = {
        w: (math.log(c) - math.log(total), 0) for w, c in counts.items() if c > 0
    }  # a count of 0 is a prefix path, never an edge
    floor = math.log(1) - math.log(total)
    want = [text[a:b] for a, b in _spans(brute_route(text, table, floor)[0])] if text else []
    assert Segmenter(lexicon, hmm=False).cut(text) == want


def _spans(tokens):
    starts = [0, *(end for end, _ in tokens)]
    return [(a, end) for a, (end, _) in zip(starts, tokens)]


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    """The route alone (jieba's HMM=False), which this file checks; tests/test_jieba_modes.py
    checks the HMM and the other modes."""
    return Segmenter(hmm=False)


@pytest.fixture(scope="module")
def jieba_tok():
    import jieba

    tok = jieba.Tokenizer()
    tok.initialize()
    return tok


TRICKY = "我来到北京清华大学abc123 C++和c#. 2024年%50-60_x&y\r\n\t　😀𠀀\ud800ｆｕｌｌ，。"
any_text = st.one_of(st.text(max_size=40), st.text(alphabet=TRICKY, max_size=40))


@settings(max_examples=300, deadline=None)
@given(st.lists(any_text, max_size=6), st.sampled_from([" ", "/", " | ", ""]))
def test_tokens_concatenate_back_and_batch_path_agrees(seg, jieba_tok, lines, sep):
    cuts = [seg.cut(line) for line in lines]
    for line, words in zip(lines, cuts):
        assert "".join(words) == line
        assert all(words)
        assert words == jieba_tok.lcut(line, HMM=False)
    assert seg.cut_lines(lines) == cuts
    assert seg.segment_lines(lines, sep) == [sep.join(words) for words in cuts]


def test_segment_batches_stream_the_same_output(seg):
    lines = generated_lines(300, seed=3)
    batches = list(seg.segment_batches(iter(lines), "/", batch_chars=500))
    assert len(batches) > 5
    assert [line for inputs, _ in batches for line in inputs] == lines
    assert [line for _, outputs in batches for line in outputs] == seg.segment_lines(lines, "/")


@functools.cache
def _jieba_words() -> list[str]:
    from zhtext.lexical.lexicon import jieba_dict_path

    return [line.split(" ")[0] for line in jieba_dict_path().read_text("utf-8").splitlines()]


def generated_lines(n: int, seed: int) -> list[str]:
    """Lines of dictionary words, single characters, ASCII, digits, spaces and punctuation."""
    rng = np.random.default_rng(seed)
    words = _jieba_words()
    extras = list("，。！？、：；“”（）《》 \t+-.#&_%") + ["iPhone", "C++", "3.14", "a1b2", "\r\n"]
    out = []
    for _ in range(n):
        k = int(rng.integers(0, 30))
        picks = [
            words[int(rng.integers(len(words)))] if rng.random() < 0.8
            else extras[int(rng.integers(len(extras)))]
            for _ in range(k)
        ]  # fmt: skip
        out.append("".join(picks))
    return out


def novel_lines(shared_data_dir, every: int) -> list[str]:
    """Every ``every``-th line of the four novels (empty when the data is absent)."""
    raw = shared_data_dir / "raw"
    if not raw.is_dir():
        return []
    lines = []
    for path in sorted(raw.glob("*.txt")):
        lines += list(iter_lines(path))[::every]
    return lines


def test_equals_jieba_on_real_and_generated_lines(seg, jieba_tok):
    lines = generated_lines(1500, seed=1) + novel_lines(SHARED_DATA, every=12)
    want = [jieba_tok.lcut(line, HMM=False) for line in lines]
    assert seg.cut_lines(lines) == want
    assert seg.segment_lines(lines, " ") == [" ".join(w) for w in want]


USER_DICT = """\
清华大学 0
北京清华 12 ns
新词语
云计算 5
New York 7
小米·手机 3 n
iPhone15
宝玉黛玉
黛玉 9
黛玉 3
C++程序
\ufeff贾宝玉 n
一二三四五六七八九十
#话题标签 4
"""


def test_user_dict_equals_jieba_load_userdict(tmp_path, jieba_tok):
    import jieba

    path = tmp_path / "user.dict"
    path.write_text(USER_DICT, encoding="utf-8")
    tok = jieba.Tokenizer()
    tok.initialize()
    tok.load_userdict(str(path))
    seg = Segmenter(user_dict=path, hmm=False)
    assert seg.total == tok.total
    probes = [
        "北京清华大学",
        "新词语和云计算",
        "New York的iPhone15",
        "宝玉黛玉",
        "C++程序员",
        "一二三四五六七八九十",
        "#话题标签#",
    ]
    lines = probes + generated_lines(400, seed=2) + novel_lines(SHARED_DATA, every=40)
    assert seg.cut_lines(lines) == [tok.lcut(line, HMM=False) for line in lines]
    for word in ["新词语", "黛玉", "北京清华大学", "不存在的词", "清华大学"]:
        assert seg.suggest_freq(word) == tok.suggest_freq(word)
    assert seg.suggest_freq(("北京", "清华")) == tok.suggest_freq(("北京", "清华"))


def test_add_word_and_tune_follow_jieba(seg, jieba_tok, jieba_force_split):
    import jieba

    tok = jieba.Tokenizer()
    tok.initialize()
    mine = Segmenter(hmm=False)
    for word, freq in [("石墨烯", None), ("凯特琳", 30), ("台中", 0), ("石墨", None)]:
        tok.add_word(word, freq)
        mine.add_word(word, freq)
    assert tok.suggest_freq(("中", "将"), tune=True) == mine.suggest_freq(("中", "将"), tune=True)
    mine.del_word("来到")
    tok.del_word("来到")
    assert mine.total == tok.total
    for text in ["石墨烯是凯特琳在台中找到的", "我们中将有人来到这里", "石墨和石墨烯"]:
        assert mine.cut(text) == tok.lcut(text, HMM=False)
    assert seg.cut("我们中将有人来到这里") == jieba_tok.lcut("我们中将有人来到这里", HMM=False)


# ----------------------------------------------------------------------------------------------
# Dictionaries and their cache


def _same_trie(a: Trie, b: Trie) -> bool:
    n = a.n_nodes
    return (
        np.array_equal(a.root, b.root) and np.array_equal(a.table, b.table)
        and np.array_equal(a.bloom, b.bloom)
        and np.array_equal(a.word[:n], b.word[:n]) and np.array_equal(a.weight[:n], b.weight[:n])
        and np.array_equal(a.size, b.size)
    )  # fmt: skip


def test_dictionary_cache_round_trip(tmp_path, monkeypatch):
    import zhtext.lexical.segment as segment_mod

    cache = tmp_path / "cache"
    monkeypatch.setenv("ZHTEXT_CACHE_DIR", str(cache))
    monkeypatch.setattr(segment_mod, "CACHE_MIN_BYTES", 0)
    path = tmp_path / "d.txt"
    path.write_text("北京 5\n北京大学 3 nt\n大学 4\n学 0\n北京 2\n", encoding="utf-8")
    fresh = load_dictionary(path, cache=False)
    assert not cache.exists()
    built = load_dictionary(path)  # parses and writes the cache
    assert len(list(cache.glob("*.npz"))) == 1
    cached = load_dictionary(path)  # reads it back
    for trie, counts, total, *_ in [built, cached]:
        assert _same_trie(trie, fresh[0])
        assert (
            counts.tolist() == [2, 3, 4, 0] and total == 14
        )  # duplicates: last count, summed total
    text = "北京大学的大学生"
    want = ["北京大学", "的", "大学", "生"]
    assert Segmenter(path, hmm=False).cut(text) == Segmenter(Lexicon.load(path), hmm=False).cut(text) == want
    # an edited dictionary is re-read and replaces its old cache entry
    path.write_text("北京大学的 9\n", encoding="utf-8")
    os.utime(path, ns=(1, 1))
    assert Segmenter(path, hmm=False).cut(text) == ["北京大学的", "大", "学", "生"]
    assert len(list(cache.glob("*.npz"))) == 1


# ----------------------------------------------------------------------------------------------
# CLI


def _zhtext(capfd, monkeypatch, *args, stdin: bytes = b""):
    """Run the CLI entry point in-process (as the console script does): (exit code, out, err)."""
    import io
    import sys

    from zhtext_cli.app import main

    monkeypatch.setattr(sys, "argv", ["zhtext", *map(str, args)])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    capfd.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capfd.readouterr()
    return code, out, err


def test_cli_segment_writes_one_line_per_input_line(tmp_path, seg, capfd, monkeypatch):
    lines = ["我来到北京清华大学", "", "hello world, C++ 和 c#!", "😀黛玉笑了𠀀"]
    src = tmp_path / "in.txt"
    src.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    code, _, err = _zhtext(capfd, monkeypatch, "segment", src, "-o", out, "--sep", "/", "--no-hmm")
    assert code == 0, err
    assert out.read_text(encoding="utf-8") == "".join(
        f"{s}\n" for s in seg.segment_lines(lines, "/")
    )
    # GB18030 on stdin, a user dictionary, stdout
    user = tmp_path / "user.txt"
    user.write_text("黛玉笑了 10\n", encoding="utf-8")
    code, stdout, err = _zhtext(
        capfd, monkeypatch, "segment", "--user-dict", user, stdin="\n".join(lines).encode("gb18030")
    )
    assert code == 0, err
    assert stdout == "".join(f"{s}\n" for s in Segmenter(user_dict=user).segment_lines(lines))
    assert stdout.splitlines()[-1] == "😀 黛玉笑了 𠀀"


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing-input", "no such file"),
        ("bad-dict", "bad.dict:2: count"),
        ("missing-dict", "dictionary not found"),
    ],
)
def test_cli_segment_errors_are_one_line_and_leave_no_output(
    tmp_path, capfd, monkeypatch, case, message
):
    src = tmp_path / "in.txt"
    src.write_text("北京大学\n", encoding="utf-8")
    bad = tmp_path / "bad.dict"
    bad.write_text("北京 3\n大学 many\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    args = {
        "missing-input": [tmp_path / "nope.txt"],
        "bad-dict": [src, "--dict", bad],
        "missing-dict": [src, "--dict", tmp_path / "nope.dict"],
    }[case]
    code, _stdout, err = _zhtext(capfd, monkeypatch, "segment", *args, "-o", out)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("zhtext: error: ") and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.dict", "in.txt"]
