"""One streaming pass of several models over a corpus: segment, tag, title, generate, embed.

>>> nlp = Pipeline(["segment", "tag", "embed"], tag_model="ner-model", embed_model="bert-base-chinese")
>>> doc = nlp("浙商银行企业信贷部叶老桂博士")
>>> doc.words, doc.spans, doc.vector.shape                                # doctest: +SKIP
>>> for doc in nlp.pipe(open("corpus.txt"), batch_size=256): ...         # doctest: +SKIP

Each model is loaded once, when the pipeline is made. :meth:`Pipeline.pipe` cuts the stream into
batches of ``batch_size`` documents and runs every step over a whole batch (the tagger and the
embedder sort a batch by length inside, so little compute goes to padding), then yields the
batch's :class:`Doc` objects in input order: memory is bounded by one batch.

A step is a :class:`Step` subclass with a ``name``, the :class:`Doc` field it fills, its settings
(``options``) and one batch method, ``run(texts) -> results``. Defining the class registers it;
nothing else changes to add a step.

Bad lines are reported, never dropped. :meth:`Pipeline.run` reads a file line by line and decodes
each line on its own, so an undecodable line becomes a record with an ``error`` (and a zero vector)
instead of ending the run. An empty line, and a line longer than a model's window, are processed
the way the standalone command does (the tagger windows it, the embedder truncates it) and carry a
``problems`` note. With ``strict`` the first such line stops the run with its line number.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, ClassVar

import numpy as np

from zhtext.errors import ZhtextError
from zhtext.io.writing import atomic_output, atomic_path
from zhtext.io.reading import iter_numbered_lines
from zhtext.io.config import load_config, save_config

if TYPE_CHECKING:
    from zhtext.tasks.tagger import Span

__all__ = ["STEPS", "BadLine", "Doc", "Lines", "Pipeline", "Problem", "Report", "Step", "read_numbered"]

REQUIRED = object()  # marks a step option that has no default
STEPS: dict[str, type[Step]] = {}  # step name -> class, filled as the classes are defined
# Settings of the pipeline itself (not of one step): name -> default.
# 1024 documents a batch: the embedder and the tagger sort each batch by length, and on news-like
# lengths 256 would pad to ~1.35x the tokens of sorting the whole corpus, 1024 to ~1.04x.
COMMON = {"steps": REQUIRED, "batch_size": 1024, "device": None}
EMPTY, UNREADABLE = "empty line", "unreadable"
# A longer input line is reported unreadable rather than held: memory stays bounded by a batch.
MAX_LINE_BYTES = 1 << 20


# --------------------------------------------------------------------------- documents


class Problem(str):
    """A note on a bad line, written ``"kind (detail)"``; ``kind`` groups like problems together."""

    kind: str

    def __new__(cls, kind: str, detail: str | None = None) -> Problem:  # noqa: PYI034
        obj = super().__new__(cls, f"{kind} ({detail})" if detail else kind)
        obj.kind = kind
        return obj


@dataclass
class Doc:
    """One document and whatever the steps found in it (None: that step did not run).

    ``line`` is the 1-based input line when read from a file (else the position in the stream).
    ``problems`` notes what was odd about the line (empty, longer than a model's window);
    ``error`` is set, and no step runs, when the line could not be read at all.
    """

    text: str
    line: int | None = None
    words: list[str] | None = None
    spans: list[Span] | None = None
    title: str | None = None
    generated: str | None = None
    vector: np.ndarray | None = None
    problems: list[Problem] = field(default_factory=list)
    error: str | None = None

    def as_dict(self, vector: bool = True) -> dict[str, Any]:
        """JSON-ready record: ``line``, ``text``, the fields the steps filled, any problems.

        ``spans`` are as ``zhtext tag`` writes them; ``vector`` (unless ``vector=False``) a list.
        """
        record: dict[str, Any] = {"line": self.line, "text": self.text}
        if self.error is not None:
            record["error"] = self.error
        for name in ("words", "title", "generated"):
            if getattr(self, name) is not None:
                record[name] = getattr(self, name)
        if self.spans is not None:
            record["spans"] = [s.as_dict() for s in self.spans]
        if vector and self.vector is not None:
            record["vector"] = self.vector.tolist()
        if self.problems:
            record["problems"] = list(self.problems)
        return record

    def to_json(self, vector: bool = True) -> str:
        """One JSONL line; a vector is written with 9 significant digits (float32 exactly), as
        ``zhtext embed --format jsonl`` writes it."""
        text = json.dumps(self.as_dict(vector=False), ensure_ascii=False)
        if vector and self.vector is not None:
            from zhtext.tasks.embed import vector_json

            text = f'{text[:-1]}, "vector": {vector_json(self.vector)}}}'
        return text


# --------------------------------------------------------------------------- steps


class Step:
    """One model (or dictionary) applied to a batch of texts.

    Subclasses set ``name`` (the step's name in ``steps``), ``field`` (the :class:`Doc` attribute
    it fills) and ``options`` (setting name -> default, :data:`REQUIRED` for none), load their
    model in ``__init__`` from the resolved settings, and implement :meth:`run`. A setting must
    have its default's type; one whose default is None or REQUIRED is a string (a path, a model,
    a device). A step whose ``field`` is text it writes sets ``writes_text``:
    a blank line then gets "" without the step seeing it, as the standalone commands skip blanks.
    """

    name: ClassVar[str] = ""
    field: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    writes_text: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            STEPS[cls.name] = cls

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = settings

    #: What :meth:`check` finds, for the report (e.g. "longer than the tagger's window").
    problem: str = ""

    def run(self, texts: list[str]) -> list[Any]:
        """The step's result for each text, in order."""
        raise NotImplementedError

    def check(self, texts: list[str]) -> dict[int, str]:
        """The texts that have :attr:`problem` (index -> detail such as the length); none by default."""
        return {}


