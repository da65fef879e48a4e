"""The compact id corpus that discovery makes several passes over.

Text is read once, in blocks cut at line ends, and reduced to ``uint16`` unit ids (2 bytes a unit,
``0`` between fragments). A unit is a Han character (id ``cp - ID_OFFSET``, see :mod:`zhtext.lexical.ngrams`)
or a whole run of ASCII letters/digits : runs get ids above the Han
range from a vocabulary built while reading, so that words such as ``2000年`` or ``卡拉OK`` can be
found; every other character separates fragments. Unigram counts are taken while encoding.

Past ``spill_bytes`` the blocks go to a temporary file and each pass streams them back, so memory
stays bounded by the blocks in flight plus the count tables however large the corpus is. Passes
can spread blocks over threads (:meth:`IdCorpus.each_block`): the kernels release the GIL.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from zhtext.io.reading import _is_stream, batched_lines, iter_text_chunks
from zhtext.io.spill import SpillList
from zhtext.io.splits import cut_blocks, plan_splits, split_text
from zhtext.lexical.chars import ALNUM, CHAR_CLASS, HAN, HAN_LAST, to_codes
from zhtext.lexical.ngrams import ID_OFFSET

BLOCK_CHARS = 1 << 21
FIRST_RUN_ID = HAN_LAST - ID_OFFSET + 1  # 20951: ids from here on are ASCII letter/digit runs
LAST_RUN_ID = 0xD7FF  # stay below the surrogates, so that ids spell as ordinary characters
N_IDS = 1 << 16

Source = str | os.PathLike | Iterable[str | os.PathLike]


@njit(cache=True, nogil=True)
def _encode_kernel(codes, classes, out, uni):
    """Unit ids of ``codes`` into ``out`` (one ``0`` between fragments and at both ends).

    Each run of ASCII letters/digits takes one slot, left for the caller to fill; returns the ids
    written and the runs as rows (start in codes, end in codes, slot in out). Han unigrams are
    added to ``uni``.
    """
    size = codes.shape[0]
    n_runs = 0
    for i in range(size):
        if classes[codes[i]] == ALNUM and (i == 0 or classes[codes[i - 1]] != ALNUM):
            n_runs += 1
    runs = np.empty((n_runs, 3), dtype=np.int64)
    out[0] = 0
    n = 1
    r = 0
    i = 0
    after_sep = True  # out[n - 1] is a separator (a run's slot holds 0 too until filled)
    while i < size:
        cls = classes[codes[i]]
        if cls == HAN:
            ident = codes[i] - ID_OFFSET
            out[n] = ident
            uni[ident] += 1
            n += 1
            i += 1
            after_sep = False
        elif cls == ALNUM:
            j = i + 1
            while j < size and classes[codes[j]] == ALNUM:
                j += 1
            runs[r, 0] = i
            runs[r, 1] = j
            runs[r, 2] = n
            out[n] = 0
            r += 1
            n += 1
            i = j
            after_sep = False
        else:
            if not after_sep:
                out[n] = 0
                n += 1
                after_sep = True
            i += 1
    if not after_sep:
        out[n] = 0
        n += 1
    return n, runs


def text_blocks(source: Source, encoding: str | None = None, block_chars: int = BLOCK_CHARS
                ) -> Iterator[str]:
    """Text of a path, several ``Path`` objects or an iterable of lines, in blocks of about
    ``block_chars`` characters that end at a line end (a longer line is cut where it reaches it).

    A file is read split by split (:mod:`zhtext.io.splits`), each split's text cut into blocks:
    the blocks a Ray run reads, so both runs see the same blocks. Stdin and FIFOs, which cannot
    seek, are decoded chunk by chunk; neither is ever split into Python lines (the cheap way to
    read 100 MB).
    """
    if isinstance(source, (str, os.PathLike)):
        paths: list | None = [source]
    else:
        items = source if isinstance(source, (list, tuple)) else None
        paths = list(items) if items and all(isinstance(s, os.PathLike) for s in items) else None
    if paths is None:
        for batch in batched_lines((str(line) for line in source), block_chars):
            yield "\n".join(batch) + "\n"
        return
    for path in paths:
        if _is_stream(path):
            yield from cut_blocks(iter_text_chunks(path, encoding), block_chars)
            continue
        for split in plan_splits([os.fspath(path)], encoding):
            yield from split_text(split, block_chars, encoding is not None)


def each_item(items: Iterator, n_items: int, work: Callable[[int, int, object], None],
              threads: int = 1) -> None:
    """Call ``work(worker, index, item)`` for every item on up to ``threads`` threads. ``worker``
    (0..threads-1) names per-thread state to merge afterwards; ``index`` is the item's place in
    the sequence, for results that must be combined in order whichever thread made them. Items
    are taken under a lock (which also serialises reading a spilled corpus's file).

    The first error (or Ctrl-C) stops the pass: no thread takes another item, and the error is
    raised once the threads have finished the items they hold.
    """
    source = enumerate(items)
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def loop(worker: int) -> None:
        try:
            while True:
                with lock:
                    if stop.is_set():
                        return
                    index, item = next(source, (-1, None))
                if item is None:
                    return
                work(worker, index, item)
        except BaseException as error:
            with lock:
                errors.append(error)
                stop.set()

    if threads <= 1 or n_items <= 1:
        loop(0)
    else:
        with ThreadPoolExecutor(threads) as pool:
            running = [pool.submit(loop, k) for k in range(threads)]
            try:
                for done in running:
                    done.result()
            except BaseException:  # Ctrl-C in the waiting thread: the workers stop too
                stop.set()
                raise
    if errors:
        raise errors[0]


def sample_block(block: np.ndarray, share: float, pieces: int = 8) -> Iterator[np.ndarray]:
    """``share`` of one block in ``pieces`` stretches spread evenly over it, cut at fragment ends
    (views of the block)."""
    zeros = np.flatnonzero(block == 0)  # blocks start and end with one
    step = len(block) / pieces
    for k in range(pieces):
        a = zeros[np.searchsorted(zeros, int(k * step))]
        b = zeros[min(len(zeros) - 1, np.searchsorted(zeros, a + int(step * share)))]
        if b > a:
            yield block[a : b + 1]


class UnitCounts:
    """What a read corpus knows besides its blocks, wherever they are held: the characters read,
    each unit's count (``unigrams[id]``) and the letter/digit runs behind the run ids."""

    chars_read: int
    unigrams: np.ndarray
    run_text: list[str]

    @property
    def units(self) -> int:
        """Units read: Han characters plus letter/digit runs (separators are never counted)."""
        return int(self.unigrams.sum())

    @property
    def han_chars(self) -> int:
        """Han characters read."""
        return int(self.unigrams[1:FIRST_RUN_ID].sum())

    def spelling_table(self) -> dict[int, str]:
        """``str.translate`` table from unit-id characters (``chr(id)``) to their text."""
        table = {i: chr(i + ID_OFFSET) for i in range(1, FIRST_RUN_ID)}
        table.update({FIRST_RUN_ID + k: run for k, run in enumerate(self.run_text)})
        return table


class IdCorpus(UnitCounts):
    """Blocks of unit ids, in memory or spilled to a temporary file; iterate to stream them.

    ``units`` counts the units (Han characters plus letter/digit runs), ``han_chars`` the Han
    characters alone, ``unigrams[id]`` each unit's count; :meth:`spell` turns ids back into text.
    A spilled corpus shares one file position, so one iterator at a time reads it (the passes of
    :meth:`each_block` advance theirs under a lock).
    """

    def __init__(self, spill_bytes: int = 64 << 20) -> None:
        self.blocks = SpillList(spill_bytes, "zhtext-corpus-")
        self.chars_read = 0  # every character of the input, Han or not
        self.unigrams = np.zeros(N_IDS, dtype=np.int64)
        self.run_ids: dict[str, int] = {}  # ASCII run -> id
        self.run_text: list[str] = []  # id - FIRST_RUN_ID -> run

    # -- building
    def encode(self, text: str) -> np.ndarray:
        """Unit ids of ``text`` with one ``0`` between fragments and at both ends.

        New letter/digit runs join the vocabulary; once it is full (LAST_RUN_ID - FIRST_RUN_ID + 1
        = 34,345 runs), further new runs become separators. Unigram counts are updated.
        """
        codes = to_codes(text)
        out = np.empty(len(codes) + 2, dtype=np.uint16)
        n, runs = _encode_kernel(codes, CHAR_CLASS, out, self.unigrams)
        if len(runs):
            # Two flat lists, not one small list per run: on mixed text the garbage collector
            # would otherwise dominate reading (0.71 s against 0.20 s for 6M mixed characters).
            spans = zip(runs[:, 0].tolist(), runs[:, 1].tolist())
            ids = np.array([self._run_id(text[a:b]) for a, b in spans], np.int64)
            out[runs[:, 2]] = ids
            np.add.at(self.unigrams, ids, 1)
            self.unigrams[0] = 0
        # A block that was mostly separators is copied, so that the spare buffer is freed and
        # the bytes counted against ``spill_bytes`` are the bytes held.
        return out[:n].copy() if n < 0.75 * len(out) else out[:n]

    def _run_id(self, run: str) -> int:
        ident = self.run_ids.get(run)
        if ident is None:
            if FIRST_RUN_ID + len(self.run_text) > LAST_RUN_ID:
                return 0
            ident = self.run_ids[run] = FIRST_RUN_ID + len(self.run_text)
            self.run_text.append(run)
        return ident

    def add_text(self, text: str) -> None:
        """Encode and append one block of text (it should end at a line end)."""
        self.chars_read += len(text)
        ids = self.encode(text)
        if np.any(ids):
            self.blocks.append(ids)

    @classmethod
    def read(cls, source: Source, encoding: str | None = None, block_chars: int = BLOCK_CHARS,
             on_block: Callable[[int], None] | None = None) -> IdCorpus:
        """Read a path, several ``Path`` objects or an iterable of lines; ``on_block(chars)``."""
        corpus = cls()
        for text in text_blocks(source, encoding, block_chars):
            corpus.add_text(text)
            if on_block:
                on_block(len(text))
        return corpus

    @classmethod
    def from_lines(cls, lines: Iterable[str], block_chars: int = BLOCK_CHARS) -> IdCorpus:
        """A corpus of text lines (each line ends a fragment)."""
        return cls.read(lines, block_chars=block_chars)

    # -- reading back
    def __len__(self) -> int:
        return len(self.blocks)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.blocks)

    def each_block(self, work: Callable[[int, int, np.ndarray], None], threads: int = 1,
                   blocks: Sequence[np.ndarray] | None = None) -> None:
        """Call ``work(worker, index, block)`` for every block (or every one of ``blocks``) on up
        to ``threads`` threads; see :func:`each_item`."""
        items = self if blocks is None else blocks
        each_item(iter(items), len(items), work, threads)

    def sample(self, max_units: int, pieces: int = 8) -> Iterator[np.ndarray]:
        """About ``max_units`` units taken evenly across the corpus: from every block, ``pieces``
        equal stretches cut at fragment ends (:func:`sample_block`). The whole corpus when it is
        no larger."""
        if self.units <= max_units:
            yield from self
            return
        share = max_units / self.units
        for block in self:
            yield from sample_block(block, share, pieces)

    def spell(self, ids: Iterable[int]) -> str:
        """The text of a sequence of unit ids (separators skipped)."""
        out = []
        for i in ids:
            i = int(i)
            if i >= FIRST_RUN_ID:
                out.append(self.run_text[i - FIRST_RUN_ID])
            elif i:
                out.append(chr(i + ID_OFFSET))
        return "".join(out)

    def close(self) -> None:
        self.blocks.close()
