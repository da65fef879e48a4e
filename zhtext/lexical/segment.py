"""jieba's segmentation, token for token: the maximum-probability route, the HMM, search and full modes.

Every dictionary word starting at position i is an edge i -> i + len(word) weighing
``log(count) - log(total)``; a position where no word starts gets a single-character edge with the
floor weight ``log(1) - log(total)``. The best route is computed right to left,
``route[i] = max(w + route[j])``, and on equal scores the longer edge wins, as jieba's tuple ``max``
does. Weights are combined in jieba's order of float operations, so routes agree to the last bit.

Around the route sit jieba's text rules: only runs of Han characters, ASCII letters/digits and
``+#&._%-`` (a *block*) are routed; outside blocks ``\\r\\n`` and every other character are
tokens of their own. Inside a block, with the HMM off, consecutive one-character ASCII letter/digit
tokens are glued back into one token; with the HMM on (jieba's default), a run of one-character
tokens that is not itself a dictionary word goes to :mod:`zhtext.lexical.hmm` instead. Search mode
adds the dictionary words of 2 and 3 characters inside longer tokens; full mode lists every
dictionary word. Default-mode tokens always concatenate back to the input.

All of it runs in Numba over ``int32`` codepoints of many lines at once; Python strings are made
only at the edge: the list API takes each word's string from a table filled as words are first met
(:mod:`zhtext.lexical.wordlist`), the joined-string path decodes once per batch
(:meth:`Segmenter.segment_lines`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numba import njit
from numba.cpython.unicode import _get_code_point  # a str's codepoints, read in place

from zhtext.errors import ZhtextError
from zhtext.io.reading import batched_lines, iter_numbered_lines, open_raw
from zhtext.io.writing import atomic_output, atomic_path, write_utf8
from zhtext.lexical.chars import (
    ALNUM,
    CHAR_CLASS,
    HAN,
    JOINER,
    SPACE,
    free_char,
    from_codes,
    join_lines,
    to_codes,
)
from zhtext.lexical.choices import MODES
from zhtext.lexical.hmm import (
    HmmTables,
    finalseg_files,
    hmm_cut,
    no_tables,
    tables_from_jieba,
)
from zhtext.lexical.jit import direct
from zhtext.lexical.lexicon import Lexicon, jieba_dict_path
from zhtext.lexical.parallel import (
    check_jobs,
    line_blocks,
    ordered_map,
    strip_line_ends,
    text_lines,
)
from zhtext.lexical.route import max_span, route_span
from zhtext.lexical.trie import (
    Trie,
    build_trie,
    trie_child,
    trie_find,
    trie_insert,
    trie_word,
)
from zhtext.lexical.utf8 import Utf8Error, decode_utf8, encode_utf8
from zhtext.lexical.wordlist import (
    LOOKUP,
    NO_IDS,
    SCRATCH,
    WordTable,
    fill_slots,
    make_state,
    scratch,
    span_slots,
)

_CR, _LF = 13, 10
_CACHE_VERSION = 5  # 4: the dictionary's POS tags; 5: nodes numbered by depth
CACHE_MIN_BYTES = 1 << 20  # smaller dictionaries are parsed every time
BATCH_CHARS = 1 << 20  # characters per kernel call when streaming: bounded memory, cheap calls
BLOCK_CHARS = 1 << 18  # characters per block of segment_chunks: 10-20 MB of arrays while worked on
_MODE_CODE = {mode: code for code, mode in enumerate(MODES)}  # as the kernels take them

# jieba's user dictionary line: word, then optionally " count" and " tag" (lowercase letters).
_USER_LINE = re.compile(r"^(.+?)(?: ([0-9]+))?(?: ([a-z]+))?$")
# bytes.strip() in jieba strips ASCII whitespace only (not U+3000 and friends).
_ASCII_SPACE = " \t\n\r\x0b\x0c"
# Inside a line jieba keeps these in the word: the mark of a tab-separated (or CR-only) file.
_CONTROL_SPACE = {"\t": "a tab", "\r": "a carriage return", "\x0b": "a vertical tab",
                  "\x0c": "a form feed"}  # fmt: skip
# What was meant as a count when jieba reads it as part of the word: 3.5, -3, 1e5, 1,000, ３.
_NUMBER_LIKE = re.compile(r"[-+]?[\d.,]*\d[\d.,]*(?:[eE][-+]?\d+)?")
# A count, then what was meant as a tag but is not lowercase a-z: "NR", "n1" (not "Pro").
_AFTER_COUNT = re.compile(r" [0-9]+ ([A-Z][A-Z0-9_]*|[a-z]+[0-9_][a-z0-9_]*)")


def user_dict_entry(line: str) -> tuple[str, str | None, str | None]:
    """``(word, count, tag)`` of one user dictionary line as ``jieba.load_userdict`` reads it
    (``word`` is empty for a blank line), or :class:`ZhtextError` when jieba would silently read a
    mistake into the word, one that no mode could then cut out: a tab (or CR, VT, FF) inside the
    line, a word that is only whitespace or starts or ends with it (two spaces before the count),
    a last field that looks like a count but is not digits 0-9 after one space (``3.5``, ``-3``,
    ``３``), a tag in capitals or with digits after a count (``NR``, ``n1``). Other spaces inside a
    word are kept, as jieba keeps them (``New York``, ``iPhone 15 Pro``).
    """
    line = line.strip(_ASCII_SPACE).lstrip("\ufeff")
    if not line:
        return "", None, None
    word, count, tag = _USER_LINE.match(line).groups()  # type: ignore[union-attr]
    shown = repr(word if len(word) <= 40 else word[:40] + "...")
    for char, name in _CONTROL_SPACE.items():
        if char in line:
            raise ZhtextError(
                f"{name} ({char!r}) inside the line, which jieba would make part of the word "
                f"{shown}: separate word, count and tag with one space"
            )
    if word.isspace():
        raise ZhtextError(f"the word {shown} is only whitespace")
    # Where jieba found no count, the word's last field may be the count or tag meant.
    last = word.split()[-1] if count is None and len(word.split()) > 1 else ""
    if _NUMBER_LIKE.fullmatch(last):
        raise ZhtextError(
            f"bad count {last!r}: a count is a whole number in digits 0-9 after one space "
            f"(jieba would read the word {shown})"
        )
    after = _AFTER_COUNT.search(word) if last and tag is None else None
    if after is not None and after.end() == len(word):
        raise ZhtextError(
            f"bad tag {after.group(1)!r}: a tag is lowercase letters a-z "
            f"(jieba would read the word {shown})"
        )
    if word != word.strip():
        where = "starts" if word[0].isspace() else "ends"
        raise ZhtextError(
            f"the word {shown} {where} with whitespace, so it could never be cut out: "
            "separate word, count and tag with one space"
        )
    return word, count, tag


# ----------------------------------------------------------------------------------------------
# Kernels: many lines per call, each line ``codes[offsets[k]:offsets[k+1]]``; every token of line
# ``k`` is one of ``line_tok[k]:line_tok[k+1]``.


@njit(cache=True, nogil=True)
def _in_block(cls):
    """A character of jieba's blocks: the only text that the dictionary route sees."""
    return cls == HAN or cls == ALNUM or cls == JOINER


