"""User dictionaries and dictionary edits: read as ``jieba.load_userdict`` reads them (BOM, CRLF,
spaces inside words, blank and comment-like lines), bad lines refused with ``FILE:LINE``, and every
edit in effect everywhere: default (HMM on and off), search and full modes, tokenize, POS tags and
keywords, each against a fresh jieba.Tokenizer with jieba.posseg and jieba.analyse over it. Bad
user dictionaries through the CLI: tests/test_faults.py.

jieba keeps deleted words in a global set: tests that delete take the ``jieba_force_split`` fixture.
"""

from __future__ import annotations

import re

import pytest
from test_jieba_modes import (
    assert_lines_match,
    jieba_all_modes,
    new_tokenizer,
    novel_sample,
    zhtext_all_modes,
)

from zhtext.errors import ZhtextError
from zhtext.lexical.keywords import KeywordExtractor
from zhtext.lexical.segment import Segmenter, user_dict_entry

jieba = pytest.importorskip("jieba")
pytest.importorskip("jieba.posseg")
pytest.importorskip("jieba.analyse")

# What jieba users write: a BOM, CRLF, a word with spaces, blank and comment-like lines.
USER_LINES = [
    "\ufeff自然语言处理 20 nz",  # the file's BOM
    "石墨烯",  # no count: suggested, just enough to come out whole
    "",
    "   ",
    "凯特琳 30 nr",
    "New York 7",  # a space inside the word (only a trailing count and tag are split off)
    "小米 手机 3 n",
    "# comment",  # jieba has no comments: the word '#' tagged 'comment'
    "# a note",  # the word '# a', tagged 'note'
    "#话题标签 4",
    "\ufeff贾宝玉 n",  # a BOM in the middle (two files joined): dropped, as jieba drops it
    "黛玉笑道 3\t",  # trailing ASCII whitespace is stripped
    "  宝钗 0  ",  # count 0: deleted, and the HMM never makes it whole
    "大观园 20 ns",
    "大观园 25",  # again: the last count wins, the total takes both, the tag stays
    "杭研 0",
    "杭研 7",  # counted again, still force-split (as in jieba)
    "中将 0",
    "北京 city",  # a dictionary word gets a new tag (and a suggested count)
]
USER_TEXT = "\r\n".join(USER_LINES) + "\r\n"

PROBES = [
    "我在学习自然语言处理，石墨烯是凯特琳在New York发现的。",
    "贾宝玉和宝钗在大观园里，黛玉笑道：“你这会子又说这话了。”",
    "他来到了网易杭研大厦，#话题标签#，C#和小米 手机，# comment",
    "我们中将有人来到北京清华大学，北京的台中路上",
    "刘姥姥进大观园，宝钗笑道：“凯特琳的石墨烯在大观园。”",
]


class Memo:
    """jieba.posseg over a Tokenizer, each (text, HMM) tagged once: jieba's extractors and the
    comparisons read the same pairs, and pure-Python posseg is the slow part of these tests."""

    def __init__(self, tok) -> None:
        import jieba.posseg

        self.pos = jieba.posseg.POSTokenizer(tok)
        self.seen: dict = {}

    def cut(self, text: str, HMM: bool = True):
        if (text, HMM) not in self.seen:
            self.seen[text, HMM] = list(self.pos.cut(text, HMM=HMM))
        return iter(self.seen[text, HMM])

    def pairs(self, text: str, hmm: bool) -> list[tuple[str, str]]:
        return [(p.word, p.flag) for p in self.cut(text, hmm)]


def jieba_stack(tok):
    """jieba.posseg and jieba.analyse's TF-IDF and TextRank over the Tokenizer ``tok``."""
    import jieba.analyse

    pos = Memo(tok)
    tfidf = jieba.analyse.TFIDF()
    tfidf.tokenizer, tfidf.postokenizer = tok, pos
    textrank = jieba.analyse.TextRank()
    textrank.tokenizer = textrank.postokenizer = pos
    return pos, tfidf, textrank


KEYWORD_POS = ("nz", "nr", "ns", "n", "city", "comment")


