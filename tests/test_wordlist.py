"""The list API's word strings (``zhtext.lexical.wordlist``): interned once, never wrong.

``Segmenter.cut`` builds its lists from a table of strings filled as words are met, and its one-line
kernel writes into a per-thread buffer. These tests pin the ways that could go wrong: a word's first
and later calls, words added after the table was sized, lines longer than the buffer, characters
outside the BMP and lone surrogates, str subclasses, and threads sharing one segmenter.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from zhtext.lexical import wordlist
from zhtext.lexical.lexicon import Lexicon
from zhtext.lexical.segment import Segmenter
from zhtext.lexical.wordlist import BASE, CHARS, EMPTY, EXTRA, SCRATCH, WordTable

LINES = [
    "我来到北京清华大学",
    "黛玉笑道：“你又来了。”",
    "他来到了网易杭研大厦，iPhone6s 和 C++ 的价格是 3.5 元",
    "",
    " ",
    "𠀀𠀁北京😀大学\U0010ffff",
    "北京\ud800大学",  # a lone surrogate (what surrogateescape leaves in text)
    "\r\n北京\r\n",
]


def jieba_words(line: str, hmm: bool) -> list[str]:
    import jieba

    jieba.setLogLevel(60)
    return jieba.lcut(line, HMM=hmm)


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    return Segmenter()


@pytest.mark.parametrize("hmm", [True, False])
def test_first_and_later_calls_agree_with_jieba(hmm):
    seg = Segmenter()
    for line in LINES:
        first = seg.cut(line, hmm=hmm)  # dictionary words are made here, then come from the table
        assert first == jieba_words(line, hmm)
        assert seg.cut(line, hmm=hmm) == first
        assert seg.cut_lines([line, line], hmm=hmm) == [first, first]
        assert [w for w, _, _ in seg.tokenize(line, hmm=hmm)] == first


def test_table_strings_are_the_words_they_stand_for(seg):
    for line in LINES:
        seg.cut(line)
    table = seg._strings
    assert table.strings[EMPTY] == ""
    assert all(table.strings[c] == chr(c) for c in (0, 0x4E00, 0xD800, CHARS - 1))
    learned = np.flatnonzero(table.known)
    assert learned.size > 0
    for w in learned.tolist():
        word = table.strings[BASE + w]
        node = seg._trie.word.tolist().index(w)  # the trie node whose word id is w
        assert seg._count(word, -1) == seg._counts[w] and int(seg._trie.word[node]) == w


def test_words_added_after_the_table_was_sized():
    seg = Segmenter(Lexicon({"北京": 50, "大学": 40, "我": 30, "来到": 20}))
    seg.cut("我来到北京")
    room = seg._strings.known.shape[0]
    words = [f"新{chr(0x4E00 + k)}{chr(0x5E00 + k)}" for k in range(2 * room + 10)]
    seg.add_word(words[0], 1000)  # its id is past the table, which grows on the next call
    assert seg.cut(words[0] + "北京") == [words[0], "北京"]
    for word in words[1:]:  # enough to regrow it by more than a quarter
        seg.add_word(word, 1000)
    assert seg.cut(words[-1] + words[0]) == [words[-1], words[0]]
    assert seg.cut(words[-1] + words[0]) == [words[-1], words[0]]  # now from the table
    assert seg._strings.known.shape[0] >= len(seg._counts)
    seg.del_word(words[0])
    assert words[0] not in seg.cut(words[0] + "北京", hmm=False)


def novel_like_lines(n: int) -> list[str]:
    """Lines full of words jieba's dictionary lacks (names the HMM finds), each twice."""
    rng = np.random.default_rng(0)
    names = ["黛玉", "宝玉", "袭人", "晴雯", "贾琏", "凤姐", "鸳鸯", "麝月", "紫鹃", "茗烟"]
    verbs = ["笑道", "听了", "忙问", "便说", "叹道"]
    lines = ["".join(f"{names[i]}{verbs[j]}：“{names[k]}来了。”" for i, j, k in
                     rng.integers(0, [len(names), len(verbs), len(names)], size=(4, 3)))
             for _ in range(n)]
    return lines + lines


def test_words_outside_the_dictionary_get_slots_once(monkeypatch):
    """The HMM's words are remembered in the table's own trie: later calls take them from the
    table (the very same str objects), the same lines never add them twice, even when that trie
    grew meanwhile (its SegStates are made again), and past the cap words are sliced as before."""
    codes = [f"编号A{k}z和b{k}的" for k in range(400)]  # ASCII runs: enough to grow the trie
    lines = novel_like_lines(40) + LINES + codes + codes
    seg = Segmenter()
    first = [seg.cut(line) for line in lines]
    assert first == [jieba_words(line, True) for line in lines]
    remembered = seg._strings._extras
    assert remembered > 10
    assert seg._strings.extra.size[0] > 1024  # it grew from its first arrays: states were remade
    again = [seg.cut(line) for line in lines]
    assert again == first and seg._strings._extras == remembered
    assert seg.cut_lines(lines) == first and seg._strings._extras == remembered
    made = {w for words in first for w in words}
    slots = {seg._strings.strings[EXTRA + k] for k in range(remembered)}
    assert slots <= made and len(slots) == remembered  # each a word met, each once
    table = {id(seg._strings.strings[EXTRA + k]) for k in range(remembered)}
    assert all(id(w) in table for words in again for w in words if w in slots)

    monkeypatch.setattr(wordlist, "EXTRA_WORDS", 3)
    capped = Segmenter()
    assert [capped.cut(line) for line in lines] == first
    assert capped._strings._extras == 3
    assert [capped.cut(line) for line in lines] == first


