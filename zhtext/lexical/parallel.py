"""Segmenting big texts on all cores: blocks of whole lines, worked on by threads, kept in order.

The segmentation kernels release the GIL (``nogil=True``), so threads run them side by side. Per
block, the work that holds the GIL is a few C-level calls (encoding the block to codepoints,
decoding the output), so N threads come close to N times one; worker processes would have to copy
every block in and every output out again. Text arrives in pieces cut anywhere (the reader's
chunks); :func:`line_blocks` regroups them into blocks that end at a line end, and
:func:`text_lines` turns one block into the lines that :func:`~zhtext.io.reading.iter_lines`
would yield, without a Python string per line. :func:`ordered_map` runs a function over the blocks
on a thread pool, with a bounded number of blocks in flight (bounded memory), and gives the
results in input order.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import AnyStr, TypeVar

import numpy as np
from numba import njit

from zhtext.errors import ZhtextError
from zhtext.lexical.chars import to_codes

_CR, _LF = 13, 10
_NONE = object()

T = TypeVar("T")
R = TypeVar("R")


def default_jobs() -> int:
    """The cores this process may run on (its CPU affinity, as ``os.process_cpu_count``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_jobs(jobs: int | None) -> int:
    """``jobs`` as a number of threads: ``None`` is every core; below 1 is an error."""
    if jobs is None:
        return default_jobs()
    if jobs < 1:
        raise ZhtextError(f"jobs must be at least 1, got {jobs}")
    return jobs


def line_blocks(chunks: Iterable[AnyStr], block_chars: int) -> Iterator[AnyStr]:
    """Regroup text cut anywhere into blocks of whole lines, of about ``block_chars`` characters
    (or bytes: chunks may be either) or more; only the last may lack its final ``\\n``.

    A block ends at the last ``\\n`` of the piece that brings it to ``block_chars`` (so about a
    piece more or less than that), so a ``\\r\\n`` is never split, and a line longer than a block
    makes a longer block: lines are never cut. Pieces are joined once per block.
    """
    held: list[AnyStr] = []  # the next block so far
    size = 0
    for chunk in chunks:
        if not chunk:
            continue
        size += len(chunk)
        end = b"\n" if isinstance(chunk, bytes) else "\n"
        cut = chunk.rfind(end) + 1 if size >= block_chars else 0
        if cut == 0:  # not enough yet, or no line end in this piece: keep reading
            held.append(chunk)
            continue
        held.append(chunk[:cut])
        yield chunk[:0].join(held)
        rest = chunk[cut:]
        held, size = ([rest], len(rest)) if rest else ([], 0)
    if held:
        yield held[0][:0].join(held)


@njit(cache=True, nogil=True)
def strip_line_ends(codes):
    """``codes`` without their line ends, and the offsets of the lines in what is left.

    Lines end at ``\\n``, one ``\\r`` before it going too; text after the last ``\\n`` is one more
    line (less one final ``\\r``). So the lines are those of :func:`~zhtext.io.reading.iter_lines`.
    """
    n = codes.shape[0]
    n_lines = 0
    for i in range(n):
        if codes[i] == _LF:
            n_lines += 1
    tail = n > 0 and codes[n - 1] != _LF
    out = np.empty(n, dtype=np.int32)
    offsets = np.empty(n_lines + (2 if tail else 1), dtype=np.int64)
    offsets[0] = 0
    k = 0
    p = 0
    for i in range(n):
        c = codes[i]
        if c == _LF:
            if p > offsets[k] and out[p - 1] == _CR:
                p -= 1
            k += 1
            offsets[k] = p
        else:
            out[p] = c
            p += 1
    if tail:
        if p > offsets[k] and out[p - 1] == _CR:
            p -= 1
        offsets[k + 1] = p
    return out[:p], offsets


def text_lines(text: str) -> tuple[np.ndarray, np.ndarray]:
    """The lines of ``text`` as :func:`~zhtext.lexical.chars.join_lines` gives a list of lines:
    their joined codepoints and ``int64`` offsets; the lines are those that
    :func:`~zhtext.io.reading.iter_lines` yields for the same text (``\\n`` or ``\\r\\n`` ends a
    line; a last line without an end counts)."""
    return strip_line_ends(to_codes(text))


def ordered_map(
    func: Callable[[T], R], items: Iterable[T], jobs: int, ahead: int | None = None
) -> Iterator[R]:
    """``map(func, items)`` computed by ``jobs`` threads, the results in input order.

    At most ``ahead`` items (default ``2 * jobs``) are taken from ``items`` before their results
    are consumed, so memory stays bounded and a stream is read as it comes. ``jobs=1`` runs in the
    calling thread, and so does the first item whatever ``jobs`` (whatever ``func`` sets up on its
    first call, compiling or caching, is then done once). An error in ``func`` is raised here, at
    its item's turn; on an error or an interruption, the items not started are dropped and the
    running ones finish (a kernel cannot be stopped midway, and each runs on one block only) before
    the pool's threads end.
    """
    items = iter(items)
    if jobs <= 1:
        yield from map(func, items)
        return
    first = next(items, _NONE)
    if first is _NONE:
        return
    yield func(first)
    ahead = max(ahead or 2 * jobs, jobs)
    pool = ThreadPoolExecutor(jobs, thread_name_prefix="zhtext")
    pending: collections.deque[Future[R]] = collections.deque()
    try:
        for item in items:
            pending.append(pool.submit(func, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
