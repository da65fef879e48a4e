"""Word discovery on a Ray cluster, giving the lexicon of a local run to the bit.

The corpus is read by Ray tasks, a split each (:mod:`zhtext.io.splits`: the same byte ranges,
hence the same blocks, as a local run), and its blocks of unit ids stay in Ray's object store
(2 bytes a unit, spilled to disk by Ray when memory runs short). Every pass over the whole corpus
is a map over groups of blocks plus a reduction, using discovery's own per-block functions:

- reading: each split's letter/digit runs in order of first occurrence, merged in split order,
  so that runs get the ids a local read gives them; then each split encoded with those ids;
- n-gram counts (order by order) and candidate spans: one table a task, merged pairwise in a
  tree of tasks (tables are hash tables whose listing is sorted by key: the merge order cannot
  change the result);
- routing the whole corpus with the chosen unigram model: counts summed, each block's log
  probability kept by its index and summed exactly on the driver.

The re-estimation passes run on the driver over an even sample (the whole corpus when it is
small), as they do locally. Memory per worker is one block plus its tables, whatever the corpus.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from zhtext.errors import ZhtextError
from zhtext.io.splits import Split, expand_inputs, plan_splits, split_text
from zhtext.lexical.corpus import (
    BLOCK_CHARS,
    FIRST_RUN_ID,
    LAST_RUN_ID,
    N_IDS,
    IdCorpus,
    Source,
    UnitCounts,
    sample_block,
)
from zhtext.lexical.discover import Discoverer, SpanSpec, merge_spans, new_span_table, span_block
from zhtext.lexical.lexicon import Lexicon
from zhtext.lexical.ngrams import CountTable, KeySet
from zhtext.lexical.route import route_counts

__all__ = ["RayCorpus", "RayEngine", "discover", "run_on_ray"]

_RUN = re.compile(r"[0-9A-Za-z]+")  # a unit of letters/digits (chars.ALNUM)


# ---------------------------------------------------------------- the work of one task
# Plain functions: Ray runs them as tasks (_remote() below), and they need nothing of Ray.

def split_runs(split: Split, block_chars: int, given: bool) -> list[str]:
    """The letter/digit runs of a split, in order of first occurrence."""
    seen: dict[str, None] = {}
    for text in split_text(split, block_chars, given):
        seen.update(dict.fromkeys(_RUN.findall(text)))
    return list(seen)


def encode_split(split: Split, runs: list[str], block_chars: int, given: bool
                 ) -> tuple[list[np.ndarray], tuple[int, np.ndarray, np.ndarray, int]]:
    """A split's blocks of unit ids (runs numbered as ``runs`` says), and what the driver keeps
    of it: the number of blocks, its unigram counts as (ids, counts) of the units it has, and
    its characters read."""
    corpus = IdCorpus(spill_bytes=1 << 62)
    corpus.run_text = runs  # complete: no run is new, and one past the vocabulary's end stays 0
    corpus.run_ids = {run: FIRST_RUN_ID + k for k, run in enumerate(runs)}
    for text in split_text(split, block_chars, given):
        corpus.add_text(text)
    have = np.flatnonzero(corpus.unigrams)
    blocks = list(corpus.blocks)
    return blocks, (len(blocks), have, corpus.unigrams[have], corpus.chars_read)


def _blocks_of(refs: list) -> Iterable[tuple[int, np.ndarray]]:
    # (first block index, ref of a split's blocks): fetched one split at a time, so a task holds
    # one split's blocks, never its whole share.
    import ray

    for first, ref in refs:
        for k, block in enumerate(ray.get(ref)):
            yield first + k, block


def count_task(refs: list, n: int, ok_uni: np.ndarray, prev: KeySet | None,
               ok_end: np.ndarray | None) -> CountTable:
    table = CountTable(bits=16)
    for _, block in _blocks_of(refs):
        table.count(block, n, ok_uni, prev, ok_end)
    return table


def merge_tables(a: CountTable, b: CountTable) -> CountTable:
    # Arguments from the object store are read-only views of shared memory: merge into a copy.
    a.keys, a.counts = a.keys.copy(), a.counts.copy()
    a.merge(b)
    return a


def merge_span_tables(a: list, b: list) -> list:
    return merge_spans([a[0], a[1].copy(), a[2]], b)


def span_task(refs: list, spec: SpanSpec) -> list:
    state = new_span_table()
    for _, block in _blocks_of(refs):
        span_block(state, block, spec)
    return state


def sample_task(refs: list, share: float | None) -> list[np.ndarray]:
    """The sample pieces of a group of splits, in order (their whole blocks with no ``share``)."""
    out = []
    for _, block in _blocks_of(refs):
        out += [block] if share is None else [p.copy() for p in sample_block(block, share)]
    return out


def route_task(refs: list, trie: Any, n_words: int, floor: float
               ) -> tuple[np.ndarray, np.ndarray, dict[int, float], int]:
    counts = np.zeros(n_words, dtype=np.int64)
    unknown = np.zeros(N_IDS, dtype=np.int64)
    logp: dict[int, float] = {}
    units = 0
    for index, block in _blocks_of(refs):
        logp[index], n = route_counts(block, trie, floor, counts, unknown)
        units += n
    return counts, unknown, logp, units


_REMOTE: dict[str, Any] = {}


def _remote(fn: Callable, cpus: float) -> Any:
    import ray

    key = f"{fn.__name__}:{cpus}"
    if key not in _REMOTE:
        # Tasks are pure functions of their inputs: Ray may rerun one on a lost worker freely.
        _REMOTE[key] = ray.remote(num_cpus=cpus, max_retries=3, retry_exceptions=False)(fn)
    return _REMOTE[key]


# ---------------------------------------------------------------- the driver's side

class RayEngine:
    """Runs discovery's whole-corpus passes on the Ray session of this process.

    Args:
        workers: tasks a pass is spread over (default: the cluster's CPUs / ``cpus_per_worker``).
        cpus_per_worker: CPUs each task reserves.
        split_bytes: bytes of input a reading task takes (default: a local run's,
            :data:`zhtext.io.splits.SPLIT_BYTES`; the blocks, and so the results, follow it).
    """

    def __init__(self, workers: int | None = None, cpus_per_worker: float = 1.0,
                 split_bytes: int | None = None, block_chars: int = BLOCK_CHARS) -> None:
        self.workers = workers
        self.cpus = cpus_per_worker
        self.split_bytes = split_bytes
        self.block_chars = block_chars

    def plan(self, source: Source, encoding: str | None = None) -> list[Split]:
        """The splits of the input, planned here (each file's head read): a missing, binary or
        wrongly encoded file fails before any Ray work."""
        many = isinstance(source, (list, tuple))
        if not (isinstance(source, (str, os.PathLike))
                or many and all(isinstance(s, (str, os.PathLike)) for s in source)):
            raise ZhtextError("a Ray run reads files: give paths, not lines of text")
        if any(os.fspath(s) == "-" for s in (source if many else [source])):
            raise ZhtextError("a Ray run cannot read stdin: give files")
        self._planned = (source, encoding, plan_splits(expand_inputs(source), encoding,
                                                       self.split_bytes))
        return self._planned[2]

    def read(self, source: Source, encoding: str | None = None,
             on_block: Callable[[int], None] | None = None) -> RayCorpus:
        """Read files (paths, directories, globs, URIs) into blocks held by the cluster."""
        import ray

        planned = getattr(self, "_planned", None)
        if planned is not None and planned[0] is source and planned[1] == encoding:
            splits = planned[2]
        else:
            splits = self.plan(source, encoding)
        given = encoding is not None
        workers = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1) / self.cpus))
        runs_of = _remote(split_runs, self.cpus)
        encode = _remote(encode_split, self.cpus)
        # Runs get ids in order of first occurrence over the whole input, as a local read gives
        # them: each split's runs in its order, merged in split order, up to the id space's end.
        vocabulary: dict[str, None] = {}
        for runs in ray.get([runs_of.remote(s, self.block_chars, given) for s in splits]):
            vocabulary.update(dict.fromkeys(runs))
        runs = list(vocabulary)[: LAST_RUN_ID - FIRST_RUN_ID + 1]
        runs_ref = ray.put(runs)
        corpus = RayCorpus(ray, workers, self.cpus)
        corpus.run_text = runs
        pending = [encode.options(num_returns=2).remote(s, runs_ref, self.block_chars, given)
                   for s in splits]
        meta = ray.get([m for _, m in pending]) if pending else []
        for (blocks_ref, _), (n_blocks, have, counts, chars) in zip(pending, meta):
            corpus.add(blocks_ref, n_blocks, int(counts.sum()))
            corpus.unigrams[have] += counts
            corpus.chars_read += chars
            if on_block is not None:
                on_block(chars)
        return corpus


class RayCorpus(UnitCounts):
    """A corpus whose blocks are held by the Ray cluster, with discovery's passes over it."""

    def __init__(self, ray: Any, workers: int, cpus: float) -> None:
        self.ray, self.workers, self.cpus = ray, workers, cpus
        self.chars_read = 0
        self.unigrams = np.zeros(N_IDS, dtype=np.int64)
        self.run_text: list[str] = []
        self.splits: list[tuple[int, Any]] = []  # (index of the split's first block, its blocks)
        self.split_units: list[int] = []
        self.n_blocks = 0

    def add(self, ref: Any, n_blocks: int, units: int) -> None:
        if n_blocks:
            self.splits.append((self.n_blocks, ref))
            self.split_units.append(units)
            self.n_blocks += n_blocks

    def _groups(self) -> list[tuple[list, int]]:
        """The splits dealt into one contiguous group a worker, with each group's units."""
        k = max(1, min(self.workers, len(self.splits)))
        bounds = np.linspace(0, len(self.splits), k + 1).round().astype(int)
        return [(self.splits[a:b], sum(self.split_units[a:b])) for a, b in zip(bounds, bounds[1:])
                if b > a]

    def _map(self, fn: Callable, *args: Any, advance: Callable[[int], None] | None = None) -> list:
        """``fn(group, *args)`` for every group as tasks; results in group order."""
        task = _remote(fn, self.cpus)
        shared = [self.ray.put(a) if isinstance(a, (np.ndarray, KeySet, SpanSpec, tuple)) else a
                  for a in args]
        groups = self._groups()
        refs = [task.remote(group, *shared) for group, _ in groups]
        left = dict(zip(refs, (units for _, units in groups)))
        while left:
            done, _ = self.ray.wait(list(left), num_returns=1)
            if advance is not None:
                advance(left.pop(done[0]))
            else:
                left.pop(done[0])
        return refs

    def _tree(self, refs: list, merge: Callable) -> Any:
        """Merge task results pairwise, in tasks, down to one (fetched)."""
        task = _remote(merge, self.cpus)
        while len(refs) > 1:
            refs = [task.remote(a, b) for a, b in zip(refs[::2], refs[1::2])] + (
                [refs[-1]] if len(refs) % 2 else [])
        return self.ray.get(refs[0])

    # -- the passes (LocalPasses' interface)
    def count(self, n: int, ok_uni: np.ndarray, prev: KeySet | None, ok_end: np.ndarray | None,
              advance: Callable[[int], None]) -> CountTable:
        if not self.splits:
            return CountTable(bits=16)
        return self._tree(self._map(count_task, n, ok_uni, prev, ok_end, advance=advance),
                          merge_tables)

    def spans(self, spec: SpanSpec, advance: Callable[[int], None]) -> list:
        if not self.splits:
            return new_span_table()
        return self._tree(self._map(span_task, spec, advance=advance), merge_span_tables)

    def sample(self, max_units: int) -> list[np.ndarray]:
        """The re-estimation sample, brought to the driver: the whole corpus when no larger."""
        share = None if self.units <= max_units else max_units / self.units
        refs = self._map(sample_task, share)
        return [piece for pieces in self.ray.get(refs) for piece in pieces]

    def route(self, trie: Any, n_words: int, floor: float, advance: Callable[[int], None]):
        counts = np.zeros(n_words, dtype=np.int64)
        unknown = np.zeros(N_IDS, dtype=np.int64)
        logp: dict[int, float] = {}
        units = 0
        for c, u, lp, n in self.ray.get(self._map(route_task, trie, n_words, floor,
                                                  advance=advance)):
            counts += c
            unknown += u
            logp.update(lp)
            units += n
        return counts, unknown, logp, units

    def close(self) -> None:
        self.splits = []  # dropping the refs frees the blocks in the object store


def run_on_ray(finder: Discoverer, source: Source, encoding: str | None = None, *,
               address: str | None = None, workers: int | None = None,
               cpus_per_worker: float = 1.0) -> Lexicon:
    """``finder.run`` with its whole-corpus passes on Ray: the Ray session of this process if
    there is one, else one started or joined at ``address`` (``local``, ``auto``, ``HOST:PORT``,
    ``ray://HOST:PORT``) for this call."""
    from zhtext.distributed.cluster import cluster, ray_module

    ray_module()
    engine = RayEngine(workers, cpus_per_worker)
    engine.plan(source, encoding)  # bad inputs fail before Ray starts
    with cluster(address or "local"):
        return finder.run(source, encoding, engine)


def discover(
    source: Source,
    encoding: str | None = None,
    *,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: float = 1.0,
    **options: Any,
) -> Lexicon:
    """Discover the words of a corpus by minimum entropy; see :class:`~zhtext.lexical.discover.
    Discoverer` for ``options``.

    ``source`` is a path (``str`` or ``Path``), a list of paths (directories and globs too), or,
    locally, an iterable of text lines. Returns a :class:`~zhtext.Lexicon` of words (single
    characters included, so that it segments on its own) with their counts in the final
    segmentation; ``lexicon.bits_per_char`` lists the corpus's bits per character after each
    re-estimation pass (a run of ASCII letters or digits counts as one character).

    ``engine="ray"`` runs on Ray (:func:`run_on_ray`: ``address``, ``workers``,
    ``cpus_per_worker``) and gives the lexicon a local run gives, to the bit.
    """
    finder = Discoverer(**options)
    if engine == "local":
        return finder.run(source, encoding)
    if engine != "ray":
        raise ZhtextError(f"engine must be 'local' or 'ray', not {engine!r}")
    return run_on_ray(finder, source, encoding, address=address, workers=workers,
                      cpus_per_worker=cpus_per_worker)