class SegmentStep(Step):
    """Words by the unigram segmenter (``zhtext segment``): ``dict`` (default jieba's), ``user_dict``."""

    name, field = "segment", "words"
    options: ClassVar[dict[str, Any]] = {"dict": None, "user_dict": None}

    def __init__(self, settings: Mapping[str, Any]) -> None:
        from zhtext.lexical.segment import Segmenter

        super().__init__(settings)
        self.segmenter = Segmenter(settings["dict"], user_dict=settings["user_dict"])

    def run(self, texts: list[str]) -> list[list[str]]:
        return self.segmenter.cut_lines(texts)


class TagStep(Step):
    """Labelled spans by a BERT+CRF tagger (``zhtext tag``): ``tag_model`` directory."""

    name, field = "tag", "spans"
    options: ClassVar[dict[str, Any]] = {"tag_model": REQUIRED, "tag_batch_size": 32}

    def __init__(self, settings: Mapping[str, Any]) -> None:
        from zhtext.tasks.tagger import Tagger

        super().__init__(settings)
        self.tagger = Tagger.load(
            settings["tag_model"], device=settings["device"], batch_size=settings["tag_batch_size"]
        )

    def run(self, texts: list[str]) -> list[list[Span]]:
        return [candidates[0].spans for candidates in self.tagger.predict(texts)]

    @property
    def problem(self) -> str:
        return f"longer than the tagger's window of {self.tagger.width} characters, tagged in overlapping windows"

    def check(self, texts: list[str]) -> dict[int, str]:
        return {i: f"{len(t)} characters" for i, t in enumerate(texts) if len(t) > self.tagger.width}


class EmbedStep(Step):
    """Sentence vectors (``zhtext embed``): ``embed_model``, ``pooling``, ``embed_max_len``, and
    a saved ``whitening`` (.npz from ``zhtext embed --save-whitening``) to apply."""

    name, field = "embed", "vector"
    options: ClassVar[dict[str, Any]] = {
        "embed_model": REQUIRED,
        "whitening": None,
        "pooling": "first-last-avg",
        "embed_max_len": 256,
        "embed_batch_size": 64,
    }

    def __init__(self, settings: Mapping[str, Any]) -> None:
        from zhtext.tasks.embed import Embedder

        super().__init__(settings)
        self.embedder = Embedder(
            settings["embed_model"], settings["pooling"], settings["whitening"],
            max_len=settings["embed_max_len"], batch_size=settings["embed_batch_size"],
            device=settings["device"],
        )  # fmt: skip

    def run(self, texts: list[str]) -> list[np.ndarray]:
        return list(self.embedder.encode(texts))

    @property
    def problem(self) -> str:
        return f"longer than the embedder's {self.embedder.max_len} tokens, truncated"

    def check(self, texts: list[str]) -> dict[int, str]:
        return _too_many_tokens(self.embedder.tokenizer, texts, self.embedder.max_len, True)


