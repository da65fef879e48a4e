"""Part-of-speech tagging, the same as ``jieba.posseg.cut(text, HMM=...)`` to the last tag.

jieba's rules, all reproduced here in Numba over ``int32`` codepoints of many lines at once:

- A line is split into *blocks*: runs of Han characters (U+4E00..U+9FD5), ASCII letters and digits
  and ``+#&._`` (posseg's pattern; unlike ``jieba.cut`` it leaves out ``%`` and ``-``). Outside
  blocks, ``\\r\\n`` and every other single character are tokens tagged ``x``.
- A block is routed by the unigram dictionary (:func:`~zhtext.lexical.route.route_span`).
  Without the HMM, consecutive one-character ASCII letter/digit tokens are glued into one token
  tagged ``eng``; any other token takes its dictionary tag, else ``x``.
- With the HMM, consecutive one-character tokens are gathered into a run. A run of one character,
  or a run that is itself a dictionary word (count above 0), gives one token per character with its
  dictionary tag. Any other run is split again: Han stretches go to posseg's HMM, the rest into
  ``[.0-9]+`` (``m``), ``[a-zA-Z0-9]+`` (``eng``) and what lies between (``x``, kept whole).
- posseg's HMM runs over joint states (B/M/E/S, tag): Viterbi in float64 with jieba's order of
  float operations, restricted at each character to the states jieba allows there (its
  ``char_state_tab`` intersected with the successors of the previous states, with the same
  fallbacks), ties going to the greatest state as Python's ``max`` over ``(score, state)`` does.

The HMM tables ship inside jieba (``jieba/posseg/*.py``); they are turned into numpy arrays once
and cached beside the dictionary cache (first build ~0.3 s, then one ``np.load``, see
:func:`hmm_tables`).
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import math
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from numba import njit

from zhtext.errors import ZhtextError
from zhtext.io.writing import atomic_path
from zhtext.lexical.chars import (
    ALNUM,
    CHAR_CLASS,
    HAN,
    HAN_FIRST,
    HAN_LAST,
    JOINER,
    join_lines,
)
from zhtext.lexical.route import route_scratch, route_span
from zhtext.lexical.segment import _digest, cache_dir
from zhtext.lexical.trie import trie_find, trie_word

if TYPE_CHECKING:
    from zhtext.lexical.segment import Segmenter

_MIN_FLOAT = -3.14e100  # jieba's score for a character a state never emitted
_TABLES = ("char_state_tab", "prob_start", "prob_trans", "prob_emit")
_HMM_CACHE_VERSION = 2
_CR, _LF, _DOT, _PERCENT, _HYPHEN = 13, 10, 46, 37, 45
_B, _M, _E, _S = 0, 1, 2, 3  # "BMES".index(state[0])


class HMMTables(NamedTuple):
    """posseg's HMM as the arrays the kernel takes (the tag names travel beside them).

    States are jieba's (BMES, tag) pairs in sorted order, which is jieba's tie-break order; rows
    are the Han characters the tables know, plus a last row for all others."""

    start: np.ndarray  # float64[S]
    trans: np.ndarray  # float64[S, S], -inf where jieba has no transition
    succ_ptr: np.ndarray  # int32[S + 1]: successors of state x are succ[succ_ptr[x]:succ_ptr[x+1]]
    succ: np.ndarray  # int32, sorted within each state
    emit: np.ndarray  # float64[R + 1, S], _MIN_FLOAT where jieba has no emission
    char_row: np.ndarray  # int32[HAN_LAST - HAN_FIRST + 1]: row of each Han character (R: none)
    allow_ptr: np.ndarray  # int32[R + 2]: allowed states of a row, sorted (char_state_tab)
    allow: np.ndarray  # int32
    known: np.ndarray  # uint8[R + 1]: 1 when char_state_tab has the character (else all states)
    bmes: np.ndarray  # int8[S]
    state_tag: np.ndarray  # int32[S]: index into the tag names


# ----------------------------------------------------------------------------------------------
# The HMM tables


def _jieba_posseg_dir() -> Path:
    import jieba

    return Path(jieba.__file__).parent / "posseg"


def _read_table(path: Path) -> dict:
    """The ``P`` of one of jieba's table modules, run on its own (jieba.posseg's ``__init__``
    would also parse the whole dictionary)."""
    spec = importlib.util.spec_from_file_location(f"_zhtext_posseg_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.P


def _build_tables(folder: Path) -> tuple[HMMTables, tuple[str, ...]]:
    char_state, start_p, trans_p, emit_p = (_read_table(folder / f"{n}.py") for n in _TABLES)
    states = sorted(trans_p)  # jieba's max over (score, state) tuples: ties go to the greatest
    sid = {s: i for i, s in enumerate(states)}
    n_states = len(states)
    start = np.array([start_p[s] for s in states], dtype=np.float64)
    trans = np.full((n_states, n_states), -np.inf)
    succ_lists = []
    for x in states:
        targets = sorted(sid[y] for y in trans_p[x])
        for y, value in trans_p[x].items():
            trans[sid[x], sid[y]] = value
        succ_lists.append(targets)
    chars = sorted(
        c
        for c in set(char_state).union(*(emit_p[s] for s in states))
        if HAN_FIRST <= ord(c) <= HAN_LAST  # only Han stretches reach the HMM
    )
    row = {c: r for r, c in enumerate(chars)}
    emit = np.full((len(chars) + 1, n_states), _MIN_FLOAT)
    for s in states:
        for c, value in emit_p[s].items():
            if c in row:
                emit[row[c], sid[s]] = value
    char_row = np.full(HAN_LAST - HAN_FIRST + 1, len(chars), dtype=np.int32)
    char_row[[ord(c) - HAN_FIRST for c in chars]] = np.arange(len(chars), dtype=np.int32)
    allowed = [sorted(sid[s] for s in char_state.get(c, ())) for c in chars] + [[]]
    known = np.array([c in char_state for c in chars] + [False], dtype=np.uint8)
    tag_names = tuple(sorted({tag for _, tag in states}))
    tables = HMMTables(
        start=start,
        trans=trans,
        succ_ptr=_csr_ptr(succ_lists),
        succ=np.array([y for ys in succ_lists for y in ys], dtype=np.int32),
        emit=emit,
        char_row=char_row,
        allow_ptr=_csr_ptr(allowed),
        allow=np.array([y for ys in allowed for y in ys], dtype=np.int32),
        known=known,
        bmes=np.array(["BMES".index(s[0]) for s in states], dtype=np.int8),
        state_tag=np.array([tag_names.index(s[1]) for s in states], dtype=np.int32),
    )
    return tables, tag_names


def _csr_ptr(lists: list[list[int]]) -> np.ndarray:
    ptr = np.zeros(len(lists) + 1, dtype=np.int32)
    np.cumsum([len(x) for x in lists], out=ptr[1:])
    return ptr


def _tables_cache_file(folder: Path) -> Path:
    """``posseg-<folder>-<state>.npz``: renamed when jieba's table files change."""
    state = [_HMM_CACHE_VERSION]
    for name in _TABLES:
        stat = (folder / f"{name}.py").stat()
        state += [stat.st_size, stat.st_mtime_ns]
    where = _digest(str(folder.resolve()))
    return cache_dir() / f"posseg-{where}-{_digest('|'.join(map(str, state)))}.npz"


