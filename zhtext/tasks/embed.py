"""Sentence embeddings: :class:`Embedder`, a Hugging Face encoder with BERT-style poolings and an
optional BERT-whitening, with the API every zhtext model shares (``zhtext/tasks/base.py``).

Sentences are tokenized once, sorted by length and batched with padding only up to the longest
sentence of each batch, so little compute goes to padding; vectors come back in input order.

The numpy-only parts live beside it and import no torch: :class:`~zhtext.tasks.whitening.Whitening`
(BERT-whitening) and ``zhtext.tasks.vectors`` (STS pairs, the vector index and its search).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zhtext.errors import ZhtextError
from zhtext.eval.metrics import spearman
from zhtext.io.progress import Bar
from zhtext.neural.batching import length_batches, pad
from zhtext.neural.modeldir import (
    load_task_meta,
    model_dir_writer,
    own_task_meta,
    save_task_meta,
)
from zhtext.neural.tokens import clip_for_tokens
from zhtext.neural.trainer import TrainConfig
from zhtext.tasks.base import Model
from zhtext.tasks.vectors import (
    StsPairs,
    constant_gold,
    read_fit_sentences,
    read_sts,
)
from zhtext.tasks.whitening import Whitening

if TYPE_CHECKING:
    import torch
    from rich.progress import TaskID

    from zhtext.neural.onnx import OnnxGraph

__all__ = ["POOLINGS", "EmbedTrainConfig", "Embedder"]

POOLINGS = ("cls", "last-avg", "first-last-avg", "pooler")
DEFAULT_POOLING = "first-last-avg"
DEFAULT_MAX_LEN = 256
DEFAULT_BATCH_SIZE = 64
# The whitening inside a folder written by Embedder.save.
WHITENING_FILE = "whitening.npz"
# Sentences tokenized and encoded per block when streaming an iterable of unknown length.
_STREAM_BLOCK = 8192

StsData = str | os.PathLike | StsPairs | Iterable[tuple[str, str, float]]


def _setting_problems(pooling: str | None, max_len: int | None) -> list[str]:
    """What is wrong with an embedder's pooling and length (None: not given, nothing to check)."""
    problems = []
    if pooling is not None and pooling not in POOLINGS:
        problems.append(f"unknown pooling {pooling!r} (choose from {', '.join(POOLINGS)})")
    if max_len is not None and max_len < 2:
        problems.append(f"max_len must be at least 2 (room for [CLS] and [SEP]), got {max_len}")
    return problems


@dataclass
class EmbedTrainConfig(TrainConfig):
    """What :meth:`Embedder.train` fits: a BERT-whitening over an encoder, saved with it.

    ``model`` is the encoder (a hub id, a plain Hugging Face folder, or a folder an embedder was
    saved to); ``train`` the sentences to fit the whitening on (a file, streamed: one sentence a
    line, or an STS file whose pairs give both sentences; or a list of strings); ``output`` the
    folder the embedder is saved to; ``dev`` optional STS pairs (a file or :class:`StsPairs`)
    scored once after fitting, on the first ``dev_limit`` pairs when given. ``dim`` keeps that many
    whitened dimensions (None: all); ``pooling`` and ``max_len`` default to the saved embedder's
    settings, else ``first-last-avg`` and 256 tokens. ``batch_size`` is the sentences per forward
    pass, ``encoding``, ``device`` and ``progress`` as for every trainer.

    The whitening is the embedder's only trainable part and it is solved in closed form from one
    pass over the sentences: the schedule fields (``epochs``, ``lr``, ``warmup``,
    ``weight_decay``, ``grad_accum``, ``max_grad_norm``, ``max_steps``, ``max_seconds``,
    ``eval_every``, ``resume``, ``keep_checkpoint``, ``seed``) and the from-scratch fields
    (``layers``, ``hidden``, ``heads``, ``dropout``, ``min_char_count``, ``max_vocab``) do not
    apply and are ignored, as is ``input_format``.
    """

    dim: int | None = None
    pooling: str | None = None
    max_len: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE

    def problems(self) -> list[str]:
        problems = super().problems() + _setting_problems(self.pooling, self.max_len)
        if self.dim is not None and self.dim < 1:
            problems.append(f"the whitening dimension must be >= 1, not {self.dim}")
        return problems