@njit(cache=True, nogil=True)
def _route_tokens_plain(codes, b, e, step, ids, classes, tok_ends, tok_ids, n_tok):
    """jieba's ``cut(HMM=False)`` of the block ``codes[b:e]`` given its route: consecutive
    one-character ASCII letter/digit tokens are glued back into one token."""
    keep = tok_ids.shape[0] > 0
    x = b
    gluing = False  # inside a run of one-character ASCII letter/digit tokens
    while x < e:
        y = x + step[x - b]
        if y == x + 1 and classes[codes[x]] == ALNUM:
            gluing = True
        else:
            if gluing:
                if keep:
                    tok_ids[n_tok] = LOOKUP
                tok_ends[n_tok] = x
                n_tok += 1
                gluing = False
            if keep:
                tok_ids[n_tok] = ids[x - b] if y > x + 1 else LOOKUP
            tok_ends[n_tok] = y
            n_tok += 1
        x = y
    if gluing:
        if keep:
            tok_ids[n_tok] = LOOKUP
        tok_ends[n_tok] = e
        n_tok += 1
    return n_tok


@njit(cache=True, nogil=True)
def _segment_kernel(
    codes, offsets, classes, trie, shift, floor, use_hmm, hmm, force, tok_ends, tok_ids, line_tok
):
    """jieba's default mode: token ends (they tile the text) into ``tok_ends``; returns their count.

    ``trie`` = (root, table, bloom, word, weight); ``hmm`` = (start, trans, emit) tables, read only
    when ``use_hmm``; ``force[word id]`` marks the words the HMM must not produce whole. Unless
    ``tok_ids`` is empty, each token's word id goes there, as the route found it, for the words of
    more than one character (:data:`~zhtext.lexical.wordlist.LOOKUP` for the others): the list API
    then makes their strings without walking the trie again.
    """
    keep = tok_ids.shape[0] > 0
    root, table, bloom, word, weight = trie
    longest = max_span(offsets)
    score = np.empty(longest + 1, dtype=np.float64)
    step = np.empty(longest, dtype=np.int32)
    ids = np.empty(longest, dtype=np.int32)
    back = np.empty((longest if use_hmm else 0, 4), dtype=np.int8)
    states = np.empty(longest if use_hmm else 0, dtype=np.int8)
    start_p, trans_p, emit_p = hmm
    n_tok = 0
    line_tok[0] = 0
    for k in range(offsets.shape[0] - 1):
        i, end = offsets[k], offsets[k + 1]
        while i < end:
            c = codes[i]
            if _in_block(classes[c]):
                b = i
                while i < end and _in_block(classes[codes[i]]):
                    i += 1
                route_span(
                    codes,
                    b,
                    i,
                    root,
                    table,
                    bloom,
                    word,
                    weight,
                    shift,
                    floor,
                    score,
                    step,
                    ids,
                )
                if use_hmm:  # jieba's cut(HMM=True) of the block, here: a call per block cost 6x
                    x = b
                    run = -1  # start of the pending run of one-character tokens
                    while True:
                        y = x + step[x - b] if x < i else i
                        if x < i and y == x + 1:
                            if run < 0:
                                run = x
                            x = y
                            continue
                        if run >= 0:  # one character or a dictionary word: as it is; else HMM
                            first = n_tok
                            if x - run > 1 and trie_word(root, table, bloom, word, weight, codes,
                                                         run, x) < 0:
                                n_tok = hmm_cut(
                                    codes, run, x, classes, start_p, trans_p, emit_p, root, table,
                                    bloom, word, force, back, states, tok_ends, n_tok,
                                )  # fmt: skip
                            else:
                                for q in range(run + 1, x + 1):
                                    tok_ends[n_tok] = q
                                    n_tok += 1
                            if keep:
                                tok_ids[first:n_tok] = LOOKUP
                            run = -1
                        if x >= i:
                            break
                        if keep:
                            tok_ids[n_tok] = ids[x - b]  # y > x + 1: a dictionary word
                        tok_ends[n_tok] = y
                        n_tok += 1
                        x = y
                else:
                    n_tok = _route_tokens_plain(
                        codes, b, i, step, ids, classes, tok_ends, tok_ids, n_tok
                    )
            elif c == _CR and i + 1 < end and codes[i + 1] == _LF:
                i += 2
                if keep:
                    tok_ids[n_tok] = LOOKUP
                tok_ends[n_tok] = i
                n_tok += 1
            else:
                i += 1
                if keep:
                    tok_ids[n_tok] = LOOKUP
                tok_ends[n_tok] = i
                n_tok += 1
        line_tok[k + 1] = n_tok
    return n_tok


@njit(cache=True, nogil=True)
def _search_kernel(
    codes, tok_ends, tok_ids, line_tok, trie, out_start, out_end, out_ids, out_line
):
    """jieba's search mode from the default-mode tokens: before each token longer than 2 (3), its
    2-grams (3-grams) that are dictionary words. Room: 2 entries per character. Unless ``out_ids``
    is empty, the tokens' word ids go there as :func:`_segment_kernel` gives them."""
    root, table, bloom, word, weight = trie
    keep = out_ids.shape[0] > 0
    n = 0
    out_line[0] = 0
    for k in range(line_tok.shape[0] - 1):
        for t in range(line_tok[k], line_tok[k + 1]):
            a = tok_ends[t - 1] if t > 0 else 0  # tokens tile the joined text from 0
            b = tok_ends[t]
            for width in (2, 3):
                if b - a > width:
                    for i in range(a, b - width + 1):
                        w = trie_word(root, table, bloom, word, weight, codes, i, i + width)
                        if w >= 0:
                            if keep:
                                out_ids[n] = w
                            out_start[n] = i
                            out_end[n] = i + width
                            n += 1
            if keep:
                out_ids[n] = tok_ids[t]
            out_start[n] = a
            out_end[n] = b
            n += 1
        out_line[k + 1] = n
    return n


@njit(cache=True, nogil=True)
def _put(out_start, out_end, glue, n, a, b, glued):
    """Token ``[a, b)`` as entry ``n`` if there is room; the count goes on regardless, so that a
    call that ran out of room says how much it needs."""
    if n < out_start.shape[0]:
        out_start[n] = a
        out_end[n] = b
        glue[n] = glued
    return n + 1


@njit(cache=True, nogil=True)
def _full_block(
    codes, b, e, classes, trie, ends, piece_s, piece_e, out_start, out_end, glue, n
):
    """jieba's full mode over the block ``codes[b:e]``: every dictionary word, and lone characters
    where no word of 2+ characters covers them. A run of ASCII-led pieces is one token, given as
    its pieces (the later ones ``glue``-d to the first) because jieba's run may skip characters."""
    root, table, bloom, _, weight = trie
    last = b - 1  # the end (inclusive) of the last word given
    n_pieces = 0
    for k in range(b, e):
        if n_pieces > 0 and classes[codes[k]] != ALNUM:
            for t in range(n_pieces):
                n = _put(out_start, out_end, glue, n, piece_s[t], piece_e[t], t > 0)
            n_pieces = 0
        n_ends = 0
        node = root[codes[k]]
        j = k + 1
        while node >= 0:  # the words starting at k, shortest first
            if weight[node] > -np.inf:
                ends[n_ends] = j
                n_ends += 1
            if j >= e:
                break
            node = trie_child(table, bloom, node, codes[j])
            j += 1
        if n_ends == 0:
            ends[0] = k + 1
            n_ends = 1
        if n_ends == 1 and k > last:
            if classes[codes[k]] == ALNUM:
                if n_pieces > 0 and piece_e[n_pieces - 1] == k:
                    piece_e[n_pieces - 1] = ends[0]
                else:
                    piece_s[n_pieces] = k
                    piece_e[n_pieces] = ends[0]
                    n_pieces += 1
            else:
                n = _put(out_start, out_end, glue, n, k, ends[0], False)
            last = ends[0] - 1
        else:
            for t in range(n_ends):
                if ends[t] > k + 1:
                    n = _put(out_start, out_end, glue, n, k, ends[t], False)
                    last = ends[t] - 1
    for t in range(n_pieces):
        n = _put(out_start, out_end, glue, n, piece_s[t], piece_e[t], t > 0)
    return n


