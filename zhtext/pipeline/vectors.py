"""A float32 ``.npy`` file written row by row, for vectors streamed out of a pipeline."""

from __future__ import annotations

from typing import IO

import numpy as np
from numpy.lib import format as npy

__all__ = ["VectorFile"]


class VectorFile:
    """Vectors of ``dim`` float32 values appended to an open binary file, which becomes a ``.npy``
    of shape (rows, dim) when :meth:`close` rewrites numpy's header with the row count. numpy
    leaves room in the header for the first axis to grow, so the rewrite never moves the data:
    no more than one row is ever held."""

    def __init__(self, handle: IO[bytes], dim: int) -> None:
        self.handle, self.dim, self.rows = handle, dim, 0
        self._header()
        self._data_start = handle.tell()

    def _header(self) -> None:
        header = npy.header_data_from_array_1_0(np.empty((0, self.dim), dtype="<f4"))
        npy.write_array_header_1_0(self.handle, {**header, "shape": (self.rows, self.dim)})

    def write(self, row: np.ndarray) -> None:
        """Append one vector."""
        if row.shape != (self.dim,):
            raise ValueError(f"expected a vector of {self.dim} values, got shape {row.shape}")
        self.handle.write(np.asarray(row, dtype="<f4").tobytes())
        self.rows += 1

    def close(self) -> None:
        """Write the final shape into the header (the handle stays open: its owner closes it)."""
        end = self.handle.tell()
        self.handle.seek(0)
        self._header()
        if self.handle.tell() != self._data_start:  # numpy's spare room is 21 digits of rows
            raise RuntimeError("the .npy header outgrew its room")
        self.handle.seek(end)
