"""What every mode promises for any text, under hypothesis, and equality with jieba on that text.

The texts mix what makes jieba's rules branch: dictionary words and common characters (HMM runs),
Han characters common and rare (U+9FD6..U+9FFF and extension A lie outside jieba's blocks), ASCII
letters and digits, ``+#&._%-``, whitespace of every kind (``\\r\\n``, lone ``\\r``, U+3000, NBSP),
punctuation, astral characters and anything else.

Invariants:

- default mode (HMM on and off): the tokens are non-empty, concatenate back to the text, and their
  offsets tile it (``text[start:end] == word``, each start the previous end);
- search mode: every default token, in order, with extra tokens before a default token, each
  strictly inside it, at its offsets;
- tags: the words concatenate back to the text, each with a non-empty tag;
- full mode (jieba's ``__cut_all``, read for this): tokens other than jieba's empty strings are
  either made of block characters (Han U+4E00..U+9FD5, ASCII letters/digits, ``+#&._%-``) or of
  none; those of none concatenate back to the text with its blocks taken out; a block token with a
  character other than an ASCII letter or digit is a substring of the text, at non-decreasing
  positions; an all-letters/digits token is a run jieba glues from pieces, which may skip the
  characters of a longer dictionary word (``xabey`` from ``xabcdey`` with ``bcd`` a word), so it
  is only a subsequence of the text; and every Han character is inside a token.
"""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_jieba_modes import assert_lines_match, jieba_all_modes, new_tokenizer, zhtext_all_modes

from zhtext.lexical.segment import Segmenter

jieba = pytest.importorskip("jieba")
posseg = pytest.importorskip("jieba.posseg")

EXAMPLES = 200
BLOCK_CHAR = re.compile(r"[\u4E00-\u9FD5a-zA-Z0-9+#&._%\-]")
HAN = re.compile(r"[\u4E00-\u9FD5]")
ALNUM_ONLY = re.compile(r"[a-zA-Z0-9]+")

WORDS = ["北京", "清华大学", "来到", "黛玉", "笑道", "宝钗", "这会子", "中国", "人民", "研究生",
         "生命", "起源", "T恤", "AA制", "C++", "3.14", "iPhone", "杭研", "自然语言"]  # fmt: skip
COMMON = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年黛玉宝钗凤姐笑"
pieces = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(COMMON),
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
    st.characters(min_codepoint=0x3400, max_codepoint=0x4DBF),
    st.sampled_from(string.ascii_letters + string.digits),
    st.sampled_from("+#&._%-"),
    st.sampled_from([" ", "  ", "\t", "\r\n", "\n", "\r", "\u3000", "\x0b", "\x0c", "\xa0"]),
    st.sampled_from("，。！？、：；“”‘’（）《》…—·,.!?;:'\"()[]"),
    st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF),
    st.characters(),
)
texts = st.lists(pieces, max_size=30).map("".join)


@pytest.fixture(scope="module")
def both() -> tuple:
    """zhtext's segmenter, and a fresh jieba Tokenizer with jieba.posseg over it."""
    tok = new_tokenizer()
    return Segmenter(), tok, posseg.POSTokenizer(tok)


def check_default_and_search(seg: Segmenter, text: str, hmm: bool) -> None:
    default = seg.tokenize(text, hmm=hmm)
    assert "".join(w for w, _, _ in default) == text
    assert all(w and text[a:b] == w for w, a, b in default)
    assert [a for _, a, _ in default] == [0, *(b for _, _, b in default)][: len(default)]
    assert seg.cut(text, hmm=hmm) == [w for w, _, _ in default]
    search = seg.tokenize(text, "search", hmm=hmm)
    assert all(w and text[a:b] == w for w, a, b in search)
    d = 0  # the default token that comes next
    for token in search:
        if d < len(default) and token == default[d]:
            d += 1
            continue
        _, a, b = token  # an extra: strictly inside the default token it precedes
        _, first, last = default[d]
        assert first <= a < b <= last and b - a < last - first, (token, default[d])
    assert d == len(default)
    assert seg.cut_for_search(text, hmm=hmm) == [w for w, _, _ in search]


def check_full_mode(seg: Segmenter, text: str) -> None:
    tokens = [t for t in seg.cut_all(text) if t]  # jieba's empty strings left out
    inside = [t for t in tokens if BLOCK_CHAR.match(t)]
    for t in tokens:  # all block characters or none
        assert len(BLOCK_CHAR.findall(t)) in (0, len(t)), t
    assert "".join(t for t in tokens if not BLOCK_CHAR.match(t)) == BLOCK_CHAR.sub("", text)
    start = 0
    for t in inside:
        if ALNUM_ONLY.fullmatch(t):
            rest = iter(text)
            assert all(c in rest for c in t), t  # a subsequence
        else:
            found = text.find(t, start)
            assert found >= 0, (t, start)
            start = found
    for i, c in enumerate(text):
        if HAN.match(c):
            assert any(
                t == text[j : j + len(t)] for t in inside for j in range(i - len(t) + 1, i + 1)
            )


def check_invariants(seg: Segmenter, text: str) -> None:
    for hmm in (True, False):
        check_default_and_search(seg, text, hmm)
        tags = seg.tag(text, hmm)
        assert "".join(w for w, _ in tags) == text
        assert all(w and t for w, t in tags)
    check_full_mode(seg, text)


def check_equal_to_jieba(both: tuple, text: str) -> None:
    seg, tok, pos = both
    assert zhtext_all_modes(seg, text) == jieba_all_modes(tok, text)
    for hmm in (True, False):
        assert seg.tag(text, hmm) == [(p.word, p.flag) for p in pos.cut(text, HMM=hmm)]


@settings(max_examples=EXAMPLES, deadline=None)
@given(texts)
def test_every_mode_keeps_its_invariant(both, text):
    check_invariants(both[0], text)


@settings(max_examples=EXAMPLES, deadline=None)
@given(texts)
def test_every_mode_equals_jieba(both, text):
    check_equal_to_jieba(both, text)


@settings(max_examples=EXAMPLES // 4, deadline=None)
@given(st.lists(texts, max_size=4))
def test_batches_equal_jieba(both, lines):
    seg, tok, pos = both
    assert_lines_match(seg, tok, lines)
    for hmm in (True, False):
        want = [[(p.word, p.flag) for p in pos.cut(line, HMM=hmm)] for line in lines]
        assert seg.tag_lines(lines, hmm) == want


# Literal strings: the corners the invariants name, checked in a fresh clone without hypothesis.
CORNERS = [
    "",
    "黛玉笑道",
    "xabcdey中",
    "中国 人\r\n\u3000！",
    "iPhone15和C++、3.14%",
    "𠀀😀丄\ud800",
]


@pytest.mark.parametrize("text", CORNERS)
def test_corners_keep_the_invariants_and_equal_jieba(both, text):
    check_invariants(both[0], text)
    check_equal_to_jieba(both, text)


def test_a_glued_run_may_skip_a_word_and_the_invariant_allows_it(jieba_force_split):
    mine, theirs = Segmenter(), new_tokenizer()
    for word in ("ab", "bcd"):
        mine.add_word(word, 5)
        theirs.add_word(word, 5)
    full = mine.cut_all("xabcdey中")
    assert full == theirs.lcut("xabcdey中", cut_all=True) == ["bcd", "xabey", "中"]
    check_full_mode(mine, "xabcdey中")