@njit(cache=True, nogil=True)
def _full_kernel(codes, offsets, classes, trie, out_start, out_end, glue, line_tok):
    """jieba's full mode (``cut_all=True``); returns the token count, which may exceed the room
    given (then nothing past the room was written: call again with room for that many)."""
    longest = max_span(offsets)
    ends = np.empty(longest + 1, dtype=np.int64)
    piece_s = np.empty(longest, dtype=np.int64)
    piece_e = np.empty(longest, dtype=np.int64)
    n = 0
    line_tok[0] = 0
    for k in range(offsets.shape[0] - 1):
        i, end = offsets[k], offsets[k + 1]
        while i < end:
            b = i
            if _in_block(classes[codes[i]]):
                while i < end and _in_block(classes[codes[i]]):
                    i += 1
                n = _full_block(
                    codes,
                    b,
                    i,
                    classes,
                    trie,
                    ends,
                    piece_s,
                    piece_e,
                    out_start,
                    out_end,
                    glue,
                    n,
                )
                continue
            while i < end and not _in_block(classes[codes[i]]):
                i += 1
            # jieba's re.split on whitespace: the pieces between whitespace come out even when
            # empty, and each whitespace character (or \r\n) is a token.
            run = b
            p = b
            while p < i:
                if classes[codes[p]] == SPACE:
                    n = _put(out_start, out_end, glue, n, run, p, False)
                    w = (
                        2
                        if codes[p] == _CR and p + 1 < i and codes[p + 1] == _LF
                        else 1
                    )
                    n = _put(out_start, out_end, glue, n, p, p + w, False)
                    p += w
                    run = p
                else:
                    p += 1
            n = _put(out_start, out_end, glue, n, run, i, False)
        line_tok[k + 1] = n
    return n


@njit(cache=True, nogil=True)
def _join_kernel(codes, starts, ends, glue, line_tok, sep, eol, out, out_offsets):
    """Copy each line's tokens into ``out`` with ``sep`` between them (not before a glued piece)
    and ``eol`` after the line (``out_offsets[k + 1]`` is where line k's ``eol`` starts)."""
    p = 0
    out_offsets[0] = 0
    for k in range(line_tok.shape[0] - 1):
        first = line_tok[k]
        for t in range(first, line_tok[k + 1]):
            if t > first and (glue.shape[0] == 0 or not glue[t]):
                for q in range(sep.shape[0]):
                    out[p + q] = sep[q]
                p += sep.shape[0]
            for q in range(
                starts[t], ends[t]
            ):  # plain index loops: LLVM vectorises these best
                out[p] = codes[q]
                p += 1
        out_offsets[k + 1] = p
        for q in range(eol.shape[0]):
            out[p + q] = eol[q]
        p += eol.shape[0]


@njit(cache=True, nogil=True)
def _lines_core(codes, offsets, st, mode, with_offsets):
    """The tokens of ``mode`` (0 default, 1 search, 2 full) of the lines ``codes``/``offsets`` as
    slots (:func:`~zhtext.lexical.wordlist.fill_slots`): returns ``(res, n, n_fix, line_tok)``,
    ``res`` holding the ``n`` slots, the ``n_fix`` tokens to slice and, ``with_offsets``, the
    tokens' starts and ends (``n`` each). ``n_fix`` is -1 where full mode glued pieces of a token
    (then nothing else is valid: the caller takes the general path)."""
    trie = (st.root, st.table, st.bloom, st.word, st.weight)
    size = codes.shape[0]
    line_tok = np.empty(offsets.shape[0], dtype=np.int64)
    if mode == 2:
        room = 3 * size + offsets.shape[0]
        while True:
            starts = np.empty(room, dtype=np.int64)
            ends = np.empty(room, dtype=np.int64)
            glue = np.empty(room, dtype=np.uint8)
            n = _full_kernel(codes, offsets, st.classes, trie, starts, ends, glue, line_tok)
            if n <= room:
                break
            room = n
        ids = np.empty(0, dtype=np.int32)  # none known: every token is looked up
        for t in range(n):
            if glue[t]:
                return np.empty(0, dtype=np.int64), n, -1, line_tok
    else:
        tok_ends = np.empty(size, dtype=np.int64)
        ids = np.empty(size, dtype=np.int32)
        hmm = (st.start_p, st.trans_p, st.emit_p)
        n = _segment_kernel(codes, offsets, st.classes, trie, st.shift, st.floor, st.use_hmm, hmm,
                            st.force, tok_ends, ids, line_tok)  # fmt: skip
        if mode == 1:
            starts = np.empty(2 * size, dtype=np.int64)
            ends = np.empty(2 * size, dtype=np.int64)
            out_ids = np.empty(2 * size, dtype=np.int32)
            out_line = np.empty_like(line_tok)
            n = _search_kernel(codes, tok_ends, ids, line_tok, trie, starts, ends, out_ids,
                               out_line)  # fmt: skip
            line_tok = out_line
            ids = out_ids
        else:
            ends = tok_ends
            starts = np.empty(n, dtype=np.int64)
            prev = 0
            for t in range(n):
                starts[t] = prev
                prev = tok_ends[t]
    res = np.empty((7 if with_offsets else 5) * n, dtype=np.int64)
    n_fix = fill_slots(codes, starts, ends, ids, n, st.root, st.table, st.bloom, st.word, st.known,
                       st.xroot, st.xtable, st.xbloom, st.xword, res)  # fmt: skip
    p = n + 4 * n_fix
    if with_offsets:
        res[p : p + n] = starts[:n]
        res[p + n : p + 2 * n] = ends[:n]
        p += 2 * n
    return res[:p], n, n_fix, line_tok


@njit(cache=True, nogil=True)
def _lines_kernel(codes, offsets, st, mode, with_offsets):
    """:func:`_lines_core` of many lines."""
    return _lines_core(codes, offsets, st, mode, with_offsets)


@njit(cache=True, nogil=True)
def _line_kernel(text, st, mode, with_offsets, out):
    """:func:`_lines_core` of one line, read straight from the ``str`` (no encoding to an array
    on the Python side), its ``res`` copied into ``out`` (a new array to box costs more than the
    rest of a short line's call): returns ``(n, n_fix, size of res)``, nothing copied where
    ``out`` is shorter than that."""
    size = len(text)
    codes = np.empty(size, dtype=np.int32)
    for i in range(size):
        codes[i] = _get_code_point(text, i)
    offsets = np.empty(2, dtype=np.int64)
    offsets[0] = 0
    offsets[1] = size
    res, n, n_fix, _ = _lines_core(codes, offsets, st, mode, with_offsets)
    if res.shape[0] <= out.shape[0]:
        out[: res.shape[0]] = res
    return n, n_fix, res.shape[0]


