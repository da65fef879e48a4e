"""Labelled data for the tagger: readers for three formats, all giving (text, spans) examples.

- **conll**: one ``char TAG`` per line, a blank line between sentences (People's Daily
  ``example.*``). The tag is the last field; extra middle columns are ignored. BIO, BIOES, BMES-with-
  types (``M-X`` is read as ``I-X``) and bare BMES segmentation tags are recognised.
- **cluener**: JSON lines ``{"text": ..., "label": {type: {mention: [[start, end_inclusive], ...]}}}``
  (CLUENER2020). zhtext's own ``zhtext tag`` output, ``{"text": ..., "spans": [{"start", "end",
  "label"}, ...]}`` with ``end`` exclusive, is read by the same reader.
- **segmented**: words separated by whitespace, one sentence per line (SIGHAN gold files); every word
  becomes a span labelled :data:`WORD`, which the BMES scheme turns into B/M/E/S tags.

Spans are ``(start, end, label)`` with ``end`` exclusive, in characters of ``text``. Malformed input
raises :class:`~zhtext.errors.ZhtextError` naming the file and line.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

from zhtext.errors import ZhtextError
from zhtext.io.reading import PathLike, iter_lines
from zhtext.labels.schemes import spans_to_tags, tags_to_spans

__all__ = [
    "FORMATS",
    "WORD",
    "Example",
    "check_format",
    "convert_tags",
    "detect_format",
    "detect_scheme",
    "example_tags",
    "format_conll",
    "read_cluener",
    "read_conll",
    "read_examples",
    "read_segmented",
    "to_spans",
    "to_tags",
    "words_of",
]

FORMATS = ("auto", "conll", "cluener", "segmented")
#: The label of a word span in segmentation-as-tagging (BMES).
WORD = "W"

SpanT = tuple[int, int, str]

# "char TAG" (any middle columns skipped). A leading space or tab is itself the token, so a line
# "  O" labels a space character.
_CONLL_LINE = re.compile(r"([ \t]|[^ \t]+)(?:[ \t]+[^ \t]+)*?[ \t]+([^ \t]+)[ \t]*")
_TAG = re.compile(r"O|[BIMES]-.+|[BMES]")


class Example(NamedTuple):
    """One labelled text: spans are ``(start, end_exclusive, label)`` in characters, sorted."""

    text: str
    spans: tuple[SpanT, ...]


def detect_scheme(tags: Iterable[str]) -> str:
    """The scheme a tag set is written in: ``BMES`` for bare B/M/E/S, ``BIOES`` if any ``E-``/``S-``
    (or ``M-``) tag occurs, else ``BIO``."""
    tags = set(tags)
    if tags & {"B", "M", "E", "S"}:
        return "BMES"
    if any(tag[:2] in ("E-", "S-", "M-") for tag in tags):
        return "BIOES"
    return "BIO"


def to_tags(length: int, spans: Iterable[SpanT], scheme: str) -> list[str]:
    """Tags of a sequence holding ``spans``; in BMES, :data:`WORD` spans get bare B/M/E/S tags."""
    if scheme == "BMES":
        spans = [(s, e, "" if label == WORD else label) for s, e, label in spans]
    return spans_to_tags(length, spans, scheme)


def to_spans(tags: Sequence[str], scheme: str) -> list[SpanT]:
    """Spans of a tag sequence; bare BMES words are labelled :data:`WORD`."""
    return [(s, e, label or WORD) for s, e, label in tags_to_spans(tags, scheme)]


def convert_tags(tags: Sequence[str], source: str, target: str) -> list[str]:
    """Rewrite a tag sequence from one scheme to another (e.g. BIO -> BIOES) through its spans."""
    return to_tags(len(tags), to_spans(tags, source), target)


def example_tags(example: Example, scheme: str) -> list[str]:
    """The tags of ``example`` in ``scheme`` (one per character)."""
    return to_tags(len(example.text), example.spans, scheme)


def words_of(text: str, spans: Iterable[SpanT]) -> list[str]:
    """The words of a segmentation given as spans; characters no span covers are one word each."""
    words, pos = [], 0
    for start, end, _ in sorted(spans):
        if start < pos:
            continue
        words.extend(text[pos:start])
        words.append(text[start:end])
        pos = end
    words.extend(text[pos:])
    return words


def _drop_overlaps(spans: Iterable[SpanT], where: str) -> tuple[SpanT, ...]:
    """Sorted unique spans; where two overlap (nested entities), keep the longer and warn."""
    kept: list[SpanT] = []
    for span in sorted(set(spans), key=lambda s: (-(s[1] - s[0]), s[0], s[2])):
        if any(span[0] < k[1] and k[0] < span[1] for k in kept):
            warnings.warn(f"{where}: overlapping entity {span} dropped (a tagger cannot nest)",
                          stacklevel=3)
            continue
        kept.append(span)
    return tuple(sorted(kept))


def format_conll(text: str, tags: Sequence[str]) -> str:
    """One text as ``char TAG`` lines and the blank line that ends it: what :func:`read_conll`
    reads back (a space character is a line ``"  O"``)."""
    return "".join(f"{ch} {tag}\n" for ch, tag in zip(text, tags)) + "\n"


def read_conll(path: PathLike, encoding: str | None = None) -> Iterator[Example]:
    """Read ``char TAG`` lines, blank lines between sentences; ``-DOCSTART-`` lines are skipped."""
    name = str(path)
    tokens: list[str] = []
    tags: list[str] = []
    scheme_seen: dict[bool, int] = {}  # bare-BMES? -> first line number, to refuse mixtures

    def flush() -> Example | None:
        if not tokens:
            return None
        scheme = detect_scheme(tags)
        # Tags label tokens; a multi-character token spreads its tag's span over its characters.
        starts = [0]
        for token in tokens:
            starts.append(starts[-1] + len(token))
        spans = tuple((starts[s], starts[e], label) for s, e, label in to_spans(tags, scheme))
        return Example("".join(tokens), spans)

    for number, line in enumerate(iter_lines(path, encoding), 1):
        if not line.strip() or line.startswith("-DOCSTART-"):
            example = flush()
            if example is not None:
                yield example
            tokens, tags = [], []
            continue
        match = _CONLL_LINE.fullmatch(line)
        if match is None:
            raise ZhtextError(f"{name}:{number}: expected 'char TAG', got {line[:40]!r}")
        token, tag = match.groups()
        if tag.startswith("M-"):
            tag = "I-" + tag[2:]
        if not _TAG.fullmatch(tag):
            raise ZhtextError(f"{name}:{number}: {tag!r} is not a tag (O, B-X, I-X, E-X, S-X or B/M/E/S)")
        if tag != "O":
            bare = tag in ("B", "M", "E", "S")
            scheme_seen.setdefault(bare, number)
            if (not bare) in scheme_seen:
                raise ZhtextError(
                    f"{name}:{number}: tag {tag!r} mixes bare B/M/E/S tags with typed ones "
                    f"(as on line {scheme_seen[not bare]})"
                )
        tokens.append(token)
        tags.append(tag)
    example = flush()
    if example is not None:
        yield example


def _span_pair(value: object) -> tuple[int, int] | None:
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return value[0], value[1]
    return None


def _cluener_spans(record: dict, where: str) -> list[SpanT]:
    text = record["text"]
    spans: list[SpanT] = []
    if "spans" in record:  # zhtext's own output: end exclusive
        if not isinstance(record["spans"], list):
            raise ZhtextError(f"{where}: 'spans' must be a list")
        for item in record["spans"]:
            try:
                start, end, label = int(item["start"]), int(item["end"]), str(item["label"])
            except (KeyError, TypeError, ValueError):
                raise ZhtextError(f"{where}: a span needs integer 'start', 'end' and a 'label'") from None
            if not 0 <= start < end <= len(text):
                raise ZhtextError(f"{where}: span [{start}, {end}) is outside the text")
            spans.append((start, end, label))
        return spans
    labels = record.get("label") or {}
    if not isinstance(labels, dict):
        raise ZhtextError(f"{where}: 'label' must map entity types to mentions")
    for label, mentions in labels.items():
        if not isinstance(mentions, dict):
            raise ZhtextError(f"{where}: label {label!r} must map mention texts to [start, end] lists")
        for mention, places in mentions.items():
            if not isinstance(places, list):
                raise ZhtextError(f"{where}: mention {mention!r} needs a list of [start, end] pairs")
            for place in places:
                pair = _span_pair(place)
                if pair is None:
                    raise ZhtextError(f"{where}: {place!r} is not a [start, end] pair")
                start, end = pair
                if not 0 <= start <= end < len(text):
                    raise ZhtextError(f"{where}: span [{start}, {end}] of {mention!r} is outside the text")
                if text[start : end + 1] != mention:
                    raise ZhtextError(
                        f"{where}: span [{start}, {end}] is {text[start : end + 1]!r}, not {mention!r}"
                    )
                spans.append((start, end + 1, label))
    return spans


def read_cluener(path: PathLike, encoding: str | None = None) -> Iterator[Example]:
    """Read CLUENER JSON lines (or zhtext's ``{"text", "spans"}`` output); blank lines are skipped.

    A record without labels is an example with no entities. Nested or overlapping mentions, which a
    linear-chain tagger cannot represent, keep the longest one (with a warning).
    """
    name = str(path)
    for number, line in enumerate(iter_lines(path, encoding), 1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ZhtextError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ZhtextError(f'{where}: expected an object with a "text" string')
        yield Example(record["text"], _drop_overlaps(_cluener_spans(record, where), where))


def read_segmented(path: PathLike, encoding: str | None = None) -> Iterator[Example]:
    """Read a segmented corpus: whitespace between words, one sentence per line; blank lines skipped."""
    for line in iter_lines(path, encoding):
        words = line.split()
        if not words:
            continue
        spans, pos = [], 0
        for word in words:
            spans.append((pos, pos + len(word), WORD))
            pos += len(word)
        yield Example("".join(words), tuple(spans))


def detect_format(path: PathLike, encoding: str | None = None) -> str:
    """Guess a file's format from its first non-blank line: JSON object -> ``cluener``; ``token
    TAG`` -> ``conll``; anything else -> ``segmented``."""
    for line in iter_lines(path, encoding):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            return "cluener"
        match = _CONLL_LINE.fullmatch(line)
        if match is not None and _TAG.fullmatch(match.group(2)) and len(match.group(1)) <= 2:
            return "conll"
        return "segmented"
    raise ZhtextError(f"{path} is empty")


_READERS = {"conll": read_conll, "cluener": read_cluener, "segmented": read_segmented}


def check_format(format: str) -> str:
    """``format`` if it is one of :data:`FORMATS`, else a :class:`ZhtextError` naming them."""
    if format not in FORMATS:
        raise ZhtextError(f"unknown data format {format!r}; choose one of {', '.join(FORMATS)}")
    return format


# A segmented corpus whose words average more characters than this is running text, not words.
MAX_MEAN_WORD_CHARS = 8


def read_examples(path: PathLike, format: str = "auto", encoding: str | None = None) -> list[Example]:
    """Read all examples of a file in ``format`` (one of :data:`FORMATS`; ``auto`` guesses), decoded
    with ``encoding`` (default: detect UTF-8 or GB18030).

    Raises ZhtextError for a file without examples or without a single entity, and for raw text
    read as a segmented corpus (no line of two words, or "words" of sentence length): unlabelled
    data would train a tagger on nothing and score as zeros."""
    check_format(format)
    if str(path) == "-":  # auto detection reads the start twice
        raise ZhtextError("labelled data is read from a file, not from stdin ('-')")
    if format == "auto":
        format = detect_format(path, encoding)
    examples = list(_READERS[format](path, encoding))
    if not examples:
        raise ZhtextError(f"{path} holds no examples")
    if format == "segmented":
        _refuse_raw_text(path, examples)
    elif not any(ex.spans for ex in examples):
        raise ZhtextError(f"{path} holds no labels: not one entity in its {len(examples):,} example(s)")
    return examples


def _refuse_raw_text(path: PathLike, examples: Sequence[Example]) -> None:
    words = sum(len(ex.spans) for ex in examples)
    chars = sum(len(ex.text) for ex in examples)
    if words == len(examples) or chars > MAX_MEAN_WORD_CHARS * words:
        raise ZhtextError(
            f"{path} looks like raw text, not labelled data: give words separated by spaces "
            "(a segmented corpus), 'char TAG' lines (CoNLL) or CLUENER JSON lines"
        )
