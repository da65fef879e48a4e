"""One split of the input through a pipeline into one output part: the unit of a sharded run.

Engine-free: :func:`run_split` reads the lines of a :class:`~zhtext.io.splits.Split` (each line
decoded on its own, numbered as in its file), runs a :class:`~zhtext.pipeline.Pipeline` over them
and writes their records to one part file, whole or not at all. Whoever schedules the splits (Ray
today) only calls it; a split run twice writes the same part again, never a second copy.

A part's records are the local run's records with ``source`` (the input file) in front, so the
parts, in the order of their index, are the input in order. ``jsonl`` parts hold one record a
line; ``parquet`` parts one row a record, with the columns of every part alike.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from zhtext.errors import ZhtextError
from zhtext.io.splits import Split, numbered_lines
from zhtext.io.writing import atomic_output, atomic_path
from zhtext.pipeline.doc import Doc
from zhtext.pipeline.run import BadLine

if TYPE_CHECKING:
    from zhtext.pipeline.run import Pipeline

__all__ = ["PART_FORMATS", "PartStats", "part_name", "read_part", "run_split", "stats_of_part"]

PART_FORMATS = ("jsonl", "parquet")


def part_name(index: int, fmt: str) -> str:
    """The file name of the part of split ``index``: ``part-00000.jsonl``."""
    return f"part-{index:05d}.{fmt}"


@dataclass
class PartStats:
    """What writing one part did: its split's index and file, the records written, the first
    and last line numbers, seconds by step, and the bad lines as ``(line, kind, note)``.
    ``stopped`` is ``(line, message)`` when ``strict`` met a bad line (nothing was written)."""

    index: int
    source: str
    docs: int = 0
    first: int | None = None
    last: int | None = None
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    errors: list[tuple[int, str]] = field(default_factory=list)
    problems: list[tuple[int, str, str]] = field(default_factory=list)
    stopped: tuple[int, str] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> PartStats:
        data = json.loads(text)
        data["errors"] = [tuple(e) for e in data["errors"]]
        data["problems"] = [tuple(p) for p in data["problems"]]
        data["stopped"] = tuple(data["stopped"]) if data["stopped"] else None
        return cls(**data)

    def note(self, doc: Doc) -> None:
        """Count one written record."""
        self.docs += 1
        self.first = doc.line if self.first is None else self.first
        self.last = doc.line
        if doc.error is not None:
            self.errors.append((doc.line, doc.error))
        self.problems.extend((doc.line, p.kind, str(p)) for p in doc.problems)


def run_split(
    pipeline: Pipeline,
    split: Split,
    first_line: int,
    directory: str | os.PathLike,
    fmt: str = "jsonl",
    strict: bool = False,
    batch_size: int | None = None,
) -> PartStats:
    """Run ``pipeline`` over the lines of ``split`` (numbered from ``first_line``) and write their
    records to ``directory/part-NNNNN.FMT``, whole or not at all."""
    if fmt not in PART_FORMATS:
        raise ZhtextError(f"unknown part format {fmt!r}; choose {' or '.join(PART_FORMATS)}")
    stats = PartStats(split.index, split.path)
    before = dict(pipeline.timings)
    begin = time.perf_counter()
    docs = (Doc(text, line=n, error=e) for n, _, text, e in numbered_lines(split, first_line))
    records = pipeline.pipe(docs, batch_size, strict)
    target = os.path.join(directory, part_name(split.index, fmt))
    try:
        if fmt == "jsonl":
            _write_jsonl(target, split.path, records, stats)
        else:
            _write_parquet(target, split.path, records, stats, pipeline)
    except BadLine as exc:
        stats = PartStats(split.index, split.path, stopped=(exc.line, exc.message))
    stats.seconds = time.perf_counter() - begin
    stats.timings = {k: v - before.get(k, 0.0) for k, v in pipeline.timings.items()}
    return stats


def _write_jsonl(target: str, source: str, docs: Iterator[Doc], stats: PartStats) -> None:
    head = '{"source": ' + json.dumps(source, ensure_ascii=False) + ", "
    with atomic_output(target) as out:
        for doc in docs:
            out.write(head + doc.to_json()[1:] + "\n")
            stats.note(doc)


def _arrow_types() -> dict[str, Any]:
    """The column types of the built-in record keys; a new step's are inferred from its values."""
    import pyarrow as pa

    span = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("label", pa.string()),
                      ("text", pa.string()), ("score", pa.float64())])  # fmt: skip
    return {"source": pa.string(), "line": pa.int64(), "text": pa.string(), "error": pa.string(),
            "words": pa.list_(pa.string()), "spans": pa.list_(span), "title": pa.string(),
            "generated": pa.string(), "vector": pa.list_(pa.float32()),
            "problems": pa.list_(pa.string())}  # fmt: skip


def _write_parquet(
    target: str, source: str, docs: Iterator[Doc], stats: PartStats, pipeline: Pipeline
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for doc in docs:
        rows.append({"source": source, **doc.as_dict()})
        stats.note(doc)
    # Every part has every column (a missing value is null), in the order of a record.
    fields_ = [step.field for step in pipeline.steps]
    names = ["source", "line", "text", "error", *fields_, "problems"]
    known = _arrow_types()
    fields = []
    for name in names:
        kind = known.get(name)
        if kind is None:
            kind = pa.array([row.get(name) for row in rows]).type if rows else pa.null()
        fields.append(pa.field(name, kind))
    table = pa.Table.from_pylist(rows, schema=pa.schema(fields))
    try:
        with atomic_path(target) as tmp:
            pq.write_table(table, tmp)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ZhtextError(f"cannot write {target}: {str(exc).splitlines()[0]}") from None


def read_part(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a part file (``.jsonl`` or ``.parquet``), as dictionaries; a Parquet part's
    null columns are left out, so both formats give the records as the JSONL has them."""
    path = os.fspath(path)
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        return [{k: v for k, v in row.items() if v is not None} for row in rows]
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def stats_of_part(path: str | os.PathLike, index: int) -> PartStats:
    """The :class:`PartStats` of a part already written (a resumed run), read from its records;
    a problem's kind is its note without the detail in brackets."""
    rows = read_part(path)
    stats = PartStats(index, rows[0]["source"] if rows else "")
    for row in rows:
        doc = Doc(row.get("text", ""), line=row["line"], error=row.get("error"))
        stats.note(doc)
        for note in row.get("problems", []):
            kind = note.rpartition(" (")[0] if note.endswith(")") and " (" in note else note
            stats.problems.append((row["line"], kind, note))
    return stats