def assert_everything_equal(seg: Segmenter, tok, lines: list[str]) -> None:
    """Every mode, POS tags and keywords of ``seg`` against jieba's over ``tok``."""
    pos, tfidf, textrank = jieba_stack(tok)
    for line in lines:
        assert zhtext_all_modes(seg, line) == jieba_all_modes(tok, line), line
    assert_lines_match(seg, tok, lines)
    for hmm in (True, False):
        assert [seg.tag(line, hmm) for line in lines[:20]] == [
            pos.pairs(line, hmm) for line in lines[:20]
        ]
        assert seg.tag_lines(lines, hmm) == [pos.pairs(line, hmm) for line in lines]
    text = "\n".join(lines)
    extractors = [
        (KeywordExtractor(segmenter=seg), lambda: tfidf.extract_tags(text, None, True)),
        (
            KeywordExtractor(segmenter=seg, allow_pos=KEYWORD_POS),
            lambda: tfidf.extract_tags(text, None, True, allowPOS=KEYWORD_POS),
        ),
        (KeywordExtractor("textrank", segmenter=seg), lambda: textrank.textrank(text, None, True)),
        (
            KeywordExtractor("textrank", segmenter=seg, allow_pos=KEYWORD_POS),
            lambda: textrank.textrank(text, None, True, allowPOS=KEYWORD_POS),
        ),
    ]
    for mine, theirs in extractors:
        assert mine(text, None, True) == theirs()


# ----------------------------------------------------------------------------------------------
# Reading a user dictionary as jieba reads it


def _read_like_jieba(seg: Segmenter, tok, words: list[str]) -> None:
    assert seg.total == tok.total
    for word in words:
        assert seg._count(word, None) == tok.FREQ.get(word), word
    assert seg.tags == tok.user_word_tag_tab  # before jieba.posseg takes them over
    assert seg.force_split >= {"宝钗", "杭研", "中将"}


def test_a_user_dict_with_bom_crlf_spaces_and_comments_reads_as_jieba(tmp_path, jieba_force_split):
    path = tmp_path / "user.dict"
    path.write_bytes(USER_TEXT.encode("utf-8"))
    tok = new_tokenizer()
    tok.load_userdict(str(path))
    seg = Segmenter(user_dict=path)
    words = [user_dict_entry(line)[0] for line in USER_LINES]
    _read_like_jieba(seg, tok, [w for w in words if w] + ["New", "小米", "#", "# a"])
    assert seg.tags["#"] == "comment" and seg.tags["北京"] == "city"
    assert seg.cut("小米 手机和New York") == tok.lcut("小米 手机和New York")  # never matched
    assert_everything_equal(seg, tok, PROBES)


def test_a_gb18030_user_dict_reads_as_its_utf8_twin(tmp_path, jieba_force_split):
    # jieba reads UTF-8 only; zhtext detects GB18030 as every reader does
    utf8, gb = tmp_path / "utf8.dict", tmp_path / "gb.dict"
    utf8.write_bytes(USER_TEXT.encode("utf-8"))
    gb.write_bytes(USER_TEXT.encode("gb18030"))
    tok = new_tokenizer()
    tok.load_userdict(str(utf8))
    seg = Segmenter(user_dict=gb)
    words = [user_dict_entry(line)[0] for line in USER_LINES]
    _read_like_jieba(seg, tok, [w for w in words if w])
    for line in PROBES:
        assert zhtext_all_modes(seg, line) == jieba_all_modes(tok, line)
    with pytest.raises(ValueError, match="must be utf-8"):
        new_tokenizer().load_userdict(str(gb))


def test_entries_of_literal_lines():
    assert user_dict_entry("云计算 5 n\r") == ("云计算", "5", "n")
    assert user_dict_entry(" \ufeffNew York 7 ") == ("New York", "7", None)
    assert user_dict_entry("# comment") == ("#", None, "comment")
    assert user_dict_entry("词 n 3") == ("词 n", "3", None)  # a tag before the count: a word
    assert user_dict_entry("3.14") == ("3.14", None, None)  # a word of one field is any word
    assert user_dict_entry("iPhone 15 Pro") == ("iPhone 15 Pro", None, None)  # not a tag: a word
    assert user_dict_entry("Python 3.5 7") == ("Python 3.5", "7", None)  # jieba found the count
    assert user_dict_entry(" \t\ufeff") == ("", None, None)


