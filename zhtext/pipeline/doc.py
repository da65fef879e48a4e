"""One document and what the steps found in it, and the notes on a bad line."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from zhtext.pipeline.step import STEPS, Step

__all__ = ["Doc", "Problem"]


class Problem(str):
    """A note on a bad line, written ``"kind (detail)"``; ``kind`` groups like problems together."""

    kind: str

    def __new__(cls, kind: str, detail: str | None = None) -> Problem:  # noqa: PYI034
        obj = super().__new__(cls, f"{kind} ({detail})" if detail else kind)
        obj.kind = kind
        return obj


@dataclass
class Doc:
    """One document and the results of the steps that ran on it.

    ``results`` maps a step's name to its result (``doc.results["tag"]``); a step's name, or its
    record key, also reads as an attribute (``doc.tag`` or ``doc.spans``; None if it did not run).
    ``line`` is the 1-based input line when read from a file (else the position in the stream).
    ``problems`` notes what was odd about the line (empty, longer than a model's window);
    ``error`` is set, and no step runs, when the line could not be read at all.
    """

    text: str
    line: int | None = None
    results: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    error: str | None = None

    def __getattr__(self, name: str) -> Any:
        # Only for names that are not attributes: a registered step's name or record key.
        for step in STEPS.values():
            if name in (step.name, step.field):
                return self.__dict__.get("results", {}).get(step.name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r} (and no step "
                             f"is named so; steps: {', '.join(STEPS)})")

    def _items(self, omit: Collection[str], as_text: bool) -> Iterator[tuple[str, Any]]:
        """The record's (key, value) pairs: values JSON-ready, or their JSON text if ``as_text``."""
        plain: list[tuple[str, Any]] = [("line", self.line), ("text", self.text)]
        if self.error is not None:
            plain.append(("error", self.error))
        dump = (lambda v: json.dumps(v, ensure_ascii=False)) if as_text else (lambda v: v)
        for key, value in plain:
            yield key, dump(value)
        for name, result in self.results.items():
            if name not in omit:
                step = STEPS.get(name, Step)  # a step no longer registered: its result as it is
                yield step.field or name, step.json_text(result) if as_text else step.to_json(result)
        if self.problems:
            yield "problems", dump(list(self.problems))

    def as_dict(self, omit: Collection[str] = ()) -> dict[str, Any]:
        """JSON-ready record: ``line``, ``text``, any ``error``, each step's result under its record
        key (``words``, ``spans``, ``title``, ``generated``, ``vector``; a new step's name) in the
        order the steps ran, any ``problems``. ``omit``: step names to leave out."""
        return dict(self._items(omit, as_text=False))

    def to_json(self, omit: Collection[str] = ()) -> str:
        """:meth:`as_dict` as one JSONL line; a vector is written with 9 significant digits
        (float32 exactly), as ``zhtext embed --format jsonl`` writes it."""
        parts = ["{"]
        for key, text in self._items(omit, as_text=True):  # one join: a long line's text is copied once
            parts += [", " if len(parts) > 1 else "", json.dumps(key), ": ", text]
        return "".join(parts + ["}"])
