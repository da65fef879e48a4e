"""Keyword extraction: the words, order and weights of ``jieba.analyse.extract_tags`` (TF-IDF) and
``jieba.analyse.textrank``, and IDF tables built from one's own corpus.

Candidates (both methods): a token whose ``str.strip()`` leaves fewer than 2 characters, or whose
``lower()`` is a stop word, is never a keyword; with a POS filter, only tokens whose tag is allowed.

- TF-IDF: weight = count x (idf / total), ``total`` the number of candidate tokens of the text and
  ``idf`` the table's value, the table's median for a word it lacks.
- TextRank: an undirected graph whose edge (a, b) weighs how often candidate b stands within the 4
  tokens after candidate a (window of 5; every token counts as a position, punctuation included);
  10 in-place PageRank sweeps (damping 0.85) over the words in code-point order, then
  ``(w - min / 10) / (max - min / 10)``. The sweeps run in Numba, each float operation in jieba's
  order, so weights agree to the bit.

Both rank by weight, best first; equal weights keep the order in which the words first came (a
stable sort), as jieba's do. Per call, the work is proportional to the text: the IDF table (jieba's
270k words) is parsed once per process and its median computed then.

An IDF table is ``word idf`` lines (jieba's ``idf.txt``). :func:`build_idf` makes one from a corpus,
each non-blank line a document: ``idf = ln(N / df)``, N the documents, df those holding the word
(jieba's own table fits ``ln(1,088,899 / df)``: its largest value, 13.900677652, is ``df = 1``).
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections import Counter, deque
from collections.abc import Collection, Iterable, Iterator, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from zhtext.errors import ZhtextError
from zhtext.io.reading import batched_lines, iter_lines, iter_numbered_lines
from zhtext.io.writing import atomic_output
from zhtext.lexical.choices import MAX_TERMS
from zhtext.lexical.segment import default_segmenter

PathLike = str | os.PathLike

# jieba.analyse's built-in stop words (English function words; more come from a file).
STOP_WORDS = frozenset({
    "all", "an", "and", "are", "as", "at", "be", "by", "can", "for", "from", "has", "have", "if",
    "in", "is", "it", "not", "of", "on", "one", "or", "that", "the", "then", "this", "to", "we",
    "which", "with", "you",
})  # fmt: skip
TEXTRANK_POS = ("ns", "n", "vn", "v")  # place names, nouns, verbal nouns, verbs
WINDOW = 5  # TextRank: a word and the 4 tokens after it
DAMPING = 0.85
SWEEPS = 10
# A line break is a token of its own in jieba's cut (a blank one: never a keyword).
_BREAK = "\n"
_BATCH_CHARS = 1 << 16  # a long document is cut this many characters at a time


def jieba_idf_path() -> Path:
    """Path of the ``idf.txt`` that ships inside the installed jieba package."""
    import jieba

    return Path(os.path.dirname(jieba.__file__)) / "analyse" / "idf.txt"


# ----------------------------------------------------------------------------------------------
# IDF tables


class IDFTable:
    """Inverse document frequencies: ``idf[word]``, and ``median`` for words the table lacks.

    The median is jieba's: the middle value of the sorted values (the upper one of an even count).
    Load with :meth:`load` (cached per file), build with :func:`build_idf`, write with :meth:`save`.
    ``documents`` is the number of documents a built table counted (None for a loaded one).
    """

    def __init__(self, idf: dict[str, float], documents: int | None = None) -> None:
        if not idf:
            raise ZhtextError("an IDF table needs at least one word")
        self.idf = idf
        self.median = sorted(idf.values())[len(idf) // 2]
        self.documents = documents

    def __len__(self) -> int:
        return len(self.idf)

    def __repr__(self) -> str:
        return f"IDFTable({len(self.idf)} words, median={self.median!r})"

    def get(self, word: str) -> float:
        """The IDF of ``word``, the median if the table lacks it."""
        return self.idf.get(word, self.median)

    @classmethod
    def load(
        cls, path: PathLike | None = None, encoding: str | None = None
    ) -> IDFTable:
        """Read ``word idf`` lines (default: jieba's ``idf.txt``); blank lines are skipped.

        Cached per file (path, size and modification time), so a process parses jieba's 6 MB
        table once (~0.4 s); the table returned is shared: do not change it.
        """
        path = Path(jieba_idf_path() if path is None else path)
        if not path.is_file():
            raise ZhtextError(f"IDF table not found: {path}")
        stat = path.stat()
        where = str(path.resolve())
        return _load_idf(str(path), where, stat.st_size, stat.st_mtime_ns, encoding)

    def save(self, path: PathLike) -> None:
        """Write ``word idf`` lines, the shortest repr of each float, so :meth:`load` gives back
        the very same table (``-`` writes to stdout)."""
        with atomic_output(path) as handle:
            for word, value in self.idf.items():
                if word.split() != [word]:
                    raise ZhtextError(f"cannot save {word!r}: a word with whitespace")
                handle.write(f"{word} {value!r}\n")


@functools.lru_cache(maxsize=4)
def _load_idf(
    path: str, where: str, size: int, mtime_ns: int, encoding: str | None
) -> IDFTable:
    """The table at ``path`` (resolved: ``where``); the size and time key the cache."""
    idf: dict[str, float] = {}
    for number, line in enumerate(iter_lines(where, encoding), 1):
        # jieba's split: exactly one space between the word and its value
        parts = line.strip().split(" ")
        if parts == [""]:
            continue
        value = float("nan")
        if len(parts) == 2:
            try:
                value = float(parts[1])
            except ValueError:
                pass
        if len(parts) != 2 or not math.isfinite(value):
            raise ZhtextError(
                f"{path}:{number}: expected 'word idf' (a finite number), got {line[:60]!r}"
            )
        idf[parts[0]] = value
    if not idf:
        raise ZhtextError(f"{path}: no 'word idf' lines in the IDF table")
    return IDFTable(idf)


def build_idf(
    paths: PathLike | Iterable[PathLike],
    segmenter: Any = None,
    *,
    encoding: str | None = None,
    max_terms: int = MAX_TERMS,
    progress: bool = False,
) -> IDFTable:
    """An IDF table from a corpus, in one pass: each non-blank line of ``paths`` is a document.

    The words are ``segmenter.cut(line)`` (default: jieba's dictionary), those TF-IDF can weigh
    (2+ characters once stripped). ``idf = ln(N / df)``, as jieba's table is made.

    Memory is bounded by ``max_terms`` distinct words: when one more would not fit, the rarest are
    dropped (every word of the lowest document frequency, then of the next, until at most half of
    ``max_terms`` remain). A dropped word seen again starts over, so its df is a lower bound; a
    word never dropped has its exact df. The table lists frequent words first (ties by word).
    """
    if max_terms < 1:
        raise ZhtextError(f"max_terms must be at least 1, got {max_terms}")
    from zhtext.io.progress import Bar

    segmenter = segmenter if segmenter is not None else default_segmenter()
    sources = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    df: dict[str, int] = {}
    documents = 0
    with Bar(enabled=progress, unit="bytes") as bar:
        for source in sources:
            lines = iter_numbered_lines(source, encoding)  # a missing file fails now
            size = os.path.getsize(source) if os.path.isfile(source) else None
            task = bar.add(f"idf: {Path(source).name}"[:22], total=size)
            done = 0
            for number, end, line, error in lines:
                if error is not None:
                    raise ZhtextError(f"{source}:{number}: {error}")
                bar.advance(task, end - done)
                done = end
                if not line.strip():
                    continue
                documents += 1
                # each word once, in order: pruning is reproducible
                for word in dict.fromkeys(segmenter.cut(line)):
                    if len(word.strip()) < 2:
                        continue
                    if word in df:
                        df[word] += 1
                        continue
                    if len(df) >= max_terms:
                        df = _prune(df, max_terms // 2)
                    df[word] = 1
    if not documents:
        raise ZhtextError("no documents in the corpus (every line is blank)")
    if not df:
        raise ZhtextError("no words of 2 or more characters in the corpus")
    ranked = sorted(df.items(), key=lambda item: (-item[1], item[0]))
    idf = {word: math.log(documents / count) for word, count in ranked}
    return IDFTable(idf, documents)


def _prune(df: dict[str, int], keep: int) -> dict[str, int]:
    """``df`` without its rarest words: whole levels of document frequency, lowest first, until at
    most ``keep`` words remain."""
    levels: dict[int, int] = {}
    for count in df.values():
        levels[count] = levels.get(count, 0) + 1
    left, cut = len(df), 0
    for level in sorted(levels):
        if left <= keep:
            break
        left -= levels[level]
        cut = level
    return {word: count for word, count in df.items() if count > cut}


# ----------------------------------------------------------------------------------------------
# Scores over tokens


def load_stop_words(
    path: PathLike | None = None, encoding: str | None = None
) -> frozenset[str]:
    """jieba's stop words, plus each line of ``path``, as ``jieba.analyse.set_stop_words``
    adds them: as they are (a word is dropped when its ``lower()`` is one of them)."""
    if path is None:
        return STOP_WORDS
    words = set(STOP_WORDS)
    for line in iter_lines(path, encoding):
        words.update(line.splitlines())  # as jieba: every line boundary Python knows
    return frozenset(words)


def _candidate(word: str, stop_words: Collection[str]) -> bool:
    # len(word) first: most tokens are single characters, and strip() or lower() cost more
    return len(word) >= 2 and len(word.strip()) >= 2 and word.lower() not in stop_words


def _ranked(scores: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """Best first; a stable sort, so equal weights stay in the order the words came."""
    return sorted(scores, key=itemgetter(1), reverse=True)


def tfidf_scores(
    tokens: Iterable[str] | Iterable[tuple[str, str]],
    idf: IDFTable,
    *,
    allow_pos: Collection[str] = (),
    stop_words: Collection[str] = STOP_WORDS,
) -> list[tuple[str, float]]:
    """Every keyword of ``tokens`` with its TF-IDF weight, best first: ``extract_tags(text,
    topK=None, withWeight=True, allowPOS=allow_pos)`` over the same tokens.

    ``tokens``: words, or (word, tag) pairs when ``allow_pos`` is not empty.
    """
    words = tokens
    if allow_pos:
        allowed = frozenset(allow_pos)
        words = (word for word, tag in tokens if tag in allowed)
    # Counted in C first, then each distinct word judged once (a text repeats its words): the
    # counts, and their order of first appearance, of jieba's loop over every token.
    counts = {w: n for w, n in Counter(words).items() if _candidate(w, stop_words)}
    total = sum(counts.values())
    lookup, median = idf.idf.get, idf.median  # IDFTable.get without a method call per word
    # jieba's float operations, in its order: count * (idf / total)
    return _ranked((w, count * (lookup(w, median) / total)) for w, count in counts.items())


def textrank_scores(
    pairs: Iterable[tuple[str, str]],
    *,
    allow_pos: Collection[str] = TEXTRANK_POS,
    stop_words: Collection[str] = STOP_WORDS,
    window: int = WINDOW,
) -> list[tuple[str, float]]:
    """Every keyword of the (word, tag) ``pairs`` with its TextRank weight, best first:
    ``textrank(text, topK=None, withWeight=True, allowPOS=allow_pos)`` over the same tokens.

    Streams: only the last ``window`` tokens are held, with the co-occurrence counts.
    """
    allowed = frozenset(allow_pos)
    links: dict[tuple[str, str], int] = {}  # (a, b): b within the window after a
    recent: deque[str | None] = deque()  # the last tokens: a candidate's word, or None

    def link_first() -> None:
        first = recent[0]
        if first is not None:
            for word in list(recent)[1:]:
                if word is not None:
                    links[first, word] = links.get((first, word), 0) + 1

    for word, tag in pairs:
        keep = tag in allowed and _candidate(word, stop_words)
        recent.append(word if keep else None)
        if len(recent) == window:
            link_first()
            recent.popleft()
    while recent:
        link_first()
        recent.popleft()
    return _ranked(_pagerank(links))


def _pagerank(links: dict[tuple[str, str], int]) -> list[tuple[str, float]]:
    """(word, normalised rank) in the order the words first appear among ``links``."""
    ids: dict[str, int] = {}
    src: list[int] = []
    dst: list[int] = []
    weight: list[int] = []
    for (a, b), count in links.items():  # an edge each way, in jieba's order
        i, j = ids.setdefault(a, len(ids)), ids.setdefault(b, len(ids))
        src += (i, j)
        dst += (j, i)
        weight += (count, count)
    if not ids:
        return []
    words = list(ids)
    # Each node's edges together, in the order they were added (a stable sort).
    by_edge = np.argsort(np.array(src, dtype=np.int64), kind="stable")
    nodes = np.arange(len(words) + 1)
    start = np.searchsorted(np.array(src, dtype=np.int64)[by_edge], nodes)
    nbr = np.array(dst, dtype=np.int64)[by_edge]
    wgt = np.array(weight, dtype=np.float64)[by_edge]
    order = sorted(range(len(words)), key=words.__getitem__)  # code-point order
    sweep = np.array(order, dtype=np.int64)
    lo, hi = sys.float_info.max, sys.float_info.min
    rank = _textrank_kernel(start, nbr, wgt, sweep, DAMPING, SWEEPS, lo, hi)
    return list(zip(words, rank.tolist()))


@njit(cache=True)
def _textrank_kernel(start, nbr, weight, sweep, damping, sweeps, lo, hi):
    """In-place PageRank sweeps over the nodes in ``sweep`` order, then jieba's normalisation.

    Node v's edges are ``start[v]:start[v + 1]`` of ``nbr``/``weight``; ``lo``/``hi`` start the
    min/max search (jieba's largest float and smallest normal one).
    """
    n = start.shape[0] - 1
    out = np.zeros(n)
    for v in range(n):
        total = 0.0
        for e in range(start[v], start[v + 1]):
            total += weight[e]
        out[v] = total
    rank = np.full(n, 1.0 / n)
    for _ in range(sweeps):
        for k in range(n):
            v = sweep[k]
            s = 0.0
            for e in range(start[v], start[v + 1]):
                u = nbr[e]
                s += weight[e] / out[u] * rank[u]
            rank[v] = (1 - damping) + damping * s
    for v in range(n):
        lo = min(lo, rank[v])
        hi = max(hi, rank[v])
    for v in range(n):
        rank[v] = (rank[v] - lo / 10.0) / (hi - lo / 10.0)
    return rank


# ----------------------------------------------------------------------------------------------
# Texts


METHODS = ("tfidf", "textrank")


class KeywordExtractor:
    """jieba.analyse's extractors: a segmenter, the method's settings and tables, held once.

    ``method``: ``tfidf`` (``extract_tags``) or ``textrank``. ``allow_pos``: tags to keep (None:
    the method's default, none for TF-IDF, ``ns n vn v`` for TextRank); a POS filter and TextRank
    take (word, tag) pairs from ``segmenter.tag``, else words from ``segmenter.cut``. ``idf``: an
    :class:`IDFTable` or its path (default: jieba's). ``stop_words``: a path (its lines are added
    to jieba's list) or the collection to use. ``segmenter``: default, jieba's dictionary;
    ``hmm``, when given, is passed on to its ``cut``/``tag``.

    >>> extract = KeywordExtractor()
    >>> extract("我来到北京清华大学，清华大学是一所大学", top=2)
    ['清华大学', '一所']
    """

    def __init__(
        self,
        method: str = "tfidf",
        *,
        allow_pos: Iterable[str] | None = None,
        idf: IDFTable | PathLike | None = None,
        stop_words: PathLike | Collection[str] | None = None,
        segmenter: Any = None,
        hmm: bool | None = None,
    ) -> None:
        if method not in METHODS:
            raise ZhtextError(f"unknown method {method!r}: use tfidf or textrank")
        self.method = method
        default_pos = TEXTRANK_POS if method == "textrank" else ()
        self.allow_pos = tuple(default_pos if allow_pos is None else allow_pos)
        self.idf: IDFTable | None = None
        if method == "tfidf":
            self.idf = idf if isinstance(idf, IDFTable) else IDFTable.load(idf)
        elif idf is not None:
            raise ZhtextError("an IDF table is for TF-IDF; TextRank does not use one")
        if stop_words is None or isinstance(stop_words, (str, os.PathLike)):
            self.stop_words = load_stop_words(stop_words)
        else:
            self.stop_words = frozenset(stop_words)
        self.segmenter = segmenter if segmenter is not None else default_segmenter()
        self.hmm = hmm
        self.tagged = method == "textrank" or bool(self.allow_pos)

    def tokens(self, text: str) -> list:
        """The tokens the method reads: (word, tag) pairs if it needs tags, else words."""
        options = {} if self.hmm is None else {"hmm": self.hmm}
        if not self.tagged:
            return self.segmenter.cut(text, **options)
        return self.segmenter.tag(text, **options)

    def scores(self, tokens: Iterable) -> list[tuple[str, float]]:
        """Every keyword of ``tokens`` (see :meth:`tokens`) with its weight, best first."""
        settings = {"allow_pos": self.allow_pos, "stop_words": self.stop_words}
        if self.method == "textrank":
            return textrank_scores(tokens, **settings)
        return tfidf_scores(tokens, self.idf, **settings)

    def __call__(
        self, text: str, top: int | None = 20, with_weight: bool = False
    ) -> list[str] | list[tuple[str, float]]:
        """The ``top`` keywords of ``text`` (None or 0: all), with weights if ``with_weight``."""
        return _top(self.scores(self.tokens(text)), top, with_weight)

    def extract_lines(
        self, lines: Iterable[str], top: int | None = 20, with_weight: bool = False
    ) -> list[str] | list[tuple[str, float]]:
        """The keywords of ``lines`` as one text, read as a stream: the same as
        ``self("\\n".join(lines), ...)`` without holding all of it."""
        return _top(self.scores(self._stream(lines)), top, with_weight)

    def _stream(self, lines: Iterable[str]) -> Iterator:
        # A line break is a token of its own in jieba, so a text cut in pieces at line
        # breaks gives the same tokens (TextRank's window counts a break as a position).
        brk = (_BREAK, "x") if self.tagged else _BREAK
        for k, batch in enumerate(batched_lines(lines, _BATCH_CHARS)):
            if k:
                yield brk
            yield from self.tokens(_BREAK.join(batch))


def _top(scores: list[tuple[str, float]], top: int | None, with_weight: bool) -> list:
    if top is not None and top < 0:
        raise ZhtextError(f"top must be 0 (all) or more, got {top}")
    kept = scores[:top] if top else scores  # jieba's topK: 0 or None keeps all
    return kept if with_weight else [word for word, _ in kept]


def keywords(
    text: str,
    top: int | None = 20,
    *,
    method: str = "tfidf",
    with_weight: bool = False,
    allow_pos: Sequence[str] | None = None,
    idf: IDFTable | PathLike | None = None,
    stop_words: PathLike | Collection[str] | None = None,
    segmenter: Any = None,
    hmm: bool | None = None,
) -> list[str] | list[tuple[str, float]]:
    """The keywords of ``text``, as ``jieba.analyse.extract_tags`` or ``jieba.analyse.textrank``.

    ``top``: how many (None or 0: all); ``with_weight``: (word, weight) pairs. ``method``:
    ``tfidf`` (weights from the IDF table, jieba's by default) or ``textrank`` (a co-occurrence
    graph, POS ``ns n vn v`` by default). ``allow_pos``, ``idf``, ``stop_words``, ``segmenter``
    and ``hmm``: see :class:`KeywordExtractor`, which holds them for many texts.

    >>> keywords("我来到北京清华大学，清华大学是一所大学", top=2, with_weight=True)
    [('清华大学', 2.6935315738733334), ('一所', 1.3019387960883333)]
    """
    extract = KeywordExtractor(
        method,
        allow_pos=allow_pos,
        idf=idf,
        stop_words=stop_words,
        segmenter=segmenter,
        hmm=hmm,
    )
    return extract(text, top, with_weight)
