"""zhtext: a Chinese NLP toolkit.

Word discovery by minimum entropy, unigram segmentation, BERT+CRF tagging, UniLM titles, GPT-2
generation and BERT-whitening embeddings, sharing one reading layer, one model layer and one CLI.

Public names are imported lazily, so ``import zhtext`` stays fast and does not load torch until a
model is needed.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# Numba's OpenMP threading layer leaves its threads spinning after a parallel kernel (Viterbi,
# forward-backward), and torch then runs up to 30x slower in the same process (measured: a tiny
# training step went from 7 ms to 260 ms after one decode). The workqueue layer does not interfere.
# It must be chosen before any parallel kernel runs, so it is set here, for every module; an
# explicit NUMBA_THREADING_LAYER is respected.
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "ZhtextError": "errors",
    "Lexicon": "lexicon",
    "iter_lines": "io",
    "atomic_output": "io",
    "discover": "discover",
    "DiscoverStats": "discover",
    "Segmenter": "segment",
    "SegScore": "metrics",
    "score_segmentation": "metrics",
    "CRF": "crf",
    "viterbi_decode": "viterbi",
    "viterbi_topk": "viterbi",
    "Tagger": "tagger",
    "TitleGenerator": "unilm",
    "TextGenerator": "gpt",
    "Embedder": "embed",
    "Whitening": "embed",
    "load_model": "models",
    "load_tokenizer": "models",
    "Pipeline": "pipeline",
    "Doc": "pipeline",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'zhtext' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # let type checkers and IDEs see the real objects
    from .crf import CRF
    from .discover import DiscoverStats, discover
    from .embed import Embedder, Whitening
    from .gpt import TextGenerator
    from .errors import ZhtextError
    from .io import atomic_output, iter_lines
    from .lexicon import Lexicon
    from .metrics import SegScore, score_segmentation
    from .models import load_model, load_tokenizer
    from .pipeline import Doc, Pipeline
    from .segment import Segmenter
    from .tagger import Tagger
    from .unilm import TitleGenerator
    from .viterbi import viterbi_decode, viterbi_topk
