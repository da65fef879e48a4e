"""Vectors on disk and the data they are scored on (numpy only: no torch).

STS pairs (:func:`read_sts`, :class:`StsPairs`), sentences to fit a whitening on
(:func:`read_fit_sentences`), the vector index that ``zhtext embed -o FILE.npy`` writes and
``zhtext similar`` searches (:func:`save_index`, :func:`load_index`, :func:`cosine_top_k`), and the
JSON form of a vector (:func:`vector_json`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zhtext.errors import ZhtextError
from zhtext.io.reading import iter_lines
from zhtext.io.writing import atomic_output, atomic_path

if TYPE_CHECKING:
    from zhtext.tasks.embed import Embedder

__all__ = [
    "StsPairs",
    "constant_gold",
    "cosine_top_k",
    "index_meta_path",
    "load_index",
    "read_fit_sentences",
    "read_sts",
    "save_index",
    "save_index_meta",
    "vector_json",
]


# --------------------------------------------------------------------------- STS data


@dataclass
class StsPairs:
    """Sentence pairs with gold similarity scores."""

    s1: list[str]
    s2: list[str]
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, float]]) -> StsPairs:
        """Pairs from ``(s1, s2, score)`` triples."""
        rows = list(rows)
        if any(len(row) != 3 for row in rows):
            raise ZhtextError("STS pairs are (sentence 1, sentence 2, score) triples")
        s1, s2, scores = zip(*rows) if rows else ((), (), ())
        try:
            values = np.asarray(scores, dtype=np.float64)
        except (TypeError, ValueError):
            raise ZhtextError("STS scores must be numbers") from None
        return cls(list(s1), list(s2), values)


def _sts_layout(fields: list[str]) -> tuple[int, int, int] | None:
    """(score, sentence 1, sentence 2) columns if the tab-split line is an STS row, else None.

    ``s1<TAB>s2<TAB>score`` (Chinese STS-B), or the STS-benchmark layout: genre, file, year, id,
    score, s1, s2 and sometimes licence fields after them.
    """
    layout = (2, 0, 1) if len(fields) == 3 else (4, 5, 6) if len(fields) >= 7 else None
    if layout is None:
        return None
    try:
        value = float(fields[layout[0]])
    except ValueError:
        return None
    return layout if math.isfinite(value) else None


def _nonblank(path: str | os.PathLike, encoding: str | None) -> Iterator[tuple[int, str]]:
    """(line number, line) of the non-blank lines of a file."""
    return ((n, line) for n, line in enumerate(iter_lines(path, encoding), 1) if line.strip())


def _sts_rows(
    numbered: Iterable[tuple[int, str]], path: str | os.PathLike
) -> Iterator[tuple[str, str, float]]:
    """(s1, s2, score) of each numbered line; the layout is taken from the first line."""
    layout: tuple[int, int, int] | None = None
    for lineno, line in numbered:
        fields = line.split("\t")
        if layout is None:
            layout = _sts_layout(fields)
            if layout is None:
                raise ZhtextError(
                    f"{path}:{lineno}: not an STS line (expected s1<TAB>s2<TAB>score, or the "
                    "STS-benchmark layout with the score in column 5 and sentences in 6 and 7)"
                )
        if layout[0] == 2 and len(fields) != 3 or len(fields) < 3 or layout[0] == 4 and len(fields) < 7:
            wanted = "3" if layout[0] == 2 else "at least 7"
            raise ZhtextError(
                f"{path}:{lineno}: expected {wanted} tab-separated fields, got {len(fields)}"
            )
        try:
            score = float(fields[layout[0]])
        except ValueError:
            raise ZhtextError(f"{path}:{lineno}: score {fields[layout[0]]!r} is not a number") from None
        yield fields[layout[1]], fields[layout[2]], score


def read_sts(path: str | os.PathLike, encoding: str | None = None) -> StsPairs:
    """Read STS pairs: ``s1<TAB>s2<TAB>score`` lines, or the STS-benchmark ``.csv`` (really TSV).

    The layout is taken from the first line; every other line must follow it. Fields are split on
    tabs only, never unquoted (the sentences contain quote marks). Blank lines are skipped; a
    malformed line raises ZhtextError naming the file and line.
    """
    pairs = StsPairs.from_rows(_sts_rows(_nonblank(path, encoding), path))
    if len(pairs) < 2:
        raise ZhtextError(f"{path}: need at least 2 scored pairs, found {len(pairs)}")
    if pairs.scores.min() == pairs.scores.max():  # the correlation would be NaN
        raise ZhtextError(f"{path}: {constant_gold(pairs.scores)}")
    return pairs


def constant_gold(scores: np.ndarray) -> str:
    """Why no rank correlation can be computed against gold ``scores`` that are all equal."""
    return (f"every pair has the gold score {scores[0]:g}; a rank correlation needs at least two "
            "different scores")


def read_fit_sentences(path: str | os.PathLike, encoding: str | None = None) -> Iterator[str]:
    """Sentences to fit a whitening on, streamed: both sentences of every pair of an STS file, or
    else every non-blank line of a plain text file. The kind is told from the first non-blank line.
    """
    numbered = _nonblank(path, encoding)
    first = next(numbered, None)
    if first is None:
        return
    rest = itertools.chain([first], numbered)  # one pass, so stdin works too
    if _sts_layout(first[1].split("\t")) is None:
        yield from (line for _, line in rest)
    else:
        for s1, s2, _ in _sts_rows(rest, path):
            yield s1
            yield s2


# --------------------------------------------------------------------------- vector index


def index_meta_path(index: str | os.PathLike) -> Path:
    """The settings file kept beside a vector index: ``vectors.npy`` -> ``vectors.json``."""
    return Path(index).with_suffix(".json")


def save_index(path: str | os.PathLike, vectors: np.ndarray, embedder: Embedder) -> None:
    """Write vectors to ``.npy`` with the settings that made them beside it (``.json``), so that
    queries can be encoded the same way; a whitening is saved beside them too (``.whitening.npz``).
    The files are written to temporary names and renamed into place together."""
    with contextlib.ExitStack() as stack:
        with open(stack.enter_context(atomic_path(path)), "wb") as handle:
            np.save(handle, np.ascontiguousarray(vectors, dtype=np.float32))
        save_index_meta(path, embedder, int(vectors.shape[0]), stack)


def save_index_meta(
    path: str | os.PathLike, embedder: Embedder, count: int, stack: contextlib.ExitStack
) -> None:
    """Write what :func:`load_index` needs beside ``count`` vectors at ``path``: the embedder's
    settings (``.json``) and its whitening (``.whitening.npz``), to temporary files that ``stack``
    renames into place when it closes, so they land with the vectors or not at all."""
    path = Path(path)
    meta: dict[str, Any] = {**embedder.settings(), "count": count, "dim": embedder.dim, "whitening": None}
    if embedder.whitening is not None:
        w_path = path.with_suffix(".whitening.npz")
        embedder.whitening.save(stack.enter_context(atomic_path(w_path)))
        meta["whitening"] = w_path.name
    handle = stack.enter_context(atomic_output(index_meta_path(path)))
    handle.write(json.dumps(meta, ensure_ascii=False, indent=2) + "\n")


def vector_json(row: np.ndarray) -> str:
    """A vector as a JSON array; 9 significant digits give every float32 back exactly."""
    return "[" + ",".join(format(float(v), ".9g") for v in row) + "]"


def load_index(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Open an index written by :func:`save_index` (memory-mapped) and its settings.

    The settings' ``whitening`` entry is turned into the full path of the whitening file.
    """
    path = Path(path)
    meta_path = index_meta_path(path)
    if not path.is_file():
        raise ZhtextError(f"no such index: {path}")
    if not meta_path.is_file():
        raise ZhtextError(
            f"{meta_path} is missing: the index must be written by 'zhtext embed -o {path.name}'"
        )
    try:
        vectors = np.load(path, mmap_mode="r", allow_pickle=False)
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ZhtextError(f"cannot read the index {path}: {exc}") from None
    if vectors.ndim != 2 or not isinstance(meta, dict) or "model" not in meta:
        raise ZhtextError(f"{path} is not a zhtext vector index")
    if meta.get("whitening"):
        meta["whitening"] = str(path.parent / meta["whitening"])
    return vectors, meta


