"""The built-in steps: segment, tag, title, generate, embed. Each equals its standalone command.

A model step calls only the model classes' verbs: ``Cls.load(name_or_dir, device=...,
batch_size=...)`` once, then ``model(texts, **options)`` per batch (one result per text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from zhtext.neural.tokens import clip_for_tokens
from zhtext.pipeline.settings import setting
from zhtext.pipeline.step import Step, register

if TYPE_CHECKING:
    from zhtext.tasks.tagger import Span

__all__ = ["EmbedStep", "GenerateStep", "SegmentStep", "TagStep", "TitleStep"]


def _too_many_tokens(tokenizer: Any, texts: list[str], limit: int, specials: bool) -> dict[int, str]:
    """The texts over ``limit`` tokens (index -> "N tokens"), special tokens counted if ``specials``.

    No tokenizer makes more tokens than UTF-8 bytes (plus specials), so only texts longer than that
    bound are tokenized again to count; a text longer than the model's clip
    (:func:`~zhtext.neural.tokens.clip_for_tokens`) is counted in characters, never tokenized whole.
    """
    maybe = [i for i, t in enumerate(texts)
             if len(t) > limit or len(t.encode("utf-8", "surrogatepass")) + 3 > limit]
    if not maybe:
        return {}
    heads = clip_for_tokens(tokenizer, [texts[i] for i in maybe], limit)
    counts = tokenizer(heads, add_special_tokens=specials, verbose=False)["input_ids"]
    return {i: f"{len(ids)} tokens" if len(head) == len(texts[i]) else f"{len(texts[i])} characters"
            for i, head, ids in zip(maybe, heads, counts) if len(ids) > limit}


@register("segment")
class SegmentStep(Step):
    """Words by jieba's segmentation (HMM on unless ``hmm = false``), as ``zhtext segment`` prints them."""

    field = "words"

    @dataclass
    class Settings:
        dict: str | None = setting(None, path=True, help="dictionary, TSV lexicon or jieba format (default: jieba's)")
        user_dict: str | None = setting(None, path=True, help="jieba user dictionary on top")
        hmm: bool = setting(True, help="find words missing from the dictionary with jieba's HMM")

    def __init__(self, settings: Settings, device: str | None = None) -> None:
        from zhtext.lexical.segment import Segmenter

        super().__init__(settings, device)
        self.segmenter = Segmenter(settings.dict, user_dict=settings.user_dict, hmm=settings.hmm)

    def run(self, texts: list[str]) -> list[list[str]]:
        return self.segmenter.cut_lines(texts)


@register("tag")
class TagStep(Step):
    """Labelled spans by a BERT+CRF tagger, as ``zhtext tag`` prints them."""

    field = "spans"

    @dataclass
    class Settings:
        model: str = setting(path=True, help="tagger folder ('zhtext train tagger') or hub id")
        batch_size: int = setting(32, positive=True, help="texts per forward pass")

    def __init__(self, settings: Settings, device: str | None = None) -> None:
        from zhtext.tasks.tagger import Tagger

        super().__init__(settings, device)
        self.model = Tagger.load(settings.model, device=device, batch_size=settings.batch_size)

    def run(self, texts: list[str]) -> list[list[Span]]:
        return self.model(texts)

    @staticmethod
    def to_json(result: list[Span]) -> list[dict[str, Any]]:
        return [span.as_dict() for span in result]

    @classmethod
    def json_text(cls, result: list[Span]) -> str:
        from zhtext.tasks.tagger import spans_json

        return spans_json(result)

    @property
    def problem(self) -> str:
        return f"longer than the tagger's window of {self.model.width} characters, tagged in overlapping windows"

    def check(self, texts: list[str]) -> dict[int, str]:
        return {i: f"{len(t)} characters" for i, t in enumerate(texts) if len(t) > self.model.width}


