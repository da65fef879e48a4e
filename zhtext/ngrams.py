"""N-gram counting over a compact id corpus, in Numba.

The corpus is a ``uint16`` array of character ids with ``0`` between fragments: a Han character
U+4E00..U+9FD5 gets id ``cp - 0x4DFF`` (1..20950), so four of them pack exactly into one ``uint64``
(16 bits each, most significant first) and an n-gram's key is its own spelling: no collisions, and
``key >> 16`` / ``key & low bits`` are its (n-1)-gram prefix and suffix.

Counts live in open-addressing hash tables (:class:`CountTable`) that grow by rehashing. Orders are
counted one pass each, and a pass for order n only counts positions whose two (n-1)-grams reached
the minimum count (the a-priori rule: an n-gram cannot be more frequent than its parts), so tables
stay small and their counts exact.
"""

from __future__ import annotations

import numpy as np
from numba import njit

ID_OFFSET = 0x4DFF  # id = codepoint - ID_OFFSET for the Han range; 0 separates fragments
MAX_N = 4  # 16 bits an id, 64 bits a key
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SHIFT16 = np.uint64(16)


@njit(cache=True, inline="always")
def _slot(key, bits):
    # Fibonacci hashing: the high bits of key * golden ratio spread packed n-grams well.
    return np.int64((key * _GOLDEN) >> np.uint64(64 - bits))


@njit(cache=True)
def table_find(keys, bits, key):
    """Slot holding ``key``, or -1. ``keys`` is an open-addressing table with 0 for empty."""
    mask = (1 << bits) - 1
    s = _slot(key, bits)
    while True:
        k = keys[s]
        if k == key:
            return s
        if k == 0:
            return -1
        s = (s + 1) & mask


@njit(cache=True)
def _insert(keys, counts, bits, key, add):
    """Add ``add`` to ``key``'s count; return 1 when a new slot was taken."""
    mask = (1 << bits) - 1
    s = _slot(key, bits)
    while True:
        k = keys[s]
        if k == key:
            counts[s] += add
            return 0
        if k == 0:
            keys[s] = key
            counts[s] = add
            return 1
        s = (s + 1) & mask


@njit(cache=True)
def _rehash(old_keys, old_counts, keys, counts, bits, min_count):
    filled = 0
    for i in range(old_keys.shape[0]):
        if old_keys[i] != 0 and old_counts[i] >= min_count:
            filled += _insert(keys, counts, bits, old_keys[i], old_counts[i])
    return filled


@njit(cache=True)
def _count_pass(ids, n, start, keys, counts, bits, filled, limit, ok_prev, prev_keys, prev_bits):
    """Count the n-grams of ``ids`` from position ``start`` on.

    For n >= 2 a position counts only when the (n-1)-grams at p and p+1 are in ``prev_keys`` (the
    frequent set of the order below; for n == 2, ``ok_prev`` flags frequent unigram ids instead).
    Returns (next position, filled slots); stops early when ``filled`` reaches ``limit`` so that
    the caller can grow the table and resume.
    """
    size = ids.shape[0]
    low = (np.uint64(1) << np.uint64(16 * (n - 1))) - np.uint64(1)
    key = np.uint64(0)
    run = 0  # length of the current run of non-separator ids ending at p
    prev_ok_here = False  # whether the (n-1)-gram starting at p-n+1 was frequent
    p = start
    # Rebuild the rolling key for the window ending just before ``start``.
    q = max(0, start - n + 1)
    while q < start:
        c = ids[q]
        if c == 0:
            run = 0
            key = np.uint64(0)
        else:
            run += 1
            key = ((key << _SHIFT16) | np.uint64(c)) & ((low << _SHIFT16) | np.uint64(0xFFFF))
        q += 1
    if n >= 2 and run >= n - 1:
        sub = key & low
        if n == 2:
            prev_ok_here = ok_prev[np.int64(sub)]
        else:
            prev_ok_here = table_find(prev_keys, prev_bits, sub) >= 0
    while p < size:
        c = ids[p]
        if c == 0:
            run = 0
            key = np.uint64(0)
            prev_ok_here = False
            p += 1
            continue
        run += 1
        key = ((key << _SHIFT16) | np.uint64(c)) & ((low << _SHIFT16) | np.uint64(0xFFFF))
        if run >= n:
            if n == 1:
                ok = True
            else:
                sub = key & low  # the (n-1)-gram ending at p
                if n == 2:
                    ok_here = ok_prev[np.int64(sub)]
                else:
                    ok_here = table_find(prev_keys, prev_bits, sub) >= 0
                ok = ok_here and prev_ok_here
                prev_ok_here = ok_here
            if ok:
                filled += _insert(keys, counts, bits, key, np.uint32(1))
                if filled >= limit:
                    return p + 1, filled
        elif run == n - 1 and n >= 2:
            sub = key & low
            if n == 2:
                prev_ok_here = ok_prev[np.int64(sub)]
            else:
                prev_ok_here = table_find(prev_keys, prev_bits, sub) >= 0
        p += 1
    return size, filled


