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

import codecs
import contextlib
import importlib
import json
import os
import struct
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

import numpy as np

from .errors import ZhtextError
from .io import (
    CHUNK_BYTES,
    _looks_binary,
    _open_binary,
    atomic_output,
    atomic_path,
    detect_encoding,
    iter_lines,
)
from .pipeconfig import load_config, save_config

if TYPE_CHECKING:
    from .tagger import Span

__all__ = ["STEPS", "BadLine", "Doc", "Pipeline", "Problem", "Report", "Step", "read_numbered"]

REQUIRED = object()  # marks a step option that has no default
STEPS: dict[str, type[Step]] = {}  # step name -> class, filled as the classes are defined
# Settings of the pipeline itself (not of one step): name -> default.
# 1024 documents a batch: the embedder and the tagger sort each batch by length, and on news-like
# lengths 256 would pad to ~1.35x the tokens of sorting the whole corpus, 1024 to ~1.04x.
COMMON = {"steps": REQUIRED, "batch_size": 1024, "device": None}
EMPTY, UNREADABLE = "empty line", "unreadable"


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
            values = ",".join(format(float(v), ".9g") for v in self.vector)
            text = f'{text[:-1]}, "vector": [{values}]}}'
        return text


# --------------------------------------------------------------------------- steps


class Step:
    """One model (or dictionary) applied to a batch of texts.

    Subclasses set ``name`` (the step's name in ``steps``), ``field`` (the :class:`Doc` attribute
    it fills) and ``options`` (setting name -> default, :data:`REQUIRED` for none), load their
    model in ``__init__`` from the resolved settings, and implement :meth:`run`.
    """

    name: ClassVar[str] = ""
    field: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}

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
        from .segment import Segmenter

        super().__init__(settings)
        self.segmenter = Segmenter(settings["dict"], user_dict=settings["user_dict"])

    def run(self, texts: list[str]) -> list[list[str]]:
        return self.segmenter.cut_lines(texts)


class TagStep(Step):
    """Labelled spans by a BERT+CRF tagger (``zhtext tag``): ``tag_model`` directory."""

    name, field = "tag", "spans"
    options: ClassVar[dict[str, Any]] = {"tag_model": REQUIRED, "tag_batch_size": 32}

    def __init__(self, settings: Mapping[str, Any]) -> None:
        from .tagger import Tagger

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
        from .embed import Embedder

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

    name, field = "title", "title"
    options: ClassVar[dict[str, Any]] = {
        "title_model": REQUIRED, "title_beam": 3, "title_max_len": 32, "title_batch_size": 16,
    }  # fmt: skip

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.generator = _part("unilm", "TitleGenerator").load(
            settings["title_model"], device=settings["device"], batch_size=settings["title_batch_size"]
        )

    @property
    def problem(self) -> str:
        return f"longer than the title model's {self.generator.max_source_len} tokens, its head read"

    def run(self, texts: list[str]) -> list[str]:
        # 'zhtext title --lines' skips blank lines: they get an empty title, not an invented one.
        todo = [i for i, t in enumerate(texts) if t.strip()]
        titles = [""] * len(texts)
        made = self.generator.generate(
            [texts[i] for i in todo], beam=self.settings["title_beam"], max_len=self.settings["title_max_len"]
        ) if todo else []  # fmt: skip
        for i, title in zip(todo, made):
            titles[i] = title
        return titles

    def check(self, texts: list[str]) -> dict[int, str]:
        return _too_many_tokens(self.generator.tokenizer, texts, self.generator.max_source_len, False)


class GenerateStep(Step):
    """A continuation of each text by a GPT-2 model (``zhtext generate``): ``gpt_model``."""

    name, field = "generate", "generated"
    options: ClassVar[dict[str, Any]] = {"gpt_model": REQUIRED, "max_new_tokens": 32, "seed": 0}

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.generator = _part("gpt", "TextGenerator").load(settings["gpt_model"])

    def run(self, texts: list[str]) -> list[str]:
        s = self.settings
        # One continuation per text: generate() gives a list of ``num`` samples for each.
        outs = self.generator.generate(texts, max_new_tokens=s["max_new_tokens"], seed=s["seed"])
        return [samples[0] for samples in outs]


