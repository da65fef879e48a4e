"""BERT-whitening of sentence vectors (numpy only: no torch).

Su Jianlin, 2021: with μ the mean of a corpus's vectors and Σ = U S Uᵀ their covariance,
y = (x − μ) U S^{-1/2} has zero mean and identity covariance, and keeping the first k columns cuts
the dimension to the k directions of largest variance. :class:`Whitening` is fitted from float64
running sums (Σx, Σxxᵀ, n), so any number of vectors fits in memory bounded by one d × d matrix
and one chunk of rows. :class:`~zhtext.tasks.embed.Embedder` applies it to its pooled vectors.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from zhtext.errors import ZhtextError
from zhtext.io.writing import atomic_path

__all__ = ["Whitening"]

# Rows handled at once when accumulating or transforming: bounds the float64 temporaries
# (2048 × 768 × 8 bytes = 12.6 MB) whatever size of batch the caller hands over.
_CHUNK_ROWS = 2048


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
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            # (A damaged byte fails the archive's CRC: BadZipFile.)
            raise ZhtextError(f"{path} is not a zhtext whitening file or is damaged ({exc})") from None
        if mu.ndim != 1 or w.shape != (len(mu), len(mu)) or s.shape != mu.shape:
            raise ZhtextError(f"{path}: whitening arrays have inconsistent shapes")
        if not all(np.isfinite(a).all() for a in (mu, w, s)):
            raise ZhtextError(f"{path}: the whitening holds NaN or infinite values")
        obj = cls(eps=meta.get("eps", 1e-9), **meta.get("settings", {}))
        obj.n = int(meta.get("n", 0))
        obj._mu, obj._W, obj._S = mu, w, s
        obj.dim = meta.get("dim")
        return obj
