"""Masked-language-model pretraining of a BERT on raw text, with whole-word masking over a lexicon.

``MaskedLM.train`` pretrains a BERT from scratch or continues a checkpoint (domain adaptation).
Whole-word masking needs the words of the text: they come from a lexicon, by default one that
word discovery (:class:`~zhtext.lexical.discover.Discoverer`, ``zhtext discover``) finds in the
first ``discover_chars`` characters of the same corpus, so no outside segmenter is needed. Each
piece of text is cut into words by the lexicon's maximum-probability route (no HMM) and words
are masked whole (:mod:`zhtext.neural.masking`).
``masking="char"`` masks single tokens instead.

The corpus is streamed: it is read once to count its pieces (and, from scratch, its characters;
and for discovery), then once per epoch, a pool of ``batch_size * 50`` pieces at a time, shuffled
and length-bucketed within the pool. A batch is masked only when the trainer uses it, with a
generator seeded by (seed, epoch, batch), so a resumed run skips batches without making them
and sees the masks an uninterrupted run would.

The saved folder is a plain Hugging Face ``BertForMaskedLM`` folder (config, weights, tokenizer)
with ``zhtext.json`` and the lexicon (``lexicon.tsv``) beside them: ``Tagger`` and ``Embedder``
training or loading (``-m DIR``) take its encoder, ``TitleGenerator`` its encoder and head.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from zhtext.errors import ZhtextError
from zhtext.lexical.lexicon import Lexicon
from zhtext.lexical.segment import Segmenter
from zhtext.neural.batching import bucketed_batches, length_order, pad
from zhtext.neural.hub import load_model, load_tokenizer, pick_device
from zhtext.neural.lmdata import MAX_LINE_CHARS, heldout_flags, heldout_problems
from zhtext.neural.masking import IGNORE, MASK_RATE, mask_row, token_groups
from zhtext.neural.modeldir import META_FILE, load_task_meta, model_dir_writer, save_task_meta
from zhtext.neural.scratch import scratch_model
from zhtext.neural.trainer import TrainConfig, param_groups, seed_everything
from zhtext.tasks.base import Model

__all__ = ["MLMTrainConfig", "MaskedLM"]

TASK = "mlm"
LEXICON_FILE = "lexicon.tsv"
MASKINGS = ("word", "char")
POOL_BATCHES = 50  # batches shuffled and length-bucketed together
DEV_PIECES = 2000  # held-out pieces scored at most, unless dev_limit says otherwise


@dataclass
class MLMTrainConfig(TrainConfig):
    """:class:`~zhtext.neural.trainer.TrainConfig` for masked-LM pretraining on raw text.

    ``train``: a text file, several (a list of :class:`~pathlib.Path`), or the texts themselves (a
    list of strings); every non-empty line is a document, cut into pieces of ``max_len - 2``
    characters (``max_len`` tokens with ``[CLS]`` and ``[SEP]``; from scratch also the model's
    positions). ``dev`` likewise, or ``heldout_every`` N holds out every N-th line. ``masking``:
    ``word`` (whole words of ``lexicon``: a :class:`~zhtext.lexical.lexicon.Lexicon` or its path;
    by default discovered from the first ``discover_chars`` characters of the corpus) or ``char``;
    ``mask_rate`` the share of tokens predicted. ``lr`` defaults to 5e-4 from scratch and 5e-5
    from a checkpoint. From scratch the BERT has no dropout by default (on a budget of minutes
    it slows learning more than it guards against overfitting), its own output layer, a wider
    initialisation and sinusoidal position embeddings to start from
    (:data:`~zhtext.neural.scratch.MLM_SCRATCH`).
    """

    dropout: float = 0.0
    epochs: int = 1
    max_len: int = 128
    masking: str = "word"
    mask_rate: float = MASK_RATE
    lexicon: Lexicon | str | os.PathLike | None = None
    discover_chars: int = 20_000_000
    heldout_every: int | None = None

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.max_len < 3:
            problems.append("max_len must be at least 3 ([CLS], one character, [SEP])")
        if self.masking not in MASKINGS:
            problems.append(f"masking must be word or char, not {self.masking!r}")
        if not 0 < self.mask_rate < 1:
            problems.append("mask_rate must lie between 0 and 1")
        if self.lexicon is not None and self.masking == "char":
            problems.append("a lexicon serves whole-word masking: drop it or use masking word")
        if self.discover_chars < 1:
            problems.append("discover_chars must be at least 1")
        problems += heldout_problems(self.heldout_every, self.dev)
        return problems


class _LazyBatch(Mapping[str, torch.Tensor]):
    """A batch made on first use: the trainer skips a resumed run's consumed batches unmade."""

    def __init__(self, make: Callable[[], dict[str, torch.Tensor]]):
        self._make = make
        self._data: dict[str, torch.Tensor] | None = None

    def _batch(self) -> dict[str, torch.Tensor]:
        if self._data is None:
            self._data = self._make()
        return self._data

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._batch()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._batch())

    def __len__(self) -> int:
        return len(self._batch())