def cosine_top_k(
    index: np.ndarray, queries: np.ndarray, k: int = 10, chunk: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``index`` most cosine-similar to each query, best first.

    Works through the index in chunks (it may be a memory map larger than RAM). Returns
    ``(rows, scores)``, both of shape (len(queries), min(k, len(index))).
    """
    q = np.asarray(queries, dtype=np.float32)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    k = min(k, index.shape[0])
    best_rows = np.zeros((len(q), 0), dtype=np.int64)
    best_scores = np.zeros((len(q), 0), dtype=np.float32)
    for start in range(0, index.shape[0], chunk):
        block = np.asarray(index[start : start + chunk], dtype=np.float32)
        norms = np.maximum(np.linalg.norm(block, axis=1), 1e-12)
        scores = (q @ block.T) / norms
        rows = np.broadcast_to(np.arange(start, start + len(block)), scores.shape)
        best_scores = np.concatenate([best_scores, scores], axis=1)
        best_rows = np.concatenate([best_rows, rows], axis=1)
        if best_scores.shape[1] > k:
            keep = np.argpartition(-best_scores, k - 1, axis=1)[:, :k]
            best_scores = np.take_along_axis(best_scores, keep, axis=1)
            best_rows = np.take_along_axis(best_rows, keep, axis=1)
    order = np.lexsort((best_rows, -best_scores), axis=1) if k else best_rows
    return np.take_along_axis(best_rows, order, axis=1), np.take_along_axis(best_scores, order, axis=1)