def _too_many_tokens(tokenizer: Any, texts: list[str], limit: int, specials: bool) -> dict[int, str]:
    """The texts over ``limit`` tokens (index -> "N tokens"), special tokens counted if ``specials``.

    No tokenizer makes more tokens than UTF-8 bytes (plus specials), so only texts longer than that
    bound are tokenized again to count.
    """
    maybe = [i for i, t in enumerate(texts) if len(t.encode("utf-8", "surrogatepass")) + 3 > limit]
    if not maybe:
        return {}
    counts = tokenizer([texts[i] for i in maybe], add_special_tokens=specials)["input_ids"]
    return {i: f"{len(ids)} tokens" for i, ids in zip(maybe, counts) if len(ids) > limit}


class TitleStep(Step):
    """A headline by a UniLM title model (``zhtext title --lines``): ``title_model`` directory;
    ``title_beam`` and ``title_max_len`` (title tokens) are that command's --beam and --max-len."""

    name, field, writes_text = "title", "title", True
    options: ClassVar[dict[str, Any]] = {
        "title_model": REQUIRED, "title_beam": 3, "title_max_len": 32, "title_batch_size": 16,
    }  # fmt: skip

    def __init__(self, settings: Mapping[str, Any]) -> None:
        from zhtext.tasks.title import TitleGenerator

        super().__init__(settings)
        self.generator = TitleGenerator.load(
            settings["title_model"], device=settings["device"], batch_size=settings["title_batch_size"]
        )

    @property
    def problem(self) -> str:
        return f"longer than the title model's {self.generator.max_source_len} tokens, its head read"

    def run(self, texts: list[str]) -> list[str]:
        s = self.settings
        return self.generator.generate(texts, beam=s["title_beam"], max_len=s["title_max_len"])

    def check(self, texts: list[str]) -> dict[int, str]:
        return _too_many_tokens(self.generator.tokenizer, texts, self.generator.max_source_len, False)


class GenerateStep(Step):
    """A continuation of each text by a GPT-2 model (``zhtext generate``): ``gpt_model``,
    ``max_new_tokens``, ``seed`` and ``gpt_batch_size`` are that command's --model, --max-new-tokens,
    --seed and --batch-size, with its defaults except the seed: 0, not None, so that a run (and a
    saved config) gives the same text again."""

    name, field, writes_text = "generate", "generated", True
    options: ClassVar[dict[str, Any]] = {
        "gpt_model": REQUIRED, "max_new_tokens": 64, "seed": 0, "gpt_batch_size": 8,
    }  # fmt: skip

    def __init__(self, settings: Mapping[str, Any]) -> None:
        from zhtext.tasks.generate import TextGenerator

        super().__init__(settings)
        self.generator = TextGenerator.load(
            settings["gpt_model"], device=settings["device"], batch_size=settings["gpt_batch_size"]
        )

    def run(self, texts: list[str]) -> list[str]:
        s = self.settings
        # One continuation per text: generate() gives a list of ``num`` samples for each.
        outs = self.generator.generate(texts, max_new_tokens=s["max_new_tokens"], seed=s["seed"])
        return [samples[0] for samples in outs]


# --------------------------------------------------------------------------- reading


class Lines:
    """The numbered lines of a path or ``-``, opened at once: a missing or binary input, or an
    unknown encoding, raises ZhtextError when this is made (before any model loads).

    Iterating gives ``(number, end, text, error)`` as :func:`~zhtext.io.iter_numbered_lines` does:
    each line decoded on its own, an undecodable line (or one over ``max_bytes``) an ``error``.
    ``size`` is the file's size in bytes (None for stdin), for a progress bar driven by ``end``.
    """

    def __init__(
        self, source: str | os.PathLike, encoding: str | None = None, max_bytes: int = MAX_LINE_BYTES
    ) -> None:
        self.name = "<stdin>" if str(source) == "-" else str(source)
        lines = iter_numbered_lines(source, encoding, max_bytes)
        first = next(lines, None)
        self._lines = itertools.chain([first] if first is not None else [], lines)
        self.size = os.path.getsize(source) if self.name != "<stdin>" and os.path.isfile(source) else None

    def __iter__(self) -> Iterator[tuple[int, int, str, str | None]]:
        return self._lines


