"""Raw text for causal language models: lines -> token ids -> fixed-size training blocks.

Each non-empty line is one document, encoded the way the model will later see a prompt (for
BERT-tokenizer GPT-2s: ``[CLS] text [SEP]``). Documents are concatenated into one id stream and cut
into blocks of ``block_size`` tokens, so no position is wasted on padding; a block may start
inside a document, which teaches the model to continue from anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from zhtext.errors import ZhtextError
from zhtext.io.reading import iter_many_lines

__all__ = ["MAX_LINE_CHARS", "heldout_flags", "heldout_problems", "pack_blocks", "read_texts", "split_heldout"]

# Lines tokenised per call: large enough for the fast tokenizer's batching, small for memory.
_ENCODE_CHUNK = 2048
# Longest line read from a corpus or prompt file; longer lines arrive in pieces (bounded memory).
MAX_LINE_CHARS = 100_000


def read_texts(sources: str | os.PathLike | Sequence[str | os.PathLike],
               encoding: str | None = None) -> list[str]:
    """The non-empty lines of one text file or several (``-``: stdin), each one document; the
    codec is detected (UTF-8 or GB18030) unless ``encoding`` is given."""
    paths = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    return [line for line in iter_many_lines(paths, encoding, MAX_LINE_CHARS) if line.strip()]


def pack_blocks(lines: Iterable[str], encode: Callable[[Sequence[str]], list[list[int]]],
                block_size: int) -> np.ndarray:
    """Encode ``lines`` (``encode`` maps a list of texts to id lists, specials included) and cut the
    concatenated ids into rows of ``block_size``: an int64 array (blocks, block_size). The tail that
    does not fill a block is dropped. Raises ZhtextError when not one block can be made."""
    if block_size < 2:
        raise ZhtextError("block_size must be at least 2 (a token and the one after it)")
    parts: list[np.ndarray] = []
    chunk: list[str] = []

    def flush() -> None:
        if chunk:
            parts.extend(np.asarray(ids, dtype=np.int64) for ids in encode(chunk))
            chunk.clear()

    for line in lines:
        if line.strip():
            chunk.append(line)
            if len(chunk) == _ENCODE_CHUNK:
                flush()
    flush()
    stream = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    blocks = len(stream) // block_size
    if blocks == 0:
        raise ZhtextError(f"the training text has {len(stream)} tokens: too few for one block of "
                          f"{block_size}")
    return stream[: blocks * block_size].reshape(blocks, block_size)


def split_heldout(lines: Iterable[str], every: int) -> tuple[list[str], list[str]]:
    """Non-empty lines split into (train, held-out): every ``every``-th line is held out, so both
    parts cover the whole corpus (all four novels, beginning to end)."""
    train: list[str] = []
    held: list[str] = []
    for is_held, line in heldout_flags(lines, every):
        (held if is_held else train).append(line)
    return train, held


def heldout_problems(heldout_every: int | None, dev: object) -> list[str]:
    """What is wrong with holding out every ``heldout_every``-th line as the dev text (a
    :class:`~zhtext.neural.trainer.TrainConfig`'s ``problems``)."""
    if heldout_every is None:
        return []
    problems = []
    if heldout_every < 2:
        problems.append("heldout_every must be at least 2")
    if dev is not None:
        problems.append("give dev or heldout_every, not both")
    return problems


def heldout_flags(lines: Iterable[str], every: int) -> Iterator[tuple[bool, str]]:
    """``(held_out, line)`` for each non-empty line, streamed: every ``every``-th is held out
    (:func:`split_heldout` without holding the corpus in memory)."""
    if every < 2:
        raise ZhtextError("every must be at least 2")
    for i, line in enumerate(line for line in lines if line.strip()):
        yield i % every == every - 1, line