@njit(cache=True, nogil=True)
def _split_ready_kernel(codes, starts, ends, glue, sep, out):
    """Every token in order, ``sep`` between consecutive ones (none before a glued piece), into
    ``out``; returns the length. One decode and one ``str.split`` then make all the words: C-speed
    string creation instead of a Python slice per word."""
    p = 0
    for t in range(starts.shape[0]):
        if t > 0 and (glue.shape[0] == 0 or not glue[t]):
            out[p] = sep
            p += 1
        for q in range(starts[t], ends[t]):
            out[p] = codes[q]
            p += 1
    return p


# ----------------------------------------------------------------------------------------------
# Low-level entry points (word discovery uses them)


# ----------------------------------------------------------------------------------------------
# Dictionaries


def _log_counts(counts: np.ndarray) -> np.ndarray:
    """``math.log`` of each count (``-inf`` for 0), as jieba computes it.

    One ``math.log`` per distinct count: numpy's vectorised log may differ from libm's in the last
    bit, and routes must match jieba's to the bit.
    """
    if counts.size and counts.min() < 0:
        raise ZhtextError("a dictionary count is negative")
    distinct, inverse = np.unique(counts, return_inverse=True)
    logs = np.array([math.log(c) if c > 0 else -math.inf for c in distinct.tolist()])
    return logs[inverse.reshape(-1)] if counts.size else np.zeros(0)


class Dictionary(NamedTuple):
    """A loaded dictionary: word ids are the order of the words in the file (the last duplicate)."""

    trie: Trie  # weights: log-counts
    counts: np.ndarray  # int64 by word id
    total: int
    tag_ids: np.ndarray  # int32 by word id: index into tag_names, -1 for a word without a tag
    tag_names: tuple[str, ...]  # the POS tags of the file (jieba's third column)


def _from_lexicon(lexicon: Lexicon) -> Dictionary:
    """The trie of log-counts, counts and tags by word id, and the total."""
    counts = np.fromiter(lexicon.counts.values(), dtype=np.int64, count=len(lexicon))
    names = tuple(sorted(set(lexicon.tags.values())))
    index = {name: i for i, name in enumerate(names)}
    tags = lexicon.tags
    tag_ids = np.fromiter(
        (index.get(tags.get(w), -1) for w in lexicon.counts), dtype=np.int32, count=len(lexicon)
    )
    trie = build_trie(list(lexicon.counts), _log_counts(counts))
    return Dictionary(trie, counts, int(lexicon.total), tag_ids, names)


def cache_dir() -> Path:
    """Where built dictionaries are cached: ``$ZHTEXT_CACHE_DIR`` or ``~/.cache/zhtext``."""
    return Path(os.environ.get("ZHTEXT_CACHE_DIR") or Path.home() / ".cache" / "zhtext")


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _cache_file(path: Path, kind: str = "dict", also: Sequence[Path] = ()) -> Path:
    """``<kind>-<path>-<state>.npz``: one file per source path, renamed when the source (or a file
    it is built with, ``also``) changes."""
    where = str(path.resolve())
    stats = [p.stat() for p in (path, *also)]
    state = "|".join(
        [str(_CACHE_VERSION), *(f"{st.st_size}|{st.st_mtime_ns}" for st in stats)]
    )
    return cache_dir() / f"{kind}-{_digest(where)}-{_digest(state)}.npz"


def _write_cache(file: Path, **arrays: np.ndarray) -> None:
    """Write ``file`` atomically, first removing the cached older states of the same source."""
    file.parent.mkdir(parents=True, exist_ok=True)
    for stale in file.parent.glob(file.name.rsplit("-", 1)[0] + "-*.npz"):
        stale.unlink(missing_ok=True)
    with atomic_path(file) as tmp:
        np.savez(tmp, **arrays)


def _save_cache(file: Path, built: Dictionary) -> None:
    trie = built.trie
    n = trie.n_nodes
    cps = np.flatnonzero(trie.root >= 0).astype(np.int32)
    _write_cache(
        file, root_cp=cps, root_node=trie.root[cps], table=trie.table, bloom=trie.bloom,
        word=trie.word[:n], weight=trie.weight[:n], size=trie.size, counts=built.counts,
        total=np.int64(built.total), tag_ids=built.tag_ids,
        tag_names=np.array(built.tag_names, dtype=str),
    )  # fmt: skip


def _load_cache(file: Path) -> Dictionary:
    with np.load(file) as z:
        root = np.full(len(CHAR_CLASS), -1, dtype=np.int32)
        root[z["root_cp"]] = z["root_node"]
        trie = Trie(root, z["table"], z["bloom"], z["word"], z["weight"], z["size"].copy())
        names = tuple(z["tag_names"].tolist())
        return Dictionary(trie, z["counts"], int(z["total"]), z["tag_ids"], names)


def load_dictionary(path: str | os.PathLike, cache: bool = True) -> Dictionary:
    """Read a TSV or jieba-format dictionary: the trie of log-counts, counts and tags by id, total.

    Files of at least :data:`CACHE_MIN_BYTES` are cached under :func:`cache_dir`, keyed by the
    file's path, size and mtime, so the next load skips parsing (jieba's 349k-word dict.txt: ~1 s
    to parse and build, ~0.02 s from the cache). Smaller files parse fast enough not to litter it.
    """
    path = Path(path)
    if not path.is_file():
        raise ZhtextError(f"dictionary not found: {path}")
    cache = cache and path.stat().st_size >= CACHE_MIN_BYTES
    file = _cache_file(path) if cache else None
    if file is not None and file.is_file():
        try:
            return _load_cache(file)
        except (OSError, ValueError, KeyError, EOFError):
            pass  # a damaged cache is rebuilt below
    built = _from_lexicon(Lexicon.load(path))
    if file is not None:
        try:
            _save_cache(file, built)
        except (OSError, ZhtextError):
            pass  # a read-only home only costs speed
    return built


@functools.cache
def hmm_tables() -> HmmTables:
    """jieba's HMM tables as arrays, built once and cached under :func:`cache_dir` like a dictionary
    (keyed by jieba's ``finalseg/prob_*.py``): ~1 ms from the cache, ~50 ms to build (importing
    jieba's tables included)."""
    files = finalseg_files()
    try:
        file = _cache_file(files[-1], "finalseg", files[:-1])
    except OSError:
        return (
            tables_from_jieba()
        )  # a jieba without its table sources: nothing to key a cache on
    if file.is_file():
        try:
            with np.load(file) as z:
                return HmmTables(z["start"], z["trans"], z["emit"])
        except (OSError, ValueError, KeyError, EOFError):
            pass  # a damaged cache is rebuilt below
    tables = tables_from_jieba()
    try:
        _write_cache(file, **tables._asdict())
    except (OSError, ZhtextError):
        pass  # a read-only home only costs speed
    return tables


# ----------------------------------------------------------------------------------------------
# Segmenter