def _save_tables(file: Path, tables: HMMTables, tag_names: tuple[str, ...]) -> None:
    # emit is 96 % empty: stored as its finite entries (1.5 MB instead of 18 MB)
    rows, cols = np.nonzero(tables.emit != _MIN_FLOAT)
    arrays = tables._replace(emit=np.array(tables.emit.shape))._asdict()
    file.parent.mkdir(parents=True, exist_ok=True)
    for stale in file.parent.glob(file.name.rsplit("-", 1)[0] + "-*.npz"):
        stale.unlink(missing_ok=True)  # the tables of an older jieba or an older format
    with atomic_path(file) as tmp:
        np.savez(
            tmp, **arrays, emit_rows=rows.astype(np.int32), emit_cols=cols.astype(np.int16),
            emit_values=tables.emit[rows, cols], tag_names=np.array(tag_names, dtype=str),
        )  # fmt: skip


def _load_tables(file: Path) -> tuple[HMMTables, tuple[str, ...]]:
    with np.load(file) as z:
        emit = np.full(tuple(z["emit"]), _MIN_FLOAT)
        emit[z["emit_rows"], z["emit_cols"]] = z["emit_values"]
        tables = HMMTables(**{k: z[k] for k in HMMTables._fields if k != "emit"}, emit=emit)
        return tables, tuple(z["tag_names"].tolist())


