"""Keywords: TF-IDF and TextRank against jieba.analyse (same tokens, then end to end), IDF tables
(jieba's, built, saved and read back, pruned), and the ``zhtext keywords`` command."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import jieba
import jieba.analyse
import jieba.posseg
import pytest
from conftest import run_cli

from zhtext.errors import ZhtextError
from zhtext.lexical.keywords import (
    STOP_WORDS,
    IDFTable,
    KeywordExtractor,
    build_idf,
    jieba_idf_path,
    keywords,
    load_stop_words,
    textrank_scores,
    tfidf_scores,
)
from zhtext.lexical.segment import Segmenter

# A few paragraphs written for these tests: repeated words (ties), English with stop words and
# capitals, digits, a place name, a person's name, and punctuation inside TextRank's window.
PARAGRAPHS = [
    (
        "自然语言处理是人工智能的一个重要方向。北京大学和清华大学的学生都在研究自然语言处理，"
        "他们认为自然语言处理的核心是理解语言。"
    ),
    (
        "今天上午，张伟在上海浦东新区参观了一家人工智能公司。公司的工程师介绍了语音识别和机器翻译，"
        "张伟说机器翻译的质量提高得很快。"
    ),
    (
        "The Python library is fast, and THE tests of the library run in CI. 2024年我们发布了 "
        "zhtext 的第一个版本，版本号是 0.1.0，支持 Python 3.10 和 Python 3.11。"
    ),
    (
        "长江是中国最长的河流，黄河是中国第二长的河流。长江流域和黄河流域都是中华文明的发源地，"
        "两条河流养育了亿万人民。"
    ),
    "他笑了笑，说：“你来了？”她点点头，没有说话，只是看着窗外的雨。雨越下越大，街上的行人越来越少。",
]
TEXT = "\n".join(PARAGRAPHS)
POS_FILTERS = [(), ("ns", "n", "vn", "v"), ("n",), ("nr", "ns", "eng")]


class Fixed:
    """A tokenizer for jieba's extractors that hands back fixed tokens, whatever the text."""

    def __init__(self, tokens: list) -> None:
        self.tokens = tokens

    def cut(self, text, *args, **kwargs):
        return iter(self.tokens)


class NoHMM:
    """jieba's tokenizers with HMM off, for jieba's extractors (their ``tokenizer``)."""

    def __init__(self, tagged: bool) -> None:
        self.tagged = tagged

    def cut(self, text, *args, **kwargs):
        cut = jieba.posseg.dt.cut if self.tagged else jieba.dt.cut
        return cut(text, HMM=False)


class JiebaSegmenter:
    """A zhtext-side segmenter with jieba's own HMM-off cut and tag."""

    def cut(self, text):
        return jieba.lcut(text, HMM=False)

    def tag(self, text):
        return [(p.word, p.flag) for p in jieba.posseg.lcut(text, HMM=False)]


_JIEBA_TFIDF: list = []


def jieba_tfidf(tokenizer, allow_pos=()):
    """jieba's TF-IDF extractor with ``tokenizer``; its IDF table is parsed once for the module."""
    if not _JIEBA_TFIDF:
        _JIEBA_TFIDF.append(jieba.analyse.TFIDF())
    ref = _JIEBA_TFIDF[0]
    ref.tokenizer, ref.postokenizer = jieba.dt, jieba.posseg.dt
    if allow_pos:
        ref.postokenizer = tokenizer
    else:
        ref.tokenizer = tokenizer
    return ref


def jieba_textrank(tokenizer):
    ref = jieba.analyse.TextRank()
    ref.tokenizer = tokenizer
    return ref


@pytest.fixture(scope="module")
def novel_paragraphs():
    """A few hundred paragraphs of two novels (None when ../shared is absent)."""
    from conftest import SHARED_DATA

    raw = SHARED_DATA / "raw"
    if not raw.is_dir():
        return None
    out = []
    for name, start in (("hongloumeng.txt", 1000), ("xiyouji.txt", 3000)):
        lines = (raw / name).read_text(encoding="utf-8").splitlines()
        out += [line for line in lines[start : start + 150] if line.strip()]
    return out


# ----------------------------------------------------------------------------------------------
# Same tokens on both sides


