"""The pipeline: several steps over one stream of texts, batch by batch, each model loaded once.

Bad lines are reported, never dropped. :meth:`Pipeline.run` reads a file line by line and decodes
each line on its own, so an undecodable line becomes a record with an ``error`` (and a zero vector)
instead of ending the run. An empty line, and a line longer than a model's window, are processed
the way the standalone command does (the tagger windows it, the embedder truncates it) and carry a
``problems`` note. With ``strict`` the first such line stops the run with its line number.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zhtext.errors import ZhtextError
from zhtext.io.config import save_config
from zhtext.io.writing import atomic_output, atomic_path
from zhtext.pipeline.doc import Doc, Problem
from zhtext.pipeline.lines import Lines
from zhtext.pipeline.resolve import (
    COMMON,
    from_flat,
    read_config,
    resolve,
    with_local_paths,
)
from zhtext.pipeline.settings import check_value
from zhtext.pipeline.step import STEPS, Step
from zhtext.pipeline.vectors import VectorFile

__all__ = ["BadLine", "Pipeline", "Report", "save_settings"]

EMPTY, UNREADABLE = "empty line", "unreadable"
# Engines that run a pipeline elsewhere, by name: they live in a higher layer (zhtext.distributed)
# and are imported by name when asked for, as steps are found by name.
ENGINES = {"ray": "zhtext.distributed.pipe:run_on_ray"}
CONFIG_COMMENT = "zhtext pipe settings: zhtext pipe FILE --config THIS.toml -o OUT.jsonl"


class BadLine(ZhtextError):
    """A bad input line met in strict mode: its number and what is wrong with it."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line, self.message = line, message


@dataclass
class Report:
    """What a :meth:`Pipeline.run` did: documents, seconds, seconds per step, and every bad line."""

    docs: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    problems: list[tuple[int, Problem]] = field(default_factory=list)  # (line, problem)
    errors: list[tuple[int, str]] = field(default_factory=list)  # lines not processed at all
    # A sharded run (engine="ray"): its parts, those a rerun found done, the engine's start-up
    # seconds. With several inputs its lines are "FILE:LINE".
    parts: int = 0
    resumed: int = 0
    startup_s: float = 0.0

    def grouped(self) -> dict[str, list[int]]:
        """Line numbers of every bad line by kind of problem (unreadable lines first)."""
        groups: dict[str, list[int]] = {}
        if self.errors:
            groups[UNREADABLE] = [line for line, _ in self.errors]
        for line, problem in self.problems:
            groups.setdefault(problem.kind, []).append(line)
        return groups

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.seconds if self.seconds > 0 else 0.0