@functools.cache
def hmm_tables() -> tuple[HMMTables, tuple[str, ...]]:
    """posseg's HMM from the installed jieba, as arrays: built once (~0.5 s from jieba's modules),
    then cached under :func:`~zhtext.lexical.segment.cache_dir` (~0.02 s to load) and kept.
    Returns the arrays and the HMM's tag names (``state_tag`` indexes them)."""
    folder = _jieba_posseg_dir()
    file = _tables_cache_file(folder)
    if file.is_file():
        try:
            return _load_tables(file)
        except (OSError, ValueError, KeyError, IndexError, EOFError):
            pass  # a damaged cache is rebuilt
    tables, tag_names = _build_tables(folder)
    try:
        _save_tables(file, tables, tag_names)
    except (OSError, ZhtextError):
        pass  # a read-only cache folder only costs speed
    return tables, tag_names


# ----------------------------------------------------------------------------------------------
# Kernels


@njit(cache=True, nogil=True, inline="always")
def _put(out, n, a, b, tag):
    out[n, 0] = a
    out[n, 1] = b
    out[n, 2] = tag
    return n + 1


@njit(cache=True, nogil=True, inline="always")
def _in_block(classes, c):
    cls = classes[c]
    return cls == HAN or cls == ALNUM or (cls == JOINER and c != _PERCENT and c != _HYPHEN)


@njit(cache=True, nogil=True, inline="always")
def _char_tag(root, word, word_tag, c, untagged):
    """The tag of the one-character word ``c`` (dictionary or user), else ``untagged``."""
    node = root[c]
    if node >= 0 and word[node] >= 0:
        return word_tag[word[node]]
    return untagged


@njit(cache=True, nogil=True)
def _viterbi(codes, a, b, h, v0, v1, act0, act1, mark, back, path):
    """posseg's Viterbi over the Han characters ``codes[a:b]``: the best state of each into
    ``path[:b - a]``. ``h`` is :class:`HMMTables` less its names; the rest is scratch."""
    n_states = h.start.shape[0]
    row = h.char_row[codes[a] - HAN_FIRST]
    n0 = 0
    if h.known[row]:
        for p in range(h.allow_ptr[row], h.allow_ptr[row + 1]):
            act0[n0] = h.allow[p]
            n0 += 1
    else:
        for y in range(n_states):
            act0[n0] = y
            n0 += 1
    for j in range(n0):
        y = act0[j]
        v0[y] = h.start[y] + h.emit[row, y]
    for t in range(1, b - a):
        row = h.char_row[codes[a + t] - HAN_FIRST]
        # previous states that have successors
        n_prev = 0
        for j in range(n0):
            x = act0[j]
            if h.succ_ptr[x + 1] > h.succ_ptr[x]:
                act0[n_prev] = x
                n_prev += 1
        # the character's own states that some previous state leads to (jieba's set
        # intersection), tested through the transitions: a state's successors can be hundreds
        n1 = 0
        if h.known[row]:
            for p in range(h.allow_ptr[row], h.allow_ptr[row + 1]):
                y = h.allow[p]
                for q in range(n_prev):
                    if h.trans[act0[q], y] > -np.inf:
                        act1[n1] = y
                        n1 += 1
                        break
        if n1 == 0:  # unreachable (or unknown) character: every successor, in state order
            stamp = mark[n_states] + 1
            mark[n_states] = stamp
            for q in range(n_prev):
                x = act0[q]
                for p in range(h.succ_ptr[x], h.succ_ptr[x + 1]):
                    mark[h.succ[p]] = stamp
            for y in range(n_states):
                if mark[y] == stamp:
                    act1[n1] = y
                    n1 += 1
        if n1 == 0:  # no successor at all (jieba's last fallback)
            for y in range(n_states):
                act1[n1] = y
                n1 += 1
        for j in range(n1):
            y = act1[j]
            e = h.emit[row, y]
            best = -np.inf
            arg = act0[0]
            for q in range(n_prev):  # ascending, >=: the greatest state wins a tie
                x = act0[q]
                s = v0[x] + h.trans[x, y] + e
                if s >= best:
                    best = s
                    arg = x
            v1[y] = best
            back[t, y] = arg
        v0, v1 = v1, v0
        act0, act1 = act1, act0
        n0 = n1
    best = -np.inf
    state = act0[0]
    for j in range(n0):
        y = act0[j]
        if v0[y] >= best:
            best = v0[y]
            state = y
    for t in range(b - a - 1, -1, -1):
        path[t] = state
        state = back[t, state]