def masked_logits(lm: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  chosen: torch.Tensor) -> torch.Tensor:
    """The vocabulary logits at the ``chosen`` positions only, (N, V): a BERT's head runs on those
    rows alone (the vocabulary projection of every position costs as much as the encoder on a
    small model); another masked LM computes all and keeps those."""
    if hasattr(lm, "bert") and hasattr(lm, "cls"):
        hidden = lm.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return lm.cls(hidden[chosen])
    return lm(input_ids=input_ids, attention_mask=attention_mask).logits[chosen]


class _MaskedLoss(torch.nn.Module):
    """A masked LM's training forward: the mean cross-entropy of the predicted tokens."""

    def __init__(self, lm: torch.nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor:
        chosen = labels != IGNORE
        logits = masked_logits(self.lm, input_ids, attention_mask, chosen)
        return torch.nn.functional.cross_entropy(logits.float(), labels[chosen])


class MaskedLM(Model):
    """A BERT with its masked-LM head: ``MaskedLM.load(dir)("北京是中国的[MASK]都")`` fills the
    masks; :meth:`evaluate` gives masked-token accuracy and perplexity; :meth:`train` pretrains.

    ``masking`` is how :meth:`evaluate` (and training) choose what to mask: ``word`` needs
    ``lexicon`` (whole words), ``char`` single tokens. ``max_len``: tokens per piece of text.
    """

    task: ClassVar[str] = TASK
    config_class: ClassVar[type[TrainConfig]] = MLMTrainConfig
    metric: ClassVar[str] = "ppl"
    lower_is_better: ClassVar[bool] = True
    network: ClassVar[str] = "lm"

    def __init__(self, lm: torch.nn.Module, tokenizer: Any, *, max_len: int = 128,
                 masking: str | None = None, lexicon: Lexicon | None = None,
                 mask_rate: float = MASK_RATE, device: torch.device | str | None = None,
                 batch_size: int = 32, meta: dict[str, Any] | None = None):
        if getattr(tokenizer, "mask_token_id", None) is None:
            raise ZhtextError("the tokenizer has no [MASK] token: a masked LM needs one")
        masking = masking or ("word" if lexicon is not None else "char")
        if masking not in MASKINGS:
            raise ZhtextError(f"masking must be word or char, not {masking!r}")
        if masking == "word" and lexicon is None:
            raise ZhtextError("whole-word masking needs a lexicon")
        if batch_size < 1:
            raise ZhtextError("batch_size must be at least 1")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.lm = lm.to(self.device).eval()
        self.tokenizer = tokenizer
        positions = int(getattr(lm.config, "max_position_embeddings", max_len))
        self.max_len = min(max_len, positions)
        self.masking = masking
        self.lexicon = lexicon
        self.mask_rate = mask_rate
        self.batch_size = batch_size
        self.meta = dict(meta or {})
        self.history: list[dict[str, Any]] = list(self.meta.get("history", []))
        self._segmenter: Segmenter | None = None
        vocab = int(lm.config.vocab_size)
        special = set(tokenizer.all_special_ids)
        # What BERT's 10 % "random token" draws from: every token but the special ones.
        self._replacements = np.array([i for i in range(vocab) if i not in special])
        self.pad_id = int(tokenizer.pad_token_id or 0)

    # ---------------------------------------------------------------- masking

    @property
    def width(self) -> int:
        """Characters per piece of text: ``max_len`` less ``[CLS]`` and ``[SEP]``."""
        return self.max_len - 2

    def pieces(self, lines: Iterable[str]) -> Iterator[str]:
        """The pieces the model sees: each non-blank line cut every :attr:`width` characters."""
        return _pieces(lines, self.width)

    def word_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """The (start, end) characters of each text's words, by the lexicon's maximum-probability
        route (no HMM: the lexicon alone decides)."""
        if self.lexicon is None:
            raise ZhtextError("whole-word masking needs a lexicon")
        if self._segmenter is None:
            self._segmenter = Segmenter(self.lexicon, hmm=False)
        return [[(s, e) for _, s, e in words]
                for words in self._segmenter.tokenize_lines(list(texts), hmm=False)]

    def masked_batch(self, texts: Sequence[str], seed: int | Sequence[int],
                     masking: str | None = None, always_mask: bool = False,
                     rows: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """``texts`` tokenized and masked (:func:`~zhtext.neural.masking.mask_row`), as the
        model's inputs with ``labels`` (:data:`IGNORE` where nothing is predicted). The masks
        depend only on ``seed`` and the texts; with ``rows`` (a number per text) each text's
        only on ``seed``, its number and itself, whatever batch it is in."""
        masking = masking or self.masking
        enc = self.tokenizer(list(texts), return_offsets_mapping=True, truncation=True,
                             max_length=self.max_len, verbose=False)
        words = self.word_spans(texts) if masking == "word" else None
        rng = np.random.default_rng(seed)
        inputs, labels = [], []
        for i, ids in enumerate(enc["input_ids"]):
            if rows is not None:
                rng = np.random.default_rng([*np.atleast_1d(seed).tolist(), rows[i]])
            groups = token_groups(enc["offset_mapping"][i], words[i] if words else None)
            x, y = mask_row(ids, groups, self.mask_rate, rng, int(self.tokenizer.mask_token_id),
                            self._replacements, always_mask)
            inputs.append(x)
            labels.append(y)
        ids, mask = pad(inputs, self.pad_id, device=self.device)
        gold, _ = pad(labels, IGNORE, device=self.device)
        return {"input_ids": ids, "attention_mask": mask, "labels": gold}

    # ---------------------------------------------------------------- the verbs

    @classmethod
    def load(cls, name_or_dir: str | os.PathLike, *, device: str | None = None,
             batch_size: int | None = None, quantize: str | None = None) -> MaskedLM:
        """A masked LM :meth:`save` wrote (with its lexicon and settings), or any checkpoint with
        a masked-LM head (hub id or folder, e.g. ``bert-base-chinese``)."""
        from transformers import AutoModelForMaskedLM

        meta: dict[str, Any] = {}
        folder = Path(name_or_dir).expanduser()
        if (folder / META_FILE).is_file():
            meta = load_task_meta(folder, TASK)
        lexicon = None
        if meta.get("lexicon"):
            lexicon = Lexicon.load(folder / str(meta["lexicon"]))
        tokenizer = load_tokenizer(name_or_dir)
        lm = load_model(name_or_dir, AutoModelForMaskedLM, strict=bool(meta))
        model = cls(lm, tokenizer, max_len=int(meta.get("max_len") or 512),
                    masking=meta.get("masking"), lexicon=lexicon,
                    mask_rate=float(meta.get("mask_rate") or MASK_RATE), device=pick_device(device),
                    batch_size=batch_size or 32, meta=meta)
        model.source = str(name_or_dir)
        return model.quantize(quantize)

    def save(self, directory: str | os.PathLike, **meta: Any) -> Path:
        """The Hugging Face layout (``BertForMaskedLM`` + tokenizer), the lexicon and
        ``zhtext.json``; written to a temporary folder first, so a save is never torn."""
        self._check_savable()
        with model_dir_writer(directory) as tmp:
            self.lm.save_pretrained(str(tmp))
            self.tokenizer.save_pretrained(str(tmp))
            if self.lexicon is not None:
                self.lexicon.save(tmp / LEXICON_FILE)
            self.meta.update(meta, max_len=self.max_len, masking=self.masking,
                             mask_rate=self.mask_rate,
                             lexicon=LEXICON_FILE if self.lexicon is not None else None)
            save_task_meta(tmp, TASK, self.meta)
        return Path(directory)

    @torch.no_grad()
    def predict(self, texts: Sequence[str], **options: Any) -> list[str]:
        """Each text with every ``[MASK]`` replaced by the likeliest token (special tokens
        excluded); masks beyond ``max_len`` tokens stay."""
        if options:
            raise ZhtextError(f"unknown option(s): {', '.join(sorted(options))}")
        texts = list(texts)
        out = list(texts)
        mask_id = int(self.tokenizer.mask_token_id)
        banned = torch.tensor(sorted(set(self.tokenizer.all_special_ids)), device=self.device)
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start:start + self.batch_size]
            enc = self.tokenizer(chunk, return_offsets_mapping=True, truncation=True,
                                 max_length=self.max_len, verbose=False)
            ids, mask = pad(enc["input_ids"], self.pad_id, device=self.device)
            logits = self.lm(input_ids=ids, attention_mask=mask).logits.float()
            logits[..., banned] = -math.inf
            best = logits.argmax(-1).tolist()
            for row, text in enumerate(chunk):
                pieces, at = [], 0
                for pos, token in enumerate(enc["input_ids"][row]):
                    if token == mask_id:
                        s, e = enc["offset_mapping"][row][pos]
                        word = self.tokenizer.convert_ids_to_tokens(best[row][pos])
                        pieces += [text[at:s], word.removeprefix("##")]
                        at = e
                out[start + row] = "".join(pieces) + text[at:]
        return out

    @torch.no_grad()
    def evaluate(self, data: str | os.PathLike | Sequence[str], *, masking: str | None = None,
                 seed: int = 0, limit: int | None = None, encoding: str | None = None
                 ) -> dict[str, Any]:
        """Masked-token ``accuracy`` and ``ppl`` (exp of the mean cross-entropy of the masked
        tokens) on held-out text: a file, several (a list of Paths) or the texts. Every chosen
        word (``masking`` as the model's by default) is masked; the masks follow ``seed`` (not the
        batch size), so two models are scored on the same ones. ``limit``: the first N pieces
        only."""
        pieces = list(itertools.islice(self.pieces(_lines(data, encoding)), limit))
        if not pieces:
            raise ZhtextError("no text to score")
        nll, correct, count = 0.0, 0, 0
        order = length_order([len(p) for p in pieces])
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            batch = self.masked_batch([pieces[i] for i in rows], seed, masking, always_mask=True,
                                      rows=rows)
            gold = batch.pop("labels")
            chosen = gold != IGNORE
            scores = masked_logits(self.lm, batch["input_ids"], batch["attention_mask"],
                                   chosen).float()
            targets = gold[chosen]
            nll += float(torch.nn.functional.cross_entropy(scores, targets, reduction="sum"))
            correct += int((scores.argmax(-1) == targets).sum())
            count += int(targets.numel())
        return {"ppl": math.exp(nll / count), "accuracy": correct / count, "masked": count,
                "pieces": len(pieces)}

    # ---------------------------------------------------------------- training

    @classmethod
    def train(cls, config: TrainConfig) -> MaskedLM:
        """Masked-LM pretraining (:class:`MLMTrainConfig`), the best model kept in
        ``config.output`` (by dev perplexity, else the last) and returned.

        ``config.model`` names a checkpoint with a masked-LM head to continue (hub id or folder);
        without it a small BERT (``layers``, ``hidden``, ``heads``, positions = ``max_len``) is
        built over a character vocabulary of the corpus. ``resume`` continues from
        ``output/checkpoint`` (a discovered lexicon is discovered again, to the same words).
        """
        config = cls._check_config(config)
        assert isinstance(config, MLMTrainConfig)
        _check_sources(config.train)
        train_lines = _corpus(config, held=False)
        seed_everything(config.seed)  # before the weights are drawn
        if config.model is None:
            lm, tokenizer, meta = scratch_model("bert-mlm", train_lines(), config, config.max_len)
            lr = config.lr or 5e-4
        else:
            source = cls.load(config.model, device="cpu")
            lm, tokenizer, meta = source.lm, source.tokenizer, {"base_model": str(config.model)}
            lr = config.lr or 5e-5
        max_len = min(config.max_len, int(lm.config.max_position_embeddings))
        pieces = sum(1 for _ in _pieces(train_lines(), max_len - 2))
        if pieces == 0:
            raise ZhtextError("no training text: the corpus has no non-blank lines")
        lexicon = None
        if config.masking == "word":
            lexicon = _lexicon(config, train_lines)
            given = config.lexicon
            meta["lexicon_source"] = "discovered" if given is None else \
                "given" if isinstance(given, Lexicon) else str(given)
        model = cls(lm, tokenizer, max_len=max_len, masking=config.masking,
                    lexicon=lexicon, mask_rate=config.mask_rate,
                    device=pick_device(config.device), batch_size=config.batch_size, meta=meta)
        if config.dev is not None:
            dev = list(itertools.islice(model.pieces(_lines(config.dev, config.encoding)),
                                        config.dev_limit))
            if not dev:
                raise ZhtextError("the dev text has no non-empty lines")
        elif config.heldout_every is not None:
            dev = list(itertools.islice(model.pieces(_corpus(config, held=True)()),
                                        config.dev_limit or DEV_PIECES))
        else:
            dev = []
        size = config.batch_size

        def batches(epoch: int) -> Iterator[_LazyBatch]:
            stream = model.pieces(train_lines())
            index = 0
            for pool_no in itertools.count():
                pool = list(itertools.islice(stream, size * POOL_BATCHES))
                if not pool:
                    return
                for group in bucketed_batches([len(p) for p in pool], size,
                                              config.seed + pool_no, epoch):
                    texts = [pool[i] for i in group]
                    yield _LazyBatch(lambda t=texts, i=index: model.masked_batch(
                        t, [config.seed, epoch, i]))
                    index += 1

        def evaluate() -> dict[str, float]:
            scores = model.evaluate(dev, seed=config.seed)
            return {"ppl": scores["ppl"], "accuracy": scores["accuracy"]}

        model.meta.update(train_pieces=pieces, dev_pieces=len(dev))
        extra = {"vocab": int(lm.config.vocab_size), "max_len": model.max_len,
                 "batch_size": size, "pieces": pieces, "masking": config.masking,
                 "mask_rate": config.mask_rate, "lexicon": _digest(lexicon)}
        return cls._fit_batches(model, _MaskedLoss(model.lm), config, batches,
                                math.ceil(pieces / size),
                                evaluate if dev else None,
                                groups=param_groups(model.lm, lr, config.weight_decay),
                                extra_state=extra)


# --------------------------------------------------------------------------- the corpus


def _pieces(lines: Iterable[str], width: int) -> Iterator[str]:
    for line in lines:
        for start in range(0, len(line), width):
            piece = line[start:start + width]
            if piece.strip():
                yield piece


def _check_sources(source: Any) -> None:
    """The corpus is read several times: standard input cannot be."""
    paths = [source] if isinstance(source, (str, os.PathLike)) else \
        [s for s in source if isinstance(s, os.PathLike)]
    if any(str(p) == "-" for p in paths):
        raise ZhtextError("the corpus is read more than once: give files, not '-' (stdin)")


def _lines(source: Any, encoding: str | None) -> Iterator[str]:
    """The lines of a file, several files (a list of Paths) or texts in memory (a list of str)."""
    from zhtext.io.reading import iter_many_lines

    if isinstance(source, (str, os.PathLike)):
        return iter_many_lines([source], encoding, MAX_LINE_CHARS)
    items = list(source)
    if items and all(isinstance(s, os.PathLike) for s in items):
        return iter_many_lines(items, encoding, MAX_LINE_CHARS)
    return iter(items)


def _corpus(config: MLMTrainConfig, held: bool) -> Callable[[], Iterator[str]]:
    """A fresh stream of the training lines (or, ``held``, the held-out ones) at each call."""
    def lines() -> Iterator[str]:
        stream = _lines(config.train, config.encoding)
        if config.heldout_every is None:
            return (line for line in stream if line.strip())
        return (line for is_held, line in heldout_flags(stream, config.heldout_every)
                if is_held == held)

    return lines


def _lexicon(config: MLMTrainConfig, lines: Callable[[], Iterator[str]]) -> Lexicon:
    """The lexicon of whole-word masking: the one given, or discovered from the corpus's first
    ``discover_chars`` characters."""
    if isinstance(config.lexicon, Lexicon):
        return config.lexicon
    if config.lexicon is not None:
        return Lexicon.load(config.lexicon)
    from zhtext.lexical.discover import Discoverer

    def sample() -> Iterator[str]:
        left = config.discover_chars
        for line in lines():
            if left <= 0:
                return
            yield line[:left]
            left -= len(line)

    return Discoverer(progress=config.progress).run(sample())


def _digest(lexicon: Lexicon | None) -> str | None:
    """A fingerprint of a lexicon's words and counts (a resumed run must mask with the same)."""
    if lexicon is None:
        return None
    text = "\n".join(f"{w}\t{c}" for w, c in sorted(lexicon.counts.items()))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()