def check_same_tokens(text: str, idf: IDFTable) -> None:
    """jieba's extractors fed fixed tokens (HMM on) against zhtext's scores of the same tokens."""
    words = jieba.lcut(text)
    # jieba's pair objects for jieba, (word, tag) tuples for zhtext
    tagged = jieba.posseg.lcut(text)
    pairs = [(p.word, p.flag) for p in tagged]
    for allow in POS_FILTERS:
        ref = jieba_tfidf(Fixed(tagged if allow else words), allow)
        want = ref.extract_tags(text, topK=None, withWeight=True, allowPOS=allow)
        assert tfidf_scores(pairs if allow else words, idf, allow_pos=allow) == want
    ref = jieba_textrank(Fixed(tagged))
    for allow in [*POS_FILTERS[1:], ("n", "v", "x", "eng", "m")]:
        want = ref.textrank(text, topK=None, withWeight=True, allowPOS=allow)
        assert textrank_scores(pairs, allow_pos=allow) == want


def test_tfidf_and_textrank_equal_jieba_on_the_same_tokens():
    idf = IDFTable.load()
    for text in [*PARAGRAPHS, TEXT, TEXT * 3]:
        check_same_tokens(text, idf)
    assert tfidf_scores([], idf) == [] and textrank_scores([]) == []


def test_same_tokens_on_novel_paragraphs(novel_paragraphs, shared_data):
    idf = IDFTable.load()
    for text in novel_paragraphs[::30]:
        check_same_tokens(text, idf)
    # one large graph: many ties, many edges per node
    whole = "\n".join(novel_paragraphs)
    tagged = jieba.posseg.lcut(whole)
    ref = jieba_textrank(Fixed(tagged))
    got = textrank_scores([(p.word, p.flag) for p in tagged])
    assert len(got) > 500
    assert got == ref.textrank(whole, topK=None, withWeight=True)


def test_ties_keep_the_order_of_first_appearance():
    # every word once: equal TF-IDF weights where the IDF is equal (unknown words: the median)
    idf = IDFTable({"甲乙": 1.0, "丙丁": 2.0, "戊己": 3.0})
    got = tfidf_scores(["庚辛", "x", "壬癸", "甲乙", "子丑"], idf)
    assert [w for w, _ in got] == ["庚辛", "壬癸", "子丑", "甲乙"]
    assert got[0][1] == got[1][1] == got[2][1] == 2.0 * (1 / 4)


def test_textrank_self_links_both_directions_and_lone_pairs():
    tokens = [
        ("长江", "ns"),
        ("长江", "ns"),
        ("，", "x"),
        ("黄河", "ns"),
        ("长江", "ns"),
        ("流", "v"),
        ("流", "v"),
        ("河水", "n"),
        ("a", "x"),
        ("b", "x"),
        ("c", "x"),
        ("d", "x"),
        ("湖泊", "n"),
        ("源头", "n"),
    ]
    ref = jieba_textrank(Fixed([jieba.posseg.pair(w, t) for w, t in tokens]))
    got = textrank_scores(tokens)
    assert got == ref.textrank("", topK=None, withWeight=True)
    assert {w for w, _ in got} == {"长江", "黄河", "河水", "湖泊", "源头"} and got[0][
        1
    ] == 1.0


def test_candidates_follow_jieba_filters():
    idf = IDFTable({"ab": 1.0})
    tokens = ["The", "the", "THE", " a ", "ab", "Ab", "\u3000\u3000", "of", "x", "\r\n"]
    assert [w for w, _ in tfidf_scores(tokens, idf)] == [
        "ab",
        "Ab",
    ]  # lower() is checked
    # stop words given as they are: an upper-case one never matches a lower() word
    got = tfidf_scores(tokens, idf, stop_words={"ab", "THE"})
    assert [w for w, _ in got] == ["The", "the", "THE", "of"]


# ----------------------------------------------------------------------------------------------
# End to end: segmenters with HMM off


@pytest.mark.parametrize("top", [None, 0, 1, 5, 20])
def test_keywords_equal_jieba_end_to_end_with_hmm_off(top):
    seg = JiebaSegmenter()
    for text in [*PARAGRAPHS, TEXT]:
        for allow in POS_FILTERS:
            ref = jieba_tfidf(NoHMM(bool(allow)), allow)
            for weight in (False, True):
                want = ref.extract_tags(
                    text, topK=top, withWeight=weight, allowPOS=allow
                )
                assert (
                    keywords(
                        text, top, with_weight=weight, allow_pos=allow, segmenter=seg
                    )
                    == want
                )
        ref = jieba_textrank(NoHMM(True))
        for weight in (False, True):
            want = ref.textrank(text, topK=top, withWeight=weight)
            assert (
                keywords(
                    text, top, method="textrank", with_weight=weight, segmenter=seg
                )
                == want
            )


