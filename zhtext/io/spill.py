"""Arrays held in memory up to a byte budget, then in an unnamed temporary file.

The one spill store: discovery's id corpus and the tagger's long-sequence emissions both append
blocks in order and read them back by index or in order, in memory that does not grow with the
input. The file has no name, so it goes with the process however it ends.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import IO

import numpy as np

from zhtext.errors import ZhtextError


class SpillList:
    """A list of numpy arrays (``append``, ``len``, ``[i]``, iteration) that moves to a temporary
    file once more than ``budget`` bytes are held. Arrays read back from the file are read-only
    views of fresh bytes. One reader at a time: the file has one position."""

    def __init__(self, budget: int, prefix: str = "zhtext-") -> None:
        self.budget = budget
        self.prefix = prefix
        self.held: list[np.ndarray] = []
        self.held_bytes = 0
        self.places: list[tuple[int, np.dtype, tuple[int, ...]]] = []  # (offset, dtype, shape)
        self.file: IO[bytes] | None = None

    def append(self, array: np.ndarray) -> None:
        if self.file is None and self.held_bytes + array.nbytes > self.budget:
            try:
                self.file = tempfile.TemporaryFile(prefix=self.prefix)
            except OSError as exc:
                raise self._error("make", exc) from None
            for held in self.held:
                self._write(held)
            self.held, self.held_bytes = [], 0
        if self.file is None:
            self.held.append(array)
            self.held_bytes += array.nbytes
        else:
            self._write(array)

    def _write(self, array: np.ndarray) -> None:
        assert self.file is not None
        offset = self.file.seek(0, os.SEEK_END)
        try:
            self.file.write(np.ascontiguousarray(array).tobytes())
        except OSError as exc:
            raise self._error("write", exc) from None
        self.places.append((offset, array.dtype, array.shape))

    def _error(self, verb: str, exc: OSError) -> ZhtextError:
        return ZhtextError(f"cannot {verb} a scratch file in {tempfile.gettempdir()}: "
                           f"{exc.strerror or exc}")

    @property
    def spilled(self) -> bool:
        return self.file is not None

    def __len__(self) -> int:
        return len(self.places) if self.file is not None else len(self.held)

    def __getitem__(self, index: int) -> np.ndarray:
        if self.file is None:
            return self.held[index]
        offset, dtype, shape = self.places[index]
        self.file.seek(offset)
        count = int(np.prod(shape)) if shape else 1
        return np.frombuffer(self.file.read(count * dtype.itemsize), dtype=dtype).reshape(shape)

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(len(self)):
            yield self[index]

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.held, self.held_bytes, self.places = [], 0, []