@njit(cache=True, nogil=True)
def _hmm_words(a, b, h, path, tag_base, out, n):
    """Tokens from the states of ``[a, b)``, as jieba.posseg's ``__cut`` reads them."""
    begin = 0
    nexti = 0
    for t in range(b - a):
        kind = h.bmes[path[t]]
        if kind == _B:
            begin = t
        elif kind == _E:
            n = _put(out, n, a + begin, a + t + 1, tag_base + h.state_tag[path[t]])
            nexti = t + 1
        elif kind == _S:
            n = _put(out, n, a + t, a + t + 1, tag_base + h.state_tag[path[t]])
            nexti = t + 1
    if nexti < b - a:
        n = _put(out, n, a + nexti, b, tag_base + h.state_tag[path[nexti]])
    return n


@njit(cache=True, nogil=True)
def _split_other(codes, a, b, classes, tags, out, n):
    """A stretch without Han characters: ``[.0-9]+`` is ``m``, ``[a-zA-Z0-9]+`` ``eng``, and each
    run of anything else one ``x`` token (jieba's ``re_skip_detail.split``)."""
    x_tag, m_tag, eng_tag = tags[0], tags[1], tags[2]
    i = a
    while i < b:
        c = codes[i]
        j = i + 1
        if c == _DOT or 48 <= c <= 57:
            while j < b and (codes[j] == _DOT or 48 <= codes[j] <= 57):
                j += 1
            n = _put(out, n, i, j, m_tag)
        elif classes[c] == ALNUM:
            while j < b and classes[codes[j]] == ALNUM:
                j += 1
            n = _put(out, n, i, j, eng_tag)
        else:
            while j < b and codes[j] != _DOT and classes[codes[j]] != ALNUM:
                j += 1
            n = _put(out, n, i, j, x_tag)
        i = j
    return n


@njit(cache=True, nogil=True)
def _posseg_kernel(
    codes, offsets, classes, trie, shift, floor, word_tag, tags, hmm, h, out, line_tok
):
    """Tokens ``(start, end, tag)`` of every line into ``out``; ``line_tok[k]``: line k's first.

    ``trie``: root, table, bloom, word, weight. ``tags``: the codes of x, m, eng and the first HMM
    tag (HMM tag t is ``tags[3] + t``). Returns the number of tokens.
    """
    root, table, bloom, word, weight = trie
    x_tag, eng_tag, tag_base = tags[0], tags[2], tags[3]
    n_states = h.start.shape[0]
    score, step, ids = route_scratch(offsets)
    v0 = np.empty(n_states, dtype=np.float64)
    v1 = np.empty(n_states, dtype=np.float64)
    act0 = np.empty(n_states, dtype=np.int32)
    act1 = np.empty(n_states, dtype=np.int32)
    mark = np.zeros(n_states + 1, dtype=np.int64)  # the last slot holds the current stamp
    back = np.empty((64, n_states), dtype=np.uint8)  # grows with the longest Han stretch
    path = np.empty(64, dtype=np.int32)
    n = 0
    line_tok[0] = 0
    for k in range(offsets.shape[0] - 1):
        i, end = offsets[k], offsets[k + 1]
        while i < end:
            c = codes[i]
            if not _in_block(classes, c):
                j = i + 2 if c == _CR and i + 1 < end and codes[i + 1] == _LF else i + 1
                n = _put(out, n, i, j, x_tag)
                i = j
                continue
            blk = i
            while i < end and _in_block(classes, codes[i]):
                i += 1
            route_span(
                codes, blk, i, root, table, bloom, word, weight, shift, floor, score, step, ids
            )
            x = blk
            run = -1  # start of the pending run of one-character tokens
            while True:
                y = x + step[x - blk] if x < i else i
                single = x < i and y == x + 1
                if hmm and single:
                    if run < 0:
                        run = x
                    x = y
                    continue
                if not hmm and single and classes[codes[x]] == ALNUM:
                    if run < 0:
                        run = x
                    x = y
                    continue
                if run >= 0 and not hmm:  # glued ASCII letters and digits
                    n = _put(out, n, run, x, eng_tag)
                elif run >= 0 and (
                    x - run == 1 or trie_word(root, table, bloom, word, weight, codes, run, x) >= 0
                ):
                    for p in range(run, x):
                        n = _put(out, n, p, p + 1, _char_tag(root, word, word_tag, codes[p], x_tag))
                elif run >= 0:  # not a word: HMM for Han stretches, patterns for the rest
                    p = run
                    while p < x:
                        q = p + 1
                        han = classes[codes[p]] == HAN
                        while q < x and (classes[codes[q]] == HAN) == han:
                            q += 1
                        if han:
                            if q - p > path.shape[0]:
                                size = max(q - p, 2 * path.shape[0])
                                back = np.empty((size, n_states), dtype=np.uint8)
                                path = np.empty(size, dtype=np.int32)
                            _viterbi(codes, p, q, h, v0, v1, act0, act1, mark, back, path)
                            n = _hmm_words(p, q, h, path, tag_base, out, n)
                        else:
                            n = _split_other(codes, p, q, classes, tags, out, n)
                        p = q
                run = -1
                if x >= i:
                    break
                if y == x + 1:
                    t = _char_tag(root, word, word_tag, codes[x], x_tag)
                else:
                    t = word_tag[ids[x - blk]]
                n = _put(out, n, x, y, t)
                x = y
        line_tok[k + 1] = n
    return n