class Embedder(Model):
    """Sentence vectors from a Hugging Face encoder, pooled and optionally whitened.

    Open one with :meth:`load`; ``embedder("一句")`` is one float32 vector and
    ``embedder([...])`` a 2-D array, rows in input order (:meth:`predict`): raw pooled vectors (not
    normalised), or whitened and L2-normalised ones when a :class:`Whitening` is set. Sentences are
    cut to ``max_len`` tokens, special tokens included.

    Poolings (over the tokens of a sentence, ``[CLS]`` and ``[SEP]`` included, padding excluded):

    - ``cls``: the last layer's vector at ``[CLS]``;
    - ``last-avg``: the mean of the last layer's token vectors (sentence-transformers' mean pooling);
    - ``first-last-avg``: the mean of the first transformer layer's token vectors averaged with the
      mean of the last layer's. "First" is the output of transformer block 1 (``hidden_states[1]``),
      not the embedding layer, as in BERT-whitening's reference code (bert4keras
      ``Transformer-0-FeedForward-Norm``); SimCSE's "avg_first_last" uses the embeddings instead;
    - ``pooler``: BERT's pooler output (tanh dense layer over ``[CLS]``).

    The constructor takes every setting as given (a saved folder's ``zhtext.json`` is not read;
    ``meta`` is what :meth:`load` found there); :meth:`load` is the documented way in.
    """

    task: ClassVar[str] = "embed"
    config_class: ClassVar[type[TrainConfig]] = EmbedTrainConfig
    metric: ClassVar[str] = "spearman"
    resumable: ClassVar[bool] = False  # solved in one pass: no checkpoint to resume

    def __init__(
        self,
        name_or_dir: str | os.PathLike,
        pooling: str = DEFAULT_POOLING,
        whitening: Whitening | str | os.PathLike | None = None,
        max_len: int = DEFAULT_MAX_LEN,
        batch_size: int = DEFAULT_BATCH_SIZE,
        device: str | torch.device | None = None,
        meta: dict[str, Any] | None = None,
        graph: OnnxGraph | None = None,
    ) -> None:
        from zhtext.neural.hub import load_config, load_model, load_tokenizer, pick_device

        problems = _setting_problems(pooling, max_len)
        if problems:
            raise ZhtextError(problems[0])
        if batch_size < 1:
            raise ZhtextError(f"batch size must be positive, got {batch_size}")
        self.name = self.source = str(name_or_dir)
        self.pooling = pooling
        self.batch_size = batch_size
        self.meta = dict(meta or {})
        self.history = list(self.meta.get("history", []))
        self.device = pick_device(device) if device is None or isinstance(device, str) else device
        self.model: torch.nn.Module | OnnxGraph
        if graph is None:
            # An embedder zhtext saved must hold every weight (transformers would draw a missing
            # one).
            self.model = load_model(name_or_dir, strict=bool(meta),
                                    unused=() if pooling == "pooler" else ("pooler.",))
            self.config = self.model.config
            self.model.to(self.device).eval()
            if pooling == "pooler" and getattr(self.model, "pooler", None) is None:
                raise ZhtextError(f"model {self.name!r} has no pooler layer; use another pooling")
        else:  # an ONNX export: the graph gives the pooled vectors
            exported = self.meta.get("pooling")
            if pooling != exported:
                raise ZhtextError(f"{self.name} was exported with pooling {exported!r}, not "
                                  f"{pooling!r}: export again with the pooling wanted")
            self.model, self.config = graph, load_config(name_or_dir)
            self.exported = str(graph.path)
        self.tokenizer = load_tokenizer(name_or_dir)
        self.max_len = min(max_len, self._model_max_len())
        self.hidden_size = int(self.config.hidden_size)
        self._whitening: Whitening | None = None
        self.whitening = whitening  # type: ignore[assignment]  # the setter loads and checks

    # ---------------------------------------------------------------- load and save

    @classmethod
    def load(
        cls,
        name_or_dir: str | os.PathLike,
        *,
        device: str | None = None,
        batch_size: int | None = None,
        pooling: str | None = None,
        max_len: int | None = None,
        whitening: Whitening | str | os.PathLike | bool | None = None,
        quantize: str | None = None,
        onnx: bool | None = None,
    ) -> Embedder:
        """An embedder from a hub id, a plain Hugging Face folder, or a folder :meth:`save` wrote.

        Settings left as None come from the saved folder's ``zhtext.json`` (pooling, max_len and
        its whitening), else the defaults: ``first-last-avg`` pooling, 256 tokens, no whitening;
        ``batch_size`` defaults to 64. ``whitening``: a :class:`Whitening` or the path of a saved
        one replaces the folder's; ``False`` uses none. ``quantize="int8"``: see
        :meth:`~zhtext.tasks.base.Model.quantize`. A folder :meth:`export_onnx` wrote runs
        through onnxruntime (``onnx=True`` insists on one, ``onnx=False`` refuses it).
        """
        from zhtext.neural.onnx import open_export

        meta = _saved_meta(name_or_dir)
        graph = open_export(name_or_dir, meta, onnx, device)
        if whitening is None and meta.get("whitening"):
            whitening = Path(name_or_dir).expanduser() / str(meta["whitening"])
        return cls(
            name_or_dir,
            pooling or meta.get("pooling") or DEFAULT_POOLING,
            whitening or None,
            max_len=max_len if max_len is not None else int(meta.get("max_len") or DEFAULT_MAX_LEN),
            batch_size=DEFAULT_BATCH_SIZE if batch_size is None else batch_size,
            device=device,
            meta=meta,
            graph=graph,
        ).quantize(quantize)

    def save(self, directory: str | os.PathLike, **meta: Any) -> Path:
        """Write the encoder and tokenizer (Hugging Face layout), the whitening (``whitening.npz``)
        if one is set, and ``zhtext.json`` with the pooling, max_len and ``meta``; all appear
        together or not at all. :meth:`load` on the folder gives the same vectors."""
        self._check_savable()
        out = Path(directory)
        with model_dir_writer(out) as tmp:
            self.model.save_pretrained(tmp)
            self._save_rest(tmp, meta)
        self.meta = load_task_meta(out, self.task)
        return out

    def _save_rest(self, tmp: Path, meta: dict[str, Any]) -> None:
        """What a saved embedder and an ONNX export share: the tokenizer, the whitening and
        ``zhtext.json`` (the settings, and ``meta``)."""
        info = {
            **self.meta,
            "source": self.meta.get("source") or self.settings()["model"],
            "pooling": self.pooling,
            "max_len": self.max_len,
            "dim": self.dim,
            "whitening": WHITENING_FILE if self._whitening is not None else None,
            "history": self.history,
            **meta,
        }
        self.tokenizer.save_pretrained(tmp)
        if self._whitening is not None:
            self._whitening.save(tmp / WHITENING_FILE)
        save_task_meta(tmp, self.task, info)

    def export_onnx(self, directory: str | os.PathLike) -> Path:
        """Export the encoder and this pooling (inputs as the tokenizer gives them, output
        ``vectors``: the raw pooled vectors; any batch, any length) to ``directory``, with the
        tokenizer, the encoder's ``config.json``, the whitening and ``zhtext.json``:
        ``Embedder.load(directory)`` then gives the same vectors through onnxruntime (see
        :mod:`zhtext.neural.onnx`); the whitening is applied in zhtext, as here."""
        from zhtext.neural.onnx import ONNX_FILE, export_graph

        self._check_exportable(directory)
        enc = self.tokenizer(["一二三四五六", "一二三"], padding=True, return_tensors="pt",
                             truncation=True, max_length=self.max_len)
        inputs = {k: enc[k].to(self.device) for k in ("input_ids", "attention_mask",
                                                      "token_type_ids") if k in enc}
        model, pooling = self.model, self.pooling

        def vectors(**batch: torch.Tensor) -> torch.Tensor:
            return pool(model, pooling, batch)

        with model_dir_writer(directory) as tmp:
            info = export_graph(model, vectors, inputs, tmp / ONNX_FILE, "vectors", min_len=2,
                                max_len=self.max_len)
            self.config.save_pretrained(tmp)
            self._save_rest(tmp, {"exported_from": self.source, "onnx": info})
        return Path(directory)

    def _model_max_len(self) -> int:
        limits = [int(getattr(self.config, "max_position_embeddings", 0) or 0)]
        limits.append(int(getattr(self.tokenizer, "model_max_length", 0) or 0))
        limits = [n for n in limits if 0 < n < 1_000_000]  # tokenizers say 1e30 for "unknown"
        return min(limits) if limits else 512

    @property
    def whitening(self) -> Whitening | None:
        """The whitening applied by :meth:`predict` (None: raw pooled vectors)."""
        return self._whitening

    @whitening.setter
    def whitening(self, value: Whitening | str | os.PathLike | None) -> None:
        if value is not None and not isinstance(value, Whitening):
            value = Whitening.load(value)
        if value is not None:
            if value.input_dim != self.hidden_size:
                raise ZhtextError(
                    f"whitening was fitted on {value.input_dim}-d vectors; model {self.name!r} "
                    f"gives {self.hidden_size}-d ones"
                )
            fitted_pooling = value.settings.get("pooling")
            if fitted_pooling not in (None, self.pooling):
                raise ZhtextError(
                    f"whitening was fitted with pooling {fitted_pooling!r}, not {self.pooling!r}"
                )
        self._whitening = value

    @property
    def dim(self) -> int:
        """Dimension of the vectors :meth:`predict` returns."""
        return self._whitening.output_dim if self._whitening else self.hidden_size

    def settings(self) -> dict[str, Any]:
        """What it takes to make the same vectors again: model, pooling, max_len."""
        model = self.name
        if Path(model).expanduser().is_dir():  # a path that still works from another folder
            model = str(Path(model).expanduser().resolve())
        return {"model": model, "pooling": self.pooling, "max_len": self.max_len}

    # ---------------------------------------------------------------- vectors

    def predict(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Vectors of ``texts``, float32, one row each in order: whitened (and L2-normalised)
        when a whitening is set, else the raw pooled vectors."""
        raw = self.encode_raw(texts, progress)
        return raw if self._whitening is None else self._whitening.transform(raw)

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """The same as :meth:`predict` (``embedder(texts)``), under the name earlier versions used."""
        return self.predict(list(texts), progress)

    def encode_raw(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Pooled vectors without whitening, float32, shape (len(texts), hidden_size)."""
        texts = list(texts)
        with Bar(enabled=progress, unit="sentences") as bar:
            return self._encode_block(texts, bar, bar.add("encoding", total=len(texts)))

    def _pool(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.exported:
            return self.model(**batch)
        return pool(self.model, self.pooling, batch)

    def _encode_block(self, texts: list[str], bar: Bar, task: TaskID | None) -> np.ndarray:
        import torch

        out = np.empty((len(texts), self.hidden_size), dtype=np.float32)
        if not texts:
            return out
        enc = self.tokenizer(clip_for_tokens(self.tokenizer, texts, self.max_len), truncation=True,
                             max_length=self.max_len)
        ids = enc["input_ids"]
        types = enc.get("token_type_ids")
        # Longest first: the biggest batch (memory peak) comes at once, and each batch pads only to
        # its own longest sentence, which sorting makes close to all of them.
        pad_id = self.tokenizer.pad_token_id or 0
        with torch.inference_mode():
            for rows in length_batches([len(row) for row in ids], self.batch_size, longest_first=True):
                input_ids, mask = pad([ids[r] for r in rows], pad_id, device=self.device)
                batch = {"input_ids": input_ids, "attention_mask": mask}
                if types is not None:
                    batch["token_type_ids"] = pad([types[r] for r in rows], device=self.device)[0]
                out[rows] = self._pool(batch).float().cpu().numpy()
                bar.advance(task, len(rows))
        return out

    # ---------------------------------------------------------------- whitening

    def fit_whitening(
        self, texts: Iterable[str], dim: int | None = None, progress: bool = False
    ) -> Whitening:
        """Fit a whitening on the raw vectors of ``texts`` (streamed) and apply it from now on."""
        fitted = Whitening(dim=dim, **self.settings())
        with Bar(enabled=progress, unit="sentences") as bar:
            task = bar.add("fitting whitening")
            for chunk in _blocks(texts, _STREAM_BLOCK):
                fitted.partial_fit(self._encode_block(chunk, bar, task))
        self._refit(fitted.solve())
        return fitted

    def encode_and_fit(
        self, texts: Sequence[str], dim: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """Fit a whitening on ``texts`` themselves and return their whitened vectors.

        Each sentence is encoded once (unlike :meth:`fit_whitening` followed by :meth:`predict`).
        """
        raw = self.encode_raw(texts, progress)
        return self._refit(Whitening(dim=dim, **self.settings()).fit(raw)).transform(raw)

    def _refit(self, whitening: Whitening) -> Whitening:
        # A new fit makes a new model: figures recorded for the old one no longer hold.
        self.whitening = whitening
        self.history = []
        return whitening

    # ---------------------------------------------------------------- evaluate and train

    def evaluate(
        self,
        data: StsData,
        *,
        fit_on_data: bool = False,
        dim: int | None = None,
        progress: bool = False,
        encoding: str | None = None,
    ) -> dict[str, Any]:
        """Spearman correlation between the cosine of each pair's vectors and the gold scores.

        ``data``: STS pairs, as a file (read with :func:`read_sts`), a :class:`StsPairs` or
        ``(s1, s2, score)`` triples. Each distinct sentence is encoded once. With ``fit_on_data``
        a whitening (``dim`` dimensions) is fitted on the vectors of all the pairs' sentences
        (duplicates counted, as BERT-whitening's evaluation does) and set on the embedder;
        otherwise the embedder's own whitening, if any, is used. Returns ``{"spearman", "pairs",
        "dim", "whitened"}``.
        """
        pairs = _sts_pairs(data, encoding)
        if len(pairs) < 2:
            raise ZhtextError(f"need at least 2 scored pairs to correlate, got {len(pairs)}")
        index: dict[str, int] = {}
        for text in (*pairs.s1, *pairs.s2):
            index.setdefault(text, len(index))
        a = np.fromiter((index[t] for t in pairs.s1), dtype=np.int64, count=len(pairs))
        b = np.fromiter((index[t] for t in pairs.s2), dtype=np.int64, count=len(pairs))
        raw = self.encode_raw(list(index), progress)
        if fit_on_data:
            self._refit(Whitening(dim=dim, **self.settings()).fit(raw[np.r_[a, b]]))
        vecs = raw if self._whitening is None else self._whitening.transform(raw)
        va, vb = vecs[a].astype(np.float64), vecs[b].astype(np.float64)
        norms = np.linalg.norm(va, axis=1) * np.linalg.norm(vb, axis=1)
        cosine = (va * vb).sum(axis=1) / np.maximum(norms, 1e-12)
        rho = spearman(cosine, pairs.scores)
        if np.isnan(rho):  # a figure of NaN would read as a score: say why there is none
            raise ZhtextError(_no_correlation(cosine, pairs.scores))
        return {
            "spearman": rho,
            "pairs": len(pairs),
            "dim": self.dim,
            "whitened": self._whitening is not None,
        }

    @classmethod
    def train(cls, config: TrainConfig) -> Embedder:
        """Fit a BERT-whitening over ``config.model`` on the sentences of ``config.train``, save
        the embedder with it to ``config.output`` and return it loaded from there.

        Only the settings :class:`EmbedTrainConfig` lists as applying are used (the whitening is
        solved in closed form; there is no schedule). With ``config.dev`` the saved embedder is
        scored on those STS pairs and the figures become its ``history``.
        """
        config = cls._check_config(config)
        assert isinstance(config, EmbedTrainConfig)
        if config.model is None:
            raise ZhtextError("an embedder is fitted over an encoder: give the model (a hub id or a folder)")
        embedder = cls.load(config.model, device=config.device, batch_size=config.batch_size,
                            pooling=config.pooling, max_len=config.max_len, whitening=False)
        if isinstance(config.train, (str, os.PathLike)):
            sentences: Iterable[str] = read_fit_sentences(config.train, config.encoding)
            fitted_on = str(config.train)
        else:
            sentences = list(config.train)
            fitted_on = f"{len(sentences)} sentences given"
        # Where the fit came from travels with the whitening (also into an index's copy).
        embedder.fit_whitening(sentences, config.dim, config.progress).settings["fitted_on"] = fitted_on
        if config.dev is not None:
            pairs = _sts_pairs(config.dev, config.encoding)
            if config.dev_limit is not None:
                k = config.dev_limit
                pairs = StsPairs(pairs.s1[:k], pairs.s2[:k], pairs.scores[:k])
            embedder.history = [embedder.evaluate(pairs, progress=config.progress)]
        embedder.save(config.output)
        return cls.load(config.output, device=config.device, batch_size=config.batch_size)


def pool(model: torch.nn.Module, pooling: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The pooled vectors of a padded ``batch`` under ``model`` (see :class:`Embedder`'s
    poolings); also the graph an ONNX export holds."""
    out = model(**batch, output_hidden_states=pooling == "first-last-avg")
    if pooling == "cls":
        return out.last_hidden_state[:, 0]
    if pooling == "pooler":
        return out.pooler_output
    mask = batch["attention_mask"].unsqueeze(-1).to(out.last_hidden_state.dtype)
    count = mask.sum(dim=1).clamp(min=1.0)
    last = (out.last_hidden_state * mask).sum(dim=1) / count
    if pooling == "last-avg":
        return last
    first = (out.hidden_states[1] * mask).sum(dim=1) / count
    return (first + last) / 2


def _saved_meta(name_or_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``zhtext.json`` of a folder an embedder was saved to; {} for anything else (a plain
    checkpoint, ``zhtext train mlm``'s included)."""
    return own_task_meta(name_or_dir, Embedder.task)


def _no_correlation(cosine: np.ndarray, scores: np.ndarray) -> str:
    """Why Spearman's correlation of ``cosine`` and gold ``scores`` is undefined."""
    if np.isnan(scores).any():
        return "some gold scores are NaN"
    if scores.min() == scores.max():
        return constant_gold(scores)
    if not np.isfinite(cosine).all():
        return "the model gave vectors with NaN or infinite values (are its weights broken?)"
    return (f"every pair has the same cosine ({cosine[0]:.4f}): the model gives these sentences one "
            "vector, so it cannot rank them")


def _sts_pairs(data: StsData, encoding: str | None = None) -> StsPairs:
    if isinstance(data, StsPairs):
        return data
    if isinstance(data, (str, os.PathLike)):
        return read_sts(data, encoding)
    return StsPairs.from_rows(data)


def _blocks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    block: list[str] = []
    for item in items:
        block.append(item)
        if len(block) == size:
            yield block
            block = []
    if block:
        yield block
