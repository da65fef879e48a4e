"""jieba's unknown-word HMM (``jieba.finalseg``): four states B/M/E/S, Viterbi in Numba.

jieba hands a run of characters that its dictionary route left as single characters to this model.
The run is split into Han stretches and the rest; each Han stretch is labelled by the most probable
B(egin)/M(iddle)/E(nd)/S(ingle) path and cut after every E and S; the rest is cut by jieba's
``[a-zA-Z0-9]+(?:\\.\\d+)?%?`` rule (so ``3.14%`` stays whole). A word the user deleted
(``del_word``, a count of 0) is never produced whole: it comes out one character per token.

The tables are those shipped inside the installed jieba package (``jieba/finalseg/prob_*.py``),
as float64 arrays: ``start[4]``, ``trans[4, 4]`` and ``emit[n_han, 4]``, one row per codepoint of
the Han range (U+4E00..U+9FD5; the model only ever sees those), ``MIN_FLOAT`` where jieba's dicts
have no entry. Scores are summed in jieba's order, ``(V[t-1][prev] + trans) + emit``, and ties go
to the larger state letter as jieba's ``max`` over ``(score, letter)`` tuples does, so paths agree
with jieba's to the bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
from numba import njit

from zhtext.lexical.chars import ALNUM, HAN, HAN_FIRST, HAN_LAST
from zhtext.lexical.lexicon import jieba_dir
from zhtext.lexical.trie import trie_walk

# State indices in alphabetical order, so that "the larger letter wins a tie" is "the larger index".
B, E, M, S = 0, 1, 2, 3
STATES = "BEMS"
MIN_FLOAT = -3.14e100  # jieba's stand-in for log(0)
_DOT, _PERCENT, _ZERO, _NINE = ord("."), ord("%"), ord("0"), ord("9")


class HmmTables(NamedTuple):
    """The model's log-probabilities, indexed by :data:`STATES` order (B, E, M, S)."""

    start: np.ndarray  # float64[4]
    trans: np.ndarray  # float64[4, 4]: from, to
    emit: np.ndarray  # float64[n_han, 4]: codepoint - HAN_FIRST, state


def finalseg_files() -> list[Path]:
    """The installed jieba's ``finalseg/prob_{start,trans,emit}.py``, found without importing jieba."""
    return [
        jieba_dir() / "finalseg" / f"prob_{name}.py"
        for name in ("start", "trans", "emit")
    ]


def tables_from_jieba() -> HmmTables:
    """Build the arrays from jieba's own dicts (the ones ``jieba.finalseg`` imports): ~10 ms after
    jieba's ~40 ms import."""
    from jieba.finalseg import emit_P, start_P, trans_P

    start = np.array([start_P.get(s, MIN_FLOAT) for s in STATES])
    trans = np.array(
        [[trans_P.get(a, {}).get(b, MIN_FLOAT) for b in STATES] for a in STATES]
    )
    emit = np.full((HAN_LAST - HAN_FIRST + 1, 4), MIN_FLOAT)
    for j, state in enumerate(STATES):
        table = emit_P.get(state, {})
        cps = np.fromiter((ord(ch) for ch in table), dtype=np.int64, count=len(table))
        values = np.fromiter(table.values(), dtype=np.float64, count=len(table))
        # The model only ever sees Han characters: one stray '∶' entry is left out.
        inside = (cps >= HAN_FIRST) & (cps <= HAN_LAST)
        emit[cps[inside] - HAN_FIRST, j] = values[inside]
    return HmmTables(start, trans, emit)


def no_tables() -> HmmTables:
    """Placeholder arrays of the right types, for kernel calls with the HMM off."""
    return HmmTables(np.zeros(4), np.zeros((4, 4)), np.zeros((0, 4)))


# ----------------------------------------------------------------------------------------------
# Kernels (called from the segmentation kernels)


@njit(cache=True, nogil=True, inline="always")
def _best(x, x_state, y, y_state, em):
    """jieba's ``max((x + em, x_state), (y + em, y_state))`` with ``x_state < y_state``."""
    x = x + em
    y = y + em
    if y >= x:
        return y, np.int8(y_state)
    return x, np.int8(x_state)


