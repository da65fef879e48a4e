"""A character trie stored in flat numpy arrays, so that Numba kernels can walk it.

Layout (node 0 is the root):

- ``root[cp]``: the child of the root for codepoint ``cp`` (-1: none). A direct array over all
  codepoints is 4 MiB, but only the slice a text uses is ever touched (the Han block is ~84 KiB),
  and most walks end after one or two characters, so the first step is a single load.
- ``table``: an open-addressing hash (linear probing) from ``(parent, cp)`` to the child for every
  deeper edge, as interleaved ``int64`` pairs ``[key, child]`` so one probe touches one cache line.
- ``bloom``: one bit per (hashed) edge, 8 bits per table slot (1 MiB for jieba's dictionary: it
  stays in L2). Most walks end on a missing edge; the filter answers those without touching the
  table, which made segmentation ~30 % faster.
- ``word[node]``: the id of the word that ends at ``node`` (its index in the input list), -1 for a
  node that is only a prefix.
- ``weight[node]``: that word's weight (float64); ``-inf`` for prefixes and for words that must not
  be matched (a count of zero, as in jieba: the word still exists, its prefixes are still paths).

Words can be added later (:func:`trie_insert`); the arrays keep spare room and grow by doubling.
A built trie (:func:`build_trie`) numbers its nodes by depth; nodes added later come after them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numba import njit

from zhtext.lexical.chars import join_lines, to_codes

N_CODEPOINTS = 0x110000
_CP_BITS = 21  # every codepoint fits in 21 bits, the parent node goes above them
_EMPTY = -1
_MIN_TABLE = 1 << 10


class Trie(NamedTuple):
    """Flat trie arrays (see the module docstring). ``size`` = [nodes used, hash entries used]."""

    root: np.ndarray  # int32[0x110000]
    table: np.ndarray  # int64[2 * H]: key, child
    bloom: np.ndarray  # uint64[H / 8]: 8 * H bits
    word: np.ndarray  # int32[capacity]
    weight: np.ndarray  # float64[capacity]
    size: np.ndarray  # int64[2]

    @property
    def n_nodes(self) -> int:
        """Nodes in use, the root included."""
        return int(self.size[0])


@njit(cache=True, nogil=True, inline="always")
def _slot(key: int, mask: int) -> int:
    # Fibonacci hashing of the packed key; the high bits of the product are the well-mixed ones.
    return int((np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)) & mask


@njit(cache=True, nogil=True, inline="always")
def _bloom_bit(key: int, mask: int) -> int:
    # A second multiplier, so the filter bit is independent of the table slot.
    return int((np.uint64(key) * np.uint64(0xC2B2AE3D27D4EB4F)) >> np.uint64(32)) & (
        (mask << 3) | 7
    )


@njit(cache=True, inline="always")
def _set_bloom(bloom, key: int, mask: int) -> None:
    b = _bloom_bit(key, mask)
    bloom[b >> 6] |= np.uint64(1) << np.uint64(b & 63)


@njit(cache=True, nogil=True, inline="always")
def trie_child(table, bloom, node: int, cp: int) -> int:
    """The child of ``node`` (not the root: use ``root[cp]``) for codepoint ``cp``, or -1.

    Callable from other kernels. Keeping the root out of this function (no branch on it) made the
    segmentation kernel ~1.6x faster.
    """
    mask = (table.shape[0] >> 1) - 1
    key = (node << _CP_BITS) | cp
    b = _bloom_bit(key, mask)
    if (bloom[b >> 6] >> np.uint64(b & 63)) & np.uint64(1) == 0:
        return -1
    h = _slot(key, mask)
    while True:
        k = table[2 * h]
        if k == key:
            return table[2 * h + 1]
        if k == _EMPTY:
            return -1
        h = (h + 1) & mask


@njit(cache=True)
def _insert_kernel(
    root, table, bloom, word, weight, size, codes, offsets, first_id, weights, nodes_out
):
    """Insert ``codes[offsets[k]:offsets[k+1]]`` as word ``first_id + k`` (room is ensured)."""
    mask = (table.shape[0] >> 1) - 1
    n_nodes = size[0]
    n_entries = size[1]
    for k in range(offsets.shape[0] - 1):
        node = 0
        for p in range(offsets[k], offsets[k + 1]):
            cp = codes[p]
            if node == 0:
                child = root[cp]
                if child < 0:
                    child = n_nodes
                    n_nodes += 1
                    root[cp] = child
            else:
                key = (node << _CP_BITS) | cp
                h = _slot(key, mask)
                while table[2 * h] != key and table[2 * h] != _EMPTY:
                    h = (h + 1) & mask
                if table[2 * h] == key:
                    child = table[2 * h + 1]
                else:
                    child = n_nodes
                    n_nodes += 1
                    n_entries += 1
                    table[2 * h] = key
                    table[2 * h + 1] = child
                    _set_bloom(bloom, key, mask)
            node = child
        if node > 0:  # an empty word has no node
            word[node] = first_id + k
            weight[node] = weights[k]
        nodes_out[k] = node
    size[0] = n_nodes
    size[1] = n_entries


@njit(cache=True)
def _rehash_kernel(old, new, bloom):
    mask = (new.shape[0] >> 1) - 1
    for h in range(old.shape[0] >> 1):
        key = old[2 * h]
        if key == _EMPTY:
            continue
        s = _slot(key, mask)
        while new[2 * s] != _EMPTY:
            s = (s + 1) & mask
        new[2 * s] = key
        new[2 * s + 1] = old[2 * h + 1]
        _set_bloom(bloom, key, mask)


@njit(cache=True, nogil=True, inline="always")
def trie_walk(root, table, bloom, codes, start: int, end: int) -> int:
    """The node that spells ``codes[start:end]`` (``end > start``), or -1. Callable from kernels."""
    node = root[codes[start]]
    for p in range(start + 1, end):
        if node < 0:
            return -1
        node = trie_child(table, bloom, node, codes[p])
    return node


@njit(cache=True, nogil=True, inline="always")
def trie_word(root, table, bloom, word, weight, codes, start: int, end: int) -> int:
    """The id of the word ``codes[start:end]`` if it may be matched (a weight above ``-inf``: in
    jieba, ``FREQ.get`` of it is a count above 0), else -1. Callable from kernels."""
    node = trie_walk(root, table, bloom, codes, start, end)
    return word[node] if node >= 0 and weight[node] > -np.inf else -1


def _short(trie: Trie, more_chars: int) -> tuple[bool, bool]:
    """Whether ``more_chars`` new nodes overflow the node arrays, and the hash table (kept at a
    load factor of at most one half)."""
    return (int(trie.size[0]) + more_chars > trie.word.shape[0],
            2 * (int(trie.size[1]) + more_chars) > trie.table.shape[0] // 2)


def grows(trie: Trie, more_chars: int) -> bool:
    """Whether inserting words of ``more_chars`` characters in all makes :func:`trie_insert` move
    the arrays (all but ``root``, which it changes in place) to larger ones."""
    return any(_short(trie, more_chars))


def _grow(trie: Trie, more_chars: int) -> Trie:
    """A trie with room for ``more_chars`` new nodes and hash entries (the same one if it has)."""
    nodes_short, table_short = _short(trie, more_chars)
    if not (nodes_short or table_short):
        return trie  # the same object: callers tell a move by identity (WordTable._remember)
    root, table, bloom, word, weight, size = trie
    if nodes_short:
        cap = max(int(size[0]) + more_chars, 2 * word.shape[0])
        word = np.concatenate([word, np.full(cap - word.shape[0], -1, np.int32)])
        weight = np.concatenate([weight, np.full(cap - weight.shape[0], -np.inf)])
    if table_short:
        table, bloom = _rehash(table, int(size[1]) + more_chars)
    return Trie(root, table, bloom, word, weight, size)


def _rehash(table: np.ndarray, entries: int) -> tuple[np.ndarray, np.ndarray]:
    """The table (and its filter) moved to the smallest power-of-two size that holds ``entries``
    at a load factor of at most one half."""
    slots = max(_MIN_TABLE, 1 << int(2 * entries - 1).bit_length())
    new = np.full(2 * slots, _EMPTY, dtype=np.int64)
    bloom = _empty_bloom(slots)
    _rehash_kernel(table, new, bloom)
    return new, bloom


@njit(cache=True)
def _depths(table, n_nodes):
    """Each node's depth (the root's is 0). A child is always numbered after its parent, so one
    pass in node order sees every parent's depth first."""
    parent = np.zeros(n_nodes, dtype=np.int64)  # level-1 nodes (not in the table): the root
    for h in range(table.shape[0] >> 1):
        key = table[2 * h]
        if key != _EMPTY:
            parent[table[2 * h + 1]] = key >> _CP_BITS
    depth = np.zeros(n_nodes, dtype=np.int64)
    for node in range(1, n_nodes):
        depth[node] = depth[parent[node]] + 1
    return depth


