"""The numbered input lines of a pipeline run, each decoded on its own."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

from zhtext.io.reading import iter_numbered_lines

__all__ = ["Lines", "read_numbered"]


class Lines:
    """The numbered lines of a path or ``-``, opened at once: a missing or binary input, or an
    unknown encoding, raises ZhtextError when this is made (before any model loads).

    Iterating gives ``(number, end, text, error)`` as :func:`~zhtext.io.iter_numbered_lines` does:
    each line decoded on its own, an undecodable line (or one over ``max_bytes``, if given) an
    ``error``. A long line is read whole, as the standalone commands read it: the steps bound
    their own memory (a model tokenizes only the head it reads, the tagger streams its windows).
    ``size`` is the file's size in bytes (None for stdin), for a progress bar driven by ``end``.
    """

    def __init__(
        self, source: str | os.PathLike, encoding: str | None = None, max_bytes: int | None = None
    ) -> None:
        self.name = "<stdin>" if str(source) == "-" else str(source)
        lines = iter_numbered_lines(source, encoding, max_bytes)
        first = next(lines, None)
        self._lines = itertools.chain([first] if first is not None else [], lines)
        self.size = os.path.getsize(source) if self.name != "<stdin>" and os.path.isfile(source) else None

    def __iter__(self) -> Iterator[tuple[int, int, str, str | None]]:
        return self._lines


def read_numbered(
    source: str | os.PathLike, encoding: str | None = None
) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text, error) for each line of a path or ``-``, streamed, as :class:`Lines`
    reads it: an undecodable line gives ``(number, "", "cannot decode ...")`` and the lines after
    it still come."""
    for number, _, text, error in Lines(source, encoding):
        yield number, text, error