class CountTable:
    """A growing hash table from packed n-gram keys (``uint64``) to counts (``uint32``)."""

    def __init__(self, bits: int = 16) -> None:
        self.bits = bits
        self.keys = np.zeros(1 << bits, dtype=np.uint64)
        self.counts = np.zeros(1 << bits, dtype=np.uint32)
        self.filled = 0

    @property
    def limit(self) -> int:
        return int(0.6 * (1 << self.bits))

    def grow(self, min_count: int = 1) -> None:
        """Double the table (or just rehash, dropping keys under ``min_count``)."""
        bits = self.bits + 1 if min_count <= 1 else self.bits
        keys = np.zeros(1 << bits, dtype=np.uint64)
        counts = np.zeros(1 << bits, dtype=np.uint32)
        self.filled = int(_rehash(self.keys, self.counts, keys, counts, bits, min_count))
        self.keys, self.counts, self.bits = keys, counts, bits

    def count(self, ids: np.ndarray, n: int, ok_prev: np.ndarray, prev: KeySet | None) -> None:
        """Add the n-grams of one chunk whose (n-1)-grams are frequent."""
        prev_keys = prev.keys if prev is not None else np.zeros(1, dtype=np.uint64)
        prev_bits = prev.bits if prev is not None else 0
        pos = 0
        while pos < ids.shape[0]:
            pos, self.filled = _count_pass(
                ids, n, pos, self.keys, self.counts, self.bits, self.filled, self.limit,
                ok_prev, prev_keys, prev_bits,
            )
            if self.filled >= self.limit:
                self.grow()

    def items(self, min_count: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Keys and counts of the entries with at least ``min_count``, in key order."""
        sel = (self.keys != 0) & (self.counts >= min_count)
        keys, counts = self.keys[sel], self.counts[sel]
        order = np.argsort(keys)
        return keys[order], counts[order].astype(np.int64)

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.counts.nbytes


class KeySet:
    """A read-only hash set of packed keys, with a value (count) per key, for Numba lookups."""

    def __init__(self, keys: np.ndarray, values: np.ndarray | None = None) -> None:
        n = max(1, len(keys))
        self.bits = max(4, int(np.ceil(np.log2(n / 0.5))))
        self.keys = np.zeros(1 << self.bits, dtype=np.uint64)
        self.values = np.zeros(1 << self.bits, dtype=np.int64)
        vals = np.ones(len(keys), dtype=np.int64) if values is None else values.astype(np.int64)
        _fill_set(self.keys, self.values, self.bits, keys.astype(np.uint64), vals)
        self.size = len(keys)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Values for many keys (0 where absent)."""
        return _lookup_many(self.keys, self.values, self.bits, keys.astype(np.uint64))


@njit(cache=True)
def _fill_set(table, values, bits, keys, vals):
    mask = (1 << bits) - 1
    for i in range(keys.shape[0]):
        s = _slot(keys[i], bits)
        while table[s] != 0 and table[s] != keys[i]:
            s = (s + 1) & mask
        table[s] = keys[i]
        values[s] = vals[i]


@njit(cache=True)
def _lookup_many(table, values, bits, keys):
    out = np.zeros(keys.shape[0], dtype=np.int64)
    for i in range(keys.shape[0]):
        s = table_find(table, bits, keys[i])
        if s >= 0:
            out[i] = values[s]
    return out


def key_order(keys: np.ndarray) -> np.ndarray:
    """The n (1..4) of each packed key: one more than the index of its highest non-zero 16 bits."""
    n = np.ones(len(keys), dtype=np.int64)
    for k in (1, 2, 3):
        n[(keys >> np.uint64(16 * k)) != 0] = k + 1
    return n


def unpack(key: int, n: int) -> list[int]:
    """The ids of a packed n-gram, first to last."""
    return [(int(key) >> (16 * (n - 1 - i))) & 0xFFFF for i in range(n)]


def ids_to_text(ids: list[int] | np.ndarray) -> str:
    """Spell a sequence of character ids."""
    return "".join(chr(int(i) + ID_OFFSET) for i in ids if i)
