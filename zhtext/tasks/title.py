"""UniLM title generation: a BERT with a prefix attention mask, decoded with an exact cache.

Input ``[CLS] content [SEP] title [SEP]``, token types 0 for the content (and its ``[SEP]``) and
1 for the title. Position i may attend to position j when ``cumsum(types)[j] <= cumsum(types)[i]``
and j is not padding: the content sees only the content, each title token sees the content, the
title before it and itself. The masked-LM head of a BERT checkpoint predicts the next title token
from each position; the loss covers title tokens only (the closing ``[SEP]`` included).

Decoding runs the content once and keeps every layer's keys and values (a Hugging Face
``DynamicCache`` of a ``BertLMHeadModel`` with ``is_decoder=True``; our 4D additive mask is passed
through unchanged), then feeds one title token per step. The content never attends to the title,
so the cached logits equal those of a full recomputation of the whole sequence at every step,
which :class:`RecomputeStep` does (the bert4keras way) for tests and benchmarks. Beam search,
greedy decoding and sampling are :mod:`zhtext.decoding`'s.

Right padding of the contents in a batch changes nothing: padded keys are masked out, and every
row carries its own position ids, so a title never depends on the other articles of its batch.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zhtext.neural.decoding import DecodeConfig, generate
from zhtext.errors import ZhtextError
from zhtext.neural.incremental import SplitCache, StepState, bert_step, check_bert
from zhtext.eval.metrics import average_rouge
from zhtext.neural.scratch import build_char_vocab, char_tokenizer, small_bert_config
from zhtext.neural.tokens import decode_text
from zhtext.neural.hub import load_model, load_tokenizer, pick_device
from zhtext.neural.modeldir import (
    load_task_meta,
    model_dir_writer,
    save_task_meta,
    update_task_meta,
)
from zhtext.tasks.titledata import TitlePair
from zhtext.neural.trainer import TrainConfig, param_groups, seed_everything, Trainer
from zhtext.neural.batching import bucketed_batches

__all__ = [
    "CachedStep",
    "RecomputeStep",
    "TitleGenerator",
    "UniLM",
    "unilm_allowed",
    "unilm_mask",
]

TASK = "title"


# --------------------------------------------------------------------------- the mask


def unilm_allowed(token_type_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Boolean (B, T, T): may query i see key j? The UniLM prefix pattern over non-padding keys."""
    valid = attention_mask.bool()
    # Padding counts as target so that it never moves a real token's rank.
    rank = torch.cumsum(token_type_ids.long() * valid + (~valid).long(), dim=1)
    return (rank[:, None, :] <= rank[:, :, None]) & valid[:, None, :]


def additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean (B, q, kv) pattern as the 4D additive float mask (B, 1, q, kv) transformers takes."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]


