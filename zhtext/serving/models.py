"""What a server serves: the models, loaded once, through the pipeline's steps and settings.

A server's models are the steps of a pipeline (``zhtext pipe``'s settings: a TOML ``--config``,
``--set STEP.NAME=VALUE``, or keyword tables), so a config saved by ``zhtext pipe --save-config``
serves the same models with the same settings; segment is always there (it needs no model).
``/similar`` searches an index written by ``zhtext embed -o FILE.npy``, its queries encoded by an
embedder loaded with the index's own settings, as ``zhtext similar`` does.

:func:`load_models` is the one place models are loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zhtext.errors import ZhtextError
from zhtext.pipeline import Pipeline, Step
from zhtext.pipeline.resolve import read_config, step_names
from zhtext.pipeline.steps import EmbedStep

__all__ = ["Index", "Served", "load_models", "serve_settings"]


@dataclass
class Index:
    """The vectors and sentences that ``/similar`` searches, and the embedder of its queries."""

    vectors: np.ndarray
    texts: list[str]
    step: EmbedStep
    settings: dict[str, Any]


@dataclass
class Served:
    """The loaded models by name (the pipeline's step names, and ``similar``), with the settings
    each was loaded with."""

    steps: dict[str, Step]
    settings: dict[str, dict[str, Any]]
    index: Index | None = None
    _extractors: dict[tuple, Any] = field(default_factory=dict)

    def names(self) -> list[str]:
        return [*self.steps, *(["similar"] if self.index is not None else [])]

    def extractor(self, method: str, pos: tuple[str, ...] | None) -> Any:
        """The keyword extractor of ``method`` over the segment step's segmenter, made once
        (jieba's IDF table and stop words are read on first use)."""
        from zhtext.lexical.keywords import KeywordExtractor

        key = (method, pos)
        if len(self._extractors) >= 64:  # (the POS lists are the clients'; memory stays bounded)
            self._extractors.clear()
        if key not in self._extractors:
            self._extractors[key] = KeywordExtractor(
                method, allow_pos=pos, segmenter=self.steps["segment"].segmenter
            )
        return self._extractors[key]


def serve_settings(config: str | os.PathLike | None, given: dict[str, Any]) -> dict[str, Any]:
    """The pipeline settings of a server: ``config``'s, with ``given`` (the pipeline's own
    settings, and step tables such as ``{"tag": {"model": DIR}}``) on top; the steps are segment,
    the config's, and each step given a table, in that order."""
    base = read_config(config) if config is not None else {}
    names = [
        "segment",
        *(step_names(base["steps"]) if base.get("steps") else []),
        *(key for key, value in given.items() if isinstance(value, dict)),
    ]
    settings = {k: v for k, v in base.items() if k != "steps"}
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(settings.get(key), dict):
            settings[key] = {**settings[key], **{k: v for k, v in value.items() if v is not None}}
        elif value is not None:
            settings[key] = value
    return {"steps": list(dict.fromkeys(names)), **settings}


def load_models(
    settings: dict[str, Any],
    index: str | os.PathLike | None = None,
    texts: str | os.PathLike | None = None,
    encoding: str | None = None,
) -> Served:
    """Load every model of ``settings`` (see :func:`serve_settings`) once, and ``/similar``'s
    index with the sentences it was made from (``texts``, one per line, same order)."""
    settings = dict(settings)
    nlp = Pipeline(settings.pop("steps"), **settings)
    served = Served(
        {step.name: step for step in nlp.steps},
        {name: nlp.settings[name] for name in nlp.settings["steps"]},
    )
    if (index is None) != (texts is None):
        raise ZhtextError(
            "/similar needs both the index (--index FILE.npy) and its sentences (--texts FILE)"
        )
    if index is not None:
        served.index = _load_index(index, texts, encoding, nlp.settings["device"])
    return served


def _load_index(
    path: str | os.PathLike, texts: str | os.PathLike, encoding: str | None, device: str | None
) -> Index:
    from zhtext.io.reading import iter_lines
    from zhtext.tasks.vectors import load_index

    vectors, meta = load_index(path)
    lines = list(iter_lines(texts, encoding))
    if len(lines) != vectors.shape[0]:
        raise ZhtextError(
            f"{texts} has {len(lines):,} lines but the index holds {vectors.shape[0]:,} vectors"
        )
    settings = EmbedStep.Settings(
        model=meta["model"],
        pooling=meta["pooling"],
        whitening=meta.get("whitening"),
        max_len=int(meta.get("max_len", 256)),
    )
    step = EmbedStep(settings, device)
    if not meta.get(
        "whitening"
    ):  # exactly the index's settings: not the model folder's own whitening
        step.model.whitening = None
    if step.dim != vectors.shape[1]:
        raise ZhtextError(
            f"queries encode to {step.dim} dims but the index {path} has {vectors.shape[1]}"
        )
    info = {
        "index": str(path),
        "texts": str(texts),
        "rows": int(vectors.shape[0]),
        "dim": int(vectors.shape[1]),
        **{k: meta.get(k) for k in ("model", "pooling", "max_len", "whitening")},
    }
    return Index(vectors, lines, step, info)