@njit(cache=True)
def _renumbered_keys(table, new_id):
    """The table with every parent and child replaced by its ``new_id``."""
    out = table.copy()
    for h in range(table.shape[0] >> 1):
        key = table[2 * h]
        if key != _EMPTY:
            cp = key & ((1 << _CP_BITS) - 1)
            out[2 * h] = (new_id[key >> _CP_BITS] << _CP_BITS) | cp
            out[2 * h + 1] = new_id[table[2 * h + 1]]
    return out


def _numbered_by_depth(trie: Trie) -> Trie:
    """The same trie with its nodes numbered by depth (the root, then every first character, ...).

    Nodes are numbered as words are inserted, so the nodes a walk visits most (the first and
    second characters of words) lie scattered over the whole ``weight`` array; numbered by depth,
    the first characters' weights fit in a few hundred KiB that stay in cache (the route over the
    novels with jieba's dictionary: 3-15 % faster across runs on a noisy machine, never slower).
    """
    n_nodes = int(trie.size[0])
    depth = _depths(trie.table, n_nodes)
    order = np.argsort(depth, kind="stable")  # old id of each new id; the root stays 0
    new_id = np.empty(n_nodes, dtype=np.int64)
    new_id[order] = np.arange(n_nodes)
    root = trie.root.copy()
    used = root >= 0
    root[used] = new_id[root[used]]
    table, bloom = _rehash(_renumbered_keys(trie.table, new_id), int(trie.size[1]))
    return Trie(root, table, bloom, trie.word[order], trie.weight[order], trie.size)