def unilm_mask(token_type_ids: torch.Tensor, attention_mask: torch.Tensor,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The UniLM attention mask as a 4D additive float mask (B, 1, T, T)."""
    return additive(unilm_allowed(token_type_ids, attention_mask), dtype)


# --------------------------------------------------------------------------- the model


def _as_decoder(model: nn.Module) -> nn.Module:
    from transformers import BertLMHeadModel

    if not isinstance(model, BertLMHeadModel) or getattr(model.config, "model_type", "") != "bert":
        raise ZhtextError("UniLM needs a BERT model with a masked-LM head (model_type 'bert')")
    model.config.is_decoder = True  # BertModel returns a key/value cache only as a decoder
    return model


class UniLM(nn.Module):
    """A ``BertLMHeadModel`` trained with the UniLM mask; ``forward`` returns the title loss."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = _as_decoder(lm)

    def hidden(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
               attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None
               ) -> torch.Tensor:
        """Last hidden states (B, T, H) under the UniLM mask, without a cache."""
        mask = unilm_mask(token_type_ids, attention_mask, self.lm.dtype)
        return self.lm.bert(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=mask,
                            position_ids=position_ids, use_cache=False).last_hidden_state

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of every title token given the content and the title before it."""
        hidden = self.hidden(input_ids, token_type_ids, attention_mask)
        # Position i predicts token i + 1 when that token is a (non-padding) title token.
        target = (token_type_ids[:, 1:] == 1) & attention_mask[:, 1:].bool()
        logits = self.lm.cls(hidden[:, :-1][target])  # the vocabulary projection only where needed
        return nn.functional.cross_entropy(logits.float(), input_ids[:, 1:][target])


# --------------------------------------------------------------------------- step functions


class CachedStep:
    """The UniLM step function over a key/value cache (a :class:`~zhtext.decoding.StepModel`):
    the contents run through transformers' forward once, each title token through
    :func:`~zhtext.incremental.bert_step`."""

    def __init__(self, model: UniLM):
        self.model = model
        check_bert(model.lm)

    @torch.no_grad()
    def prefill(self, input_ids: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, StepState]:
        """Run the right-padded contents ``[CLS] content [SEP]`` (B, L) once: the logits of each
        first title token (read at the content's ``[SEP]``) and the cache."""
        from transformers import DynamicCache

        lm = self.model.lm
        valid = torch.arange(input_ids.shape[1], device=input_ids.device)[None] < lengths[:, None]
        types = torch.zeros_like(input_ids)
        cache = DynamicCache(config=lm.config)
        hidden = lm.bert(input_ids=input_ids, token_type_ids=types,
                         attention_mask=unilm_mask(types, valid, lm.dtype),
                         past_key_values=cache, use_cache=True).last_hidden_state
        last = hidden[torch.arange(len(lengths), device=hidden.device), lengths - 1]
        return lm.cls(last).float(), StepState(SplitCache.from_hf(cache, valid), lengths.clone())

    def step(self, tokens: torch.Tensor, state: StepState) -> tuple[torch.Tensor, StepState]:
        # The new title token sees every real content token and the whole title so far.
        logits = bert_step(self.model.lm, tokens, state.next_pos, torch.ones_like(tokens),
                           state.cache)
        return logits.float(), state.advanced()

    def reorder(self, state: StepState, index: torch.Tensor) -> StepState:
        return state.reordered(index)


@dataclass
class RecomputeState:
    """Content ids (M, L) right-padded, their lengths, and the title tokens so far (M, t)."""

    source: torch.Tensor
    lengths: torch.Tensor
    target: torch.Tensor


class RecomputeStep:
    """The same step function without a cache: every step runs the whole sequence again (what
    bert4keras's UniLM example does). Exact reference for :class:`CachedStep`, and the baseline
    of the decoding benchmark."""

    def __init__(self, model: UniLM):
        self.model = model

    @torch.no_grad()
    def logits(self, state: RecomputeState) -> torch.Tensor:
        source, lengths, target = state.source, state.lengths, state.target
        rows, width = source.shape
        device = source.device
        valid = torch.cat([torch.arange(width, device=device)[None] < lengths[:, None],
                           torch.ones_like(target, dtype=torch.bool)], dim=1)
        ids = torch.cat([source, target], dim=1)
        types = torch.cat([torch.zeros_like(source), torch.ones_like(target)], dim=1)
        positions = torch.cat([torch.arange(width, device=device).expand(rows, -1),
                               lengths[:, None] + torch.arange(target.shape[1], device=device)], dim=1)
        hidden = self.model.hidden(ids, types, valid, positions)
        last = hidden[:, -1] if target.shape[1] else hidden[torch.arange(rows, device=device), lengths - 1]
        return self.model.lm.cls(last).float()

    def prefill(self, input_ids: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, RecomputeState]:
        state = RecomputeState(input_ids, lengths, input_ids.new_zeros((len(lengths), 0)))
        return self.logits(state), state

    def step(self, tokens: torch.Tensor, state: RecomputeState) -> tuple[torch.Tensor, RecomputeState]:
        state = RecomputeState(state.source, state.lengths, torch.cat([state.target, tokens[:, None]], 1))
        return self.logits(state), state

    def reorder(self, state: RecomputeState, index: torch.Tensor) -> RecomputeState:
        return RecomputeState(state.source[index], state.lengths[index], state.target[index])


# --------------------------------------------------------------------------- the generator


class TitleGenerator:
    """A trained UniLM title model: ``TitleGenerator.load(dir)(texts)`` gives one title per text.

    ``max_source_len`` caps the content tokens (the head is kept); ``max_target_len`` the title
    tokens in training. Build one with :meth:`train`, :meth:`load` or :meth:`from_pretrained`.
    """

    def __init__(self, model: UniLM, tokenizer: Any, max_source_len: int = 256,
                 max_target_len: int = 32, device: torch.device | None = None,
                 batch_size: int = 16, meta: dict[str, Any] | None = None):
        limit = int(model.lm.config.max_position_embeddings)
        if max_source_len < 1 or max_target_len < 1:
            raise ZhtextError("max_source_len and max_target_len must be at least 1")
        if batch_size < 1:
            raise ZhtextError("batch_size must be at least 1")
        if max_source_len + max_target_len + 3 > limit:
            raise ZhtextError(f"max_source_len + max_target_len + 3 special tokens exceed the "
                              f"model's {limit} positions")
        self.device = device or torch.device("cpu")
        self.model = model.to(self.device)
        self.model.eval()
        self.tokenizer = tokenizer
        self.max_source_len = max_source_len
        self.max_target_len = max_target_len
        self.batch_size = batch_size
        self.meta = dict(meta or {})
        self.cls_id = int(tokenizer.cls_token_id)
        self.sep_id = int(tokenizer.sep_token_id)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.history: list[dict[str, Any]] = []

    # ---------------------------------------------------------------- building

    @classmethod
    def from_pretrained(cls, name_or_dir: str | os.PathLike, **kwargs: Any) -> TitleGenerator:
        """Start from any BERT checkpoint with a masked-LM head (``bert-base-chinese`` or a local
        ``save_pretrained`` directory); its MLM head becomes the title head."""
        from transformers import BertLMHeadModel

        tokenizer = load_tokenizer(name_or_dir)
        lm = load_model(name_or_dir, BertLMHeadModel, is_decoder=True)
        return cls(UniLM(lm), tokenizer, **kwargs)

    @classmethod
    def from_scratch(cls, texts: Sequence[str], layers: int = 4, hidden: int = 256,
                     heads: int | None = None, min_char_count: int = 1, dropout: float = 0.1,
                     **kwargs: Any) -> TitleGenerator:
        """A small BERT with random weights over a character vocabulary of ``texts``."""
        from transformers import BertLMHeadModel

        vocab = build_char_vocab(texts, min_count=min_char_count)
        tokenizer = char_tokenizer(vocab)
        heads = heads or max(1, hidden // 64)
        max_pos = kwargs.get("max_source_len", 256) + kwargs.get("max_target_len", 32) + 3
        config = small_bert_config(len(vocab), layers=layers, hidden=hidden, heads=heads,
                                   max_position=max_pos, is_decoder=True,
                                   hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
        meta = {"from_scratch": {"layers": layers, "hidden": hidden, "heads": heads,
                                 "vocab_size": len(vocab)}}
        return cls(UniLM(BertLMHeadModel(config)), tokenizer, meta=meta, **kwargs)

    # ---------------------------------------------------------------- encoding

    def _ids(self, texts: Sequence[str], limit: int) -> list[list[int]]:
        if not texts:
            return []
        encoded = self.tokenizer(list(texts), add_special_tokens=False, truncation=True,
                                 max_length=limit)["input_ids"]
        return [list(ids) for ids in encoded]

    def source_batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ``[CLS] content [SEP]`` ids (B, L) and their lengths (B,)."""
        rows = [[self.cls_id, *ids, self.sep_id] for ids in self._ids(texts, self.max_source_len)]
        return self._pad(rows)

    def _pad(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        ids = torch.full((len(rows), int(lengths.max())), self.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return ids.to(self.device), lengths.to(self.device)

    def training_rows(self, pairs: Sequence[TitlePair]) -> list[tuple[list[int], int]]:
        """Per pair: ``[CLS] content [SEP] title [SEP]`` ids and the number of content ids."""
        sources = self._ids([p.content for p in pairs], self.max_source_len)
        targets = self._ids([p.title for p in pairs], self.max_target_len)
        return [([self.cls_id, *s, self.sep_id, *t, self.sep_id], len(s) + 2)
                for s, t in zip(sources, targets)]

    def collate(self, rows: Sequence[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
        """A right-padded training batch for :meth:`UniLM.forward`."""
        ids, lengths = self._pad([r[0] for r in rows])
        positions = torch.arange(ids.shape[1], device=self.device)[None]
        sources = torch.tensor([r[1] for r in rows], device=self.device)[:, None]
        valid = positions < lengths[:, None]
        types = ((positions >= sources) & valid).long()
        return {"input_ids": ids, "token_type_ids": types, "attention_mask": valid.long()}

    # ---------------------------------------------------------------- generation

    def generate_ids(self, texts: Sequence[str], options: DecodeConfig,
                     cached: bool = True) -> list[list[list[int]]]:
        """Title token ids of each text (``options.num_return`` per text), in batches of
        ``batch_size`` texts of similar length; ``cached=False`` recomputes every step."""
        # Positions beyond the embedding table do not exist: cap the title length once, for any
        # batch alike (a per-batch cap would make a title depend on its neighbours).
        room = int(self.model.lm.config.max_position_embeddings) - self.max_source_len - 2
        if options.max_new_tokens > room:
            options = replace(options, max_new_tokens=room,
                              min_new_tokens=min(options.min_new_tokens, room))
        results: list[list[list[int]]] = [[] for _ in texts]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        stepper = CachedStep(self.model) if cached else RecomputeStep(self.model)
        self.model.eval()
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            ids, lengths = self.source_batch([texts[i] for i in chunk])
            logits, state = stepper.prefill(ids, lengths)
            for i, out in zip(chunk, generate(stepper, logits, state, options, [self.sep_id])):
                results[i] = out
        return results

    @staticmethod
    def options(*, beam: int = 3, max_len: int = 32, min_len: int = 0, length_penalty: float = 1.0,
                sample: bool = False, top_k: int = 0, top_p: float = 1.0, temperature: float = 1.0,
                seed: int | None = None, no_repeat_ngram: int = 0) -> DecodeConfig:
        """The decoding options of :meth:`generate`'s keywords; raises ZhtextError on bad values."""
        return DecodeConfig(max_new_tokens=max_len, min_new_tokens=min_len,
                             beam=1 if sample else beam, length_penalty=length_penalty,
                             sample=sample, top_k=top_k, top_p=top_p, temperature=temperature,
                             seed=seed, no_repeat_ngram=no_repeat_ngram)

    def generate(self, texts: Sequence[str], *, beam: int = 3, max_len: int = 32,
                 min_len: int = 0, length_penalty: float = 1.0, sample: bool = False,
                 top_k: int = 0, top_p: float = 1.0, temperature: float = 1.0,
                 seed: int | None = None, no_repeat_ngram: int = 0) -> list[str]:
        """One title per text: beam search of width ``beam`` (1: greedy), or sampling with
        ``sample`` (temperature, top-k, top-p, seed). At most ``max_len`` title tokens, at least
        ``min_len``; beam scores are divided by length ** ``length_penalty``; with
        ``no_repeat_ngram`` n > 0 no n tokens in a row appear twice in a title."""
        options = self.options(beam=beam, max_len=max_len, min_len=min_len,
                               length_penalty=length_penalty, sample=sample, top_k=top_k,
                               top_p=top_p, temperature=temperature, seed=seed,
                               no_repeat_ngram=no_repeat_ngram)
        return [decode_text(self.tokenizer, out[0]) for out in self.generate_ids(texts, options)]

    def __call__(self, texts: str | Sequence[str], **options: Any) -> str | list[str]:
        """The title of one text, or a list of titles; keyword options as :meth:`generate`."""
        if isinstance(texts, str):
            return self.generate([texts], **options)[0]
        return self.generate(list(texts), **options)

    # ---------------------------------------------------------------- evaluation

    def evaluate(self, pairs: Sequence[TitlePair], **options: Any) -> dict[str, float]:
        """Character ROUGE-1/2/L F1 and BLEU averaged over ``pairs``, ``count``, ``seconds``
        spent generating and ``articles_per_s``."""
        pairs = list(pairs)
        if not pairs:
            raise ZhtextError("no (title, content) pairs to evaluate on")
        begin = time.perf_counter()
        titles = self.generate([p.content for p in pairs], **options)
        seconds = time.perf_counter() - begin
        scores = average_rouge((p.title, t) for p, t in zip(pairs, titles))
        return {**scores, "seconds": seconds, "articles_per_s": len(pairs) / max(seconds, 1e-9)}

    # ---------------------------------------------------------------- save / load

    def save(self, directory: str | os.PathLike, **extra: Any) -> Path:
        """Save in the Hugging Face layout (``BertLMHeadModel`` + tokenizer) plus ``zhtext.json``;
        written to a temporary folder first and moved into place, so a save is never torn."""
        with model_dir_writer(directory) as tmp:
            self.model.lm.save_pretrained(str(tmp))
            self.tokenizer.save_pretrained(str(tmp))
            self.meta.update(extra)
            save_task_meta(tmp, TASK, self.meta, max_source_len=self.max_source_len,
                           max_target_len=self.max_target_len)
        return Path(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | None = None,
             batch_size: int = 16) -> TitleGenerator:
        """Load a title model saved by :meth:`save` (or :meth:`train`)."""
        meta = load_task_meta(directory, TASK)
        try:
            source_len, target_len = int(meta["max_source_len"]), int(meta["max_target_len"])
        except (KeyError, TypeError, ValueError):
            raise ZhtextError(f"{directory}/zhtext.json lacks max_source_len or max_target_len") from None
        return cls.from_pretrained(directory, max_source_len=source_len, max_target_len=target_len,
                                   device=pick_device(device), batch_size=batch_size, meta=meta)

    # ---------------------------------------------------------------- training

    @classmethod
    def train(
        cls,
        train: Sequence[TitlePair],
        dev: Sequence[TitlePair] | None = None,
        *,
        out_dir: str | os.PathLike,
        model: str | os.PathLike | None = None,
        layers: int = 4,
        hidden: int = 256,
        heads: int | None = None,
        max_source_len: int = 256,
        max_target_len: int = 32,
        epochs: int = 3,
        batch_size: int = 16,
        lr: float | None = None,
        seed: int = 42,
        dropout: float = 0.1,
        warmup: float = 0.1,
        grad_accum: int = 1,
        max_seconds: float | None = None,
        max_steps: int | None = None,
        eval_every: int | None = None,
        dev_limit: int | None = None,
        min_char_count: int = 1,
        resume: bool = False,
        progress: bool = True,
        device: str | None = None,
    ) -> TitleGenerator:
        """Train on ``train`` pairs, keep the best model by dev ROUGE-L (greedy) in ``out_dir``.

        ``model`` names a BERT checkpoint with a masked-LM head (hub id or directory); without it
        a small BERT (``layers``, ``hidden``, ``heads``) is built over a character vocabulary of
        the training texts. ``lr`` defaults to 2e-5 pretrained and 5e-4 from scratch. Stops after
        ``epochs``, ``max_steps`` or ``max_seconds``; ``resume`` continues from
        ``out_dir/checkpoint``. ``dev_limit`` scores only the first N dev pairs each time.
        """
        train = [p for p in train if p.title.strip() and p.content.strip()]
        if not train:
            raise ZhtextError("no training pairs (with a non-empty title and content)")
        seed_everything(seed)
        out = Path(out_dir)  # created by the first save: a bad setting leaves nothing behind
        settings = {"max_source_len": max_source_len, "max_target_len": max_target_len,
                    "device": pick_device(device), "batch_size": batch_size}
        if model is None:
            gen = cls.from_scratch([t for p in train for t in p], layers=layers, hidden=hidden,
                                   heads=heads, min_char_count=min_char_count, dropout=dropout,
                                   **settings)
            lr = lr or 5e-4
        else:
            gen = cls.from_pretrained(model, **settings)
            gen.meta["base_model"] = str(model)
            lr = lr or 2e-5
        net = gen.model
        rows = gen.training_rows(train)
        batches_per_epoch = math.ceil(len(rows) / batch_size)

        lengths = [len(r[0]) for r in rows]

        def batches(epoch: int) -> Iterator[dict[str, torch.Tensor]]:
            for group in bucketed_batches(lengths, batch_size, seed, epoch):
                yield gen.collate([rows[i] for i in group])

        evaluate = None
        if dev:
            dev_pairs = [p for p in dev if p.content.strip()][:dev_limit]

            def evaluate() -> dict[str, float]:
                scores = gen.evaluate(dev_pairs, beam=1, max_len=max_target_len)
                return {k: scores[k] for k in ("rouge-1", "rouge-2", "rouge-l")}

        def on_best(record: dict[str, Any]) -> None:
            gen.save(out, best=record)

        config = TrainConfig(epochs=epochs, max_steps=max_steps, max_seconds=max_seconds,
                             warmup=warmup, grad_accum=grad_accum, seed=seed, eval_every=eval_every,
                             resume=resume, progress=progress, output=out)
        extra = {"vocab": len(gen.tokenizer), "max_source_len": max_source_len,
                 "max_target_len": max_target_len, "batch_size": batch_size, "train_size": len(rows)}
        groups = param_groups(net, lr, config.weight_decay)
        history = Trainer(net, config, batches, batches_per_epoch, groups=groups, evaluate=evaluate,
                          on_best=on_best, metric="rouge-l", extra_state=extra).fit()
        # The best model is on disk already: only its metadata gains the history.
        update_task_meta(out, history=history)
        best = cls.load(out, device=device, batch_size=batch_size)
        best.history = history
        return best

