"""The endpoints that run a model: their requests, and the records they answer with.

Each takes ``{"text": "..."}`` or ``{"text": ["...", ...]}`` plus its options, and answers with
the records the command line writes (same field names), one per text, or a list of them:

- ``/segment``: ``{"text", "tokens"}`` as ``zhtext segment --format jsonl`` (``pos``: [word,
  tag] pairs, ``offsets``: [word, start, end]);
- ``/keywords``: ``{"text", "keywords"}`` as ``zhtext keywords --lines --format jsonl``;
- ``/tag``: ``{"text", "spans"}`` (+ ``"nbest"``) as ``zhtext tag``;
- ``/title``: ``{"content", "title"}`` as ``zhtext title --lines --format jsonl``;
- ``/generate``: ``{"index", "prompt", "sample", "text"}`` per sample as ``zhtext generate
  --format jsonl``; streamed, one ``{"index", "sample", "text", "last"}`` line per piece;
- ``/embed``: ``{"text", "vector"}`` as ``zhtext embed --format jsonl``;
- ``/similar``: ``{"query", "hits": [{"rank", "score", "text", "row"}]}``, the hits of
  ``zhtext similar``.

An :class:`Endpoint` says which model it runs on, how a request's options become the hashable
key that batches requests together, how a batch of texts is run (on the model's worker thread)
and how one request's results become its records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, fields
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from zhtext.errors import ZhtextError
from zhtext.serving.limits import RequestError
from zhtext.serving.models import Served

__all__ = ["ENDPOINTS", "Endpoint"]

MAX_SEED = 2**32 - 1
MAX_NEW_TOKENS = 1024


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class TextRequest(BaseModel):
    """One text or a list of texts."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: str | list[str] = Field(
        description="one text, or a list of texts (then a list comes back)"
    )


class SegmentRequest(TextRequest):
    mode: Literal["default", "search", "all"] = Field(
        "default", description="jieba.cut, cut_for_search, or cut(cut_all=True)"
    )
    pos: bool = Field(False, description="[word, tag] pairs as jieba.posseg")
    offsets: bool = Field(False, description="[word, start, end] as jieba.tokenize")
    hmm: bool | None = Field(
        None, description="jieba's HMM for unknown words (default: the server's)"
    )


class KeywordsRequest(TextRequest):
    method: Literal["tfidf", "textrank"] = "tfidf"
    top: int = Field(20, ge=0, description="keywords per text (0: all)")
    with_weight: bool = Field(False, description="[word, weight] pairs")
    pos: list[str] | None = Field(None, description="keep words of these POS tags only")


class TagRequest(TextRequest):
    n_best: int = Field(1, ge=1, le=100, description="also the N best taggings")


class DecodingRequest(TextRequest):
    """The decoding options (``zhtext title`` / ``generate``'s); unset: the server's defaults."""

    beam: int | None = Field(None, ge=1, le=64)
    max_new_tokens: int | None = Field(None, ge=0, le=MAX_NEW_TOKENS)
    min_new_tokens: int | None = Field(None, ge=0, le=MAX_NEW_TOKENS)
    sample: bool | None = None
    temperature: float | None = Field(None, gt=0)
    top_k: int | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0)
    no_repeat_ngram: int | None = Field(None, ge=0)
    length_penalty: float | None = None
    seed: int | None = Field(None, ge=0, le=MAX_SEED)


class GenerateRequest(DecodingRequest):
    num: int = Field(1, ge=1, le=64, description="continuations per prompt")
    stream: bool = Field(False, description="newline-delimited JSON pieces as they are generated")


class SimilarRequest(TextRequest):
    k: int = Field(10, ge=1, le=1000, description="nearest neighbours per query")


@dataclass(frozen=True)
class Endpoint:
    """``POST /{name}``, run on the model ``model`` (a step name, or ``similar``)."""

    name: str
    model: str
    request: type[TextRequest]
    summary: str
    options: Callable[[Served, Any], Hashable]
    run: Callable[[Served, list[str], Any], list[Any]]
    render: Callable[[Served, list[str], list[Any], Any], list[str]]


# ---------------------------------------------------------------- segment and keywords


def _segment_options(served: Served, req: SegmentRequest) -> Hashable:
    if req.offsets and req.mode == "all":
        raise RequestError(
            422, "full mode's words overlap and have no offsets: use mode default or search"
        )
    if req.pos and (req.offsets or req.mode != "default"):
        raise RequestError(422, "part-of-speech tags come with the default mode's words only")
    return req.mode, req.pos, req.offsets, req.hmm


def _segment(served: Served, texts: list[str], options: Any) -> list[Any]:
    mode, pos, offsets, hmm = options
    segmenter = served.steps["segment"].segmenter
    if offsets:
        return segmenter.tokenize_lines(texts, mode, hmm=hmm)
    if pos:
        return segmenter.tag_lines(texts, hmm)
    return segmenter.cut_lines(texts, mode=mode, hmm=hmm)


def _keywords_options(served: Served, req: KeywordsRequest) -> Hashable:
    bad = [tag for tag in req.pos or () if not re.fullmatch(r"[a-z]+", tag)]
    if bad:
        raise RequestError(422, f"pos: tags are jieba's, such as ns, n, vn, v; got {bad[0]!r}")
    return req.method, tuple(req.pos) if req.pos is not None else None, req.top, req.with_weight


