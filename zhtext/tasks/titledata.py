"""Reading (content, title) pairs and articles for UniLM title generation.

Pairs come as TSV ``title<TAB>content`` (the LCSTS and CSL files of CLGE) or as JSON lines
``{"title": ..., "content": ...}``; the format is detected from the first non-empty line.
Articles to title come as plain text (a whole file, or one per line) or as JSON lines with a
``content`` (or ``text``) field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any, NamedTuple

from zhtext.errors import ZhtextError
from zhtext.io.reading import iter_lines

__all__ = ["TitlePair", "read_articles", "read_pairs"]

PathLike = str | os.PathLike


class TitlePair(NamedTuple):
    """One training or evaluation example."""

    title: str
    content: str


def _json_object(line: str, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ZhtextError(f"{where}: not a JSON object ({exc.msg})") from None
    if not isinstance(record, dict):
        raise ZhtextError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def _text_field(record: dict[str, Any], keys: tuple[str, ...], where: str) -> str:
    for key in keys:
        value = record.get(key)
        if isinstance(value, str):
            return value
    raise ZhtextError(f"{where}: no string field {' or '.join(repr(k) for k in keys)}")


def read_pairs(path: PathLike, format: str = "auto", encoding: str | None = None
               ) -> list[TitlePair]:
    """All (title, content) pairs of a TSV or JSONL file; blank lines are skipped.

    ``format``: ``auto`` (JSONL when the first non-empty line starts with ``{``), ``tsv`` or
    ``jsonl``; ``encoding`` forces a codec (default: detected). A malformed line raises
    ZhtextError naming the file and line number.
    """
    if format not in ("auto", "tsv", "jsonl"):
        raise ZhtextError(f"unknown pair format {format!r}; choose auto, tsv or jsonl")
    pairs: list[TitlePair] = []
    for number, line in enumerate(iter_lines(path, encoding), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        if format == "auto":
            format = "jsonl" if line.lstrip().startswith("{") else "tsv"
        if format == "jsonl":
            record = _json_object(line, where)
            pairs.append(TitlePair(_text_field(record, ("title",), where),
                                   _text_field(record, ("content", "text"), where)))
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise ZhtextError(f"{where}: expected 'title<TAB>content', found no tab")
        # Extra tabs belong to the content (a title never holds one in these corpora).
        pairs.append(TitlePair(fields[0], "\t".join(fields[1:])))
    return pairs


def read_articles(source: PathLike, lines: bool = False, encoding: str | None = None
                  ) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """Articles to title: ``(text, record)`` with the JSON record for JSON-lines input, else None.

    JSON lines are recognised when the first non-empty line is an object with a ``content`` or
    ``text`` field; then every non-empty line must be one. Otherwise the whole input is one
    article, or with ``lines`` each non-empty line is one.
    """
    stream = iter_lines(source, encoding)
    head: list[str] = []
    jsonl = False
    for line in stream:
        head.append(line)
        if line.strip():
            if line.lstrip().startswith("{"):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    record = None
                jsonl = isinstance(record, dict) and any(
                    isinstance(record.get(k), str) for k in ("content", "text"))
            break

    def all_lines() -> Iterator[str]:
        yield from head
        yield from stream

    if jsonl:
        for number, line in enumerate(all_lines(), 1):
            if line.strip():
                where = f"{source}:{number}"
                record = _json_object(line, where)
                yield _text_field(record, ("content", "text"), where), record
    elif lines:
        for line in all_lines():
            if line.strip():
                yield line, None
    else:
        text = "\n".join(all_lines())
        if text.strip():
            yield text, None
