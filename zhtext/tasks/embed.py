"""Sentence embeddings: an encoder with BERT-style poolings, BERT-whitening, STS scoring, search.

:class:`Embedder` turns sentences into one vector each with any Hugging Face encoder (hub id or
local directory). Sentences are tokenized once, sorted by length and batched with padding only up
to the longest sentence of each batch, so little compute goes to padding; vectors come back in
input order.

:class:`Whitening` is BERT-whitening (Su Jianlin, 2021): with μ the mean of a corpus's vectors and
Σ = U S Uᵀ their covariance, y = (x − μ) U S^{-1/2} has zero mean and identity covariance, and
keeping the first k columns cuts the dimension to the k directions of largest variance. It is fitted
from float64 running sums (Σx, Σxxᵀ, n), so any number of vectors fits in memory bounded by one
d × d matrix and one chunk of rows.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zhtext.errors import ZhtextError
from zhtext.io.writing import atomic_output, atomic_path
from zhtext.io.reading import iter_lines
from zhtext.eval.metrics import spearman
from zhtext.io.progress import Bar

if TYPE_CHECKING:
    import torch
    from rich.progress import TaskID

__all__ = [
    "POOLINGS",
    "Embedder",
    "StsPairs",
    "Whitening",
    "cosine_top_k",
    "evaluate_sts",
    "index_meta_path",
    "load_index",
    "read_fit_sentences",
    "read_sts",
    "save_index",
]

POOLINGS = ("cls", "last-avg", "first-last-avg", "pooler")

# Rows handled at once when accumulating or transforming: bounds the float64 temporaries
# (2048 × 768 × 8 bytes = 12.6 MB) whatever size of batch the caller hands over.
_CHUNK_ROWS = 2048
# Sentences tokenized and encoded per block when streaming an iterable of unknown length.
_STREAM_BLOCK = 8192


# --------------------------------------------------------------------------- whitening


class Whitening:
    """BERT-whitening: ``transform(x) = normalize((x − μ) W[:, :dim])`` with ``W = U S^{-1/2}``.

    Fit with :meth:`fit` (an array, or an iterable of batches) or with repeated :meth:`partial_fit`
    calls; only the float64 sums Σ(x−c), Σ(x−c)(x−c)ᵀ and n are kept (c is the mean of the first
    chunk, a shift that keeps the sums from cancelling when the mean is large). The covariance uses
    n − 1, as ``np.cov``. SVD gives U and S with variances in falling order, so the first ``dim``
    columns of W keep the directions of largest variance. Each column's sign is fixed (its largest
    entry positive) so the same data always gives the same W.

    A singular covariance (fewer vectors than dimensions, or constant directions) has zero
    variances; they are raised to ``eps`` times the largest before the inverse square root, so W
    stays finite. Those directions carry no information from the fitting set: keep ``dim`` at or
    below :attr:`rank` (the CLI warns otherwise).

    ``settings`` (model name, pooling, max_len, ...) are stored with the fit so it is applied to
    vectors made the same way.
    """

    def __init__(self, dim: int | None = None, eps: float = 1e-9, **settings: Any) -> None:
        self._dim: int | None = None
        self.eps = eps
        self.settings: dict[str, Any] = dict(settings)
        self.n = 0
        self._shift: np.ndarray | None = None
        self._sum: np.ndarray | None = None
        self._outer: np.ndarray | None = None
        self._mu: np.ndarray | None = None
        self._W: np.ndarray | None = None
        self._S: np.ndarray | None = None
        self._scratch: np.ndarray | None = None  # float64 chunk and d × d product, reused
        self._product: np.ndarray | None = None
        self.dim = dim

    @property
    def dim(self) -> int | None:
        """Whitened dimensions kept (the first ``dim`` columns of W); None keeps them all."""
        return self._dim

    @dim.setter
    def dim(self, value: int | None) -> None:
        if value is not None and value <= 0:
            raise ZhtextError(f"whitening dimension must be positive, got {value}")
        width = self._W.shape[1] if self._W is not None else None
        if value is not None and width is not None and value > width:
            raise ZhtextError(f"whitening dimension {value} exceeds the vectors' {width}")
        self._dim = value

    # -- fitting

    def partial_fit(self, batch: np.ndarray) -> Whitening:
        """Add a batch of vectors (rows) to the running sums; returns ``self``."""
        x = np.asarray(batch)
        if x.ndim != 2:
            raise ZhtextError(f"whitening expects a 2-D array of vectors, got shape {x.shape}")
        if x.shape[0] == 0:
            return self
        rows = range(0, x.shape[0], _CHUNK_ROWS)
        if not all(np.isfinite(x[i : i + _CHUNK_ROWS]).all() for i in rows):
            raise ZhtextError("whitening input contains NaN or infinite values")
        if self._sum is None:
            d = x.shape[1]
            self._shift = x[:_CHUNK_ROWS].mean(axis=0, dtype=np.float64)
            self._sum = np.zeros(d, dtype=np.float64)
            self._outer = np.zeros((d, d), dtype=np.float64)
        elif x.shape[1] != self._sum.shape[0]:
            raise ZhtextError(
                f"whitening was fitted on {self._sum.shape[0]}-d vectors, got {x.shape[1]}-d ones"
            )
        assert self._outer is not None
        d = x.shape[1]
        # Reused buffers, so a long stream of batches allocates nothing per chunk.
        if self._scratch is None or self._scratch.shape[1] != d:
            self._scratch = np.empty((_CHUNK_ROWS, d), dtype=np.float64)
            self._product = np.empty((d, d), dtype=np.float64)
        for start in rows:
            block = x[start : start + _CHUNK_ROWS]
            centred = np.subtract(block, self._shift, out=self._scratch[: len(block)])
            self._sum += centred.sum(axis=0)
            self._outer += np.matmul(centred.T, centred, out=self._product)
        self.n += x.shape[0]
        self._W = None  # solved again on next use
        return self

    def fit(self, data: np.ndarray | Iterable[np.ndarray]) -> Whitening:
        """Fit from scratch on an array of vectors or an iterable of arrays (streamed); returns self."""
        self.n = 0
        self._sum = self._outer = self._shift = None
        self._W = None
        if isinstance(data, np.ndarray):
            self.partial_fit(data)
        else:
            for batch in data:
                self.partial_fit(batch)
        self.solve()
        return self

    def solve(self) -> Whitening:
        """Compute μ and W from the sums so far (done on first use anyway); returns ``self``."""
        if self._W is not None:
            return self
        if self._sum is None or self.n < 2:
            raise ZhtextError(f"whitening needs at least 2 vectors to fit, got {self.n}")
        assert self._outer is not None and self._shift is not None
        mean_shifted = self._sum / self.n
        cov = (self._outer - np.outer(self._sum, mean_shifted)) / (self.n - 1)
        cov = (cov + cov.T) / 2  # exact symmetry despite rounding
        u, s, _ = np.linalg.svd(cov)
        if not s[0] > 0:
            raise ZhtextError("cannot whiten: all fitting vectors are identical (zero covariance)")
        s_used = np.maximum(s, self.eps * s[0])
        w = u / np.sqrt(s_used)
        # SVD fixes each column only up to sign: make its largest-magnitude entry positive.
        pivot = np.abs(w).argmax(axis=0)
        w *= np.where(w[pivot, np.arange(w.shape[1])] < 0, -1.0, 1.0)
        self._mu = self._shift + mean_shifted
        self._W = w
        self._S = s
        self.dim = self._dim  # now checked against the vectors' dimension
        return self

    # -- the fitted transform

    @property
    def mu(self) -> np.ndarray:
        """The mean vector μ (float64)."""
        self.solve()
        assert self._mu is not None
        return self._mu

    @property
    def W(self) -> np.ndarray:  # noqa: N802 - the paper's name
        """The full whitening matrix U S^{-1/2} (float64, d × d); ``transform`` uses W[:, :dim]."""
        self.solve()
        assert self._W is not None
        return self._W

    @property
    def variances(self) -> np.ndarray:
        """The covariance's eigenvalues S in falling order (before the ``eps`` floor)."""
        self.solve()
        assert self._S is not None
        return self._S

    @property
    def rank(self) -> int:
        """How many variances lie above the ``eps`` floor: directions the fit actually saw."""
        s = self.variances
        return int((s > self.eps * s[0]).sum())

    @property
    def input_dim(self) -> int:
        """Dimension of the vectors the whitening was fitted on."""
        return self.W.shape[0]

    @property
    def output_dim(self) -> int:
        """Dimension of the vectors :meth:`transform` returns (``dim``, or all of them)."""
        return self.dim or self.input_dim

    def transform(self, x: np.ndarray, normalize: bool = True) -> np.ndarray:
        """Whiten vectors: ``(x − μ) W[:, :dim]``, each row L2-normalised unless ``normalize=False``.

        Normalised rows make the dot product the cosine, which is what whitening is for. Returns
        float32, shape (n, output_dim).
        """
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ZhtextError(
                f"whitening expects vectors of dimension {self.input_dim}, got shape {x.shape}"
            )
        kernel = self.W[:, : self.output_dim]
        out = np.empty((x.shape[0], kernel.shape[1]), dtype=np.float32)
        for start in range(0, x.shape[0], _CHUNK_ROWS):
            y = np.subtract(x[start : start + _CHUNK_ROWS], self.mu, dtype=np.float64) @ kernel
            if normalize:
                y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
            out[start : start + len(y)] = y
        return out

    # -- persistence

    def save(self, path: str | os.PathLike) -> None:
        """Write μ, the full W, the variances, dim and the settings to one ``.npz`` (atomically).

        The running sums are not kept: :meth:`partial_fit` on a loaded whitening starts a new fit.
        """
        meta = {"dim": self.dim, "eps": self.eps, "n": self.n, "settings": self.settings}
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            # A file handle, not a name: np.savez would otherwise append ".npz" to the temp name.
            np.savez(handle, mu=self.mu, W=self.W, S=self.variances, meta=np.array(json.dumps(meta)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Whitening:
        """Read a whitening saved by :meth:`save`; ZhtextError if the file is missing or not one."""
        path = Path(path)
        if not path.is_file():
            raise ZhtextError(f"no such whitening file: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                mu, w, s = data["mu"], data["W"], data["S"]
                meta = json.loads(str(data["meta"]))
        except (OSError, ValueError, KeyError) as exc:
            raise ZhtextError(f"{path} is not a zhtext whitening file ({exc})") from None
        if mu.ndim != 1 or w.shape != (len(mu), len(mu)) or s.shape != mu.shape:
            raise ZhtextError(f"{path}: whitening arrays have inconsistent shapes")
        obj = cls(eps=meta.get("eps", 1e-9), **meta.get("settings", {}))
        obj.n = int(meta.get("n", 0))
        obj._mu, obj._W, obj._S = mu, w, s
        obj.dim = meta.get("dim")
        return obj


# --------------------------------------------------------------------------- encoder


class Embedder:
    """Sentence vectors from a Hugging Face encoder, pooled and optionally whitened.

    Poolings (over the tokens of a sentence, ``[CLS]`` and ``[SEP]`` included, padding excluded):

    - ``cls``: the last layer's vector at ``[CLS]``;
    - ``last-avg``: the mean of the last layer's token vectors (sentence-transformers' mean pooling);
    - ``first-last-avg``: the mean of the first transformer layer's token vectors averaged with the
      mean of the last layer's. "First" is the output of transformer block 1 (``hidden_states[1]``),
      not the embedding layer, as in BERT-whitening's reference code (bert4keras
      ``Transformer-0-FeedForward-Norm``); SimCSE's "avg_first_last" uses the embeddings instead;
    - ``pooler``: BERT's pooler output (tanh dense layer over ``[CLS]``).

    ``encode`` returns float32 vectors in input order: raw pooled vectors (not normalised), or
    whitened and L2-normalised ones when a :class:`Whitening` (or the path of a saved one) is set.
    Sentences are cut to ``max_len`` tokens, special tokens included.
    """

    def __init__(
        self,
        name_or_dir: str | os.PathLike,
        pooling: str = "first-last-avg",
        whitening: Whitening | str | os.PathLike | None = None,
        max_len: int = 256,
        batch_size: int = 64,
        device: str | torch.device | None = None,
    ) -> None:
        from zhtext.neural.hub import load_model, load_tokenizer, pick_device

        if pooling not in POOLINGS:
            raise ZhtextError(f"unknown pooling {pooling!r} (choose from {', '.join(POOLINGS)})")
        if max_len < 2:
            raise ZhtextError(f"max_len must be at least 2 (room for [CLS] and [SEP]), got {max_len}")
        if batch_size < 1:
            raise ZhtextError(f"batch size must be positive, got {batch_size}")
        self.name = str(name_or_dir)
        self.pooling = pooling
        self.batch_size = batch_size
        self.model = load_model(name_or_dir)
        self.tokenizer = load_tokenizer(name_or_dir)
        self.device = pick_device(device) if device is None or isinstance(device, str) else device
        self.model.to(self.device).eval()
        if pooling == "pooler" and getattr(self.model, "pooler", None) is None:
            raise ZhtextError(f"model {self.name!r} has no pooler layer; use another pooling")
        self.max_len = min(max_len, self._model_max_len())
        self.hidden_size = int(self.model.config.hidden_size)
        self._whitening: Whitening | None = None
        self.whitening = whitening  # type: ignore[assignment]  # the setter loads and checks

    def _model_max_len(self) -> int:
        limits = [int(getattr(self.model.config, "max_position_embeddings", 0) or 0)]
        limits.append(int(getattr(self.tokenizer, "model_max_length", 0) or 0))
        limits = [n for n in limits if 0 < n < 1_000_000]  # tokenizers say 1e30 for "unknown"
        return min(limits) if limits else 512

    @property
    def whitening(self) -> Whitening | None:
        """The whitening applied by :meth:`encode` (None: raw pooled vectors)."""
        return self._whitening

    @whitening.setter
    def whitening(self, value: Whitening | str | os.PathLike | None) -> None:
        if value is not None and not isinstance(value, Whitening):
            value = Whitening.load(value)
        if value is not None:
            if value.input_dim != self.hidden_size:
                raise ZhtextError(
                    f"whitening was fitted on {value.input_dim}-d vectors; model {self.name!r} "
                    f"gives {self.hidden_size}-d ones"
                )
            fitted_pooling = value.settings.get("pooling")
            if fitted_pooling not in (None, self.pooling):
                raise ZhtextError(
                    f"whitening was fitted with pooling {fitted_pooling!r}, not {self.pooling!r}"
                )
        self._whitening = value

    @property
    def dim(self) -> int:
        """Dimension of the vectors :meth:`encode` returns."""
        return self._whitening.output_dim if self._whitening else self.hidden_size

    def settings(self) -> dict[str, Any]:
        """What it takes to make the same vectors again: model, pooling, max_len."""
        model = self.name
        if Path(model).expanduser().is_dir():  # a path that still works from another folder
            model = str(Path(model).expanduser().resolve())
        return {"model": model, "pooling": self.pooling, "max_len": self.max_len}

    # -- encoding

    def _pool(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.model(**batch, output_hidden_states=self.pooling == "first-last-avg")
        if self.pooling == "cls":
            return out.last_hidden_state[:, 0]
        if self.pooling == "pooler":
            return out.pooler_output
        mask = batch["attention_mask"].unsqueeze(-1).to(out.last_hidden_state.dtype)
        count = mask.sum(dim=1).clamp(min=1.0)
        last = (out.last_hidden_state * mask).sum(dim=1) / count
        if self.pooling == "last-avg":
            return last
        first = (out.hidden_states[1] * mask).sum(dim=1) / count
        return (first + last) / 2

    def encode_raw(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Pooled vectors without whitening, float32, shape (len(texts), hidden_size)."""
        texts = list(texts)
        with Bar(enabled=progress, unit="sentences") as bar:
            return self._encode_block(texts, bar, bar.add("encoding", total=len(texts)))

    def _encode_block(self, texts: list[str], bar: Bar, task: TaskID | None) -> np.ndarray:
        import torch

        out = np.empty((len(texts), self.hidden_size), dtype=np.float32)
        if not texts:
            return out
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_len)
        ids = enc["input_ids"]
        types = enc.get("token_type_ids")
        lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
        # Longest first: the biggest batch (memory peak) comes at once, and each batch pads only to
        # its own longest sentence, which sorting makes close to all of them.
        order = np.argsort(-lengths, kind="stable")
        pad_id = self.tokenizer.pad_token_id or 0
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                rows = order[start : start + self.batch_size]
                width = int(lengths[rows[0]])
                input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
                mask = np.zeros((len(rows), width), dtype=np.int64)
                token_types = np.zeros((len(rows), width), dtype=np.int64)
                for i, r in enumerate(rows):
                    n = lengths[r]
                    input_ids[i, :n] = ids[r]
                    mask[i, :n] = 1
                    if types is not None:
                        token_types[i, :n] = types[r]
                batch = {
                    "input_ids": torch.from_numpy(input_ids).to(self.device),
                    "attention_mask": torch.from_numpy(mask).to(self.device),
                }
                if types is not None:
                    batch["token_type_ids"] = torch.from_numpy(token_types).to(self.device)
                out[rows] = self._pool(batch).float().cpu().numpy()
                bar.advance(task, len(rows))
        return out

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Vectors of ``texts`` in order: whitened (and L2-normalised) when a whitening is set."""
        raw = self.encode_raw(texts, progress)
        return raw if self._whitening is None else self._whitening.transform(raw)

    def fit_whitening(
        self, texts: Iterable[str], dim: int | None = None, progress: bool = False
    ) -> Whitening:
        """Fit a whitening on the raw vectors of ``texts`` (streamed) and apply it from now on."""
        fitted = Whitening(dim=dim, **self.settings())
        with Bar(enabled=progress, unit="sentences") as bar:
            task = bar.add("fitting whitening")
            for chunk in _blocks(texts, _STREAM_BLOCK):
                fitted.partial_fit(self._encode_block(chunk, bar, task))
        fitted.solve()
        self.whitening = fitted
        return fitted

    def encode_and_fit(
        self, texts: Sequence[str], dim: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """Fit a whitening on ``texts`` themselves and return their whitened vectors.

        Each sentence is encoded once (unlike :meth:`fit_whitening` followed by :meth:`encode`).
        """
        raw = self.encode_raw(texts, progress)
        self.whitening = Whitening(dim=dim, **self.settings()).fit(raw)
        assert self._whitening is not None
        return self._whitening.transform(raw)


def _blocks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    block: list[str] = []
    for item in items:
        block.append(item)
        if len(block) == size:
            yield block
            block = []
    if block:
        yield block


# --------------------------------------------------------------------------- STS data and scoring


@dataclass
class StsPairs:
    """Sentence pairs with gold similarity scores."""

    s1: list[str]
    s2: list[str]
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


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
    rows = list(_sts_rows(_nonblank(path, encoding), path))
    if len(rows) < 2:
        raise ZhtextError(f"{path}: need at least 2 scored pairs, found {len(rows)}")
    s1, s2, scores = zip(*rows)
    return StsPairs(list(s1), list(s2), np.asarray(scores, dtype=np.float64))


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


def evaluate_sts(
    embedder: Embedder,
    pairs: StsPairs,
    fit_on_data: bool = False,
    dim: int | None = None,
    progress: bool = False,
) -> float:
    """Spearman correlation between the cosine of each pair's vectors and the gold scores.

    Each distinct sentence is encoded once. With ``fit_on_data`` a whitening is fitted on the
    vectors of all the pairs' sentences (duplicates counted, as BERT-whitening's evaluation does)
    and set on the embedder; otherwise the embedder's own whitening, if any, is used.
    """
    index: dict[str, int] = {}
    for text in (*pairs.s1, *pairs.s2):
        index.setdefault(text, len(index))
    a = np.fromiter((index[t] for t in pairs.s1), dtype=np.int64, count=len(pairs))
    b = np.fromiter((index[t] for t in pairs.s2), dtype=np.int64, count=len(pairs))
    raw = embedder.encode_raw(list(index), progress)
    if fit_on_data:
        embedder.whitening = Whitening(dim=dim, **embedder.settings()).fit(raw[np.r_[a, b]])
    whitening = embedder.whitening
    vecs = raw if whitening is None else whitening.transform(raw)
    va, vb = vecs[a].astype(np.float64), vecs[b].astype(np.float64)
    norms = np.linalg.norm(va, axis=1) * np.linalg.norm(vb, axis=1)
    cosine = (va * vb).sum(axis=1) / np.maximum(norms, 1e-12)
    return spearman(cosine, pairs.scores)


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
