"""``zhtext pipe --ray``: a pipeline's steps in Ray actors, one output part per input split.

The inputs (files, folders, globs, ``pyarrow.fs`` URIs) are cut into byte-range splits of whole
lines (:mod:`zhtext.io.splits`); the driver reads only each file's head, to choose its codec.
Two passes run on the cluster:

1. Ray tasks count the newlines of each split's window, so that every line gets its number in
   its file (the prefix sums are made on the driver, from one integer a split).
2. A Ray Data ``map_batches`` over the splits, with a callable class: each actor builds the
   pipeline once (models loaded, Numba kernels and torch warmed by one text) and then, for each
   split it is given, runs :func:`zhtext.pipeline.parts.run_split`, which reads the split's lines
   itself and writes ``part-NNNNN`` whole or not at all. ``num_gpus`` per actor when asked.

A split is the unit of work, of output and of retry: an actor killed mid-split is restarted by
Ray and the split run again, writing the same part over the half-written temporary file, never a
second copy. A rerun into the same folder runs only the missing parts (see
:mod:`zhtext.distributed.output`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from zhtext.distributed.cluster import cluster
from zhtext.distributed.output import (
    check_output_folder,
    claim_output_folder,
    run_identity,
    write_manifest,
)
from zhtext.errors import ZhtextError
from zhtext.io.splits import (
    SPLIT_BYTES,
    Split,
    expand_inputs,
    first_line_numbers,
    plan_splits,
    window_newlines,
)
from zhtext.pipeline.doc import Problem
from zhtext.pipeline.parts import PartStats, part_name, run_split, stats_of_part
from zhtext.pipeline.resolve import with_local_paths
from zhtext.pipeline.run import Pipeline, Report
from zhtext.pipeline.step import STEPS, register

__all__ = ["run_on_ray"]

WARM_TEXT = "北京是中国的首都"


class PartWriter:
    """The callable class of the ``map_batches`` stage: one pipeline per actor, one split per call.

    Ray Data restarts an actor that dies (killed, out of memory, its node lost) and runs its
    split again (its defaults: ``max_restarts=-1``, ``max_task_retries=-1``); an exception
    raised by a step is not retried: it fails the run, in one line.
    """

    def __init__(self, settings: dict[str, Any], step_classes: list[type], directory: str,
                 fmt: str, strict: bool) -> None:
        for cls in step_classes:  # steps defined outside zhtext (a script's own) reach the actor
            register(cls.name)(cls)
        settings = dict(settings)
        self.pipeline = Pipeline(settings.pop("steps"), **settings)
        for _ in self.pipeline.pipe([WARM_TEXT]):  # load lazily built parts, compile, warm caches
            pass
        self.pipeline.timings = dict.fromkeys(self.pipeline.timings, 0.0)
        self.directory, self.fmt, self.strict = directory, fmt, strict

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        out = []
        for task in batch["task"]:
            task = json.loads(str(task))
            split = Split(**task["split"])
            stats = run_split(self.pipeline, split, task["first"], self.directory, self.fmt,
                              self.strict)
            out.append(stats.to_json())
        return {"stats": out}


def run_on_ray(
    pipeline: Pipeline | Mapping[str, Any],
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    output: str | os.PathLike | None,
    *,
    address: str | None = "local",
    workers: int | None = None,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    fmt: str = "jsonl",
    encoding: str | None = None,
    strict: bool = False,
    batch_size: int | None = None,
    split_bytes: int = SPLIT_BYTES,
    on_part: Callable[[PartStats, int], None] | None = None,
) -> Report:
    """Run ``pipeline`` over ``sources`` on Ray into the folder ``output``; see the module's
    docstring. ``pipeline`` is a :class:`Pipeline` or its settings (:meth:`Pipeline.settings_of`:
    then the models are loaded on the workers only). ``on_part(stats, nbytes)`` is called as
    each part is done (resumed ones first)."""
    if output is None or str(output) == "-":
        raise ZhtextError("a run on Ray writes a folder of parts: give --output DIR")
    output = os.fspath(output)
    paths = expand_inputs(sources)
    splits = plan_splits(paths, encoding, split_bytes)
    if isinstance(pipeline, Pipeline):
        settings, classes = pipeline.settings, [type(step) for step in pipeline.steps]
    else:
        settings, classes = dict(pipeline), [STEPS[name] for name in pipeline["steps"]]
    settings = with_local_paths(settings, Path.cwd())  # workers' folders may differ
    if batch_size is not None:
        settings["batch_size"] = batch_size
    identity = run_identity(paths, splits, settings, fmt, encoding, split_bytes)
    done = check_output_folder(output, identity)  # refused before Ray starts
    report = Report()
    begin = time.perf_counter()
    parts = []
    fresh, done = done is None, done or set()
    for split in splits:
        if split.index in done:
            name = os.path.join(output, part_name(split.index, fmt))
            parts.append(stats_of_part(name, split.index))
            if on_part is not None:
                on_part(parts[-1], split.end - split.start)
    todo = [split for split in splits if split.index not in done]
    if todo:
        with cluster(address) as ray_cluster:
            report.startup_s = ray_cluster.start_s
            if fresh:
                claim_output_folder(output, identity)
            firsts = _first_lines(ray_cluster.ray, splits, ray_cluster.cpus)
            writer = {"settings": settings, "step_classes": classes,
                      "directory": os.path.abspath(output), "fmt": fmt, "strict": strict}
            resources = _resources(ray_cluster.ray, workers, cpus_per_worker, gpus_per_worker,
                                   len(todo))
            sizes = {split.index: split.end - split.start for split in todo}
            for stats in _map_parts(ray_cluster.ray, todo, firsts, writer, resources):
                parts.append(stats)
                if on_part is not None:
                    on_part(stats, sizes[stats.index])
    stopped = sorted((p.index, p.stopped, p.source) for p in parts if p.stopped)
    if stopped:
        _, (line, message), source = stopped[0]
        raise ZhtextError(f"{source}:{line}: {message} (stopped by --strict; the parts written "
                          f"are kept, {output} has no _SUCCESS)")
    if fresh and not todo:  # inputs without a line: the folder has the manifest alone
        claim_output_folder(output, identity)
    write_manifest(output, identity, parts)
    report.seconds = time.perf_counter() - begin
    report.parts, report.resumed = len(parts), len(done)
    _fill_report(report, parts, several=len(paths) > 1)
    return report


def _first_lines(ray: Any, splits: Sequence[Split], cpus: int) -> list[int]:
    """Each split's first line number, from newline counts made by Ray tasks (a few per CPU)."""
    count = ray.remote(num_cpus=1)(_count_newlines)
    group = max(1, math.ceil(len(splits) / (4 * max(cpus, 1))))
    refs = [count.remote([asdict(s) for s in splits[i:i + group]])
            for i in range(0, len(splits), group)]
    try:
        newlines = [n for counts in ray.get(refs) for n in counts]
    except Exception as exc:  # noqa: BLE001  (a task's error arrives wrapped by Ray)
        raise _one_line(exc) from None
    return first_line_numbers(splits, newlines)