def read_numbered(
    source: str | os.PathLike, encoding: str | None = None
) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text, error) for each line of a path or ``-``, streamed, as :class:`Lines`
    reads it: an undecodable line gives ``(number, "", "cannot decode ...")`` and the lines after
    it still come."""
    for number, _, text, error in Lines(source, encoding):
        yield number, text, error


# --------------------------------------------------------------------------- vectors on disk


class _VectorFile:
    """A float32 ``.npy`` written row batch by row batch: the header (shape) is filled in at the end,
    so no more than one batch of vectors is ever held."""

    HEADER = 128  # bytes reserved for magic, version, length and the header dict

    def __init__(self, handle: IO[bytes], dim: int) -> None:
        self.handle, self.dim, self.rows = handle, dim, 0
        handle.write(b"\0" * self.HEADER)

    def write(self, row: np.ndarray) -> None:
        """Append one vector."""
        if row.shape != (self.dim,):
            raise ValueError(f"expected a vector of {self.dim} values, got shape {row.shape}")
        self.handle.write(np.asarray(row, dtype="<f4").tobytes())
        self.rows += 1

    def close(self) -> None:
        header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({self.rows}, {self.dim}), }}"
        header = header.ljust(self.HEADER - 10 - 1) + "\n"
        self.handle.seek(0)
        self.handle.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))


# --------------------------------------------------------------------------- the pipeline


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

    ``steps``: names from :data:`STEPS` (a list, or one comma-separated string), run in that order.
    ``settings``: the steps' options (``dict``, ``tag_model``, ``embed_model``, ``whitening``, ...,
    see each step class) plus ``batch_size`` (documents per batch) and ``device``; None means the
    default. An unknown setting, one for a step not chosen, one of the wrong type, and a missing
    model are errors.
    """

    def __init__(self, steps: str | Sequence[str] | None, **settings: Any) -> None:
        self.settings = resolve_settings(steps, settings)
        self.steps: list[Step] = [STEPS[name](self.settings) for name in self.settings["steps"]]
        self.timings: dict[str, float] = {step.name: 0.0 for step in self.steps}

    @classmethod
    def from_config(cls, path: str | os.PathLike, **overrides: Any) -> Pipeline:
        """A pipeline from a TOML config (see :mod:`zhtext.pipeconfig`), ``overrides`` on top.

        ``steps`` among the overrides narrows the file: its settings of steps not chosen are
        dropped (a config saved for segment,tag,embed then runs segment alone)."""
        settings = load_config(path)
        if overrides.get("steps") is not None:
            chosen = set(_step_names(overrides["steps"]))
            owner = _owners()
            settings = {k: v for k, v in settings.items() if k not in owner or owner[k] in chosen}
        settings.update(overrides)
        return cls(settings.pop("steps", None), **settings)

    def save_config(self, path: str | os.PathLike) -> None:
        """Write this pipeline's full settings (defaults included) to a TOML config."""
        save_config(path, self.settings)

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
        size = self.settings["batch_size"] if batch_size is None else _checked("batch_size", batch_size)
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
            if step.writes_text:
                for i in live:
                    setattr(docs[i], step.field, "")
            for i, result in zip(todo, results):
                setattr(docs[i], step.field, result)
        return docs

    @property
    def vector_dim(self) -> int | None:
        """Dimension of the vectors the embed step gives (None without one)."""
        embedder = self._embedder
        return embedder.dim if embedder is not None else None

    @property
    def _embedder(self) -> Any:
        return next((s.embedder for s in self.steps if isinstance(s, EmbedStep)), None)

    def run(
        self,
        source: str | os.PathLike | Lines,
        output: str | os.PathLike | None = None,
        vectors: str | os.PathLike | None = None,
        encoding: str | None = None,
        strict: bool = False,
        batch_size: int | None = None,
        on_doc: Callable[[Doc, int], None] | None = None,
    ) -> Report:
        """Run over a file (or ``-``, or :class:`Lines` already opened): one JSONL record per
        input line to ``output`` (stdout if None), vectors to ``vectors`` (.npy, one row per line,
        a zero row for an unreadable line, with the settings beside it as ``zhtext embed -o
        FILE.npy`` writes them, so ``zhtext similar`` can search it) or else inside the records.
        All outputs appear whole, together, or not at all.

        ``on_doc(doc, end)`` is called after each document is written, with the input's byte
        offset just past its line (for a progress bar over :attr:`Lines.size`).
        """
        dim = self.vector_dim
        if vectors is not None and dim is None:
            raise ZhtextError("--vectors needs the embed step in the steps")
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
                matrix = _VectorFile(stack.enter_context(open(tmp, "wb")), dim)
            for doc in self.pipe(docs(), batch_size, strict):
                if matrix is not None:
                    matrix.write(doc.vector if doc.error is None else np.zeros(dim))
                out.write(doc.to_json(vector=matrix is None) + "\n")
                report.docs += 1
                if doc.error is not None:
                    report.errors.append((doc.line, doc.error))
                report.problems.extend((doc.line, p) for p in doc.problems)
                end = ends.popleft()
                if on_doc is not None:
                    on_doc(doc, end)
            if matrix is not None:
                from zhtext.tasks.embed import save_index_meta

                matrix.close()
                save_index_meta(vectors, self._embedder, report.docs, stack)
        report.seconds = time.perf_counter() - begin
        report.timings = {k: v - before[k] for k, v in self.timings.items()}
        return report


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