def test_a_line_longer_than_the_buffer(seg):
    base = "".join(LINES[:3])
    line = base * (SCRATCH.buf.shape[0] // len(base) + 1)  # the kernel asks for more room, once
    for hmm in (True, False):
        assert seg.cut(line, hmm=hmm) == jieba_words(line, hmm)
    tokens = seg.tokenize(line, mode="search")
    assert all(line[a:b] == w for w, a, b in tokens)


def test_str_subclass_and_modes(seg):
    class Text(str):
        pass

    line = Text("我来到北京清华大学")
    assert seg.cut(line) == seg.cut(str(line))
    assert seg.cut_for_search(line) == seg.cut_for_search(str(line))
    assert seg.cut_all("C++ 和 c# 北京") == seg.cut_lines(["C++ 和 c# 北京"], mode="all")[0]


def test_threads_sharing_one_segmenter_get_their_own_answers():
    seg = Segmenter()
    lines = [line * k for line in LINES for k in (1, 3, 60)]
    expected = [seg.cut(line) for line in lines]
    seg = Segmenter()  # a fresh table: the threads fill it while they race
    failures = []

    def work(offset: int) -> None:
        for r in range(20):
            for i in range(len(lines)):
                j = (i + offset + r) % len(lines)
                if seg.cut(lines[j]) != expected[j]:
                    failures.append(j)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_word_table_keeps_what_it_made_when_it_grows():
    table = WordTable()
    table.fit(10)
    table.strings[BASE + 3] = "北京"
    table.known[3] = 1
    table.fit(1000)
    assert table.known.shape[0] >= 1000 and table.known[3] == 1
    assert table.strings[BASE + 3] == "北京" and table.strings[0x4E00] == "一"


def test_remembered_words_remake_states_only_when_the_trie_moves():
    """Kernel states are made again only when the words' trie moved to larger arrays: a word added
    in place must not cost a new state (a cold pass over a novel added one almost every line)."""
    changes: list[int] = []
    table = WordTable(on_change=lambda: changes.append(len(changes)))
    table.fit(10)
    first = table.extra
    table._remember(["黛玉"])  # the first arrays have room for it
    assert table.extra is first and changes == []
    table._remember([f"词{chr(0x4E00 + k)}" for k in range(3000)])  # more than they hold
    assert table.extra is not first and len(changes) == 1
    moved = table.extra
    table._remember(["袭人"])
    assert table.extra is moved and len(changes) == 1


def test_tags_and_cuts_share_the_table_through_growth():
    small = {"北京": 50, "大学": 40, "我": 30, "来到": 20}
    seg = Segmenter(Lexicon(small))
    words = [f"新{chr(0x4E00 + k)}{chr(0x5E00 + k)}" for k in range(12)]
    for k, word in enumerate(words):
        line = "我来到北京" + word + "大学"
        # the tag path grows the table first
        assert [w for w, _ in seg.tag(line, hmm=False)] == seg.cut(line, hmm=False)
        seg.add_word(word, 1000, "nz")
        fresh = Segmenter(Lexicon(small))
        for w in words[: k + 1]:
            fresh.add_word(w, 1000, "nz")
        assert seg.tag(line) == fresh.tag(line) and seg.cut(line) == fresh.cut(line)
        assert (word, "nz") in seg.tag(line)


def test_new_words_reach_the_kernels_trie_in_batches(monkeypatch):
    """Words outside the dictionary get their slots at once but go into the kernels' trie a batch
    at a time (one insertion per line cost a fifth of a first pass over the novels); until then a
    word met again is served from its slot, the same object, and being met often puts it in."""
    calls: list[int] = []
    real = wordlist.trie_insert

    def counted(*args):
        calls.append(len(args[1]))
        return real(*args)

    monkeypatch.setattr(wordlist, "trie_insert", counted)
    seg = Segmenter()
    lines = [f"编号A{k}z和b{k}的" for k in range(600)]  # two new words a line
    assert [seg.cut(line) for line in lines] == [jieba_words(line, True) for line in lines]
    assert 1 <= len(calls) <= 2 * len(lines) // wordlist.PENDING + 1  # not one a line
    waiting = dict(seg._strings._pending)
    last = seg.cut(lines[-1])
    assert [w for w in last if w in waiting]  # the last line's words still wait
    for w in last:
        if w in waiting:
            assert w is seg._strings.strings[waiting[w]]
    again = [seg.cut(lines[-1]) for _ in range(wordlist.PENDING_HITS)]
    assert all(words == last for words in again)
    assert seg._strings._pending == {}  # met often enough: in the trie now
    line, _, state = seg._list_kernels(True)
    _, n_fix, _ = line(lines[-1], state, 0, False, wordlist.scratch(64))
    assert n_fix == 0  # the kernel finds every word of the line itself