def _count_newlines(splits: list[dict[str, Any]]) -> list[int]:
    return [window_newlines(Split(**fields)) for fields in splits]


def _resources(ray: Any, workers: int | None, cpus: float, gpus: float, tasks: int) -> dict:
    """The actor pool: ``workers`` actors (default: as many as the cluster's CPUs, or GPUs,
    hold)."""
    if workers is None:
        total = ray.cluster_resources()
        workers = int(total.get("CPU", 1) // cpus) or 1
        if gpus > 0:
            have = total.get("GPU", 0)
            if have < gpus:
                raise ZhtextError(f"--gpus-per-worker {gpus:g}: the cluster has {have:g} GPU(s)")
            workers = min(workers, int(have // gpus))
    return {"concurrency": max(1, min(workers, tasks)), "num_cpus": cpus,
            **({"num_gpus": gpus} if gpus > 0 else {})}


def _map_parts(ray: Any, todo: Sequence[Split], firsts: Sequence[int], writer: dict[str, Any],
               resources: dict[str, Any]) -> Iterable[PartStats]:
    import ray.data

    tasks = [{"task": json.dumps({"split": asdict(s), "first": firsts[s.index]})} for s in todo]
    dataset = ray.data.from_items(tasks, override_num_blocks=len(tasks)).map_batches(
        PartWriter, batch_size=1, fn_constructor_kwargs=writer,
        **resources,
    )
    try:
        for row in dataset.iter_rows():
            yield PartStats.from_json(row["stats"])
    except ZhtextError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _one_line(exc) from None


def _one_line(exc: BaseException) -> ZhtextError:
    """A worker's failure as one line: its ZhtextError if it was one (Ray wraps it), else the
    first line of the message."""
    seen = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        error = todo.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, ZhtextError):
            return ZhtextError(str(error))
        todo += [getattr(error, "cause", None), error.__cause__, error.__context__]
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return ZhtextError(f"the run on Ray failed: {lines[-1] if lines else type(exc).__name__}")


def _fill_report(report: Report, parts: Sequence[PartStats], several: bool) -> None:
    """The parts' counts in ``report``; lines are ``FILE:LINE`` when there are several inputs."""
    for part in sorted(parts, key=lambda p: p.index):
        def where(line: int, source: str = part.source) -> Any:
            return f"{source}:{line}" if several else line

        report.docs += part.docs
        for name, seconds in part.timings.items():
            report.timings[name] = report.timings.get(name, 0.0) + seconds
        report.errors += [(where(line), error) for line, error in part.errors]
        report.problems += [(where(line), Problem(kind, note[len(kind) + 2:-1] or None))
                            for line, kind, note in part.problems]