def _fit(trie: Trie) -> Trie:
    """Drop the spare room :func:`_grow` reserved (a smaller table and filter stay in cache) and
    number the nodes by depth."""
    n_nodes = int(trie.size[0])
    trie = Trie(trie.root, trie.table, trie.bloom, trie.word[:n_nodes], trie.weight[:n_nodes],
                trie.size)  # fmt: skip
    return _numbered_by_depth(trie)


def _empty_bloom(slots: int) -> np.ndarray:
    return np.zeros(slots // 8, dtype=np.uint64)  # 8 bits per slot


def empty_trie(capacity: int = 1024) -> Trie:
    """A trie with only the root."""
    return Trie(
        root=np.full(N_CODEPOINTS, -1, dtype=np.int32),
        table=np.full(2 * _MIN_TABLE, _EMPTY, dtype=np.int64),
        bloom=_empty_bloom(_MIN_TABLE),
        word=np.full(max(capacity, 1), -1, dtype=np.int32),
        weight=np.full(max(capacity, 1), -np.inf),
        size=np.array([1, 0], dtype=np.int64),
    )


def trie_insert(
    trie: Trie, words: Sequence[str], weights: np.ndarray, first_id: int
) -> tuple[Trie, np.ndarray]:
    """Add ``words`` with ids ``first_id, first_id + 1, ...`` and their weights.

    A word already present takes the new id and weight (the last one wins, as in jieba). Returns the
    trie (a new object when the arrays had to grow; the old one must not be used afterwards) and the
    node of each word.
    """
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    if weights.shape != (len(words),):
        raise ValueError(f"{len(words)} words but weights of shape {weights.shape}")
    codes, offsets = join_lines(list(words))
    trie = _grow(trie, int(codes.shape[0]))
    nodes = np.empty(len(words), dtype=np.int64)
    _insert_kernel(*trie, codes, offsets, first_id, weights, nodes)
    return trie, nodes


def build_trie(words: Sequence[str], weights: np.ndarray) -> Trie:
    """Build a trie of ``words``; word ``i`` gets id ``i`` and weight ``weights[i]``.

    A weight of ``-inf`` keeps the word (and its prefixes) in the trie without making it a match.
    """
    n_chars = sum(len(w) for w in words)
    trie, _ = trie_insert(empty_trie(n_chars + 1), words, weights, 0)
    return _fit(trie)


def trie_find(trie: Trie, word: str) -> int:
    """The node that spells ``word`` (a word or only a prefix), or -1 when it is not in the trie."""
    if not word:
        return 0
    return int(trie_walk(trie.root, trie.table, trie.bloom, to_codes(word), 0, len(word)))
