"""zhtext: a Chinese NLP toolkit.

Word discovery by minimum entropy, jieba-compatible segmentation, BERT+CRF tagging, UniLM titles,
GPT-2 generation and BERT-whitening embeddings. The package is layered (see ARCHITECTURE.md in the
repository): ``io``, ``lexical``, ``labels`` and ``eval`` never import torch; ``neural`` holds the
shared model plumbing; ``tasks`` the four model classes, which share one API::

    model = Tagger.load("dir-or-hub-id", device="cpu", batch_size=32)
    model("一句话")            # one text -> one result; a list -> a list
    model.evaluate(data)       # -> dict of the task's figures
    model.save("dir")
    Tagger.train(TaggerTrainConfig(train="train.json", output="dir"))

Top-level names are imported lazily, so ``import zhtext`` stays fast and does not load torch until a
model is needed. ``zhtext.cut`` / ``zhtext.lcut`` segment with jieba's dictionary, like ``jieba.cut``
(HMM on, as jieba's default); ``zhtext.keywords`` extracts keywords as
``jieba.analyse.extract_tags`` / ``textrank`` do.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "ZhtextError": "errors",
    # lexical
    "Lexicon": "lexical.lexicon",
    "discover": "distributed.discover",
    "DiscoverStats": "lexical.discover",
    "Segmenter": "lexical.segment",
    "keywords": "lexical.keywords",
    "KeywordExtractor": "lexical.keywords",
    "IDFTable": "lexical.keywords",
    "build_idf": "lexical.keywords",
    "LexiconFeatures": "lexical.softlex",
    # models (one API: load / save / __call__ / evaluate / train)
    "Tagger": "tasks.tagger",
    "TitleGenerator": "tasks.title",
    "TextGenerator": "tasks.generate",
    "Embedder": "tasks.embed",
    "MaskedLM": "tasks.mlm",
    "Whitening": "tasks.whitening",
    "CRF": "neural.crf",
    "export_onnx": "tasks.export",  # the `onnx` extra: onnx, onnxscript, onnxruntime
    # what the models give back
    "Span": "tasks.tagger",
    "Candidate": "tasks.tagger",
    "Piece": "tasks.generate",
    # settings
    "TrainConfig": "neural.trainer",
    "TaggerTrainConfig": "tasks.tagger",
    "TitleTrainConfig": "tasks.title",
    "GPTTrainConfig": "tasks.generate",
    "EmbedTrainConfig": "tasks.embed",
    "MLMTrainConfig": "tasks.mlm",
    "DecodeConfig": "neural.decoding",
    # pipelines
    "Pipeline": "pipeline",
    "Doc": "pipeline",
    # the HTTP server (the `serve` extra: fastapi, uvicorn)
    "load_models": "serving.models",
    "create_app": "serving.app",
    "ServeOptions": "serving.app",
    # scores
    "SegScore": "eval.metrics",
    "PRF": "eval.metrics",
    "score_segmentation": "eval.metrics",
}

_JIEBA_STYLE = ["cut", "lcut", "cut_for_search", "lcut_for_search", "tokenize", "add_word",
                "del_word", "suggest_freq", "load_userdict"]  # fmt: skip
__all__ = sorted([*_EXPORTS, *_JIEBA_STYLE, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'zhtext' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


def _segmenter() -> Segmenter:
    from .lexical.segment import default_segmenter

    return default_segmenter()


# jieba's module-level functions, over one default segmenter (jieba's dictionary, built on first
# use): an edit made here (add_word, load_userdict...) reaches every mode, tagging and keywords.


def cut(text: str, cut_all: bool = False, hmm: bool = True) -> Iterator[str]:
    """Words of ``text``, as ``jieba.cut(text, cut_all, HMM=hmm)``, one at a time.

    Build a :class:`Segmenter` for a discovered lexicon or a user dictionary of its own.
    """
    return iter(lcut(text, cut_all, hmm))


def lcut(text: str, cut_all: bool = False, hmm: bool = True) -> list[str]:
    """Words of ``text`` as a list, as ``jieba.lcut(text, cut_all, HMM=hmm)``."""
    return _segmenter().cut(text, hmm=hmm, mode="all" if cut_all else "default")


def cut_for_search(text: str, hmm: bool = True) -> Iterator[str]:
    """Search-engine mode, as ``jieba.cut_for_search``: long words and their dictionary parts."""
    return iter(_segmenter().cut_for_search(text, hmm=hmm))


def lcut_for_search(text: str, hmm: bool = True) -> list[str]:
    """:func:`cut_for_search` as a list, as ``jieba.lcut_for_search``."""
    return _segmenter().cut_for_search(text, hmm=hmm)


def tokenize(text: str, mode: str = "default", hmm: bool = True) -> Iterator[tuple[str, int, int]]:
    """``(word, start, end)`` of each word, as ``jieba.tokenize(text, mode, HMM=hmm)``."""
    return iter(_segmenter().tokenize(text, mode, hmm=hmm))


def add_word(word: str, freq: int | None = None, tag: str | None = None) -> None:
    """Add a word to the default segmenter, as ``jieba.add_word``."""
    _segmenter().add_word(word, freq, tag)


def del_word(word: str) -> None:
    """Stop the default segmenter from giving ``word``, as ``jieba.del_word``."""
    _segmenter().del_word(word)


def suggest_freq(segment: str | tuple[str, ...], tune: bool = False) -> int:
    """The count that keeps ``segment`` whole (a str) or split (a tuple), as ``jieba.suggest_freq``."""
    return _segmenter().suggest_freq(segment, tune)


def load_userdict(path: str | os.PathLike) -> None:
    """Add a jieba user dictionary to the default segmenter, as ``jieba.load_userdict``."""
    _segmenter().load_user_dict(path)


if TYPE_CHECKING:  # let type checkers and IDEs see the real objects
    from .errors import ZhtextError
    from .eval.metrics import PRF, SegScore, score_segmentation
    from .distributed.discover import discover
    from .lexical.discover import DiscoverStats
    from .lexical.keywords import IDFTable, KeywordExtractor, build_idf, keywords
    from .lexical.lexicon import Lexicon
    from .lexical.segment import Segmenter
    from .neural.crf import CRF
    from .neural.decoding import DecodeConfig
    from .neural.trainer import TrainConfig
    from .pipeline import Doc, Pipeline
    from .tasks.embed import Embedder, EmbedTrainConfig
    from .tasks.whitening import Whitening
    from .tasks.generate import GPTTrainConfig, Piece, TextGenerator
    from .tasks.tagger import Candidate, Span, Tagger, TaggerTrainConfig
    from .tasks.title import TitleGenerator, TitleTrainConfig
