"""Unigram (maximum-probability) word segmentation, the same to the bit as jieba's ``HMM=False``.

Every dictionary word starting at position i is an edge i -> i + len(word) weighing
``log(count) - log(total)``; a position where no word starts gets a single-character edge with the
floor weight ``log(1) - log(total)``. The best route is computed right to left,
``route[i] = max(w + route[j])``, and on equal scores the longer edge wins, as jieba's tuple ``max``
does. Weights are combined in jieba's order of float operations, so routes agree to the last bit.

Around the route sit jieba's text rules: only runs of Han characters, ASCII letters/digits and
``+#&._%-`` (a *block*) are routed; inside a block, consecutive one-character ASCII letter/digit
tokens are glued back into one token; outside blocks ``\\r\\n`` and every other character are
tokens of their own. Tokens always concatenate back to the input.

All of it runs in Numba over ``int32`` codepoints of many lines at once; Python strings are made
only at the edge (one slice per token for :meth:`Segmenter.cut`, one decode per batch for
:meth:`Segmenter.segment_lines`).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numba import njit

from zhtext.errors import ZhtextError
from zhtext.io.reading import batched_lines, iter_lines
from zhtext.io.writing import atomic_path
from zhtext.lexical.chars import (
    ALNUM,
    CHAR_CLASS,
    HAN,
    JOINER,
    from_codes,
    join_lines,
    to_codes,
)
from zhtext.lexical.lexicon import Lexicon, jieba_dict_path
from zhtext.lexical.route import max_span, route_span
from zhtext.lexical.trie import Trie, build_trie, trie_find, trie_insert

_CR, _LF = 13, 10
_CACHE_VERSION = 4  # 4: the dictionary's POS tags
CACHE_MIN_BYTES = 1 << 20  # smaller dictionaries are parsed every time
BATCH_CHARS = 1 << 20  # characters per kernel call when streaming: bounded memory, cheap calls

# jieba's user dictionary line: word, then optionally " count" and " tag" (lowercase letters).
_USER_LINE = re.compile(r"^(.+?)(?: ([0-9]+))?(?: ([a-z]+))?$")
# bytes.strip() in jieba strips ASCII whitespace only (not U+3000 and friends).
_ASCII_SPACE = " \t\n\r\x0b\x0c"


# ----------------------------------------------------------------------------------------------
# Kernels


@njit(cache=True)
def _segment_kernel(
    codes, offsets, classes, root, table, bloom, word, weight, shift, floor, tok_ends, line_tok
):
    """jieba's text rules around :func:`route_span`: token ends into ``tok_ends``, per line."""
    longest = max_span(offsets)
    score = np.empty(longest + 1, dtype=np.float64)
    step = np.empty(longest, dtype=np.int32)
    ids = np.empty(longest, dtype=np.int32)
    n_tok = 0
    line_tok[0] = 0
    for k in range(offsets.shape[0] - 1):
        i, end = offsets[k], offsets[k + 1]
        while i < end:
            c = codes[i]
            cls = classes[c]
            if cls == HAN or cls == ALNUM or cls == JOINER:
                b = i
                while i < end:
                    cl = classes[codes[i]]
                    if cl != HAN and cl != ALNUM and cl != JOINER:
                        break
                    i += 1
                route_span(
                    codes, b, i, root, table, bloom, word, weight, shift, floor, score, step, ids
                )
                x = b
                gluing = False  # inside a run of one-character ASCII letter/digit tokens
                while x < i:
                    y = x + step[x - b]
                    if y == x + 1 and classes[codes[x]] == ALNUM:
                        gluing = True
                    else:
                        if gluing:
                            tok_ends[n_tok] = x
                            n_tok += 1
                            gluing = False
                        tok_ends[n_tok] = y
                        n_tok += 1
                    x = y
                if gluing:
                    tok_ends[n_tok] = i
                    n_tok += 1
            elif c == _CR and i + 1 < end and codes[i + 1] == _LF:
                i += 2
                tok_ends[n_tok] = i
                n_tok += 1
            else:
                i += 1
                tok_ends[n_tok] = i
                n_tok += 1
        line_tok[k + 1] = n_tok
    return n_tok