def _part(module: str, name: str) -> Any:
    """``zhtext.<module>.<name>``, imported when a step needs it; a clear error where it is missing."""
    try:
        return getattr(importlib.import_module(f".{module}", __package__), name)
    except (ImportError, AttributeError):
        raise ZhtextError(f"this step needs zhtext.{module}.{name}, missing from this install") from None


# --------------------------------------------------------------------------- reading


def read_numbered(
    source: str | os.PathLike, encoding: str | None = None
) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text, error) for each line of a path or ``-``, streamed.

    Unlike :func:`~zhtext.io.iter_lines`, each line is decoded on its own, so an undecodable line
    gives ``("", "cannot decode ...")`` and the lines after it still come. The encoding is detected
    from the first chunk as ``iter_lines`` does; when some lines of it do not decode, the codec that
    decodes more of them is taken. Codecs whose newline is not the byte ``\\n`` (UTF-16) are read
    with ``iter_lines``, where a bad byte ends the run.
    """
    if encoding is not None and "\n".encode(encoding, "ignore") != b"\n":
        yield from ((n, line, None) for n, line in enumerate(iter_lines(source, encoding), 1))
        return
    stream, name = _open_binary(source)
    try:
        first = stream.read(CHUNK_BYTES)
        if first.startswith(codecs.BOM_UTF8):
            first, encoding = first[len(codecs.BOM_UTF8) :], encoding or "utf-8"
        codec = encoding or _pick_encoding(first, name)
        try:
            codecs.lookup(codec)
        except LookupError:
            raise ZhtextError(f"unknown encoding: {codec}") from None
        number, offset, held = 0, 0, b""
        data = first
        while data:
            lines = (held + data).split(b"\n")
            held = lines.pop()
            for raw in lines:
                number += 1
                yield (number, *_decode(raw, codec, offset))
                offset += len(raw) + 1
            data = stream.read(CHUNK_BYTES)
        if held:
            yield (number + 1, *_decode(held, codec, offset))
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _decode(raw: bytes, codec: str, offset: int) -> tuple[str, str | None]:
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as exc:
        return "", f"cannot decode byte at offset {offset + exc.start} as {codec}"
    return text.removesuffix("\r"), None


def _pick_encoding(sample: bytes, name: str) -> str:
    try:
        return detect_encoding(sample, name)
    except ZhtextError:
        if _looks_binary(sample):
            raise
    # A few bad lines must not decide the codec for the whole file: count lines that decode.
    lines = sample.split(b"\n")[:-1] or [sample]

    def failures(codec: str) -> int:
        return sum(1 for raw in lines if _decode(raw, codec, 0)[1] is not None)

    return min(("utf-8", "gb18030"), key=failures)


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
    see each step class) plus ``batch_size`` (documents per batch) and ``device``. An unknown
    setting, or one for a step not chosen, is an error; so is a missing model.
    """

    def __init__(self, steps: str | Sequence[str], **settings: Any) -> None:
        self.settings = resolve_settings(steps, settings)
        self.steps: list[Step] = [STEPS[name](self.settings) for name in self.settings["steps"]]
        self.timings: dict[str, float] = {step.name: 0.0 for step in self.steps}

    @classmethod
    def from_config(cls, path: str | os.PathLike, **overrides: Any) -> Pipeline:
        """A pipeline from a TOML config (see :mod:`zhtext.pipeconfig`), ``overrides`` on top."""
        settings = {**load_config(path), **{k: v for k, v in overrides.items() if v is not None}}
        if "steps" not in settings:
            raise ZhtextError(f"{path}: no 'steps' setting")
        return cls(settings.pop("steps"), **settings)

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
        size = batch_size or self.settings["batch_size"]
        if size < 1:
            raise ZhtextError(f"batch size must be positive, got {size}")
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
        for step in self.steps:
            begin = time.perf_counter()
            results = step.run(texts) if texts else []
            self.timings[step.name] += time.perf_counter() - begin
            for i, result in zip(live, results):
                setattr(docs[i], step.field, result)
        return docs

    @property
    def vector_dim(self) -> int | None:
        """Dimension of the vectors the embed step gives (None without one)."""
        embed = next((s for s in self.steps if isinstance(s, EmbedStep)), None)
        return embed.embedder.dim if embed else None

    def run(
        self,
        source: str | os.PathLike,
        output: str | os.PathLike | None = None,
        vectors: str | os.PathLike | None = None,
        encoding: str | None = None,
        strict: bool = False,
        batch_size: int | None = None,
        on_doc: Callable[[Doc], None] | None = None,
    ) -> Report:
        """Run over a file (or ``-``): one JSONL record per input line to ``output`` (stdout if
        None), vectors to ``vectors`` (.npy, one row per line, a zero row for an unreadable line,
        with the settings beside it as ``zhtext embed -o FILE.npy`` writes them, so ``zhtext
        similar`` can search it) or else inside the records. Outputs appear whole or not at all.

        ``on_doc(doc)`` is called after each document is written (for a progress bar).
        """
        dim = self.vector_dim
        if vectors is not None and dim is None:
            raise ZhtextError("--vectors needs the embed step in the steps")
        report = Report()
        before = dict(self.timings)
        begin = time.perf_counter()
        docs = (Doc(text, line=n, error=err) for n, text, err in read_numbered(source, encoding))
        name = "<stdin>" if str(source) == "-" else str(source)
        with contextlib.ExitStack() as stack:
            stack.enter_context(_name_bad_lines(name))
            out = stack.enter_context(atomic_output(output))
            matrix = None
            if vectors is not None:
                tmp = stack.enter_context(atomic_path(vectors))
                matrix = _VectorFile(stack.enter_context(open(tmp, "wb")), dim)
            for doc in self.pipe(docs, batch_size, strict):
                if matrix is not None:
                    matrix.write(doc.vector if doc.error is None else np.zeros(dim))
                out.write(doc.to_json(vector=matrix is None) + "\n")
                report.docs += 1
                if doc.error is not None:
                    report.errors.append((doc.line, doc.error))
                report.problems.extend((doc.line, p) for p in doc.problems)
                if on_doc is not None:
                    on_doc(doc)
            if matrix is not None:
                matrix.close()
        if vectors is not None:
            self._save_index_meta(Path(vectors), report.docs)
        report.seconds = time.perf_counter() - begin
        report.timings = {k: v - before[k] for k, v in self.timings.items()}
        return report

    def _save_index_meta(self, vectors: Path, count: int) -> None:
        """The settings beside the vectors (and the whitening), as ``zhtext embed`` keeps them."""
        from .embed import index_meta_path

        embedder = next(s for s in self.steps if isinstance(s, EmbedStep)).embedder
        meta = {**embedder.settings(), "count": count, "dim": embedder.dim, "whitening": None}
        if embedder.whitening is not None:
            meta["whitening"] = vectors.with_suffix(".whitening.npz").name
            embedder.whitening.save(vectors.with_suffix(".whitening.npz"))
        with atomic_output(index_meta_path(vectors)) as handle:
            handle.write(json.dumps(meta, ensure_ascii=False, indent=2) + "\n")


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


def resolve_settings(steps: str | Sequence[str], settings: Mapping[str, Any]) -> dict[str, Any]:
    """The full settings of a pipeline: ``steps`` as a list, each chosen step's options with their
    defaults filled in, the common ones; ZhtextError for anything unknown, misplaced or missing."""
    names = [s.strip() for s in steps.split(",")] if isinstance(steps, str) else list(steps)
    if not names or not all(names):
        raise ZhtextError("no steps given (choose from " + ", ".join(STEPS) + ")")
    for name in names:
        if name not in STEPS:
            raise ZhtextError(f"unknown step {name!r} (choose from {', '.join(STEPS)})")
    if len(set(names)) != len(names):
        raise ZhtextError(f"a step is named twice in {','.join(names)}")
    owner = {option: cls.name for cls in STEPS.values() for option in cls.options}
    for key in settings:
        if key in COMMON:
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
        resolved[key] = value
    if not isinstance(resolved["batch_size"], int) or resolved["batch_size"] < 1:
        raise ZhtextError(f"batch size must be a positive integer, got {resolved['batch_size']!r}")
    return resolved