@njit(cache=True, nogil=True, inline="always")
def viterbi_states(codes, start, end, start_p, trans_p, emit_p, back, states):
    """The most probable state path over the Han codepoints ``codes[start:end]`` into
    ``states[:end - start]``; ``back`` is ``int8[>= end - start, 4]`` scratch."""
    n = end - start
    row = codes[start] - HAN_FIRST
    vb = start_p[B] + emit_p[row, B]
    ve = start_p[E] + emit_p[row, E]
    vm = start_p[M] + emit_p[row, M]
    vs = start_p[S] + emit_p[row, S]
    for t in range(1, n):
        row = codes[start + t] - HAN_FIRST
        # Each state has two possible predecessors; on equal scores the later letter wins.
        nb, back[t, B] = _best(
            ve + trans_p[E, B], E, vs + trans_p[S, B], S, emit_p[row, B]
        )
        ne, back[t, E] = _best(
            vb + trans_p[B, E], B, vm + trans_p[M, E], M, emit_p[row, E]
        )
        nm, back[t, M] = _best(
            vb + trans_p[B, M], B, vm + trans_p[M, M], M, emit_p[row, M]
        )
        ns, back[t, S] = _best(
            ve + trans_p[E, S], E, vs + trans_p[S, S], S, emit_p[row, S]
        )
        vb, ve, vm, vs = nb, ne, nm, ns
    state = S if vs >= ve else E  # a path ends in E or S
    for t in range(n - 1, -1, -1):
        states[t] = state
        if t > 0:
            state = back[t, state]


@njit(cache=True, nogil=True, inline="always")
def _put_word(codes, a, b, root, table, bloom, word, force, tok_ends, n_tok):
    """Token ``codes[a:b]``, or one token per character for a force-split (deleted) word."""
    if b - a > 1 and force.shape[0] > 0:
        node = trie_walk(root, table, bloom, codes, a, b)
        if node >= 0 and 0 <= word[node] < force.shape[0] and force[word[node]]:
            for q in range(a + 1, b):
                tok_ends[n_tok] = q
                n_tok += 1
    tok_ends[n_tok] = b
    return n_tok + 1


@njit(cache=True, nogil=True)
def _is_digit(c):
    return _ZERO <= c <= _NINE


# Inlined (with the helpers it calls): a call passing a dozen arrays cost more than the Viterbi of
# a typical 5-character run (~370 ns a run as calls, ~150 ns inlined, on the novels).
@njit(cache=True, nogil=True, inline="always")
def hmm_cut(
    codes, start, end, classes, start_p, trans_p, emit_p, root, table, bloom, word, force, back,
    states, tok_ends, n_tok,
):  # fmt: skip
    """jieba's ``finalseg.cut`` of ``codes[start:end]``, a span of jieba's block characters (Han,
    ASCII letters and digits, ``+#&._%-``): token ends appended to ``tok_ends`` from ``n_tok``;
    returns the new count.

    ``start_p``, ``trans_p``, ``emit_p``: the tables; ``root`` ... ``word``: the trie's arrays, and
    ``force[word id]`` marks the words never to give whole (``force`` may be empty). Arrays come
    one by one, not in tuples: a call passing tuples of arrays cost several times the work here.
    """
    p = start
    while p < end:
        q = p + 1
        if classes[codes[p]] == HAN:
            while q < end and classes[codes[q]] == HAN:
                q += 1
            viterbi_states(codes, p, q, start_p, trans_p, emit_p, back, states)
            # A word ends at each E and S; paths end in E or S, so the words tile the stretch.
            begin = p
            for i in range(p, q):
                state = states[i - p]
                if state == B:
                    begin = i
                elif state == E:
                    n_tok = _put_word(
                        codes, begin, i + 1, root, table, bloom, word, force, tok_ends, n_tok
                    )
                elif state == S:
                    tok_ends[n_tok] = i + 1
                    n_tok += 1
            p = q
            continue
        if classes[codes[p]] == ALNUM:  # [a-zA-Z0-9]+(?:\.\d+)?%?
            while q < end and classes[codes[q]] == ALNUM:
                q += 1
            if q + 1 < end and codes[q] == _DOT and _is_digit(codes[q + 1]):
                q += 2
                while q < end and _is_digit(codes[q]):
                    q += 1
            if q < end and codes[q] == _PERCENT:
                q += 1
        else:  # the text between two matches, in one piece
            while q < end and classes[codes[q]] != ALNUM and classes[codes[q]] != HAN:
                q += 1
        tok_ends[n_tok] = q
        n_tok += 1
        p = q
    return n_tok
