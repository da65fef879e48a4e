"""Part-of-speech tagging: identical to jieba.posseg (HMM on and off), with user words and tags."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from zhtext.io.reading import iter_lines
from zhtext.lexical.lexicon import Lexicon
from zhtext.lexical.segment import Segmenter

jieba = pytest.importorskip("jieba")
posseg = pytest.importorskip("jieba.posseg")


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    return Segmenter()


def _fresh_posseg(dictionary=None, tmp_dir=None):
    """A jieba POSTokenizer over its own Tokenizer: the global jieba.dt is never touched."""
    tok = jieba.Tokenizer() if dictionary is None else jieba.Tokenizer(dictionary=str(dictionary))
    if tmp_dir is not None:
        tok.tmp_dir = str(tmp_dir)
    tok.initialize()
    return posseg.POSTokenizer(tok)


@pytest.fixture(scope="module")
def ref():
    return _fresh_posseg()


def want(ref, text: str, hmm: bool) -> list[tuple[str, str]]:
    return [(p.word, p.flag) for p in ref.cut(text, HMM=hmm)]


# ----------------------------------------------------------------------------------------------
# Literal strings: the edge cases of jieba.posseg's text rules

EDGE_CASES = [
    "",
    "我爱北京天安门",
    "黛玉笑道：“你这会子又说这话了。”",
    "小明硕士毕业于中国科学院计算所，后在日本京都大学深造",  # names and places by the HMM
    "王小二在张家口吃饭，李四和张三丰去了乌鲁木齐",
    "2024年12月2日，共有1234567人，增资4.3亿元，占0.5%",  # numbers and decimals
    "3.14159 1.2.3 .5 5. 007",
    "Hello World, iPhone15 和 abc123def 以及 123abc",  # English
    "我有3个苹果和2.5公斤梨，v1.2版本的x86芯片",  # mixed inside one HMM run
    "C++和C#很难，a_b+c#d&e，100%正确-是的",  # posseg's block leaves out % and -
    "你+#好，他&_来",  # a run of symbols between letters stays one x token
    "，。！？、：；“”（）《》…—·",  # punctuation
    "  \t你好 　世界 \u3000全角\x0b\x0c",  # whitespace, ASCII and not
    "第一行\r\n第二行\r\r\n\n\r第三行\r",  # \r\n is one token, a lone \r or \n is its own
    "😀汉字𠀀𠀁好\U0001f600",  # astral characters
    "龘靐齉爩他叫龘靐",  # Han characters the HMM tables do not know
    "的的的的的的的的的的了了了",  # a long run of single characters
    "ｆｕｌｌ　ｗｉｄｔｈ１２３",  # full-width letters and digits are not ASCII
    "\ud800好\udfff",  # lone surrogates pass through
]


@pytest.mark.parametrize("hmm", [True, False], ids=["hmm", "no-hmm"])
@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases_equal_jieba(seg, ref, text, hmm):
    got = seg.tag(text, hmm)
    assert got == want(ref, text, hmm)
    assert "".join(w for w, _ in got) == text


def test_known_tags_without_jieba_at_hand(seg):
    # What jieba 0.42.1 gives; pinned so that a change in the tables or rules shows here too.
    assert seg.tag("我爱北京天安门") == [("我", "r"), ("爱", "v"), ("北京", "ns"), ("天安门", "ns")]
    assert seg.tag("黛玉笑道") == [("黛玉笑", "nr"), ("道", "q")]
    assert seg.tag("黛玉笑道", hmm=False) == [("黛", "nr"), ("玉", "nr"), ("笑", "v"), ("道", "q")]
    assert seg.tag("iPhone15 售价 99.5 元", hmm=False)[:3] == [
        ("iPhone15", "eng"), (" ", "x"), ("售价", "n")
    ]  # fmt: skip
    assert seg.tag("abc 3.5", hmm=True) == [("abc", "eng"), (" ", "x"), ("3.5", "m")]
    assert seg.tag("") == [] and seg.tag_lines([]) == []


TRICKY = "我来到北京清华大学黛玉笑道龘他说的了abc123 C++和c#. 2024年%50-60_x&y+\r\n\t　😀𠀀ｆ，。"
any_text = st.one_of(st.text(max_size=30), st.text(alphabet=TRICKY, max_size=40))


@settings(max_examples=150, deadline=None)
@given(st.lists(any_text, max_size=5), st.booleans())
def test_random_text_equals_jieba_and_concatenates_back(seg, ref, lines, hmm):
    tagged = seg.tag_lines(lines, hmm)
    assert len(tagged) == len(lines)
    for line, pairs in zip(lines, tagged):
        assert pairs == want(ref, line, hmm)
        assert "".join(w for w, _ in pairs) == line and all(w for w, _ in pairs)


# ----------------------------------------------------------------------------------------------
# Real text: a share of each of the four novels


@pytest.mark.parametrize("hmm", [True, False], ids=["hmm", "no-hmm"])
def test_novels_equal_jieba(seg, ref, shared_data, hmm):
    # jieba's HMM path is slow (~30 KB/s): every 30th line of each novel (~1,000 lines, 1 MB of
    # text with the other mode); all 29,863 lines match in both modes, checked once outside CI.
    every = 30 if hmm else 4
    checked = 0
    for path in sorted((shared_data / "raw").glob("*.txt")):
        lines = list(iter_lines(path))[::every]
        got = seg.tag_lines(lines, hmm)
        for line, pairs in zip(lines, got):
            assert pairs == want(ref, line, hmm), (path.name, line[:40])
            assert "".join(w for w, _ in pairs) == line
        checked += len(lines)
    assert checked > (900 if hmm else 7000)


# ----------------------------------------------------------------------------------------------
# User words, user dictionaries, other dictionaries

PROBES = [
    "黛玉笑道：自然语言处理在北京很热门",
    "石墨烯是新词语，清华大学的石墨烯",
    "凯特琳和贾宝玉去了北京清华",
    "New York 的 iPhone15",
]


@pytest.mark.parametrize("hmm", [True, False], ids=["hmm", "no-hmm"])
def test_add_word_with_and_without_tag_equals_jieba(hmm):
    ref = _fresh_posseg()
    seg = Segmenter()
    assert seg.tag(PROBES[0], hmm) == want(ref, PROBES[0], hmm)  # tags cached before the edits
    edits = [
        ("黛玉笑道", None, None),  # new word, no tag: x
        ("自然语言处理", 20, "nz"),  # new word with a tag
        ("北京", None, "city"),  # a dictionary word gets a new tag
        ("石墨烯", 30, None),
        ("新词语", 5, "n"),
        ("清华大学", 0, None),  # count 0: no longer matched, keeps its tag
        ("凯特琳", None, "nr"),
    ]
    try:
        for word, freq, tag in edits:
            ref.tokenizer.add_word(word, freq, tag)
            seg.add_word(word, freq, tag)
        for text in PROBES:
            assert seg.tag(text, hmm) == want(ref, text, hmm), text
    finally:  # jieba keeps words added with count 0 in a module-level set
        jieba.finalseg.Force_Split_Words.discard("清华大学")
    got = dict(seg.tag(PROBES[0], hmm))
    assert got["自然语言处理"] == "nz" and got["北京"] == "city"
    assert ("黛玉笑道", "x") in seg.tag("黛玉笑道", hmm)


USER_DICT = """\
自然语言处理 20 nz
北京清华 12 ns
黛玉笑道
云计算 5
石墨烯 n
贾宝玉 9 nr
"""


@pytest.mark.parametrize("hmm", [True, False], ids=["hmm", "no-hmm"])
def test_user_dict_with_a_tag_column_equals_jieba(tmp_path, hmm):
    path = tmp_path / "user.dict"
    path.write_text(USER_DICT, encoding="utf-8")
    ref = _fresh_posseg()
    ref.tokenizer.load_userdict(str(path))
    seg = Segmenter(user_dict=path)
    lines = [*PROBES, "云计算和石墨烯", "北京清华大学的贾宝玉"]
    assert seg.tag_lines(lines, hmm) == [want(ref, line, hmm) for line in lines]
    assert ("北京清华", "ns") in seg.tag("北京清华", hmm)


SMALL_DICT = (
    "北京 50 ns\n大学 40 n\n北京大学 30 nt\n我 100 r\n来到 20 v\n的 200 uj\n学生 25 n\n生 5 v\n"
)
SMALL_PROBES = ["我来到北京大学", "北京大学的学生来到北京", EDGE_CASES[2], "我的ABC 12.5"]


@pytest.mark.parametrize("hmm", [True, False], ids=["hmm", "no-hmm"])
def test_other_dictionaries_equal_jieba(tmp_path, hmm):
    path = tmp_path / "small.dict"
    path.write_text(SMALL_DICT, encoding="utf-8")
    ref = _fresh_posseg(path, tmp_path)
    # a jieba-format dictionary with tags: its tags, and the HMM for almost everything else
    seg = Segmenter(path)
    assert [seg.tag(t, hmm) for t in SMALL_PROBES] == [want(ref, t, hmm) for t in SMALL_PROBES]
    # a discovered TSV lexicon has no tags: every dictionary word gets jieba's fallback, x
    counts = {line.split()[0]: int(line.split()[1]) for line in SMALL_DICT.splitlines()}
    ref.word_tag_tab = {}
    untagged = Segmenter(Lexicon(counts))
    assert [untagged.tag(t, hmm) for t in SMALL_PROBES] == [want(ref, t, hmm) for t in SMALL_PROBES]
    assert ("北京大学", "x") in untagged.tag("北京大学", hmm)


def test_an_empty_dictionary_is_one_clear_error():
    from zhtext.errors import ZhtextError

    with pytest.raises(ZhtextError, match="dictionary is empty"):
        Segmenter(Lexicon({"北京": 0})).tag("北京")


def test_dictionary_cache_keeps_the_tags(tmp_path, monkeypatch):
    import zhtext.lexical.segment as segment_mod

    monkeypatch.setenv("ZHTEXT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(segment_mod, "CACHE_MIN_BYTES", 0)
    path = tmp_path / "small.dict"
    path.write_text(SMALL_DICT + "无标签 3\n", encoding="utf-8")
    fresh = segment_mod.load_dictionary(path, cache=False)
    segment_mod.load_dictionary(path)  # writes the cache
    cached = segment_mod.load_dictionary(path)
    assert len(list((tmp_path / "cache").glob("dict-*.npz"))) == 1
    for d in (fresh, cached):
        names = [d.tag_names[i] if i >= 0 else None for i in d.tag_ids.tolist()]
        assert names == ["ns", "n", "nt", "r", "v", "uj", "n", "v", None]
    assert Segmenter(path).tag("北京大学的学生") == [
        ("北京大学", "nt"),
        ("的", "uj"),
        ("学生", "n"),
    ]


def test_hmm_tables_are_cached_as_arrays(tmp_path, monkeypatch):
    from zhtext.lexical import posseg as mod

    monkeypatch.setenv("ZHTEXT_CACHE_DIR", str(tmp_path))
    built, names = mod.hmm_tables.__wrapped__()  # builds from jieba's modules, writes the cache
    assert len(list(tmp_path.glob("posseg-*.npz"))) == 1
    loaded, loaded_names = mod.hmm_tables.__wrapped__()  # reads it back
    assert loaded_names == names and len(names) == 64 and built.start.shape == (256,)
    for a, b in zip(built, loaded):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    # spot checks against jieba's own tables
    from jieba.posseg import char_state_tab_P, emit_P, start_P, trans_P

    states = sorted(trans_P)
    s = states.index(("B", "nr"))
    assert built.start[s] == start_P[("B", "nr")]
    assert built.trans[s, states.index(("E", "nr"))] == trans_P[("B", "nr")][("E", "nr")]
    row = built.char_row[ord("黛") - 0x4E00]
    assert built.emit[row, s] == emit_P[("B", "nr")]["黛"]
    allowed = built.allow[built.allow_ptr[row] : built.allow_ptr[row + 1]].tolist()
    assert allowed == sorted(states.index(x) for x in char_state_tab_P["黛"])


# ----------------------------------------------------------------------------------------------
# CLI


def test_cli_pos_text_and_jsonl(tmp_path, monkeypatch, capsys, seg):
    path = tmp_path / "in.txt"
    lines = ["黛玉笑道：“你这会子又说这话了。”", "", "iPhone15 售价 99.5 元"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, _ = run_cli(monkeypatch, capsys, "segment", str(path), "--pos")
    assert code == 0
    assert out.splitlines() == [" ".join(f"{w}/{t}" for w, t in seg.tag(line)) for line in lines]
    code, out, _ = run_cli(
        monkeypatch, capsys, "segment", str(path), "--pos", "--no-hmm", "--format", "jsonl"
    )
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert records == [{"tokens": [list(p) for p in seg.tag(line, False)]} for line in lines]
    code, out, _ = run_cli(monkeypatch, capsys, "segment", str(path), "--format", "jsonl")
    assert [json.loads(line) for line in out.splitlines()] == [
        {"tokens": words} for words in seg.cut_lines(lines)
    ]
    code, _, err = run_cli(monkeypatch, capsys, "segment", str(path), "--format", "xml")
    assert code == 2 and "--format" in err