def _split_words(
    text: str, codes: np.ndarray, starts: np.ndarray, ends: np.ndarray, glue: np.ndarray
) -> list[str]:
    """The tokens ``text[starts[t]:ends[t]]`` as strings (glued pieces joined to the one before).

    ``text`` is the joined lines and ``codes`` its codepoints. The words come from one decode and
    one ``str.split`` on a character the text lacks: a Python slice per word costs 3x as much.
    """
    sep = free_char(text)
    if sep is None:  # the text holds every candidate separator: one slice per word
        words = [text[a:b] for a, b in zip(starts.tolist(), ends.tolist())]
        if glue.size and glue.any():
            for t in np.flatnonzero(glue)[::-1].tolist():
                words[t - 1] += words.pop(t)
        return words
    if not starts.shape[0]:
        return []
    out = np.empty(int((ends - starts).sum()) + starts.shape[0], dtype=np.int32)
    n = _split_ready_kernel(codes, starts, ends, glue, ord(sep), out)
    return from_codes(out[:n]).split(sep)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ZhtextError(f"unknown segmentation mode {mode!r}: use one of {', '.join(MODES)}")


def _check_tokenize_mode(mode: str) -> None:
    if mode not in ("default", "search"):
        raise ZhtextError(
            f"tokenize mode must be default or search, not {mode!r} (full mode's words overlap "
            "and jieba gives them no offsets)"
        )


def _per_line(items: list, line_tok: np.ndarray) -> list[list]:
    """``items`` cut into one list per line, line ``k`` holding ``line_tok[k]:line_tok[k + 1]``."""
    bounds = line_tok.tolist()
    return [items[a:b] for a, b in itertools.pairwise(bounds)]