def test_real_segmenter_equals_jieba_extract_tags_with_hmm_off(novel_paragraphs):
    hmm = {"hmm": False} if "hmm" in inspect.signature(Segmenter.cut).parameters else {}
    extract = KeywordExtractor(segmenter=Segmenter(), **hmm)
    ref = jieba_tfidf(NoHMM(False))
    texts = [*PARAGRAPHS, TEXT, *(novel_paragraphs or [])]
    for text in texts:
        assert extract(text, None, True) == ref.extract_tags(
            text, topK=None, withWeight=True
        ), text
    # a whole file, streamed line by line, is the text with its line breaks (CRLF too)
    lines = novel_paragraphs or PARAGRAPHS
    for newline in ("\n", "\r\n"):
        want = ref.extract_tags(newline.join(lines), topK=50, withWeight=True)
        assert extract.extract_lines(iter(lines), 50, True) == want


def test_streamed_lines_are_the_joined_text_for_textrank(novel_paragraphs):
    extract = KeywordExtractor("textrank", segmenter=JiebaSegmenter())
    ref = jieba_textrank(NoHMM(True))
    lines = [*PARAGRAPHS, "", "黄河 长江", *(novel_paragraphs or [])[:60]]
    for newline in ("\n", "\r\n"):
        want = ref.textrank(newline.join(lines), topK=None, withWeight=True)
        assert extract.extract_lines(lines, None, True) == want


def test_stop_words_file_is_added_to_jiebas_list(tmp_path):
    path = tmp_path / "stop.txt"
    path.write_text("自然语言\n处理\nTHE\n", encoding="utf-8")
    assert load_stop_words(path) == STOP_WORDS | {"自然语言", "处理", "THE"}
    ref = jieba.analyse.TFIDF()  # its own: set_stop_words changes it
    ref.tokenizer = NoHMM(False)
    ref.set_stop_words(str(path))
    got = keywords(
        TEXT, 10, with_weight=True, stop_words=path, segmenter=JiebaSegmenter()
    )
    assert got == ref.extract_tags(TEXT, topK=10, withWeight=True)
    assert "自然语言" not in dict(got)


# ----------------------------------------------------------------------------------------------
# IDF tables


def test_jiebas_idf_table_loads_once_with_jiebas_median():
    table = IDFTable.load()
    ref = jieba.analyse.TFIDF()
    assert table.idf == ref.idf_freq and table.median == ref.median_idf
    assert IDFTable.load(jieba_idf_path()) is table  # parsed once per process
    assert (
        table.get("自然语言") == ref.idf_freq["自然语言"]
        and table.get("没有这个词吗") == table.median
    )


def test_idf_is_ln_n_over_df_and_round_trips(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("aa bb aa x\n\n  \nbb cc\nbb dd\r\ncc bb\n", encoding="utf-8")
    table = build_idf(corpus, segmenter=Words())
    assert table.documents == 4
    assert table.idf == {
        "bb": math.log(4 / 4),
        "cc": math.log(4 / 2),
        "aa": math.log(4 / 1),
        "dd": math.log(4 / 1),
    }
    assert list(table.idf) == ["bb", "cc", "aa", "dd"]  # frequent first, ties by word
    out = tmp_path / "my.idf"
    table.save(out)
    again = IDFTable.load(out)
    assert again.idf == table.idf and again.median == table.median


def test_a_built_table_reads_back_and_jieba_reads_it_too(tmp_path, novel_paragraphs):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "\n".join(novel_paragraphs or PARAGRAPHS) + "\n", encoding="utf-8"
    )
    seg = Segmenter()
    table = build_idf([corpus, corpus], seg)
    assert table.documents == 2 * len(novel_paragraphs or PARAGRAPHS)
    out = tmp_path / "idf.txt"
    table.save(out)
    loaded = IDFTable.load(out)
    assert loaded.idf == table.idf and loaded.median == table.median
    text = TEXT + "\n" + "\n".join((novel_paragraphs or [])[:20])
    ref = jieba.analyse.TFIDF(idf_path=str(out))
    ref.tokenizer = Fixed(seg.cut(text))
    want = ref.extract_tags(text, topK=None, withWeight=True)
    assert (
        tfidf_scores(seg.cut(text), loaded)
        == tfidf_scores(seg.cut(text), table)
        == want
    )