@njit(cache=True)
def _join_kernel(codes, offsets, tok_ends, line_tok, sep, out, out_offsets):
    """Copy each line's tokens into ``out`` with ``sep`` between them."""
    p = 0
    out_offsets[0] = 0
    for k in range(offsets.shape[0] - 1):
        i = offsets[k]
        first = line_tok[k]
        for t in range(first, line_tok[k + 1]):
            if t > first:
                for q in range(sep.shape[0]):
                    out[p + q] = sep[q]
                p += sep.shape[0]
            for q in range(i, tok_ends[t]):  # plain index loops: LLVM vectorises these best
                out[p] = codes[q]
                p += 1
            i = tok_ends[t]
        out_offsets[k + 1] = p


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


def _cache_file(path: Path) -> Path:
    """``dict-<path>-<state>.npz``: one file per dictionary path, renamed when the file changes."""
    stat = path.stat()
    where = str(path.resolve())
    state = f"{_CACHE_VERSION}|{stat.st_size}|{stat.st_mtime_ns}"
    return cache_dir() / f"dict-{_digest(where)}-{_digest(state)}.npz"


def _save_cache(file: Path, built: Dictionary) -> None:
    trie = built.trie
    n = trie.n_nodes
    cps = np.flatnonzero(trie.root >= 0).astype(np.int32)
    file.parent.mkdir(parents=True, exist_ok=True)
    for stale in file.parent.glob(file.name.rsplit("-", 1)[0] + "-*.npz"):
        stale.unlink(missing_ok=True)  # an older state of the same dictionary
    with atomic_path(file) as tmp:
        np.savez(
            tmp, root_cp=cps, root_node=trie.root[cps], table=trie.table, bloom=trie.bloom,
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


# ----------------------------------------------------------------------------------------------
# Segmenter


class Segmenter:
    """Maximum-probability segmenter over a dictionary; the output of ``jieba.cut(s, HMM=False)``.

    ``lexicon``: ``None`` for jieba's own ``dict.txt``, a :class:`~zhtext.lexical.lexicon.Lexicon`, or the
    path of a discovered TSV lexicon or any jieba-format dictionary. ``user_dict``: a jieba user
    dictionary (``word [count] [tag]`` lines) loaded on top, as :meth:`load_user_dict` does.

    >>> seg = Segmenter()
    >>> seg.cut("我来到北京清华大学")
    ['我', '来到', '北京', '清华大学']
    """

    def __init__(
        self,
        lexicon: Lexicon | str | os.PathLike | None = None,
        user_dict: str | os.PathLike | None = None,
    ) -> None:
        if isinstance(lexicon, Lexicon):
            loaded = _from_lexicon(lexicon)
        else:
            loaded = load_dictionary(jieba_dict_path() if lexicon is None else lexicon)
        self._trie, counts, self.total = loaded.trie, loaded.counts, loaded.total
        self._counts: list[int] = counts.tolist()  # count by word id
        # POS tags: the dictionary's by word id (posseg.py reads them), user words' in self.tags
        self._dict_tags = (loaded.tag_ids, loaded.tag_names)
        self.tags: dict[str, str] = {}
        if user_dict is not None:
            self.load_user_dict(user_dict)

    def __repr__(self) -> str:
        return f"Segmenter({len(self._counts)} words, total={self.total})"

    # Core: codepoints in, token ends out
    def _token_ends(self, codes: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token end offsets (absolute) and the first token of each line (``len(lines) + 1``)."""
        if self.total <= 0:
            raise ZhtextError("the dictionary is empty (its counts sum to 0)")
        log_total = math.log(self.total)
        floor = math.log(1) - log_total
        tok_ends = np.empty(codes.shape[0], dtype=np.int64)
        line_tok = np.empty(offsets.shape[0], dtype=np.int64)
        n = _segment_kernel(
            codes, offsets, CHAR_CLASS, *self._trie[:5], log_total, floor, tok_ends, line_tok
        )
        return tok_ends[:n], line_tok

    def cut(self, text: str) -> list[str]:
        """The words of ``text``, as ``jieba.lcut(text, HMM=False)`` gives them."""
        return self.cut_lines([text])[0]

    def cut_lines(self, lines: Sequence[str]) -> list[list[str]]:
        """:meth:`cut` for many lines in one kernel call (one Python string per word)."""
        codes, offsets = join_lines(list(lines))
        ends, line_tok = self._token_ends(codes, offsets)
        text = from_codes(codes)
        ends_list = ends.tolist()
        tokens = [text[a:b] for a, b in zip([0, *ends_list], ends_list)]
        bounds = line_tok.tolist()
        return [tokens[a:b] for a, b in itertools.pairwise(bounds)]

    def segment_lines(self, lines: Sequence[str], sep: str = " ") -> list[str]:
        """Each line with its words joined by ``sep``: ``sep.join(cut(line))`` for every line.

        The fast path: separators are written into the codepoint array by the kernel and the whole
        batch is decoded once, so no per-word Python string is ever made.
        """
        lines = list(lines)
        codes, offsets = join_lines(lines)
        ends, line_tok = self._token_ends(codes, offsets)
        sep_codes = to_codes(sep)
        per_line = np.diff(line_tok)
        n_out = codes.shape[0] + sep_codes.shape[0] * int(np.maximum(per_line - 1, 0).sum())
        out = np.empty(n_out, dtype=np.int32)
        out_offsets = np.empty(len(lines) + 1, dtype=np.int64)
        _join_kernel(codes, offsets, ends, line_tok, sep_codes, out, out_offsets)
        text = from_codes(out)
        bounds = out_offsets.tolist()
        return [text[a:b] for a, b in itertools.pairwise(bounds)]

    def segment_batches(
        self, lines: Iterable[str], sep: str = " ", batch_chars: int = BATCH_CHARS
    ) -> Iterator[tuple[list[str], list[str]]]:
        """:meth:`segment_lines` streamed over any number of lines, as (inputs, outputs) batches.

        Batches of about ``batch_chars`` characters bound memory whatever the input size.
        """
        for batch in batched_lines(lines, batch_chars):
            yield batch, self.segment_lines(batch, sep)

    # Dictionary edits, with jieba's semantics
    def _count(self, word: str, default: int) -> int:
        """jieba's ``FREQ.get(word, default)``: prefixes of words are present with count 0."""
        node = trie_find(self._trie, word) if word else -1
        if node < 0:
            return default
        wid = int(self._trie.word[node])
        return self._counts[wid] if wid >= 0 else 0

    def add_word(self, word: str, freq: int | str | None = None, tag: str | None = None) -> None:
        """Add ``word`` (or change its count) as ``jieba.add_word`` does.

        Without ``freq`` the count is :meth:`suggest_freq` of the word, just enough for it to be cut
        out whole. The total grows by the count; a count of 0 removes the word from matching.
        """
        if not word:
            raise ZhtextError("cannot add an empty word")
        count = int(freq) if freq is not None else self.suggest_freq(word)
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
        if tag:
            self.tags[word] = tag

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
            for part in self.cut(word):
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
        `` tag`` are split off), a missing count is suggested, blank lines are skipped.
        """
        for raw in iter_lines(path):
            line = raw.strip(_ASCII_SPACE).lstrip("\ufeff")
            if not line:
                continue
            word, freq, tag = _USER_LINE.match(line).groups()  # type: ignore[union-attr]
            self.add_word(word, freq, tag)

    # Part-of-speech tagging (the algorithm lives in posseg.py)
    def tag(self, text: str, hmm: bool = True) -> list[tuple[str, str]]:
        """``(word, tag)`` pairs of ``text``, as ``jieba.posseg.lcut(text, HMM=hmm)`` gives them.

        Tags come from the dictionary's third column (user words' tags over them), else ``x``;
        with ``hmm``, runs the dictionary cannot cut are tagged by posseg's HMM.

        >>> Segmenter().tag("我爱北京天安门")
        [('我', 'r'), ('爱', 'v'), ('北京', 'ns'), ('天安门', 'ns')]
        """
        return self.tag_lines([text], hmm)[0]

    def tag_lines(self, lines: Sequence[str], hmm: bool = True) -> list[list[tuple[str, str]]]:
        """:meth:`tag` for many lines in one kernel call."""
        from zhtext.lexical.posseg import tag_lines

        return tag_lines(self, lines, hmm)