# ----------------------------------------------------------------------------------------------
# Tags by word id


class _Tags(NamedTuple):
    names: list[str]  # tag code -> tag
    word_tag: np.ndarray  # int32 by word id -> tag code
    codes: np.ndarray  # int32[4]: x, m, eng, first HMM tag
    key: tuple  # what they were built from


_by_segmenter: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _word_tags(seg: Segmenter, hmm_names: tuple[str, ...]) -> _Tags:
    """Tag codes for the segmenter's words: the dictionary's tags, user tags over them, else x.

    Built again only when words or user tags changed since the last call.
    """
    n_words = len(seg._counts)
    key = (n_words, id(seg._dict_tags), tuple(seg.tags.items()))
    cached = _by_segmenter.get(seg)
    if cached is not None and cached.key == key:
        return cached
    names = list(hmm_names)
    for extra in ("x", "m", "eng"):
        if extra not in names:
            names.append(extra)
    index = {name: i for i, name in enumerate(names)}

    def code(tag: str) -> int:
        if tag not in index:
            index[tag] = len(names)
            names.append(tag)
        return index[tag]

    dict_ids, dict_names = seg._dict_tags
    remap = np.array([code(t) for t in dict_names] + [index["x"]], dtype=np.int32)
    word_tag = np.full(n_words, index["x"], dtype=np.int32)
    word_tag[: dict_ids.shape[0]] = remap[dict_ids]  # -1 (no tag) picks the last entry: x
    for w, tag in seg.tags.items():
        node = trie_find(seg._trie, w)
        if node > 0 and seg._trie.word[node] >= 0:
            word_tag[seg._trie.word[node]] = code(tag)
    codes = np.array([index["x"], index["m"], index["eng"], 0], dtype=np.int32)
    tags = _Tags(names, word_tag, codes, key)
    _by_segmenter[seg] = tags
    return tags


# ----------------------------------------------------------------------------------------------
# Entry point


def tag_lines(
    seg: Segmenter, lines: Sequence[str], hmm: bool = True
) -> list[list[tuple[str, str]]]:
    """``[(word, tag), ...]`` for each line, as ``jieba.posseg.cut(line, HMM=hmm)`` gives them,
    with ``seg``'s dictionary, user words and tags; all lines go through the kernel in one call."""
    if seg.total <= 0:
        raise ZhtextError("the dictionary is empty (its counts sum to 0)")
    lines = list(lines)
    h, hmm_names = hmm_tables()
    tags = _word_tags(seg, hmm_names)
    codes, offsets = join_lines(lines)
    log_total = math.log(seg.total)
    out = np.empty((codes.shape[0], 3), dtype=np.int64)
    line_tok = np.empty(len(lines) + 1, dtype=np.int64)
    n = _posseg_kernel(
        codes, offsets, CHAR_CLASS, seg._trie[:5], log_total, math.log(1) - log_total,
        tags.word_tag, tags.codes, bool(hmm), h, out, line_tok,
    )  # fmt: skip
    text = lines[0] if len(lines) == 1 else "".join(lines)
    words = seg._span_words(text, codes, out, n)
    pairs = list(zip(words, map(tags.names.__getitem__, out[:n, 2].tolist())))
    bounds = line_tok.tolist()
    return [pairs[a:b] for a, b in itertools.pairwise(bounds)]