class Pipeline:
    """Several steps over one stream of texts, each model loaded once.

    >>> nlp = Pipeline(["segment", "tag", "embed"], tag={"model": "ner"}, embed={"model": "bert-base-chinese"})
    >>> doc = nlp("浙商银行企业信贷部叶老桂博士")                          # doctest: +SKIP
    >>> doc.words, doc.results["tag"], doc.vector.shape                    # doctest: +SKIP
    >>> for doc in nlp.pipe(open("corpus.txt"), batch_size=256): ...       # doctest: +SKIP

    ``steps``: registered step names (a list, or one comma-separated string), run in that order.
    ``settings``: ``batch_size`` (documents per batch), ``device``, and for each step a mapping of
    its settings under the step's name (see each step's ``Settings``); None means the default.
    An unknown setting, one for a step not chosen, one of the wrong type and a missing model are
    errors. (zhtext 0.1's flat names, ``tag_model=...``, still work for a release, with a warning.)

    :meth:`pipe` cuts the stream into batches of ``batch_size`` documents and runs every step over
    a whole batch (the models sort a batch by length inside, so little compute goes to padding),
    then yields the batch's :class:`Doc` objects in input order: memory is bounded by one batch.
    """

    def __init__(self, steps: str | Sequence[str] | None, **settings: Any) -> None:
        self.settings = resolve(steps, from_flat(settings, "Pipeline()"))
        device = self.settings["device"]
        self.steps: list[Step] = []
        for name in self.settings["steps"]:
            cls = STEPS[name]
            step = cls(cls.Settings(**self.settings[name]), device)
            model = getattr(step, "model", None)
            if self.settings.get("quantize") and hasattr(model, "quantize"):  # a Model
                model.quantize(self.settings["quantize"])
            self.steps.append(step)
        self.timings: dict[str, float] = {step.name: 0.0 for step in self.steps}

    @classmethod
    def from_config(cls, path: str | os.PathLike, **overrides: Any) -> Pipeline:
        """A pipeline from a TOML config (see :mod:`zhtext.io.config`), ``overrides`` on top: the
        pipeline's settings replace the file's, a step's table is merged into the file's table,
        None keeps the file's value.

        ``steps`` among the overrides narrows the file: its tables of steps not chosen are
        dropped (a config saved for segment,tag,embed then runs segment alone)."""
        settings = _with_config(path, overrides)
        return cls(settings.pop("steps", None), **settings)

    @staticmethod
    def settings_of(
        steps: str | Sequence[str] | None = None, config: str | os.PathLike | None = None,
        **settings: Any,
    ) -> dict[str, Any]:
        """The full, checked settings of ``Pipeline(steps, **settings)`` (or of
        :meth:`from_config` with ``config``), without loading a model: what a run on a cluster
        sends its workers, which load the models themselves."""
        if config is not None:
            settings = _with_config(config, {"steps": steps, **settings})
            steps = settings.pop("steps", None)
        return resolve(steps, from_flat(settings, "Pipeline()"))

    def save_config(self, path: str | os.PathLike) -> None:
        """Write this pipeline's full settings (defaults included) to a TOML config; local paths
        are written absolute."""
        save_settings(self.settings, path)

    def __repr__(self) -> str:
        return f"Pipeline({self.settings['steps']})"

    def __call__(self, text: str) -> Doc:
        """Run every step on one text."""
        return next(self.pipe([text]))

    def pipe(
        self, texts: Iterable[str | Doc], batch_size: int | None = None, strict: bool = False
    ) -> Iterator[Doc]:
        """Docs for a stream of texts (or :class:`Doc` objects), in input order, one batch at a time.

        With ``strict``, the first problem (an empty text, one longer than a model's window, a
        Doc with an ``error``) raises ZhtextError naming its line instead of being noted.
        """
        size = self.settings["batch_size"]
        if batch_size is not None:
            size = check_value("batch_size", COMMON["batch_size"], batch_size)
        batch: list[Doc] = []
        for position, item in enumerate(texts, 1):
            doc = item if isinstance(item, Doc) else Doc(_strip_newline(item), line=position)
            batch.append(doc)
            if len(batch) == size:
                yield from self._process(batch, strict)
                batch = []
        if batch:
            yield from self._process(batch, strict)

    def _process(self, docs: list[Doc], strict: bool) -> list[Doc]:
        notes: list[tuple[int, Problem]] = []  # (index in docs, problem), in the order found
        for i, doc in enumerate(docs):
            if doc.error is not None:
                notes.append((i, Problem(UNREADABLE, doc.error)))
            elif not doc.text.strip():
                notes.append((i, Problem(EMPTY)))
        live = [i for i, doc in enumerate(docs) if doc.error is None]
        texts = [docs[i].text for i in live]
        for step in self.steps:
            kind = f"{step.name}: {step.problem}"
            notes.extend((live[j], Problem(kind, d)) for j, d in step.check(texts).items())
        if strict and notes:
            first, message = min(notes, key=lambda note: note[0])
            raise BadLine(docs[first].line, message)
        for i, message in notes:
            if docs[i].error is None:
                docs[i].problems.append(message)
        # The standalone commands skip blank lines: a step that writes text gives them "", not
        # text invented from nothing.
        written = [i for i in live if docs[i].text.strip()]
        for step in self.steps:
            todo = written if step.writes_text else live
            begin = time.perf_counter()
            results = step.run([docs[i].text for i in todo]) if todo else []
            self.timings[step.name] += time.perf_counter() - begin
            if len(results) != len(todo):
                raise RuntimeError(f"step {step.name!r} gave {len(results)} results for {len(todo)} texts")
            if step.writes_text:
                for i in live:
                    docs[i].results[step.name] = ""
            for i, result in zip(todo, results):
                docs[i].results[step.name] = result
        return docs

    @property
    def _embed(self) -> Any:
        return next((step for step in self.steps if step.name == "embed"), None)

    @property
    def vector_dim(self) -> int | None:
        """Dimension of the vectors the embed step gives (None without one)."""
        return self._embed.dim if self._embed is not None else None

    def run(
        self,
        source: str | os.PathLike | Lines | Sequence[str | os.PathLike],
        output: str | os.PathLike | None = None,
        vectors: str | os.PathLike | None = None,
        encoding: str | None = None,
        strict: bool = False,
        batch_size: int | None = None,
        on_doc: Callable[[Doc, int], None] | None = None,
        engine: str = "local",
        **engine_options: Any,
    ) -> Report:
        """Run over a file (or ``-``, or :class:`Lines` already opened): one JSONL record per
        input line to ``output`` (stdout if None), vectors to ``vectors`` (.npy, one row per line,
        a zero row for an unreadable line, with the settings beside it as ``zhtext embed -o
        FILE.npy`` writes them, so ``zhtext similar`` can search it) or else inside the records.
        All outputs appear whole, together, or not at all.

        ``on_doc(doc, end)`` is called after each document is written, with the input's byte
        offset just past its line (for a progress bar over :attr:`Lines.size`).

        ``engine="ray"`` runs on a Ray cluster instead: ``source`` is files, folders, globs or
        URIs (one or a list), ``output`` a folder that gets ``part-00000.jsonl`` ... and a
        ``_SUCCESS`` manifest; the records are this engine's with ``source`` (the file) added.
        ``engine_options``: ``address`` (``local``, ``auto``, ``HOST:PORT``, ``ray://...``),
        ``workers``, ``cpus_per_worker``, ``gpus_per_worker``, ``fmt`` (``jsonl`` or
        ``parquet``), ``split_bytes``, ``on_part(stats, nbytes)``; see
        :func:`zhtext.distributed.pipe.run_on_ray`.
        """
        if engine != "local":
            if engine not in ENGINES:
                choices = ", ".join(ENGINES)
                raise ZhtextError(f"unknown engine {engine!r}; choose local or {choices}")
            if vectors is not None:
                raise ZhtextError("vectors= is for a local run; on Ray they are in the records")
            module, _, name = ENGINES[engine].partition(":")
            runner = getattr(importlib.import_module(module), name)
            return runner(self, source, output, encoding=encoding, strict=strict,
                          batch_size=batch_size, **engine_options)
        if engine_options:
            names = ", ".join(engine_options)
            raise ZhtextError(f"{names}: options of engine='ray', not of a local run")
        dim = self.vector_dim
        if vectors is not None and dim is None:
            raise ZhtextError("--vectors needs the embed step in the steps")
        if vectors is not None and os.path.exists(vectors) and not os.path.isfile(vectors):
            # (a FIFO or a device): VectorFile goes back to write the row count into the header
            raise ZhtextError(f"cannot write {vectors}: vectors go to a regular file, whose .npy "
                              "header is written last")
        lines = source if isinstance(source, Lines) else Lines(source, encoding)
        ends: deque[int] = deque()  # input offset past each line read but not yet written

        def docs() -> Iterator[Doc]:
            for number, end, text, error in lines:
                ends.append(end)
                yield Doc(text, line=number, error=error)

        report = Report()
        before = dict(self.timings)
        begin = time.perf_counter()
        with contextlib.ExitStack() as stack:
            stack.enter_context(_name_bad_lines(lines.name))
            out = stack.enter_context(atomic_output(output))
            matrix = None
            if vectors is not None:
                tmp = stack.enter_context(atomic_path(vectors))
                matrix = VectorFile(stack.enter_context(open(tmp, "wb")), dim)
            omit = ("embed",) if matrix is not None else ()
            for doc in self.pipe(docs(), batch_size, strict):
                if matrix is not None:
                    matrix.write(doc.results["embed"] if doc.error is None else np.zeros(dim))
                out.write(doc.to_json(omit) + "\n")
                report.docs += 1
                if doc.error is not None:
                    report.errors.append((doc.line, doc.error))
                report.problems.extend((doc.line, p) for p in doc.problems)
                end = ends.popleft()
                if on_doc is not None:
                    on_doc(doc, end)
            if matrix is not None:
                from zhtext.tasks.vectors import save_index_meta

                matrix.close()
                save_index_meta(vectors, self._embed.model, report.docs, stack)
        report.seconds = time.perf_counter() - begin
        report.timings = {k: v - before[k] for k, v in self.timings.items()}
        return report


