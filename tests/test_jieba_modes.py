"""jieba's HMM, full mode, search mode and tokenize: the Segmenter against jieba itself.

Every comparison is token for token with a fresh ``jieba.Tokenizer`` (never the global ``jieba.dt``).
Deleting words changes jieba's global force-split set, so tests that do take the
``jieba_force_split`` fixture, which puts it back.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from zhtext.errors import ZhtextError
from zhtext.io.reading import iter_lines
from zhtext.lexical.chars import to_codes
from zhtext.lexical.hmm import STATES, tables_from_jieba, viterbi_states
from zhtext.lexical.lexicon import Lexicon
from zhtext.lexical.segment import Segmenter, hmm_tables

NOVEL_LINES = 2000  # per novel, spread over the whole book


def new_tokenizer(dictionary=None):
    import jieba

    jieba.setLogLevel(60)
    tok = jieba.Tokenizer() if dictionary is None else jieba.Tokenizer(str(dictionary))
    tok.initialize()
    return tok


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    return Segmenter()


@pytest.fixture(scope="module")
def tok():
    return new_tokenizer()


def jieba_all_modes(tok, line: str) -> dict:
    """Everything jieba gives for ``line``, by (mode, HMM)."""
    out = {("all", None): tok.lcut(line, cut_all=True)}
    for hmm in (True, False):
        out["default", hmm] = tok.lcut(line, HMM=hmm)
        out["search", hmm] = tok.lcut_for_search(line, HMM=hmm)
        out["tokenize", hmm] = list(tok.tokenize(line, HMM=hmm))
        out["tokenize-search", hmm] = list(tok.tokenize(line, mode="search", HMM=hmm))
    return out


def zhtext_all_modes(seg: Segmenter, line: str) -> dict:
    """The same from zhtext, through the one-line methods."""
    out = {("all", None): seg.cut_all(line)}
    for hmm in (True, False):
        out["default", hmm] = seg.cut(line, hmm=hmm)
        out["search", hmm] = seg.cut_for_search(line, hmm=hmm)
        out["tokenize", hmm] = seg.tokenize(line, hmm=hmm)
        out["tokenize-search", hmm] = seg.tokenize(line, mode="search", hmm=hmm)
    return out


def assert_lines_match(seg: Segmenter, tok, lines: list[str]) -> None:
    """Batch methods (many lines per kernel call) equal jieba in every mode, and the joined fast
    path equals the words joined."""
    for hmm in (True, False):
        default = [list(tok.tokenize(s, HMM=hmm)) for s in lines]
        search = [list(tok.tokenize(s, mode="search", HMM=hmm)) for s in lines]
        assert seg.tokenize_lines(lines, hmm=hmm) == default
        assert seg.tokenize_lines(lines, "search", hmm=hmm) == search
        words = [[w for w, _, _ in t] for t in default]
        assert seg.cut_lines(lines, hmm=hmm) == words
        assert seg.segment_lines(lines, "/", hmm=hmm) == ["/".join(w) for w in words]
        search_words = [[w for w, _, _ in t] for t in search]
        assert seg.cut_lines(lines, hmm=hmm, mode="search") == search_words
        assert seg.segment_lines(lines, " ", mode="search", hmm=hmm) == [
            " ".join(w) for w in search_words
        ]
    full = [tok.lcut(s, cut_all=True) for s in lines]
    assert seg.cut_lines(lines, mode="all") == full
    assert seg.segment_lines(lines, " | ", mode="all") == [" | ".join(w) for w in full]


# ----------------------------------------------------------------------------------------------
# Literal strings: the edge cases, every mode

EDGE_CASES = [
    "黛玉笑道",
    "黛玉笑道：“你这会子又说这话了。”",
    "宝玉和黛玉、宝钗、王熙凤、刘姥姥说话。",
    "他来到了网易杭研大厦",
    "小明硕士毕业于中国科学院计算所，后在日本京都大学深造",
    "我来到北京清华大学",
    "圆周率是3.14，增长了50%，即0.5倍；版本1.2.3和v2.0%",
    "3.14%和12.5.6以及.5和5.和%5",
    "iPhone15和C++、c#的价格是3999.00元",
    "abc-def_ghi.jkl+mn#op&qr%",
    "A股B超T恤AA制的IC卡",
    "  前后 有 空格  ",
    "\r\n中文\r\r\n\n",
    "\t\u3000全角空格\u3000两个",
    "😀黛玉笑了𠀀𠀁，👍🏻好",
    "\ud800中文\udfff",
    "",
    "hello, world! 123",
    "，。！？……",
    "   ",
    "二〇二四年3月5日星期二",
    "丄丅丏両丣丂丆丌丕乂乇",  # characters the HMM's tables lack, in part or whole: ties
    "ｆｕｌｌ　ｗｉｄｔｈ和半角",
    "王二麻子和李四在张家口遇见了赵钱孙",
]


@pytest.mark.parametrize("line", EDGE_CASES)
def test_edge_cases_equal_jieba_in_every_mode(seg, tok, line):
    assert zhtext_all_modes(seg, line) == jieba_all_modes(tok, line)


def test_hmm_finds_names_the_dictionary_lacks(seg):
    assert seg.cut("黛玉笑道") == ["黛玉笑", "道"]
    assert seg.cut("黛玉笑道", hmm=False) == ["黛", "玉", "笑", "道"]
    text = "他来到了网易杭研大厦"
    assert seg.cut(text) == ["他", "来到", "了", "网易", "杭研", "大厦"]
    assert Segmenter(hmm=False).cut(text, hmm=True) == seg.cut(text)
    # inside an HMM run, letters/digits keep decimals and percentages whole
    assert seg.cut("是3.14%") == ["是", "3.14%"]
    assert seg.cut("是3.14%", hmm=False) == ["是", "3", ".", "14", "%"]


def test_edge_cases_in_one_batch(seg, tok):
    assert_lines_match(seg, tok, EDGE_CASES)


def test_full_mode_keeps_jiebas_empty_strings(seg):
    # jieba splits text outside its blocks with re.split, whose empty pieces it yields too
    assert seg.cut_all("中国 人") == ["中国", "", " ", "", "人"]
    assert seg.segment_lines(["中国 人"], "/", mode="all") == ["中国// //人"]


def test_tokenize_offsets_are_consistent(seg):
    for line in EDGE_CASES:
        for hmm in (True, False):
            default = seg.tokenize(line, hmm=hmm)
            assert "".join(w for w, _, _ in default) == line
            ends = [e for _, _, e in default]
            assert [s for _, s, _ in default] == [0, *ends][: len(default)]
            for mode in ("default", "search"):
                for word, start, end in seg.tokenize(line, mode, hmm=hmm):
                    assert line[start:end] == word and word
            # search mode adds words inside the default ones, never loses one
            search = seg.tokenize(line, "search", hmm=hmm)
            assert [t for t in search if t in set(default)] == default


def test_bad_modes_are_one_line_errors(seg):
    with pytest.raises(ZhtextError, match="tokenize mode must be default or search"):
        seg.tokenize("中国", "all")
    with pytest.raises(ZhtextError, match="unknown segmentation mode 'fast'"):
        seg.cut("中国", mode="fast")


# ----------------------------------------------------------------------------------------------
# Generated text and the novels

TRICKY = "我来到北京清华大学黛玉笑道宝钗凤姐杭研abc123 C++和c#. 2024年%50-60_x&y\r\n\t　😀𠀀ｆ，。丄丂"
any_text = st.one_of(st.text(max_size=30), st.text(alphabet=TRICKY, max_size=40))


@settings(max_examples=150, deadline=None)
@given(st.lists(any_text, max_size=5))
def test_generated_text_equals_jieba(seg, tok, lines):
    assert_lines_match(seg, tok, lines)
    for line in lines:
        assert "".join(seg.cut(line)) == line


def novel_sample(shared_data, per_novel: int) -> list[str]:
    lines = []
    for path in sorted((shared_data / "raw").glob("*.txt")):
        novel = list(iter_lines(path))
        lines += novel[:: max(1, len(novel) // per_novel)][:per_novel]
    return lines


def test_novels_equal_jieba_in_every_mode(seg, tok, shared_data):
    lines = novel_sample(shared_data, NOVEL_LINES)
    assert len(lines) == 4 * NOVEL_LINES
    assert_lines_match(seg, tok, lines)


# ----------------------------------------------------------------------------------------------
# Dictionary edits and other dictionaries


def edit_both(seg: Segmenter, tok, edits) -> None:
    for word, freq in edits:
        if freq == "del":
            seg.del_word(word)
            tok.del_word(word)
        else:
            seg.add_word(word, freq)
            tok.add_word(word, freq)


EDIT_TEXTS = [
    "黛玉笑道：“你这会子又说这话了。”",
    "宝钗笑道：“这是凯特琳在台中找到的石墨烯。”",
    "我们中将有人来到这里",
    "xabcdey中 ab bcd abcd",
    "他来到了网易杭研大厦",
    "刘姥姥进大观园",
]


def test_add_and_del_word_take_effect_in_every_mode(jieba_force_split):
    mine, tok = Segmenter(), new_tokenizer()
    before = zhtext_all_modes(mine, EDIT_TEXTS[0])
    edit_both(mine, tok, [
        ("石墨烯", None), ("凯特琳", 30), ("台中", 0),  # a new word, a counted one, a deleted one
        ("黛玉笑", 0),  # the HMM's own output, deleted: it comes out one character per token
        ("这会子", "del"), ("来到", "del"), ("宝钗", 0),
        ("ab", 5), ("bcd", 5),  # full mode's ASCII run then skips characters: ['bcd', 'xabey']
        ("杭研", 0), ("杭研", 7),  # deleted, then counted again: still force-split, as in jieba
    ])  # fmt: skip
    assert mine.total == tok.total
    assert mine.force_split == {"台中", "黛玉笑", "这会子", "来到", "宝钗", "杭研"}
    for line in EDIT_TEXTS:
        assert zhtext_all_modes(mine, line) == jieba_all_modes(tok, line)
    assert_lines_match(mine, tok, EDIT_TEXTS)
    assert zhtext_all_modes(mine, EDIT_TEXTS[0]) != before
    assert mine.cut("黛玉笑道") == ["黛", "玉", "笑", "道"]
    assert mine.cut_all("xabcdey中") == ["bcd", "xabey", "中"]
    assert mine.segment_lines(["xabcdey中"], "/", mode="all") == ["bcd/xabey/中"]


USER_DICT = """\
黛玉笑道 3
宝钗 0
凯特琳 30 nr
石墨烯
ab 5
bcd 5 eng
"""


def test_user_dict_takes_effect_in_every_mode(tmp_path, jieba_force_split):
    path = tmp_path / "user.dict"
    path.write_text(USER_DICT, encoding="utf-8")
    tok = new_tokenizer()
    tok.load_userdict(str(path))
    mine = Segmenter(user_dict=path)
    assert mine.total == tok.total
    for line in EDIT_TEXTS:
        assert zhtext_all_modes(mine, line) == jieba_all_modes(tok, line)


def test_hmm_with_a_discovered_lexicon_equals_jieba_with_that_dictionary(tmp_path):
    lexicon = Lexicon({"黛玉": 20, "笑": 30, "道": 40, "宝": 5, "钗": 3, "说": 50, "这话": 8,
                       "大观园": 4, "大观": 2, "刘": 6, "3.14": 2})  # fmt: skip
    path = tmp_path / "lexicon.txt"
    lexicon.save(path, "jieba")
    tok = new_tokenizer(path)
    for mine in (Segmenter(lexicon), Segmenter(path)):
        for line in [*EDIT_TEXTS, "黛玉对宝钗说这话，宝玉笑道3.14%", "刘姥姥笑道"]:
            assert zhtext_all_modes(mine, line) == jieba_all_modes(tok, line)


# ----------------------------------------------------------------------------------------------
# The model: tables and Viterbi


def test_tables_come_from_jieba_and_round_trip_through_the_cache(tmp_path, monkeypatch):
    from jieba import finalseg

    monkeypatch.setenv("ZHTEXT_CACHE_DIR", str(tmp_path))
    hmm_tables.cache_clear()
    try:
        built = hmm_tables()  # builds and writes the cache
        assert len(list(tmp_path.glob("finalseg-*.npz"))) == 1
        hmm_tables.cache_clear()
        cached = hmm_tables()  # reads it back
    finally:
        hmm_tables.cache_clear()
    fresh = tables_from_jieba()
    for a, b, c in zip(built, cached, fresh):
        assert a.tobytes() == b.tobytes() == c.tobytes()
    state = STATES.index("B")
    assert fresh.emit[ord("黛") - 0x4E00, state] == finalseg.emit_P["B"]["黛"]
    e_to_s = fresh.trans[STATES.index("E"), STATES.index("S")]
    assert e_to_s == finalseg.trans_P["E"]["S"]
    # no entry in jieba's dicts: its MIN_FLOAT
    assert fresh.emit[ord("丄") - 0x4E00].tolist() == [-3.14e100] * 4


# Common characters, characters missing from some of the tables and from all: missing entries
# weigh -3.14e100, so sums tie and jieba's tie-breaking decides.
VITERBI_CHARS = "黛玉笑道杭研的了是我丕乂乇乩亍丂丆丌丒丄丅丏両"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=VITERBI_CHARS, min_size=1, max_size=12))
def test_viterbi_path_equals_jiebas(text):
    from jieba import finalseg

    tables = hmm_tables()
    states = np.empty(len(text), dtype=np.int8)
    back = np.empty((len(text), 4), dtype=np.int8)
    viterbi_states(to_codes(text), 0, len(text), *tables, back, states)
    model = finalseg.start_P, finalseg.trans_P, finalseg.emit_P
    _, path = finalseg.viterbi(text, "BMES", *model)
    assert "".join(STATES[s] for s in states) == "".join(path)


# ----------------------------------------------------------------------------------------------
# Where a Segmenter is made: the CLI, the pipeline, zhtext.cut


def test_cli_modes_hmm_and_offsets(tmp_path, seg, monkeypatch, capsys):
    lines = [
        "黛玉笑道：“你这会子又说这话了。”",
        "",
        "我来到北京清华大学 3.14%",
        "😀笑了𠀀",
    ]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for options, want in [
        ([], seg.segment_lines(lines)),
        (["--no-hmm"], seg.segment_lines(lines, hmm=False)),
        (
            ["--mode", "search", "--sep", "/"],
            seg.segment_lines(lines, "/", mode="search"),
        ),
        (["--mode", "all"], seg.segment_lines(lines, mode="all")),
    ]:
        code, out, err = run_cli(monkeypatch, capsys, "segment", str(src), *options)
        assert code == 0, err
        assert out == "".join(f"{s}\n" for s in want)
    runs = [([], "default", True), (["--mode", "search", "--no-hmm"], "search", False)]
    for options, mode, hmm in runs:
        args = ["segment", str(src), "--offsets", *options]
        code, out, err = run_cli(monkeypatch, capsys, *args)
        assert code == 0, err
        records = [json.loads(row) for row in out.splitlines()]
        want = seg.tokenize_lines(lines, mode, hmm=hmm)
        assert records == [{"tokens": [list(t) for t in tokens]} for tokens in want]
        if hmm:
            assert records[0]["tokens"][:2] == [["黛玉笑", 0, 3], ["道", 3, 4]]
            assert records[1] == {"tokens": []}
    args = ["segment", str(src), "--offsets", "--mode", "all"]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "--offsets" in err and "full mode" in err


def test_pipeline_segment_step_has_an_hmm_setting():
    from zhtext.pipeline import Pipeline

    text = "黛玉笑道：“你这会子又说这话了。”"
    assert Pipeline("segment")(text).words == Segmenter().cut(text)
    no_hmm = Pipeline("segment", segment={"hmm": False})
    assert no_hmm(text).words == Segmenter(hmm=False).cut(text)


def test_top_level_cut_is_jiebas_default(tok):
    import zhtext

    text = "黛玉笑道：“你这会子又说这话了。”"
    assert zhtext.lcut(text) == list(zhtext.cut(text)) == tok.lcut(text)
    assert zhtext.lcut(text, hmm=False) == tok.lcut(text, HMM=False)


def test_module_functions_are_jiebas_over_one_default_segmenter(jieba_force_split):
    """zhtext.cut / add_word / load_userdict... behave as jieba's module functions, and an edit
    made through them reaches every mode, tagging and keywords (one default segmenter)."""
    import jieba.analyse
    import jieba.posseg

    import zhtext
    from zhtext.lexical.segment import default_segmenter

    default_segmenter.cache_clear()
    tok = jieba.Tokenizer()
    pos = jieba.posseg.POSTokenizer(tok)  # one: it takes user tags over from tok when first used
    text = "石墨烯很好用，黛玉笑道：我来到北京清华大学。石墨烯很好"
    try:
        for edit in (lambda m: m.add_word("石墨烯很好", 20000, "nz"), lambda m: m.del_word("清华大学")):
            edit(zhtext)
            edit(tok)
            assert zhtext.lcut(text) == list(zhtext.cut(text)) == tok.lcut(text)
            assert zhtext.lcut(text, True) == tok.lcut(text, True)
            assert zhtext.lcut(text, hmm=False) == tok.lcut(text, HMM=False)
            assert zhtext.lcut_for_search(text) == tok.lcut_for_search(text)
            assert list(zhtext.tokenize(text, "search")) == list(tok.tokenize(text, "search"))
            assert default_segmenter().tag(text) == [(p.word, p.flag) for p in pos.cut(text)]
            tfidf = jieba.analyse.TFIDF()
            tfidf.tokenizer = tok
            assert zhtext.keywords(text, 5) == tfidf.extract_tags(text, 5)
        assert zhtext.suggest_freq(("北京", "清华")) == tok.suggest_freq(("北京", "清华"))
    finally:
        default_segmenter.cache_clear()