class Segmenter:
    """jieba's segmenter over a dictionary: ``jieba.cut`` with the HMM on (default) or off, full mode
    (:meth:`cut_all`), search mode (:meth:`cut_for_search`) and :meth:`tokenize`, token for token.

    ``lexicon``: ``None`` for jieba's own ``dict.txt``, a :class:`~zhtext.lexical.lexicon.Lexicon`, or the
    path of a discovered TSV lexicon or any jieba-format dictionary. ``user_dict``: a jieba user
    dictionary (``word [count] [tag]`` lines) loaded on top, as :meth:`load_user_dict` does.
    ``hmm``: find words that are not in the dictionary with jieba's HMM, as ``jieba.cut`` does by
    default; every method takes ``hmm=`` to override it for one call. With ``hmm=False`` the output
    is the maximum-probability route alone (``jieba.cut(s, HMM=False)``).

    >>> seg = Segmenter()
    >>> seg.cut("我来到北京清华大学")
    ['我', '来到', '北京', '清华大学']
    >>> seg.cut("黛玉笑道"), seg.cut("黛玉笑道", hmm=False)
    (['黛玉笑', '道'], ['黛', '玉', '笑', '道'])
    """

    def __init__(
        self,
        lexicon: Lexicon | str | os.PathLike | None = None,
        user_dict: str | os.PathLike | None = None,
        hmm: bool = True,
    ) -> None:
        if isinstance(lexicon, Lexicon):
            loaded = _from_lexicon(lexicon)
        else:
            loaded = load_dictionary(jieba_dict_path() if lexicon is None else lexicon)
        self._trie, counts, self.total = loaded.trie, loaded.counts, loaded.total
        self.hmm = hmm
        self._counts: list[int] = counts.tolist()  # count by word id
        # POS tags: the dictionary's by word id (posseg.py reads them), user words' in self.tags
        self._dict_tags = (loaded.tag_ids, loaded.tag_names)
        self.tags: dict[str, str] = {}
        # Words once given a count of 0: the HMM never produces them whole (jieba keeps this set
        # global, shared by all its tokenizers; here each Segmenter has its own).
        self.force_split: set[str] = set()
        self._force_ids: np.ndarray | None = (
            None  # uint8 by word id, built when first needed
        )
        self._route_args: dict[bool, tuple] = {}  # kernel arguments by HMM setting
        # The list API's kernels (their direct entry points) and their SegState, by HMM setting
        self._list_state: dict[bool, tuple[Callable[..., tuple], Callable[..., tuple], object]] = {}
        # one Python string per distinct word, made once; a larger trie of the words outside the
        # dictionary means new SegStates
        self._strings = WordTable(on_change=self._list_state.clear)
        if user_dict is not None:
            self.load_user_dict(user_dict)

    def __repr__(self) -> str:
        return (
            f"Segmenter({len(self._counts)} words, total={self.total}, hmm={self.hmm})"
        )

    # Core: codepoints in, token spans out
    def _force_array(self) -> np.ndarray:
        """``force_split`` as flags by word id (every such word was added, so it has an id)."""
        if self._force_ids is None:
            force = np.zeros(len(self._counts) if self.force_split else 0, np.uint8)
            for word in self.force_split:
                force[self._trie.word[trie_find(self._trie, word)]] = 1
            self._force_ids = force
        return self._force_ids

    def _kernel_args(self, hmm: bool | None) -> tuple:
        """The default-mode kernels' arguments after the text, made once per dictionary state (a
        short line's call is mostly overhead)."""
        use_hmm = self.hmm if hmm is None else bool(hmm)
        args = self._route_args.get(use_hmm)
        if args is None:
            if self.total <= 0:
                raise ZhtextError("the dictionary is empty (its counts sum to 0)")
            tables = tuple(hmm_tables() if use_hmm else no_tables())
            log_total = math.log(self.total)
            floor = math.log(1) - log_total
            args = (CHAR_CLASS, self._trie[:5], log_total, floor, use_hmm, tables, self._force_array())
            self._route_args[use_hmm] = args
        return args

    def _list_kernels(self, hmm: bool | None) -> tuple[Callable[..., tuple], Callable[..., tuple], object]:
        """The entry points of :func:`_line_kernel` and :func:`_lines_kernel` and the
        :class:`~zhtext.lexical.wordlist.SegState` they take, made once per dictionary state."""
        use_hmm = self.hmm if hmm is None else bool(hmm)
        got = self._list_state.get(use_hmm)
        if got is None:
            classes, trie, shift, floor, _, tables, force = self._kernel_args(use_hmm)
            self._strings.fit(len(self._counts))
            state = make_state(classes, trie, shift, floor, use_hmm, tables, force, self._strings)
            # The types every call passes: a str or readonly int32 codes (to_codes), int64 offsets
            codes, offsets = join_lines(["x"])
            got = (direct(_line_kernel, "x", state, 0, False, scratch(1)),
                   direct(_lines_kernel, codes, offsets, state, 0, False), state)  # fmt: skip
            self._list_state[use_hmm] = got
        return got

    def _token_ends(
        self, codes: np.ndarray, offsets: np.ndarray, hmm: bool | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Default mode: token ends (absolute; they tile the text) and the first token of each
        line (``len(lines) + 1``)."""
        args = self._kernel_args(hmm)
        tok_ends = np.empty(codes.shape[0], dtype=np.int64)
        line_tok = np.empty(offsets.shape[0], dtype=np.int64)
        n = _segment_kernel(codes, offsets, *args, tok_ends, NO_IDS, line_tok)
        return tok_ends[:n], line_tok

    def _full_spans(
        self, codes: np.ndarray, offsets: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Full mode's (starts, ends, glue, first token of each line)."""
        # Enough unless words overlap densely.
        room = 3 * codes.shape[0] + offsets.shape[0]
        while True:
            starts = np.empty(room, dtype=np.int64)
            ends = np.empty(room, dtype=np.int64)
            glue = np.empty(room, dtype=np.uint8)
            line_tok = np.empty(offsets.shape[0], dtype=np.int64)
            n = _full_kernel(
                codes, offsets, CHAR_CLASS, self._trie[:5], starts, ends, glue, line_tok
            )
            if n <= room:
                return starts[:n], ends[:n], glue[:n], line_tok
            room = n  # the kernel counted what it needs: once more, with that room

    def _spans(
        self, codes: np.ndarray, offsets: np.ndarray, mode: str, hmm: bool | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every token of ``mode`` as absolute ``(starts, ends)``, the ``glue`` flags (full mode's
        pieces of one token; empty otherwise) and the first token of each line."""
        _check_mode(mode)
        if self.total <= 0:
            raise ZhtextError("the dictionary is empty (its counts sum to 0)")
        if mode == "all":
            return self._full_spans(codes, offsets)
        tok_ends, line_tok = self._token_ends(codes, offsets, hmm)
        no_glue = np.zeros(0, dtype=np.uint8)
        if mode == "default":
            starts = np.empty_like(tok_ends)
            starts[:1] = 0
            starts[1:] = tok_ends[:-1]
            return starts, tok_ends, no_glue, line_tok
        # A word of n characters gives at most 2n tokens (2n - 2 when n > 3).
        room = 2 * codes.shape[0]
        starts = np.empty(room, dtype=np.int64)
        ends = np.empty(room, dtype=np.int64)
        out_line = np.empty_like(line_tok)
        n = _search_kernel(
            codes, tok_ends, NO_IDS, line_tok, self._trie[:5], starts, ends, NO_IDS, out_line
        )
        return starts[:n], ends[:n], no_glue, out_line

    def _span_words(self, text: str, codes: np.ndarray, spans: np.ndarray, n: int) -> list[str]:
        """The strings of the ``n`` tokens ``text[start:end]``, rows ``(start, end, ...)`` of
        ``spans`` (``codes``: the codepoints of ``text``), from the word table."""
        if self._strings.fit(len(self._counts)):
            self._list_state.clear()  # their SegStates hold the old known flags
        res = np.empty(5 * n, dtype=np.int64)
        n_fix = span_slots(codes, spans, n, *self._trie[:4], self._strings.known,
                           *self._strings.extra[:4], res)  # fmt: skip
        return self._strings.words(text, res, n, n_fix)

    def _line_words(self, text: str, mode: str, hmm: bool | None) -> list[str] | None:
        """:meth:`cut` of one line through :func:`_line_kernel`; None where it cannot serve (a str
        subclass, full mode's glued pieces): the general path then does."""
        code = _MODE_CODE.get(mode)
        if code is None:
            _check_mode(mode)
        if type(text) is not str or self.total <= 0:  # the entry point takes exactly a str
            return None
        line, _, state = self._list_kernels(hmm)
        out = SCRATCH.buf
        n, n_fix, size = line(text, state, code, False, out)
        if size > out.shape[0]:  # a long line: a larger buffer for this thread from now on
            out = scratch(size)
            n, n_fix, size = line(text, state, code, False, out)
        return None if n_fix < 0 else self._strings.words(text, out, n, n_fix)

    def _words(self, lines: list[str], mode: str, hmm: bool | None) -> list[list[str]]:
        """The words of each line."""
        _check_mode(mode)
        if self.total <= 0:
            raise ZhtextError("the dictionary is empty (its counts sum to 0)")
        codes, offsets = join_lines(lines)
        text = lines[0] if len(lines) == 1 else "".join(lines)
        _, many, state = self._list_kernels(hmm)
        res, n, n_fix, line_tok = many(codes, offsets, state, _MODE_CODE[mode], False)
        if n_fix >= 0:
            words = self._strings.words(text, res, n, n_fix)
            return [words] if len(lines) == 1 else _per_line(words, line_tok)
        # Full mode glued pieces of a token (jieba's ASCII run may skip characters).
        starts, ends, glue, line_tok = self._spans(codes, offsets, mode, hmm)
        words = _split_words(text, codes, starts, ends, glue)
        glued_before = np.concatenate([np.zeros(1, np.int64), np.cumsum(glue, dtype=np.int64)])
        return _per_line(words, line_tok - glued_before[line_tok])

    def cut(
        self, text: str, *, hmm: bool | None = None, mode: str = "default"
    ) -> list[str]:
        """The words of ``text``: ``jieba.lcut(text, HMM=hmm)``; ``mode="search"`` gives
        :meth:`cut_for_search`'s words, ``"all"`` :meth:`cut_all`'s."""
        if not text and type(text) is str and mode in _MODE_CODE and self.total > 0:
            return []  # a blank line (half the lines of a novel): no kernel call, as jieba's []
        if mode == "default" and type(text) is str:  # the common call, kept short: see wordlist.py
            line, _, state = self._list_kernels(hmm)
            out = SCRATCH.buf
            n, n_fix, size = line(text, state, 0, False, out)
            if size > out.shape[0]:  # a long line: a larger buffer for this thread from now on
                out = scratch(size)
                n, n_fix, size = line(text, state, 0, False, out)
            if not n_fix:
                return self._strings.strings.take(out[:n]).tolist()
            return self._strings.words(text, out, n, n_fix)
        words = self._line_words(text, mode, hmm)
        return words if words is not None else self._words([text], mode, hmm)[0]

    def cut_lines(
        self, lines: Sequence[str], *, hmm: bool | None = None, mode: str = "default"
    ) -> list[list[str]]:
        """:meth:`cut` for many lines in one kernel call."""
        return self._words(list(lines), mode, hmm)

    def cut_all(self, text: str) -> list[str]:
        """jieba's full mode, ``jieba.lcut(text, cut_all=True)``: every dictionary word in the text,
        overlapping, and each character no longer word covers (the HMM plays no part). As in jieba,
        text outside Han/ASCII runs comes out split at whitespace only, and with empty strings
        around each whitespace token."""
        return self.cut(text, mode="all")

    def cut_for_search(self, text: str, *, hmm: bool | None = None) -> list[str]:
        """jieba's search mode, ``jieba.lcut_for_search(text, HMM=hmm)``: each word of :meth:`cut`,
        preceded by its 2- and 3-character substrings that are dictionary words (for words longer
        than 2 and 3 characters)."""
        return self.cut(text, hmm=hmm, mode="search")

    def tokenize(
        self, text: str, mode: str = "default", *, hmm: bool | None = None
    ) -> list[tuple[str, int, int]]:
        """``list(jieba.tokenize(text, mode, HMM=hmm))``: ``(word, start, end)`` with ``text[start:end]
        == word``; ``mode`` is ``"default"`` (:meth:`cut`) or ``"search"`` (:meth:`cut_for_search`)."""
        _check_tokenize_mode(mode)
        if type(text) is str and self.total > 0:
            if not text:
                return []  # a blank line: no kernel call
            line, _, state = self._list_kernels(hmm)
            res = scratch(14 * len(text) + 8)  # room for search mode's every token
            n, n_fix, _ = line(text, state, _MODE_CODE[mode], True, res)
            words = self._strings.words(text, res, n, n_fix)
            p = n + 4 * n_fix
            if mode == "default":  # the tokens tile the line: one int per boundary, shared
                bounds = res[p : p + n].tolist()
                bounds.append(int(res[p + 2 * n - 1]))
                return list(zip(words, bounds, itertools.islice(bounds, 1, None)))
            return list(zip(words, res[p : p + n].tolist(), res[p + n : p + 2 * n].tolist()))
        return self.tokenize_lines([text], mode, hmm=hmm)[0]

    def tokenize_lines(
        self, lines: Sequence[str], mode: str = "default", *, hmm: bool | None = None
    ) -> list[list[tuple[str, int, int]]]:
        """:meth:`tokenize` for many lines in one kernel call; offsets count from each line's start."""
        _check_tokenize_mode(mode)
        if self.total <= 0:
            raise ZhtextError("the dictionary is empty (its counts sum to 0)")
        lines = list(lines)
        codes, offsets = join_lines(lines)
        text = lines[0] if len(lines) == 1 else "".join(lines)
        _, many, state = self._list_kernels(hmm)
        res, n, n_fix, line_tok = many(codes, offsets, state, _MODE_CODE[mode], True)
        words = self._strings.words(text, res, n, n_fix)
        p = n + 4 * n_fix
        line_start = np.repeat(offsets[:-1], np.diff(line_tok))
        a_list = (res[p : p + n] - line_start).tolist()
        b_list = (res[p + n :] - line_start).tolist()
        return [
            list(zip(words[a:b], a_list[a:b], b_list[a:b]))
            for a, b in itertools.pairwise(line_tok.tolist())
        ]

    def segment_lines(
        self,
        lines: Sequence[str],
        sep: str = " ",
        *,
        mode: str = "default",
        hmm: bool | None = None,
    ) -> list[str]:
        """Each line with its words joined by ``sep``: ``sep.join(cut(line, mode=mode, hmm=hmm))``.

        The fast path: separators are written into the codepoint array by the kernel and the whole
        batch is decoded once, so no per-word Python string is ever made.
        """
        codes, offsets = join_lines(list(lines))
        out, out_offsets = self._joined(codes, offsets, sep, "", mode, hmm)
        text = from_codes(out)
        return [text[a:b] for a, b in itertools.pairwise(out_offsets.tolist())]

    def _joined(
        self,
        codes: np.ndarray,
        offsets: np.ndarray,
        sep: str,
        eol: str,
        mode: str,
        hmm: bool | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every line's words joined by ``sep``, each line followed by ``eol``, as one codepoint
        array, and where each line's words end in it; all of it without the GIL."""
        starts, ends, glue, line_tok = self._spans(codes, offsets, mode, hmm)
        sep_codes, eol_codes = to_codes(sep), to_codes(eol)
        n_lines = offsets.shape[0] - 1
        n_seps = int(np.maximum(np.diff(line_tok) - 1, 0).sum()) - int(glue.sum())
        size = int((ends - starts).sum()) + sep_codes.shape[0] * n_seps
        out = np.empty(size + eol_codes.shape[0] * n_lines, dtype=np.int32)
        out_offsets = np.empty(n_lines + 1, dtype=np.int64)
        _join_kernel(codes, starts, ends, glue, line_tok, sep_codes, eol_codes, out, out_offsets)
        return out, out_offsets

    def segment_text(
        self, text: str, sep: str = " ", *, mode: str = "default", hmm: bool | None = None
    ) -> str:
        """Every line of ``text`` with its words joined by ``sep``, each ending in ``\n``: what
        ``zhtext segment`` writes for ``text``, the same as :meth:`segment_lines` of its lines
        (``\n`` or ``\r\n`` ends a line, and a last line without an end gets one).

        One encode, the kernels and one decode: no Python string per line or word. The kernels
        release the GIL, so threads can run this side by side on blocks of lines (see
        :meth:`segment_chunks`).

        >>> Segmenter().segment_text("我来到北京\r\n黛玉笑道", " / ")
        '我 / 来到 / 北京\n黛玉笑 / 道\n'
        """
        codes, offsets = text_lines(text)
        return from_codes(self._joined(codes, offsets, sep, "\n", mode, hmm)[0])

    def segment_bytes(
        self, data: bytes, sep: str = " ", *, mode: str = "default", hmm: bool | None = None
    ) -> bytes:
        """:meth:`segment_text` of UTF-8 bytes, as UTF-8 bytes: decoding, segmenting and encoding
        all release the GIL. Bytes that are not UTF-8 (as Python's strict codec says) raise
        :class:`~zhtext.lexical.utf8.Utf8Error` with the offset of the first."""
        codes, bad, truncated = decode_utf8(np.frombuffer(data, np.uint8))
        if bad >= 0:
            raise Utf8Error(bad, truncated)
        out, _ = self._joined(*strip_line_ends(codes), sep, "\n", mode, hmm)
        return encode_utf8(out).tobytes()

    def segment_chunks(
        self,
        chunks: Iterable[str] | Iterable[bytes],
        sep: str = " ",
        *,
        mode: str = "default",
        hmm: bool | None = None,
        jobs: int | None = None,
        block_chars: int | None = None,
    ) -> Iterator[tuple[str, str]] | Iterator[tuple[bytes, bytes]]:
        """:meth:`segment_text` over a stream of text cut anywhere (a reader's chunks), on ``jobs``
        threads (``None``: every core), as (input block, output) pairs in input order.

        Chunks of UTF-8 bytes (such as :meth:`~zhtext.io.reading.RawText.byte_chunks`) give
        blocks and outputs as UTF-8 bytes (:meth:`segment_bytes`: no Python codec holds the
        GIL), and a byte that is not UTF-8 raises :class:`~zhtext.lexical.utf8.Utf8Error` with
        its offset in the chunks, at its block's turn. Blocks hold whole lines, about
        ``block_chars`` characters (or bytes) each (default :data:`BLOCK_CHARS`); a few blocks per
        thread are in flight at a time, so memory stays bounded whatever the input. The output is
        the same for every ``jobs``, block size and cut of the input.
        """
        jobs = check_jobs(jobs)
        _check_mode(mode)  # before the first block, not at its turn

        def work(item: tuple[int, str | bytes]) -> tuple[str | bytes, str | bytes]:
            offset, block = item
            if isinstance(block, str):
                return block, self.segment_text(block, sep, mode=mode, hmm=hmm)
            try:
                return block, self.segment_bytes(block, sep, mode=mode, hmm=hmm)
            except Utf8Error as exc:  # where in the whole stream
                raise Utf8Error(offset + exc.offset, exc.truncated) from None

        def numbered(blocks: Iterator[str | bytes]) -> Iterator[tuple[int, str | bytes]]:
            offset = 0
            for block in blocks:
                yield offset, block
                offset += len(block)

        blocks = line_blocks(chunks, block_chars or BLOCK_CHARS)
        return ordered_map(work, numbered(blocks), jobs)

    def segment_file(
        self,
        source: str | os.PathLike,
        output: str | os.PathLike | None = None,
        sep: str = " ",
        *,
        mode: str = "default",
        hmm: bool | None = None,
        jobs: int | None = None,
        encoding: str | None = None,
        progress: Callable[[str | bytes], None] | None = None,
    ) -> None:
        """Segment the file ``source`` (``-``: stdin) into ``output`` (``None`` or ``-``: stdout),
        one line of words joined by ``sep`` per input line, on ``jobs`` threads (``None``: every
        core): what ``zhtext segment`` does. The input is read as
        :func:`~zhtext.io.reading.iter_lines` reads it (UTF-8 or GB18030 detected, ``encoding``
        forces one) and streamed; the output appears whole or not at all. ``progress`` is called
        with each input block (UTF-8 input: its bytes) once its output is written.

        UTF-8 input is worked on as bytes (:meth:`segment_bytes`), other encodings as text."""
        # Read in pieces of a block's size (a block is then ready about every piece); a missing or
        # binary file fails here, before the output is made.
        with open_raw(source, encoding, BLOCK_CHARS) as raw:
            blocks = self.segment_chunks(raw.chunks(), sep, mode=mode, hmm=hmm, jobs=jobs)
            with atomic_output(output) as handle, contextlib.closing(blocks):
                try:
                    for block, segmented in blocks:
                        if isinstance(segmented, bytes):
                            write_utf8(handle, segmented)
                        else:
                            handle.write(segmented)
                        if progress is not None:
                            progress(block)
                except Utf8Error as exc:  # said as the reader of the file says it
                    raise raw.decode_error(raw.start + exc.offset, exc.truncated) from None

    def segment_batches(
        self,
        lines: Iterable[str],
        sep: str = " ",
        batch_chars: int = BATCH_CHARS,
        *,
        mode: str = "default",
        hmm: bool | None = None,
    ) -> Iterator[tuple[list[str], list[str]]]:
        """:meth:`segment_lines` streamed over any number of lines, as (inputs, outputs) batches.

        Batches of about ``batch_chars`` characters bound memory whatever the input size.
        """
        for batch in batched_lines(lines, batch_chars):
            yield batch, self.segment_lines(batch, sep, mode=mode, hmm=hmm)

    def tokenize_batches(
        self,
        lines: Iterable[str],
        mode: str = "default",
        batch_chars: int = BATCH_CHARS,
        *,
        hmm: bool | None = None,
    ) -> Iterator[tuple[list[str], list[list[tuple[str, int, int]]]]]:
        """:meth:`tokenize_lines` streamed over any number of lines, as (inputs, outputs) batches."""
        for batch in batched_lines(lines, batch_chars):
            yield batch, self.tokenize_lines(batch, mode, hmm=hmm)

    # Dictionary edits, with jieba's semantics
    def _count(self, word: str, default: int) -> int:
        """jieba's ``FREQ.get(word, default)``: prefixes of words are present with count 0."""
        node = trie_find(self._trie, word) if word else -1
        if node < 0:
            return default
        wid = int(self._trie.word[node])
        return self._counts[wid] if wid >= 0 else 0

    def add_word(
        self, word: str, freq: int | str | None = None, tag: str | None = None
    ) -> None:
        """Add ``word`` (or change its count) as ``jieba.add_word`` does.

        Without ``freq`` the count is :meth:`suggest_freq` of the word, just enough for it to be cut
        out whole. The total grows by the count; a count of 0 removes the word from matching and
        keeps the HMM from producing it whole, from then on (as in jieba, even if it is added again).
        """
        if not word:
            raise ZhtextError("cannot add an empty word")
        try:
            count = int(freq) if freq is not None else self.suggest_freq(word)
        except (TypeError, ValueError):
            raise ZhtextError(f"count {freq!r} for word {word!r} is not a whole number") from None
        if count < 0:
            raise ZhtextError(f"negative count {count} for word {word!r}")
        log_count = math.log(count) if count > 0 else -math.inf
        node = trie_find(self._trie, word)
        wid = int(self._trie.word[node]) if node > 0 else -1
        if wid >= 0:
            self._counts[wid] = count
            self._trie.weight[node] = log_count
        else:
            self._trie, _ = trie_insert(
                self._trie, [word], np.array([log_count]), len(self._counts)
            )
            self._counts.append(count)
        self.total += count
        self._route_args.clear()  # the trie, the total or the forced splits changed
        self._list_state.clear()
        if tag:
            self.tags[word] = tag
        if count == 0 and word not in self.force_split:
            self.force_split.add(word)
            self._force_ids = None

    def del_word(self, word: str) -> None:
        """Stop ``word`` from being matched (``add_word(word, 0)``, as in jieba)."""
        self.add_word(word, 0)

    def suggest_freq(self, segment: str | Sequence[str], tune: bool = False) -> int:
        """The count that makes ``segment`` come out whole (a str) or split into parts (a sequence).

        Same arithmetic as ``jieba.suggest_freq``; with ``tune`` the count is also applied.
        """
        prob = 1.0
        if isinstance(segment, str):
            word = segment
            for part in self.cut(word, hmm=False):  # as jieba: the route alone
                prob *= self._count(part, 1) / float(self.total)
            count = max(int(prob * self.total) + 1, self._count(word, 1))
        else:
            word = "".join(segment)
            for part in segment:
                prob *= self._count(part, 1) / float(self.total)
            count = min(int(prob * self.total), self._count(word, 0))
        if tune:
            self.add_word(word, count)
        return count

    def load_user_dict(self, path: str | os.PathLike) -> None:
        """Add the words of a jieba user dictionary: one ``word [count] [tag]`` per line.

        Read like ``jieba.load_userdict``: a word may contain spaces (only a trailing `` 123`` and
        `` tag`` are split off), a missing count is suggested, blank lines are skipped, a BOM and
        CRLF line ends are dropped; there are no comments (``# note`` is the word ``#`` tagged
        ``note``, as in jieba). Unlike jieba, GB18030 is read too (the encoding is detected), and a
        line that jieba would silently read into a word no mode can cut out (a tab-separated line,
        a count like ``3.5``, a tag like ``NR``, a word with whitespace around it: see
        :func:`user_dict_entry`) stops the load with a :class:`ZhtextError` naming ``FILE:LINE``,
        before any word of the file is added.
        """
        entries = []
        for number, _, raw, error in iter_numbered_lines(path):
            try:
                if error is not None:
                    raise ZhtextError(error)
                word, freq, tag = user_dict_entry(raw)
            except ZhtextError as exc:
                raise ZhtextError(f"{path}:{number}: {exc}") from None
            if word:
                entries.append((word, freq, tag))
        for word, freq, tag in entries:
            self.add_word(word, freq, tag)

    # Part-of-speech tagging (the algorithm lives in posseg.py)
    def tag(self, text: str, hmm: bool | None = None) -> list[tuple[str, str]]:
        """``(word, tag)`` pairs of ``text``, as ``jieba.posseg.lcut(text, HMM=hmm)`` gives them.

        Tags come from the dictionary's third column (user words' tags over them), else ``x``;
        with the HMM (``hmm=None``: the segmenter's setting), runs the dictionary cannot cut are
        tagged by posseg's HMM.

        >>> Segmenter().tag("我爱北京天安门")
        [('我', 'r'), ('爱', 'v'), ('北京', 'ns'), ('天安门', 'ns')]
        """
        return self.tag_lines([text], hmm)[0]

    def tag_lines(
        self, lines: Sequence[str], hmm: bool | None = None
    ) -> list[list[tuple[str, str]]]:
        """:meth:`tag` for many lines in one kernel call."""
        from zhtext.lexical.posseg import tag_lines

        return tag_lines(self, lines, self.hmm if hmm is None else hmm)


@functools.cache
def default_segmenter() -> Segmenter:
    """The one segmenter over jieba's dictionary behind ``zhtext.cut``, ``zhtext.add_word`` and
    ``zhtext.keywords``, built on first use: an edit to it reaches all of them, as in jieba."""
    return Segmenter()