@register("title")
class TitleStep(Step):
    """A headline by a UniLM title model, as ``zhtext title --lines`` writes it."""

    writes_text = True

    @dataclass
    class Settings:
        model: str = setting(path=True, help="title model folder ('zhtext train title')")
        beam: int = setting(3, positive=True, help="beam width (1: greedy)")
        max_new_tokens: int = setting(32, positive=True, help="most title tokens")
        batch_size: int = setting(16, positive=True, help="articles per batch")

    def __init__(self, settings: Settings, device: str | None = None) -> None:
        from zhtext.tasks.title import TitleGenerator

        super().__init__(settings, device)
        self.model = TitleGenerator.load(settings.model, device=device, batch_size=settings.batch_size)

    def run(self, texts: list[str]) -> list[str]:
        options = {"beam": self.settings.beam, "max_new_tokens": self.settings.max_new_tokens}
        return self.model(texts, **options)

    @property
    def problem(self) -> str:
        return f"longer than the title model's {self.model.max_source_len} tokens, its head read"

    def check(self, texts: list[str]) -> dict[int, str]:
        return _too_many_tokens(self.model.tokenizer, texts, self.model.max_source_len, False)


@register("generate")
class GenerateStep(Step):
    """A continuation of each text by a GPT-2 model, as ``zhtext generate`` writes it, with its
    defaults except the seed: 0, not None, so that a run (and a saved config) gives the same text
    again."""

    field = "generated"
    writes_text = True

    @dataclass
    class Settings:
        model: str = setting(path=True, help="GPT-2 folder or hub id")
        max_new_tokens: int = setting(64, positive=True, help="most tokens to add")
        seed: int = setting(0, help="sampling seed")
        batch_size: int = setting(8, positive=True, help="prompts per batch")

    def __init__(self, settings: Settings, device: str | None = None) -> None:
        from zhtext.tasks.generate import TextGenerator

        super().__init__(settings, device)
        self.model = TextGenerator.load(settings.model, device=device, batch_size=settings.batch_size)

    def run(self, texts: list[str]) -> list[str]:
        options = {"max_new_tokens": self.settings.max_new_tokens, "seed": self.settings.seed}
        return self.model(texts, **options)


@register("embed")
class EmbedStep(Step):
    """Sentence vectors, as ``zhtext embed`` writes them, whitened by a saved ``whitening`` (an
    .npz from ``zhtext embed --save-whitening``) if given."""

    field = "vector"

    @dataclass
    class Settings:
        model: str = setting(path=True, help="encoder folder or hub id (bert-base-chinese)")
        # (the poolings of zhtext.tasks.embed.POOLINGS, spelled out for a type; a test checks)
        pooling: Literal["cls", "last-avg", "first-last-avg", "pooler"] = setting(
            "first-last-avg", help="how token vectors make the sentence's")
        whitening: str | None = setting(None, path=True, help="whitening from 'zhtext embed --save-whitening'")
        max_len: int = setting(256, positive=True, help="longest input in tokens; longer is cut")
        batch_size: int = setting(64, positive=True, help="sentences per forward pass")

    def __init__(self, settings: Settings, device: str | None = None) -> None:
        from zhtext.tasks.embed import Embedder

        super().__init__(settings, device)
        s = settings
        options = {"pooling": s.pooling, "whitening": s.whitening, "max_len": s.max_len}
        self.model = Embedder.load(s.model, device=device, batch_size=s.batch_size, **options)

    def run(self, texts: list[str]) -> list[np.ndarray]:
        return list(self.model(texts))

    @staticmethod
    def to_json(result: np.ndarray) -> list[float]:
        return result.tolist()

    @classmethod
    def json_text(cls, result: np.ndarray) -> str:
        from zhtext.tasks.vectors import vector_json

        return vector_json(result)

    @property
    def dim(self) -> int:
        """Dimension of the vectors."""
        return self.model.dim

    @property
    def problem(self) -> str:
        return f"longer than the embedder's {self.model.max_len} tokens, truncated"

    def check(self, texts: list[str]) -> dict[int, str]:
        return _too_many_tokens(self.model.tokenizer, texts, self.model.max_len, True)