def save_settings(settings: dict[str, Any], path: str | os.PathLike) -> None:
    """Write a pipeline's full settings to a TOML config; local paths are written absolute."""
    save_config(path, with_local_paths(settings, Path.cwd()), CONFIG_COMMENT)


def _with_config(path: str | os.PathLike, overrides: dict[str, Any]) -> dict[str, Any]:
    """A config file's settings with ``overrides`` on top (see :meth:`Pipeline.from_config`)."""
    settings = read_config(path, overrides.get("steps"))
    for key, value in from_flat(overrides, "Pipeline.from_config()").items():
        base = settings.get(key)
        if isinstance(base, dict) and isinstance(value, dict):
            settings[key] = {**base, **{k: v for k, v in value.items() if v is not None}}
        elif value is not None:
            settings[key] = value
    return settings


@contextlib.contextmanager
def _name_bad_lines(name: str) -> Iterator[None]:
    # Entered first, so it sees the error after the outputs have been removed.
    try:
        yield
    except BadLine as exc:
        raise ZhtextError(f"{name}:{exc.line}: {exc.message} (stopped by --strict)") from None


def _strip_newline(text: str) -> str:
    # Lines from open() keep their ending; a document is the line without it.
    return text.removesuffix("\n").removesuffix("\r") if text.endswith("\n") else text