def _keywords(served: Served, texts: list[str], options: Any) -> list[Any]:
    method, pos, top, with_weight = options
    extract = served.extractor(method, pos)
    return [extract(text, top, with_weight) for text in texts]


def _records(
    key: str, field: str = "text"
) -> Callable[[Served, list[str], list[Any], Any], list[str]]:
    def render(served: Served, texts: list[str], results: list[Any], options: Any) -> list[str]:
        return [f'{{"{field}": {_dump(t)}, "{key}": {_dump(r)}}}' for t, r in zip(texts, results)]

    return render


# ---------------------------------------------------------------- tag


def _tag(served: Served, texts: list[str], n_best: Any) -> list[Any]:
    return served.steps["tag"].model.nbest(texts, n_best)


def _tag_render(served: Served, texts: list[str], results: list[Any], options: Any) -> list[str]:
    from zhtext.tasks.tagger import prediction_record

    return [prediction_record(text, candidates) for text, candidates in zip(texts, results)]


# ---------------------------------------------------------------- title and generate


def decoding(served: Served, step: str, req: DecodingRequest) -> Any:
    """The request's DecodeConfig: its options over the step's settings over the model's own."""
    model = served.steps[step].model
    settings = served.settings[step]
    names = {f.name for f in fields(model.decoding)}
    base = model.decode_config(**{k: v for k, v in settings.items() if k in names})
    given = {name: getattr(req, name) for name in DecodingRequest.model_fields if name in names}
    if isinstance(req, GenerateRequest):
        given["num_return"] = req.num
    try:
        return model.decode_config(base, **given)
    except ZhtextError as exc:
        raise RequestError(422, str(exc)) from None


def _title(served: Served, texts: list[str], config: Any) -> list[Any]:
    return served.steps["title"].model.predict(texts, config)


def _generate(served: Served, texts: list[str], config: Any) -> list[Any]:
    return served.steps["generate"].model.generate(texts, config)


def _generate_render(
    served: Served, texts: list[str], results: list[Any], options: Any
) -> list[str]:
    return [
        _dump({"index": i, "prompt": prompt, "sample": n, "text": text})
        for i, (prompt, samples) in enumerate(zip(texts, results))
        for n, text in enumerate(samples)
    ]


def generate_pieces(served: Served, texts: list[str], config: Any) -> Iterator[str]:
    """The lines of a streamed ``/generate``: one JSON object per piece of text."""
    for piece in served.steps["generate"].model.stream(texts, config):
        yield _dump(
            {"index": piece.prompt, "sample": piece.sample, "text": piece.text, "last": piece.last}
        )


# ---------------------------------------------------------------- embed and similar


def _embed(served: Served, texts: list[str], options: Any) -> list[Any]:
    return list(served.steps["embed"].model(texts))


def _embed_render(served: Served, texts: list[str], results: list[Any], options: Any) -> list[str]:
    from zhtext.tasks.vectors import vector_json

    return [f'{{"text": {_dump(t)}, "vector": {vector_json(v)}}}' for t, v in zip(texts, results)]


def _similar(served: Served, texts: list[str], k: Any) -> list[Any]:
    from zhtext.tasks.vectors import cosine_top_k

    index = served.index
    assert index is not None
    rows, scores = cosine_top_k(index.vectors, index.step.model(texts), k)
    return list(zip(rows.tolist(), scores.tolist()))


def _similar_render(
    served: Served, texts: list[str], results: list[Any], options: Any
) -> list[str]:
    index = served.index
    assert index is not None
    return [
        _dump(
            {
                "query": query,
                "hits": [
                    {"rank": rank, "score": score, "text": index.texts[row], "row": row}
                    for rank, (row, score) in enumerate(zip(rows, scores), 1)
                ],
            }
        )
        for query, (rows, scores) in zip(texts, results)
    ]


def _none(served: Served, req: Any) -> Hashable:
    return None


ENDPOINTS: dict[str, Endpoint] = {e.name: e for e in [
    Endpoint("segment", "segment", SegmentRequest, "Words, as jieba cuts them",
             _segment_options, _segment, _records("tokens")),
    Endpoint("keywords", "segment", KeywordsRequest, "Keywords by TF-IDF or TextRank",
             _keywords_options, _keywords, _records("keywords")),
    Endpoint("tag", "tag", TagRequest, "Labelled spans by the tagger",
             lambda served, req: req.n_best, _tag, _tag_render),
    Endpoint("title", "title", DecodingRequest, "A headline for each article",
             lambda served, req: decoding(served, "title", req), _title,
             _records("title", "content")),
    Endpoint("generate", "generate", GenerateRequest, "Continuations of each prompt",
             lambda served, req: decoding(served, "generate", req), _generate, _generate_render),
    Endpoint("embed", "embed", TextRequest, "A sentence vector for each text",
             _none, _embed, _embed_render),
    Endpoint("similar", "similar", SimilarRequest, "The indexed sentences nearest to each query",
             lambda served, req: req.k, _similar, _similar_render),
]}  # fmt: skip