# --------------------------------------------------------------------------- settings


def _owners() -> dict[str, str]:
    """Each step option -> the name of its step."""
    return {option: cls.name for cls in STEPS.values() for option in cls.options}


def _step_names(steps: Any) -> list[str]:
    """``steps`` (a list of names or one comma-separated string) as a checked list of names."""
    if isinstance(steps, str):
        names = [s.strip() for s in steps.split(",")]
    elif isinstance(steps, (list, tuple)) and all(isinstance(s, str) for s in steps):
        names = list(steps)
    elif steps is None:
        names = []
    else:
        raise ZhtextError(
            f"setting steps must be a list of step names or a comma-separated string, got {steps!r}"
        )
    if not names or not all(names):
        raise ZhtextError(
            "no steps given: give --steps (e.g. --steps segment,tag,embed) or a config with steps = [...] "
            f"(choose from {', '.join(STEPS)})"
        )
    for name in names:
        if name not in STEPS:
            raise ZhtextError(f"unknown step {name!r} (choose from {', '.join(STEPS)})")
    if len(set(names)) != len(names):
        raise ZhtextError(f"a step is named twice in {','.join(names)}")
    return names


def _default(key: str) -> tuple[Any, type]:
    """A setting's default and the type its values must have: the default's, or str (a path, a
    model, a device) for a default of None or REQUIRED."""
    for defaults in (COMMON, *(cls.options for cls in STEPS.values())):
        if key in defaults:
            default = defaults[key]
            return default, str if default is None or default is REQUIRED else type(default)
    raise KeyError(key)


def _checked(key: str, value: Any) -> Any:
    """``value`` if it suits the setting ``key``, else ZhtextError naming the setting. An integer
    setting with a positive default (a size, a count) must be positive; bool is no integer here."""
    default, kind = _default(key)
    if kind is int:
        positive = isinstance(default, int) and default > 0
        ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 1 or not positive)
        what = "a positive integer" if positive else "an integer"
    elif kind is float:
        ok, what = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    else:
        ok, what = isinstance(value, kind), {str: "a string", bool: "true or false"}.get(kind, kind.__name__)
    if not ok:
        raise ZhtextError(f"setting {key} must be {what}, got {value!r}")
    return value


def resolve_settings(steps: Any, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The full settings of a pipeline: ``steps`` as a list, each chosen step's options with their
    defaults filled in (None: the default), the common ones; ZhtextError for anything unknown,
    misplaced, of the wrong type or missing."""
    names = _step_names(steps)
    owner = _owners()
    for key in settings:
        if key in COMMON and key != "steps":
            continue
        if key not in owner:
            raise ZhtextError(f"unknown setting {key!r}")
        if owner[key] not in names:
            raise ZhtextError(f"setting {key!r} belongs to the {owner[key]} step, which is not in the steps")
    resolved: dict[str, Any] = {"steps": names}
    defaults = {k: v for k, v in COMMON.items() if k != "steps"}
    for name in names:
        defaults.update(STEPS[name].options)
    for key, default in defaults.items():
        value = settings.get(key)
        if value is None:
            if default is REQUIRED:
                raise ZhtextError(f"the {owner[key]} step needs the setting {key} (--{key.replace('_', '-')})")
            value = default
        resolved[key] = value if value is None else _checked(key, value)  # None: a default of None
    return resolved