class Words:
    """A segmenter that splits on whitespace: the words of a test corpus are what it says."""

    def cut(self, text):
        return text.split()


def test_pruning_drops_the_rarest_words_first(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("aa bb\naa cc\naa dd\nbb ee\nff gg\ncc\n", encoding="utf-8")
    # max 4 words: at ee {aa 3, bb 2, cc 1, dd 1} keeps {aa, bb}; at gg {aa, bb, ee 1, ff 1} too
    table = build_idf(corpus, Words(), max_terms=4)
    assert table.idf == {
        "aa": math.log(6 / 3),
        "bb": math.log(6 / 2),
        "cc": math.log(6),
        "gg": math.log(6),
    }
    # several levels go at once until half the cap remains: {aa 3, bb 2, cc 1} keeps {aa}
    corpus.write_text("aa bb cc\naa bb\naa\ndd\n", encoding="utf-8")
    assert build_idf(corpus, Words(), max_terms=3).idf == {
        "aa": math.log(4 / 3),
        "dd": math.log(4),
    }
    # a cap never reached changes nothing
    assert build_idf(corpus, Words(), max_terms=4).idf == {
        "aa": math.log(4 / 3),
        "bb": math.log(4 / 2),
        "cc": math.log(4),
        "dd": math.log(4),
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("甲乙 1.5\n丙丁\n", ":2: expected 'word idf'"),
        ("甲乙 1.5\n\n丙丁 x\n", ":3: expected 'word idf'"),
        ("甲乙\t1.5\n", ":1: expected 'word idf'"),
        ("甲乙 nan\n", ":1: expected 'word idf' (a finite number)"),
        ("\n\n", "no 'word idf' lines"),
        ("", "no 'word idf' lines"),
    ],
)
def test_a_bad_idf_table_is_one_line_with_its_line_number(tmp_path, content, message):
    path = tmp_path / "bad.idf"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(
        ZhtextError, match=message.replace("(", r"\(").replace(")", r"\)")
    ) as info:
        IDFTable.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(ZhtextError, match="IDF table not found: .*missing.idf"):
        IDFTable.load(tmp_path / "missing.idf")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ZhtextError, match="no documents"):
        build_idf(blank, Words())
    with pytest.raises(ZhtextError, match="no such file"):
        build_idf(tmp_path / "nope.txt", Words())
    with pytest.raises(ZhtextError, match="whitespace"):
        IDFTable({"a b": 1.0}).save(tmp_path / "out.idf")
    with pytest.raises(ZhtextError, match="top must be"):
        keywords(TEXT, -1, segmenter=Words())
    with pytest.raises(ZhtextError, match="unknown method .lda.: use"):
        KeywordExtractor("lda")
    with pytest.raises(ZhtextError, match="TextRank does not use"):
        KeywordExtractor("textrank", idf=jieba_idf_path())
    assert (
        keywords("", segmenter=Words())
        == []
        == keywords("。，", method="textrank", segmenter=JiebaSegmenter())
    )


# ----------------------------------------------------------------------------------------------
# The command


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text(
        "\r\n".join([*PARAGRAPHS[:2], "", *PARAGRAPHS[2:]]) + "\r\n", encoding="utf-8"
    )
    return path


def test_cli_whole_file_and_lines(monkeypatch, capsys, text_file):
    lines = text_file.read_text(encoding="utf-8").splitlines()
    extract = KeywordExtractor()  # the command's: jieba's dictionary and IDF table
    code, out, err = run_cli(
        monkeypatch, capsys, "keywords", str(text_file), "--with-weight", "-q"
    )
    assert code == 0, err
    got = [
        (word, float(weight))
        for word, weight in (row.split("\t") for row in out.splitlines())
    ]
    assert got == extract.extract_lines(lines, 20, True) and len(got) == 20
    code, out, err = run_cli(
        monkeypatch, capsys, "keywords", str(text_file), "--lines", "--top", "3"
    )
    assert code == 0, err
    assert out.split("\n")[:-1] == [" ".join(extract(line, 3)) for line in lines]
    assert out.split("\n")[2] == ""  # the blank line: no keywords, still its own line
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "keywords",
        str(text_file),
        "--lines",
        "--with-weight",
        "--format",
        "jsonl",
        "--top",
        "0",
    )
    records = [json.loads(row) for row in out.splitlines()]
    assert [[tuple(k) for k in r["keywords"]] for r in records] == [
        extract(line, None, True) for line in lines
    ]


