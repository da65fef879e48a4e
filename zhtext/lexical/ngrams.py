"""N-gram counting over a compact id corpus, in Numba.

The corpus is a ``uint16`` array of unit ids with ``0`` between fragments: a Han character
U+4E00..U+9FD5 gets id ``cp - 0x4DFF`` (1..20950), a run of ASCII letters/digits an id above that
(:mod:`zhtext.lexical.corpus`), so four units pack exactly into one ``uint64`` (16 bits each, most
significant first) and an n-gram's key is its own spelling: no collisions, and ``key >> 16`` /
``key & low bits`` are its (n-1)-gram prefix and suffix. The kernels release the GIL, so that
blocks can be counted on several threads, one table each, merged with :meth:`CountTable.merge`.

Counts live in open-addressing hash tables (:class:`CountTable`) that grow by rehashing. Orders are
counted one pass each, and a pass for order n only counts positions whose two (n-1)-grams reached
the minimum count (the a-priori rule: an n-gram cannot be more frequent than its parts), so tables
stay small and their counts exact.
"""

from __future__ import annotations

import numpy as np
from numba import njit

ID_OFFSET = 0x4DFF  # id = codepoint - ID_OFFSET for the Han range; 0 separates fragments
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SHIFT16 = np.uint64(16)
_BLOOM = np.uint64(0xC2B2AE3D27D4EB4F)  # a second multiplier: filter bits independent of slots


@njit(cache=True, inline="always")
def slot(key, bits):
    # Fibonacci hashing: the high bits of key * golden ratio spread packed n-grams well.
    return np.int64((key * _GOLDEN) >> np.uint64(64 - bits))


@njit(cache=True)
def table_find(keys, bits, key):
    """Slot holding ``key``, or -1. ``keys`` is an open-addressing table with 0 for empty."""
    mask = (1 << bits) - 1
    s = slot(key, bits)
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
    s = slot(key, bits)
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


@njit(cache=True, nogil=True)
def _rehash(old_keys, old_counts, keys, counts, bits, min_count):
    filled = 0
    for i in range(old_keys.shape[0]):
        if old_keys[i] != 0 and old_counts[i] >= min_count:
            filled += _insert(keys, counts, bits, old_keys[i], old_counts[i])
    return filled