# (line, what the message says): each a line jieba would read silently into a word no mode can
# cut out. Tab-separated dictionaries are the classic: jieba makes 'word\t3' one word.
BAD_LINES = [
    ("云计算\t5", r"a tab ('\t') inside the line, which jieba would make part of the word"),
    ("云计算 5\tn", "a tab"),
    ("云计算 3\r北京 5", r"a carriage return ('\r')"),  # a file with CR line ends
    ("云计算 3.5", "bad count '3.5': a count is a whole number in digits 0-9 after one space"),
    ("云计算 3.5 n", "bad count '3.5'"),
    ("云计算 -3", "bad count '-3'"),
    ("云计算 1e5", "bad count '1e5'"),
    ("云计算 1,000", "bad count '1,000'"),
    ("云计算 ３", "bad count '３'"),  # full-width digits
    ("云计算\u30003", "bad count '3'"),  # separated by U+3000
    ("云计算 3 NR", "bad tag 'NR': a tag is lowercase letters a-z"),
    ("云计算 3 n1", "bad tag 'n1'"),
    ("云计算  3", "the word '云计算 ' ends with whitespace, so it could never be cut out"),
    ("\u3000全角空格词 8", r"the word '\u3000全角空格词' starts with whitespace"),
    # jieba strips the line, then the BOM: the spaces after it stay in the word
    ("\ufeff  云计算 5", "the word '  云计算' starts with whitespace"),
    ("\u3000", r"the word '\u3000' is only whitespace"),
    ("\u3000 5 n", r"the word '\u3000' is only whitespace"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_LINES)
def test_a_bad_line_is_one_error_naming_file_and_line(tmp_path, bad, message):
    path = tmp_path / "user.dict"
    path.write_text(f"云计算 5\n\n{bad}\n北京清华 12 ns\n", encoding="utf-8")
    seg = Segmenter()
    total = seg.total
    with pytest.raises(ZhtextError, match=f"^{re.escape(f'{path}:3: {message}')}") as info:
        seg.load_user_dict(path)
    assert "\n" not in str(info.value)
    assert seg.total == total and seg.cut("云计算") == ["云", "计算"]  # nothing of the file added


def test_undecodable_bytes_name_the_line(tmp_path):
    path = tmp_path / "user.dict"
    path.write_bytes("云计算 5\n".encode() + b"\xff\xfe 3\n")
    with pytest.raises(ZhtextError, match=f"^{path}:2: cannot decode byte at offset 12 as utf-8"):
        Segmenter(user_dict=path)
    with pytest.raises(ZhtextError, match="no such file"):
        Segmenter(user_dict=tmp_path / "missing.dict")


def test_add_word_refuses_a_count_that_is_not_a_number():
    seg = Segmenter()
    with pytest.raises(ZhtextError, match="count '3.5' for word '云计算' is not a whole number"):
        seg.add_word("云计算", "3.5")
    assert seg.cut("云计算") == ["云", "计算"]


# ----------------------------------------------------------------------------------------------
# Edits in effect everywhere


def test_edits_take_effect_in_every_mode_pos_and_keywords(tmp_path, jieba_force_split, shared_data):
    """The same edits on both sides, made after every cache is warm: all modes, tags, keywords."""
    path = tmp_path / "user.dict"
    path.write_text("贾宝玉 9 nr\n刘姥姥 nr\n宝钗 0\n人工智能 5 nz\n", encoding="utf-8")
    lines = PROBES + novel_sample(shared_data, 25)
    seg, tok = Segmenter(), new_tokenizer()
    before = zhtext_all_modes(seg, PROBES[1])
    assert_everything_equal(seg, tok, lines[:3])  # every kernel argument and tag table built
    edits = [
        ("add_word", ("石墨烯",)),
        ("add_word", ("凯特琳", 30, "nr")),
        ("add_word", ("自然语言处理", 20, "nz")),
        ("add_word", ("北京", None, "city")),
        ("del_word", ("清华大学",)),
        ("del_word", ("来到",)),
        ("add_word", ("黛玉笑", 0)),  # the HMM's own output: now never made whole
        ("add_word", ("杭研", 0)),
        ("add_word", ("杭研", 7)),
        ("suggest_freq", (("中", "将"), True)),
        ("suggest_freq", ("台中", True)),
        ("suggest_freq", ("大观园", True)),
    ]
    for name, args in edits:
        assert getattr(seg, name)(*args) == getattr(tok, name)(*args)
    seg.load_user_dict(path)
    tok.load_userdict(str(path))
    assert seg.total == tok.total
    assert zhtext_all_modes(seg, PROBES[1]) != before
    assert_everything_equal(seg, tok, lines)
    assert seg.cut("黛玉笑道") == ["黛", "玉", "笑", "道"]
    assert ("自然语言处理", "nz") in seg.tag(PROBES[0])


def test_edits_on_literal_strings_without_the_novels(jieba_force_split):
    seg, tok = Segmenter(), new_tokenizer()
    for word, freq, tag in [("石墨烯", None, "n"), ("凯特琳", 30, "nr"), ("来到", 0, None)]:
        seg.add_word(word, freq, tag)
        tok.add_word(word, freq, tag)
    assert seg.cut(PROBES[0]) == tok.lcut(PROBES[0])
    assert ("凯特琳", "nr") in seg.tag(PROBES[0]) and "来到" not in seg.cut(PROBES[3])
    assert_everything_equal(seg, tok, PROBES)