def test_cli_idf_from_save_and_reuse(monkeypatch, capsys, text_file, tmp_path):
    saved = tmp_path / "corpus.idf"
    args = ["keywords", str(text_file), "--top", "0", "--with-weight", "-q"]
    code, built, err = run_cli(
        monkeypatch,
        capsys,
        *args,
        "--idf-from",
        str(text_file),
        "--idf-from",
        str(text_file),
        "--save-idf",
        str(saved),
    )
    assert code == 0, err
    code, reused, err = run_cli(monkeypatch, capsys, *args, "--idf", str(saved))
    assert code == 0, err
    assert reused == built
    table = build_idf([text_file, text_file], Segmenter())
    assert IDFTable.load(saved).idf == table.idf and table.documents == 2 * len(
        PARAGRAPHS
    )
    lines = text_file.read_text(encoding="utf-8").splitlines()
    want = KeywordExtractor(idf=table).extract_lines(lines, None, True)
    assert built == "".join(f"{w}\t{x!r}\n" for w, x in want)


def test_cli_dictionaries_and_stop_words(monkeypatch, capsys, tmp_path, text_file):
    user = tmp_path / "user.dict"
    user.write_text("自然语言处理 20 n\n", encoding="utf-8")
    stop = tmp_path / "stop.txt"
    stop.write_text("python\n", encoding="utf-8")  # words are checked in lower case
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "keywords",
        str(text_file),
        "--user-dict",
        str(user),
        "--stop-words",
        str(stop),
        "--top",
        "5",
    )
    assert code == 0, err
    words = out.split()
    assert "自然语言处理" in words and "Python" not in words
    code, plain, err = run_cli(
        monkeypatch, capsys, "keywords", str(text_file), "--top", "5"
    )
    assert "自然语言处理" not in plain.split() and "Python" in plain.split()


def test_cli_textrank_and_pos(monkeypatch, capsys, text_file):
    text = text_file.read_text(encoding="utf-8")
    jieba_runs = {
        "--method=textrank": lambda: jieba.analyse.textrank(text),
        "--pos=n,ns": lambda: jieba.analyse.extract_tags(text, allowPOS=("n", "ns")),
    }
    for option, jieba_run in jieba_runs.items():
        code, out, err = run_cli(
            monkeypatch, capsys, "keywords", str(text_file), option
        )
        # jieba's own defaults: HMM on, in segmenting and in tagging
        assert (code, out.splitlines()) == (0, jieba_run()), err


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--pos", "n,NS"], "--pos must be tags such as ns,n,vn,v, got 'NS'"),
        (["--top", "-1"], "--top must be at least 0, got -1"),
        (["--method", "lda"], "--method must be one of tfidf, textrank, got 'lda'"),
        (
            ["--idf", "a", "--idf-from", "b"],
            "--idf and --idf-from do not mix: choose one",
        ),
        (
            ["--method", "textrank", "--idf", "a"],
            "--idf, --idf-from and --save-idf are for --method tfidf",
        ),
        (["--save-idf", "a"], "--save-idf needs --idf-from"),
    ],
)
def test_cli_bad_options_are_one_line_and_status_2(
    monkeypatch, capsys, text_file, args, line
):
    assert run_cli(monkeypatch, capsys, "keywords", str(text_file), *args) == (
        2,
        "",
        f"zhtext: error: {line}\n",
    )


def test_cli_bad_inputs_are_one_line_and_status_1(
    monkeypatch, capsys, text_file, tmp_path
):
    bad = tmp_path / "bad.idf"
    bad.write_text("甲乙 1\n丙丁 2 3\n", encoding="utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    for args, part in [
        ([str(text_file), "--idf", str(tmp_path / "none.idf")], "IDF table not found"),
        ([str(text_file), "--idf", str(bad)], "bad.idf:2: expected 'word idf'"),
        ([str(text_file), "--idf-from", str(empty), "-q"], "no documents"),
        ([str(tmp_path / "none.txt")], "no such file"),
    ]:
        code, out, err = run_cli(monkeypatch, capsys, "keywords", *args)
        assert (code, out, err.count("\n")) == (1, "", 1) and part in err, err
    # no text, no keywords
    assert run_cli(monkeypatch, capsys, "keywords", str(empty)) == (0, "", "")