@njit(cache=True, nogil=True)
def _count_pass(ids, n, start, keys, counts, bits, filled, limit, ok_unit, ok_end, prev_keys,
                prev_bits):
    """Count the n-grams of ``ids`` from position ``start`` on.

    A window counts only when every unit passes ``ok_unit`` (a frequent unit), its first and last
    units pass ``ok_end``, and, for n >= 3, its two (n-1)-grams are in ``prev_keys`` (the frequent
    set of the order below). Returns (next position, filled slots); stops early when ``filled``
    reaches ``limit`` so that the caller can grow the table and resume.
    """
    size = ids.shape[0]
    low = (np.uint64(1) << np.uint64(16 * (n - 1))) - np.uint64(1)
    mask = (low << _SHIFT16) | np.uint64(0xFFFF)
    top = np.uint64(16 * (n - 1))
    key = np.uint64(0)
    run = 0  # length of the current run of usable units ending at p
    looked = -1  # the position whose (n-1)-gram lookup ``found`` holds
    found = False
    # Rebuild the rolling key for the window ending just before ``start``.
    for q in range(max(0, start - n + 1), start):
        c = ids[q]
        if c == 0 or not ok_unit[c]:
            run = 0
            key = np.uint64(0)
        else:
            run += 1
            key = ((key << _SHIFT16) | np.uint64(c)) & mask
    for p in range(start, size):
        c = ids[p]
        if c == 0 or not ok_unit[c]:
            run = 0
            key = np.uint64(0)
            continue
        run += 1
        key = ((key << _SHIFT16) | np.uint64(c)) & mask
        if run < n or not ok_end[c] or not ok_end[np.int64(key >> top)]:
            continue
        if n >= 3:
            # the (n-1)-gram ending at p-1 was often looked up as the suffix one step ago
            if looked == p - 1:
                ok = found
            else:
                ok = table_find(prev_keys, prev_bits, key >> _SHIFT16) >= 0
            if not ok:
                continue
            found = table_find(prev_keys, prev_bits, key & low) >= 0
            looked = p
            if not found:
                continue
        filled += _insert(keys, counts, bits, key, np.uint32(1))
        if filled >= limit:
            return p + 1, filled
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

    def merge(self, other: CountTable) -> None:
        """Add every count of ``other`` (a table filled from other blocks) to this one."""
        while self.filled + other.filled >= self.limit:
            self.grow()
        self.filled += int(_rehash(other.keys, other.counts, self.keys, self.counts, self.bits, 1))

    def count(self, ids: np.ndarray, n: int, ok_unit: np.ndarray, prev: KeySet | None,
              ok_end: np.ndarray | None = None) -> None:
        """Add the n-grams of one chunk whose units all pass ``ok_unit`` (the frequent units, by
        id) and whose (n-1)-grams are in ``prev``; with ``ok_end``, only those whose first and
        last units pass it too."""
        prev_keys = prev.keys if prev is not None else np.zeros(1, dtype=np.uint64)
        prev_bits = prev.bits if prev is not None else 0
        pos = 0
        while pos < ids.shape[0]:
            pos, self.filled = _count_pass(
                ids, n, pos, self.keys, self.counts, self.bits, self.filled, self.limit,
                ok_unit, ok_unit if ok_end is None else ok_end, prev_keys, prev_bits,
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
        # One filter bit per key, 8 bits per slot: a set of 40k keys has a 128 KiB filter that
        # stays in L2 and answers most misses without touching the table (``set_has``).
        self.bloom = np.zeros(max(1, (1 << self.bits) // 8), dtype=np.uint64)
        _fill_bloom(self.bloom, keys.astype(np.uint64))

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Values for many keys (0 where absent)."""
        return _lookup_many(self.keys, self.values, self.bits, keys.astype(np.uint64))


@njit(cache=True, nogil=True)
def _fill_set(table, values, bits, keys, vals):
    mask = (1 << bits) - 1
    for i in range(keys.shape[0]):
        s = slot(keys[i], bits)
        while table[s] != 0 and table[s] != keys[i]:
            s = (s + 1) & mask
        table[s] = keys[i]
        values[s] = vals[i]


@njit(cache=True, inline="always")
def _bloom_bit(key, bloom):
    return np.int64((key * _BLOOM) >> np.uint64(40)) & (bloom.shape[0] * 64 - 1)


@njit(cache=True, nogil=True)
def _fill_bloom(bloom, keys):
    for i in range(keys.shape[0]):
        b = _bloom_bit(keys[i], bloom)
        bloom[b >> 6] |= np.uint64(1) << np.uint64(b & 63)


@njit(cache=True, inline="always")
def set_has(table, bloom, bits, key):
    """Whether a :class:`KeySet` (its ``keys``, ``bloom``, ``bits``) holds ``key``."""
    b = _bloom_bit(key, bloom)
    if (bloom[b >> 6] >> np.uint64(b & 63)) & np.uint64(1) == 0:
        return False
    return table_find(table, bits, key) >= 0


@njit(cache=True, nogil=True)
def _lookup_many(table, values, bits, keys):
    out = np.zeros(keys.shape[0], dtype=np.int64)
    for i in range(keys.shape[0]):
        s = table_find(table, bits, keys[i])
        if s >= 0:
            out[i] = values[s]
    return out


def unpack(key: int, n: int) -> list[int]:
    """The ids of a packed n-gram, first to last."""
    return [(int(key) >> (16 * (n - 1 - i))) & 0xFFFF for i in range(n)]
