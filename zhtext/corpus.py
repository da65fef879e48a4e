"""The compact id corpus that discovery makes several passes over.

Lines are read once, reduced to Han-character ids (``uint16``, 2 bytes a character, ``0`` between
fragments: see :mod:`zhtext.ngrams`) and kept in blocks. Past ``spill_bytes`` the blocks go to a
temporary file and each pass streams them back, so memory stays bounded by one block plus the
count tables however large the corpus is.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator

import numpy as np

from .io import batched_lines
from .ngrams import ID_OFFSET
from .text import CHAR_CLASS, HAN, to_codes

BLOCK_CHARS = 1 << 22


def encode_ids(text: str) -> np.ndarray:
    """Han-character ids of ``text`` with one ``0`` between fragments and at both ends."""
    codes = to_codes(text)
    han = CHAR_CLASS[codes] == HAN if len(codes) else np.zeros(0, dtype=bool)
    ids = np.where(han, codes - ID_OFFSET, 0).astype(np.uint16)
    # Keep a separator only where it follows a character: runs of non-Han collapse to one 0.
    keep = han.copy()
    keep[1:] |= han[:-1]
    ids = ids[keep]
    if len(ids) and ids[0] == 0:
        ids = ids[1:]
    out = np.zeros(len(ids) + 2, dtype=np.uint16)
    out[1 : len(ids) + 1] = ids
    if len(ids) and out[-2] == 0:
        out = out[:-1]
    return out


class IdCorpus:
    """Blocks of ids, in memory or spilled to a temporary file; iterate to stream them."""

    def __init__(self, spill_bytes: int = 256 << 20) -> None:
        self.spill_bytes = spill_bytes
        self.blocks: list[np.ndarray] = []
        self.spans: list[tuple[int, int]] = []  # (offset, length) of each block in the file
        self.file: tempfile._TemporaryFileWrapper | None = None
        self.in_memory = 0
        self.chars_read = 0  # every character of the input, Han or not
        self.han_chars = 0

    def add_text(self, text: str) -> None:
        """Encode and append one batch of text."""
        self.chars_read += len(text)
        ids = encode_ids(text)
        self.han_chars += int(np.count_nonzero(ids))
        if np.count_nonzero(ids):
            self._append(ids)

    def _append(self, ids: np.ndarray) -> None:
        if self.file is None and self.in_memory + ids.nbytes > self.spill_bytes:
            self.file = tempfile.TemporaryFile(prefix="zhtext-corpus-")
            for block in self.blocks:
                self._write(block)
            self.blocks, self.in_memory = [], 0
        if self.file is None:
            self.blocks.append(ids)
            self.in_memory += ids.nbytes
        else:
            self._write(ids)

    def _write(self, ids: np.ndarray) -> None:
        assert self.file is not None
        offset = self.file.seek(0, os.SEEK_END)
        self.file.write(ids.tobytes())
        self.spans.append((offset, len(ids)))

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.file is None:
            yield from self.blocks
            return
        for offset, length in self.spans:
            self.file.seek(offset)
            yield np.frombuffer(self.file.read(length * 2), dtype=np.uint16)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    @classmethod
    def from_lines(
        cls, lines: Iterable[str], block_chars: int = BLOCK_CHARS, on_batch=None
    ) -> IdCorpus:
        """Read lines into a corpus, ``block_chars`` characters a block; ``on_batch(chars)``."""
        corpus = cls()
        for batch in batched_lines(lines, block_chars):
            text = "\n".join(batch)
            corpus.add_text(text)
            if on_batch:
                on_batch(len(text) + 1)
        return corpus


def fragments(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codepoints (``int32``) of a block's fragments without separators, and their offsets."""
    zeros = np.flatnonzero(ids == 0)
    lengths = np.diff(zeros) - 1
    lengths = lengths[lengths > 0]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    codes = ids[ids != 0].astype(np.int32) + ID_OFFSET
    return codes, offsets
