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
greedy decoding and sampling are :mod:`zhtext.neural.decoding`'s.

Right padding of the contents in a batch changes nothing: padded keys are masked out, and every
row carries its own position ids, so a title never depends on the other articles of its batch.

The title prior (Su Jianlin's seq2seq title post; :class:`TitlePrior`): most characters of a
title occur in its article, so the logits of every title position gain ``scale * x + shift``,
``x`` the article's 0/1 bag of tokens and ``scale``, ``shift`` learned per vocabulary entry with
the rest of the model. The bag is made once per article and is the same at every step, so the
cache stays exact; training, greedy, beam and sampling all see the same sum.

Copying (a pointer-generator, See et al. 2017; :class:`TitleCopy`): the prior knows which
characters an article has, not where; a title mostly copies runs of them in order. Each title
position also attends over the article's tokens (its last hidden state against theirs) and a gate
mixes that distribution, summed per token, with the decoder's. The keys are the article's last
hidden states, which the cache's prefill computes anyway and which never change, so cached and
recomputed steps still agree. Two exact features steer it: positions that follow an occurrence of
the token just read (copying a run on), and tokens the title already holds (a coverage penalty,
on copying and generating alike: a small model otherwise loops). The latter is the one state
that grows with the title, a (sequences, vocabulary) boolean carried and reordered with the beams.
Measured here, copying more than doubled ROUGE-L from scratch (see the README).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from zhtext.errors import ZhtextError
from zhtext.eval.metrics import average_rouge
from zhtext.neural.batching import length_order, pad
from zhtext.neural.decoding import DecodeConfig, generate
from zhtext.neural.hub import (
    check_weights,
    first_line,
    load_config,
    load_model,
    load_tokenizer,
    pick_device,
)
from zhtext.neural.incremental import (
    SplitCache,
    StepState,
    bert_hidden_step,
    check_bert,
    mlm_head,
    prefill,
)
from zhtext.neural.modeldir import (
    META_FILE,
    model_dir_writer,
    own_task_meta,
    save_task_meta,
)
from zhtext.neural.scratch import scratch_model
from zhtext.neural.tokens import clip_for_tokens, decode_text
from zhtext.neural.trainer import TrainConfig, param_groups, seed_everything
from zhtext.tasks.base import Generator
from zhtext.tasks.titledata import TitlePair, read_pairs

__all__ = [
    "CachedStep",
    "RecomputeStep",
    "TitleCopy",
    "TitleGenerator",
    "TitlePrior",
    "TitleTrainConfig",
    "UniLM",
    "source_bag",
    "unilm_allowed",
    "unilm_mask",
]

TASK = "title"
# The prior's weights, beside the BERT's in a saved model (``zhtext.json`` says ``"prior": true``).
PRIOR_FILE = "title_prior.safetensors"
# The copy head's weights likewise (``"copy": true``).
COPY_FILE = "title_copy.safetensors"
# The prior's and the copy head's learning rate at least: a pretrained model's small rate would
# leave them where they started.
PRIOR_LR = 1e-3


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


def content_mask(width: int, lengths: torch.Tensor) -> torch.Tensor:
    """Boolean (B, width): the content positions of rows whose first ``lengths`` ids are ``[CLS]
    content [SEP]`` (the special tokens and the padding left out)."""
    pos = torch.arange(width, device=lengths.device)[None]
    return (pos >= 1) & (pos < lengths[:, None] - 1)


def source_bag(input_ids: torch.Tensor, lengths: torch.Tensor, vocab: int) -> torch.Tensor:
    """The 0/1 bag of tokens (B, vocab) of right-padded ``[CLS] content [SEP] ...`` rows whose
    first ``lengths`` ids are the source: the content's tokens, the special tokens around it and
    the padding left out."""
    inside = content_mask(input_ids.shape[1], lengths)
    bag = torch.zeros(input_ids.shape[0], vocab, device=input_ids.device)
    # amax: positions outside the content add 0 wherever they point, repeated tokens stay 1.
    return bag.scatter_reduce_(1, input_ids, inside.float(), reduce="amax")


class TitlePrior(nn.Module):
    """Prior logits ``scale * x + shift`` of a source's bag of tokens ``x`` (B, V), with a learned
    ``scale`` (starting at 1) and ``shift`` (starting at 0) per vocabulary entry.

    They are *added* to the decoder's logits, a product of the two distributions, rather than
    mixed with them as probabilities (the average of two softmaxes): a mixture would keep the
    same share of every step's probability on the same article characters whatever the title
    so far (repeating them), while the sum only reweights what the decoder proposes. Adding
    stays in log space (the decoding's log-softmax normalises it) and a prior of zeros
    (``scale`` = ``shift`` = 0) leaves every logit exactly as it was."""

    def __init__(self, vocab: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(vocab))
        self.shift = nn.Parameter(torch.zeros(vocab))

    def forward(self, bag: torch.Tensor) -> torch.Tensor:
        return bag * self.scale + self.shift


class TitleCopy(nn.Module):
    """Copying from the article: log-probabilities (N, V) of ``g * softmax(logits) + (1 - g) *
    copy``, where ``copy`` puts each article position's attention weight on its token (summed over
    repeats) and the gate ``g = sigmoid(w . h + b)`` is read off the title position's hidden state
    ``h``. Attention: scaled dot products of ``dim``-wide projections of ``h`` (query) and of the
    article's last hidden states (keys, made once per article by :meth:`keys`). Computed in log
    space (``logaddexp``), so a token the article lacks keeps exactly ``log g + log_softmax``.

    Titles copy *runs* of the article, once: the article positions that follow an occurrence of
    the title position's own token (the one it read, which the title copied last if it copied)
    get ``follow[0]`` added to their attention scores, and the gate's logit gets ``-follow[1]``
    where there is one; the positions whose token the title already holds get ``cover[0]`` (a
    coverage penalty at the level of tokens: a small model otherwise loops through the same run),
    and the decoder's logits of those tokens ``cover[1]`` (the same for generating). Matching the
    token before a key against the query's token would take the attention many steps to learn;
    as features they are exact from the first step. They start at 0 when a head saved before
    them is loaded, which is the head as it was."""

    # Where ``follow`` and ``cover`` start in a fresh head (run-following on, the gate left to
    # learn, a token again discouraged), and in one saved before they existed (off).
    FOLLOW_INIT = (2.0, 0.0)
    COVER_INIT = (-1.0, -1.0)
    ADDED_LATER: ClassVar[dict[str, float]] = {"follow": 0.0, "cover": 0.0}

    def __init__(self, hidden: int, dim: int = 64):
        super().__init__()
        self.query = nn.Linear(hidden, dim)
        self.key = nn.Linear(hidden, dim)
        self.gate = nn.Linear(hidden, 1)
        self.follow = nn.Parameter(torch.tensor(self.FOLLOW_INIT))
        self.cover = nn.Parameter(torch.tensor(self.COVER_INIT))

    def keys(self, hidden: torch.Tensor) -> torch.Tensor:
        """The keys (..., dim) of the article's last hidden states (..., H)."""
        return self.key(hidden)

    def _parts(self, hidden: torch.Tensor, logits: torch.Tensor, keys: torch.Tensor,
               source_ids: torch.Tensor, source_ok: torch.Tensor, before: torch.Tensor,
               held: torch.Tensor, previous: torch.Tensor, rows: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The decoder's logits with the coverage term (N, V), the attention over the article
        (N, S) and the gate's logit (N, 1), all float32: what the mixture is made of. ``keys``
        is (N, S, dim), or (R, S, dim) of R articles given ``rows`` (N,), each position's."""
        query = self.query(hidden).float()
        scores = _dot(query, keys.float(), rows) / math.sqrt(query.shape[-1])
        follows = (before == previous[:, None]) & source_ok
        covered = held.gather(1, source_ids)
        scores = scores + self.follow[0] * follows + self.cover[0] * covered
        logits = logits.float() + self.cover[1] * held
        attention = torch.softmax(scores.masked_fill(~source_ok, float("-inf")), dim=-1)
        # An article without content tokens has nothing to copy (its softmax is all NaN).
        attention = torch.where(source_ok.any(-1, keepdim=True), attention, 0.0)
        gate = self.gate(hidden).float() - self.follow[1] * follows.any(-1, keepdim=True)
        return logits, attention, gate

    def forward(self, hidden: torch.Tensor, logits: torch.Tensor, keys: torch.Tensor,
                source_ids: torch.Tensor, source_ok: torch.Tensor, before: torch.Tensor,
                held: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """``hidden`` (N, H) and ``logits`` (N, V) of N title positions that read the tokens
        ``previous`` (N,); ``keys`` (N, S, dim), ``source_ids`` (N, S), ``source_ok`` (N, S, bool:
        a content position) and ``before`` (N, S: the id before each position, -1 at the first)
        of the article each reads, and ``held`` (N, V, bool: the tokens of the title up to this
        position). Returns the mixture's log-probabilities (N, V), float32."""
        logits, attention, gate = self._parts(hidden, logits, keys, source_ids, source_ok, before,
                                              held, previous)
        copied = torch.zeros_like(logits).scatter_add_(1, source_ids, attention)
        generate = nn.functional.logsigmoid(gate) + torch.log_softmax(logits, dim=-1)
        return torch.logaddexp(generate, nn.functional.logsigmoid(-gate) + _log(copied))

    def gold(self, hidden: torch.Tensor, logits: torch.Tensor, keys: torch.Tensor,
             source_ids: torch.Tensor, source_ok: torch.Tensor, before: torch.Tensor,
             held: torch.Tensor, previous: torch.Tensor, gold: torch.Tensor,
             rows: torch.Tensor | None = None, smoothing: float = 0.0) -> torch.Tensor:
        """The mixture's log-probability (N,) of the token ``gold`` (N,) at each position: what
        :meth:`forward` gives there, without building the mixture over the whole vocabulary
        (training reads nothing else, and those (N, V) tensors were a fifth of its step).
        Given ``rows`` (N, nondecreasing), ``keys`` are the R articles' (R, S, dim), not copied
        per position (the copies' backward cost another eighth of the step).

        ``smoothing`` ε > 0 gives the label-smoothed score instead: ``(1 - ε)`` times that plus
        ``ε`` times the mean over the vocabulary of the generated distribution's
        log-probabilities (the decoder's softmax; the mixture's would need it whole again)."""
        logits, attention, gate = self._parts(hidden, logits, keys, source_ids, source_ok, before,
                                              held, previous, rows)
        gate = gate[:, 0]
        normaliser = torch.logsumexp(logits, dim=-1)
        generate = (nn.functional.logsigmoid(gate) + logits.gather(1, gold[:, None])[:, 0]
                    - normaliser)
        copied = (attention * (source_ids == gold[:, None])).sum(-1)
        score = torch.logaddexp(generate, nn.functional.logsigmoid(-gate) + _log(copied))
        if smoothing:
            score = (1 - smoothing) * score + smoothing * (logits.mean(-1) - normaliser)
        return score


def _dot(query: torch.Tensor, keys: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    """Dot products (N, S) of each ``query`` (N, d) with its keys: ``keys[n]`` (N, S, d), or
    ``keys[rows[n]]`` given nondecreasing ``rows``, as one batched product over the queries of
    each row laid out side by side."""
    if rows is None:
        return torch.einsum("nd,nsd->ns", query, keys)
    counts = torch.bincount(rows, minlength=len(keys))
    slot = torch.arange(len(rows), device=rows.device) - (torch.cumsum(counts, 0) - counts)[rows]
    laid = query.new_zeros(len(keys), int(counts.max()), query.shape[1])
    laid = laid.index_put((rows, slot), query)
    return torch.bmm(laid, keys.transpose(1, 2))[rows, slot]


def _log(x: torch.Tensor) -> torch.Tensor:
    """``log x`` of x >= 0 with ``log 0`` = -inf exactly, through a ``where``: the gradient of
    log at 0 would be NaN."""
    present = x > 0
    return torch.where(present, torch.log(torch.where(present, x, 1.0)), float("-inf"))


class UniLM(nn.Module):
    """A ``BertLMHeadModel`` trained with the UniLM mask; ``forward`` returns the title loss.
    With ``prior`` the title logits gain a :class:`TitlePrior` over the source's tokens; with
    ``copy`` a :class:`TitleCopy` mixes copying from the source into them."""

    def __init__(self, lm: nn.Module, prior: bool = False, copy: bool = False):
        super().__init__()
        self.lm = _as_decoder(lm)
        # Label smoothing of the training loss (a training setting, not saved with the model).
        self.label_smoothing = 0.0
        self.prior: TitlePrior | None = TitlePrior(self.lm.config.vocab_size) if prior else None
        self.copy: TitleCopy | None = TitleCopy(self.lm.config.hidden_size) if copy else None

    def copy_source(self, input_ids: torch.Tensor, hidden: torch.Tensor, lengths: torch.Tensor
                    ) -> tuple[torch.Tensor, ...]:
        """What copying reads of rows whose first ``lengths`` ids are ``[CLS] content [SEP]``
        with last hidden states ``hidden`` (B, >= L, H), over the first ``input_ids.shape[1]``
        positions: their keys, ids, content mask, the ids before them, and the vocabulary's
        tokens the title holds so far (none; see :meth:`copy_read`); () without a copy head."""
        if self.copy is None:
            return ()
        width = input_ids.shape[1]
        before = torch.cat([input_ids.new_full((len(input_ids), 1), -1), input_ids[:, :-1]], 1)
        held = torch.zeros(len(input_ids), self.lm.config.vocab_size, dtype=torch.bool,
                           device=input_ids.device)
        return (self.copy.keys(hidden[:, :width]), input_ids, content_mask(width, lengths),
                before, held)

    @staticmethod
    def copy_read(source: tuple[torch.Tensor, ...], tokens: torch.Tensor
                  ) -> tuple[torch.Tensor, ...]:
        """``source`` (:meth:`copy_source`) after its title read one more token per row,
        ``tokens`` (M,), or (T, M) several."""
        if not source:
            return source
        held = source[-1].clone()
        tokens = tokens.reshape(-1, len(held))
        held.scatter_(1, tokens.T, True)
        return (*source[:-1], held)

    def title_scores(self, hidden: torch.Tensor, logits: torch.Tensor,
                     source: tuple[torch.Tensor, ...], previous: torch.Tensor) -> torch.Tensor:
        """The scores decoding reads at title positions with last hidden states ``hidden`` and
        logits ``logits`` (prior included) that read the tokens ``previous``: those logits, or
        with a copy head the mixture's log-probabilities over ``source`` (:meth:`copy_source`, a
        row per position)."""
        return logits if self.copy is None else self.copy(hidden, logits, *source, previous)

    def prior_logits(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor | None:
        """The prior's logits (B, V) of rows whose first ``lengths`` ids are ``[CLS] content
        [SEP]``, in float32; None without a prior."""
        if self.prior is None:
            return None
        return self.prior(source_bag(input_ids, lengths, self.prior.scale.shape[0])).float()

    def hidden(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
               attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None
               ) -> torch.Tensor:
        """Last hidden states (B, T, H) under the UniLM mask, without a cache."""
        mask = unilm_mask(token_type_ids, attention_mask, self.lm.dtype)
        return self.lm.bert(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=mask,
                            position_ids=position_ids, use_cache=False).last_hidden_state

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of every title token given the content and the title before it,
        label-smoothed by ``label_smoothing`` (see :meth:`TitleCopy.gold`)."""
        hidden = self.hidden(input_ids, token_type_ids, attention_mask)
        # Position i predicts token i + 1 when that token is a (non-padding) title token.
        target = (token_type_ids[:, 1:] == 1) & attention_mask[:, 1:].bool()
        states = hidden[:, :-1][target]
        logits = self.lm.cls(states).float()  # the projection only where needed
        sources = ((token_type_ids == 0) & attention_mask.bool()).sum(1)
        prior = self.prior_logits(input_ids, sources)
        at = target.nonzero()  # (N, 2): row and position of each title position
        rows = at[:, 0]
        if prior is not None:
            logits = logits + prior.index_select(0, rows)
        gold = input_ids[:, 1:][target]
        if self.copy is None:
            return nn.functional.cross_entropy(logits, gold, label_smoothing=self.label_smoothing)
        # The article's part of what copying reads: its keys once per article (``rows`` names
        # each position's), the rest a row per title position (the empty title copy_source
        # starts decoding with is replaced by each position's own below).
        keys, *article = self.copy_source(input_ids, hidden, sources)[:-1]
        source = (keys, *(t.index_select(0, rows) for t in article))
        # What each position's title holds so far: the title tokens up to and including it.
        title = ((token_type_ids == 1) & attention_mask.bool()).nonzero()  # (P, 2)
        pairs = ((title[None, :, 0] == at[:, None, 0])
                 & (title[None, :, 1] <= at[:, None, 1])).nonzero()
        held = torch.zeros(len(at), self.lm.config.vocab_size, dtype=torch.bool,
                           device=input_ids.device)
        held[pairs[:, 0], input_ids[title[pairs[:, 1], 0], title[pairs[:, 1], 1]]] = True
        source = (*source, held)
        previous = input_ids[:, :-1][target]
        return -self.copy.gold(states, logits, *source, previous, gold, rows,
                               self.label_smoothing).mean()


# --------------------------------------------------------------------------- step functions


def _with(logits: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
    return logits if prior is None else logits + prior


class CachedStep:
    """The UniLM step function over a key/value cache (a :class:`~zhtext.neural.decoding.StepModel`):
    the contents run through transformers' forward once, each title token through
    :func:`~zhtext.neural.incremental.bert_hidden_step`."""

    def __init__(self, model: UniLM):
        self.model = model
        check_bert(model.lm)

    @torch.no_grad()
    def prefill(self, input_ids: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, StepState]:
        """Run the right-padded contents ``[CLS] content [SEP]`` (B, L) once: the logits of each
        first title token (read at the content's ``[SEP]``) and the cache."""
        lm = self.model.lm
        valid = torch.arange(input_ids.shape[1], device=input_ids.device)[None] < lengths[:, None]
        types = torch.zeros_like(input_ids)
        hidden, cache = prefill(lm.bert, lm.config, input_ids=input_ids, token_type_ids=types,
                                attention_mask=unilm_mask(types, valid, lm.dtype))
        last = hidden[torch.arange(len(lengths), device=hidden.device), lengths - 1]
        # The prior's logits and what copying reads are made once per content and ride along
        # with its sequences.
        prior = self.model.prior_logits(input_ids, lengths)
        source = self.model.copy_source(input_ids, hidden, lengths)
        state = StepState(SplitCache.from_hf(cache, valid), lengths.clone(), prior, source)
        first = input_ids[torch.arange(len(lengths), device=input_ids.device), lengths - 1]
        return self.model.title_scores(last, _with(lm.cls(last).float(), prior), source,
                                       first), state

    def step(self, tokens: torch.Tensor, state: StepState) -> tuple[torch.Tensor, StepState]:
        # The new title token sees every real content token and the whole title so far.
        lm = self.model.lm
        hidden = bert_hidden_step(lm, tokens, state.next_pos, torch.ones_like(tokens), state.cache)
        logits = _with(mlm_head(lm, hidden).float(), state.bias)
        source = self.model.copy_read(state.source, tokens)
        return (self.model.title_scores(hidden, logits, source, tokens),
                replace(state.advanced(), source=source))

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
        ends = torch.arange(rows, device=device), lengths - 1
        last = hidden[:, -1] if target.shape[1] else hidden[ends]
        previous = target[:, -1] if target.shape[1] else source[ends]
        # The prior and the copy keys from each row's own content, every step: the reference for
        # the carried ones.
        logits = _with(self.model.lm.cls(last).float(), self.model.prior_logits(source, lengths))
        read = self.model.copy_read(self.model.copy_source(source, hidden, lengths), target.T)
        return self.model.title_scores(last, logits, read, previous)

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

# Titles decoded together when a caller names no batch size.
DEFAULT_BATCH_SIZE = 16


@dataclass
class TitleTrainConfig(TrainConfig):
    """Training settings of a title model: the shared ones, and how much of each pair is kept.

    ``max_source_len`` content tokens (the head of the article) and ``max_target_len`` title
    tokens; the dev set is titled greedily with up to ``max_target_len`` tokens. ``lr`` defaults
    to 5e-4 from scratch and 2e-5 from a pretrained ``model``. ``prior``: add the title prior
    (:class:`TitlePrior`); ``copy``: add copying from the article (:class:`TitleCopy`). Each is
    on by default from scratch, and as ``model`` has it otherwise (a plain checkpoint has neither).
    ``label_smoothing`` ε: the loss takes ε of its weight from the gold token and spreads it
    evenly over the vocabulary (with copying, over the generated distribution: see
    :meth:`TitleCopy.gold`); 0.1 gave titles from scratch +0.7 to +1.2 ROUGE-L on LCSTS.
    """

    max_source_len: int = 256
    max_target_len: int = 32
    prior: bool | None = None
    copy: bool | None = None
    label_smoothing: float = 0.1

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.max_source_len < 1 or self.max_target_len < 1:
            problems.append("max_source_len and max_target_len must be >= 1")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"label_smoothing must lie in [0, 1), not {self.label_smoothing}")
        return problems




class TitleGenerator(Generator):
    """A UniLM title model: ``TitleGenerator.load(name_or_dir)(texts)`` gives one title per text.

    ``max_source_len`` caps the content tokens (the head is kept); ``max_target_len`` the title
    tokens in training. Build one with :meth:`train`, :meth:`load` or :meth:`from_scratch`.
    Titles are decoded under :attr:`decoding` (beam 3, 1 to 32 tokens, no trigram twice) unless
    a call says otherwise.
    """

    task: ClassVar[str] = TASK
    config_class: ClassVar[type[TrainConfig]] = TitleTrainConfig
    metric: ClassVar[str] = "rouge-l"
    # Beam 3, never empty, and no three tokens twice (the usual guard of summarisers: real titles
    # almost never repeat three characters, and a small model otherwise loops).
    decoding: ClassVar[DecodeConfig] = DecodeConfig(beam=3, max_new_tokens=32, min_new_tokens=1,
                                                    no_repeat_ngram=3)

    def __init__(self, model: UniLM, tokenizer: Any, max_source_len: int = 256,
                 max_target_len: int = 32, device: torch.device | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, meta: dict[str, Any] | None = None):
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
    def load(cls, name_or_dir: str | os.PathLike, *, device: str | None = None,
             batch_size: int | None = None, max_source_len: int | None = None,
             max_target_len: int | None = None, quantize: str | None = None,
             prior: bool | None = None, copy: bool | None = None) -> TitleGenerator:
        """A title model saved by :meth:`save` or :meth:`train` (its settings from
        ``zhtext.json``), or any BERT checkpoint with a masked-LM head (a hub id such as
        ``bert-base-chinese``, or a ``save_pretrained`` folder), whose MLM head becomes the
        title head. ``max_source_len`` and ``max_target_len`` override the saved settings
        (defaults for a plain checkpoint: 256 and 32). The title prior comes as saved (a
        plain checkpoint has none); ``prior=True`` adds a fresh one where there is none (to
        train), ``prior=False`` drops it; ``copy`` likewise for the copy head. ``quantize="int8"``: see
        :meth:`~zhtext.tasks.base.Model.quantize`."""
        from transformers import BertLMHeadModel

        saved = TitleTrainConfig.max_source_len, TitleTrainConfig.max_target_len
        meta = own_task_meta(name_or_dir, TASK)  # {} for a plain (or pretrained MLM) BERT
        if meta:
            try:
                saved = int(meta["max_source_len"]), int(meta["max_target_len"])
            except (KeyError, TypeError, ValueError):
                raise ZhtextError(f"{name_or_dir}/{META_FILE} lacks max_source_len or "
                                  "max_target_len") from None
        # The architecture is checked before any weights are read.
        lm_config = load_config(name_or_dir)
        if lm_config.model_type != "bert":
            raise ZhtextError(f"{name_or_dir} is a {lm_config.model_type} model: titles need a "
                              "BERT with a masked-LM head")
        lm_config.is_decoder = True
        # A title model zhtext saved must hold every weight; a plain BERT may lack a head's.
        lm = load_model(name_or_dir, BertLMHeadModel, config=lm_config, strict=bool(meta))
        tokenizer = load_tokenizer(name_or_dir)
        saved_prior = bool(meta.get("prior", False))  # models saved before the prior have none
        saved_copy = bool(meta.get("copy", False))  # nor those saved before copying
        model = UniLM(lm, prior=saved_prior if prior is None else prior,
                      copy=saved_copy if copy is None else copy)
        folder = Path(name_or_dir).expanduser()
        if saved_prior and model.prior is not None:
            _load_part(model.prior, folder / PRIOR_FILE, "a title prior")
        if saved_copy and model.copy is not None:
            _load_part(model.copy, folder / COPY_FILE, "a copy head")
        gen = cls(model, tokenizer,
                  saved[0] if max_source_len is None else max_source_len,
                  saved[1] if max_target_len is None else max_target_len,
                  device=pick_device(device), batch_size=batch_size or DEFAULT_BATCH_SIZE, meta=meta)
        gen.source = str(name_or_dir)
        return gen.quantize(quantize)

    @classmethod
    def from_scratch(cls, texts: Iterable[str], config: TitleTrainConfig | None = None,
                     **settings: Any) -> TitleGenerator:
        """A small BERT with random weights over a character vocabulary of ``texts``, sized by
        ``config`` (or a :class:`TitleTrainConfig` of ``settings``: ``layers``, ``hidden``,
        ``dropout``, ``max_source_len``, ``batch_size``, ``device``, ...)."""
        config = replace(config, **settings) if config is not None else TitleTrainConfig(**settings)
        lm, tokenizer, meta = scratch_model("bert-lm", texts, config,
                                            config.max_source_len + config.max_target_len + 3)
        model = UniLM(lm, prior=config.prior is not False, copy=config.copy is not False)
        return cls(model, tokenizer, config.max_source_len,
                   config.max_target_len,
                   device=pick_device(config.device), batch_size=config.batch_size, meta=meta)

    # ---------------------------------------------------------------- encoding

    def _ids(self, texts: Sequence[str], limit: int) -> list[list[int]]:
        if not texts:
            return []
        encoded = self.tokenizer(clip_for_tokens(self.tokenizer, texts, limit), add_special_tokens=False,
                                 truncation=True, max_length=limit)["input_ids"]
        return [list(ids) for ids in encoded]

    def source_batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ``[CLS] content [SEP]`` ids (B, L) and their lengths (B,)."""
        rows = [[self.cls_id, *ids, self.sep_id] for ids in self._ids(texts, self.max_source_len)]
        ids, mask = pad(rows, self.pad_id, device=self.device)
        return ids, mask.sum(1)

    def training_rows(self, pairs: Sequence[TitlePair]) -> list[tuple[list[int], int]]:
        """Per pair: ``[CLS] content [SEP] title [SEP]`` ids and the number of content ids."""
        sources = self._ids([p.content for p in pairs], self.max_source_len)
        targets = self._ids([p.title for p in pairs], self.max_target_len)
        return [([self.cls_id, *s, self.sep_id, *t, self.sep_id], len(s) + 2)
                for s, t in zip(sources, targets)]

    def collate(self, rows: Sequence[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
        """A right-padded training batch for :meth:`UniLM.forward`."""
        ids, mask = pad([r[0] for r in rows], self.pad_id, device=self.device)
        positions = torch.arange(ids.shape[1], device=self.device)[None]
        sources = torch.tensor([r[1] for r in rows], device=self.device)[:, None]
        types = ((positions >= sources) & mask.bool()).long()
        return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}

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
        order = length_order([len(t) for t in texts])
        stepper = CachedStep(self.model) if cached else RecomputeStep(self.model)
        if self.model.training:  # (left so by training)
            self.model.eval()
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            ids, lengths = self.source_batch([texts[i] for i in chunk])
            logits, state = stepper.prefill(ids, lengths)
            for i, out in zip(chunk, generate(stepper, logits, state, options, [self.sep_id])):
                results[i] = out
        return results

    def predict(self, texts: list[str], config: DecodeConfig | None = None,
                **overrides: Any) -> list[str]:
        """One title per text, decoded under ``config`` (default :attr:`decoding`: beam 3, at
        most 32 tokens) with ``overrides`` of single fields: ``beam`` (1: greedy), ``sample``
        with ``temperature``, ``top_k``, ``top_p`` and ``seed``, ``max_new_tokens``,
        ``min_new_tokens``, ``length_penalty`` (beam scores divided by length ** it),
        ``repetition_penalty``, ``no_repeat_ngram`` (no n tokens in a row twice in a title)."""
        options = self.decode_config(config, **overrides)
        if options.num_return != 1:
            raise ZhtextError("a title generator gives one title per text (num_return 1); "
                              "generate_ids gives several")
        return [decode_text(self.tokenizer, out[0]) for out in self.generate_ids(texts, options)]

    # ---------------------------------------------------------------- evaluation

    @classmethod
    def read_data(cls, path: str | os.PathLike, config: TrainConfig) -> list[TitlePair]:
        """The (title, content) pairs of a TSV or JSONL file."""
        return read_pairs(path, config.input_format, config.encoding)

    def evaluate(self, data: str | os.PathLike | Iterable[TitlePair],
                 config: DecodeConfig | None = None, **overrides: Any) -> dict[str, float]:
        """Title the contents of ``data`` (a pair file, or pairs) as :meth:`predict` does and
        score them: character ROUGE-1/2/L F1 and BLEU averaged over the pairs, ``count``,
        ``empty`` (titles with nothing but spaces), ``seconds`` spent generating and
        ``articles_per_s``."""
        pairs = self._data(data, TitleTrainConfig())
        if not pairs:
            raise ZhtextError("no (title, content) pairs to evaluate on")
        begin = time.perf_counter()
        titles = self.predict([p.content for p in pairs], config, **overrides)
        seconds = time.perf_counter() - begin
        scores = average_rouge((p.title, t) for p, t in zip(pairs, titles))
        return {**scores, "empty": sum(not t.strip() for t in titles), "seconds": seconds,
                "articles_per_s": len(pairs) / max(seconds, 1e-9)}

    # ---------------------------------------------------------------- save

    def save(self, directory: str | os.PathLike, **meta: Any) -> Path:
        """Save in the Hugging Face layout (``BertLMHeadModel`` + tokenizer) plus ``zhtext.json``
        (``meta`` joins it), the title prior's weights (``title_prior.safetensors``) and the copy
        head's (``title_copy.safetensors``) where the model has them; written to a temporary
        folder first and moved into place, so a save is never torn."""
        from safetensors.torch import save_file

        parts = {PRIOR_FILE: self.model.prior, COPY_FILE: self.model.copy}
        with model_dir_writer(directory) as tmp:
            self.model.lm.save_pretrained(str(tmp))
            self.tokenizer.save_pretrained(str(tmp))
            for file, part in parts.items():
                if part is not None:
                    save_file({k: v.detach().cpu().contiguous()
                               for k, v in part.state_dict().items()}, str(tmp / file))
            self.meta.update(meta)
            save_task_meta(tmp, TASK, self.meta, max_source_len=self.max_source_len,
                           max_target_len=self.max_target_len, prior=self.model.prior is not None,
                           copy=self.model.copy is not None)
        return Path(directory)

    # ---------------------------------------------------------------- training

    @classmethod
    def train(cls, config: TrainConfig) -> TitleGenerator:
        """Train under ``config`` (a :class:`TitleTrainConfig`) and keep the best model by dev
        ROUGE-L (greedy titles) in ``config.output``.

        ``config.model`` names a BERT checkpoint with a masked-LM head (hub id or folder);
        without it a small BERT is built over a character vocabulary of the training pairs.
        Pairs with an empty title or content are left out of training, and dev pairs with an
        empty content out of scoring; ``dev_limit`` scores only the first N.
        """
        config = cls._check_config(config)
        train = [p for p in cls._data(config.train, config) if p.title.strip() and p.content.strip()]
        if not train:
            raise ZhtextError("no training pairs (with a non-empty title and content)")
        dev = [p for p in cls._data(config.dev, config) if p.content.strip()][:config.dev_limit]
        seed_everything(config.seed)  # the initial weights follow the seed
        if config.model is None:
            gen = cls.from_scratch([t for p in train for t in p], config)
            lr = config.lr or 5e-4
        else:
            gen = cls.load(config.model, device=config.device, batch_size=config.batch_size,
                           max_source_len=config.max_source_len,
                           max_target_len=config.max_target_len, prior=config.prior,
                           copy=config.copy)
            gen.meta = {"base_model": str(config.model)}
            lr = config.lr or 2e-5
        rows = gen.training_rows(train)
        gen.model.label_smoothing = config.label_smoothing
        with_prior = gen.model.prior is not None
        with_copy = gen.model.copy is not None

        def evaluate() -> dict[str, float]:
            scores = gen.evaluate(dev, beam=1, max_new_tokens=config.max_target_len)
            return {k: scores[k] for k in ("rouge-1", "rouge-2", "rouge-l")}

        extra = {"vocab": len(gen.tokenizer), "max_source_len": config.max_source_len,
                 "max_target_len": config.max_target_len, "batch_size": config.batch_size,
                 "train_size": len(rows), "prior": with_prior, "copy": with_copy}
        if config.label_smoothing:  # (a run resumed from before the setting existed: pass 0)
            extra["label_smoothing"] = config.label_smoothing
        groups = param_groups(gen.model, lr, config.weight_decay, head=("prior", "copy"),
                              head_lr=max(lr, PRIOR_LR) if with_prior or with_copy else None)
        return cls._fit(gen, gen.model, config, rows, [len(r[0]) for r in rows], gen.collate,
                        evaluate if dev else None, groups=groups, extra_state=extra)


def _load_part(part: nn.Module, path: Path, what: str) -> None:
    """The weights of ``part`` (the prior, the copy head) from ``path``, checked: one line on a
    missing or damaged file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise ZhtextError(f"{path.parent} has no {path.name} though its {META_FILE} says it has "
                          f"{what}: not a complete title model")
    try:
        weights = load_file(str(path))
        missing, unexpected = part.load_state_dict(weights, strict=False)
    except (SafetensorError, RuntimeError, OSError) as exc:  # damaged or misshapen
        raise ZhtextError(f"cannot load {path}: {first_line(exc)}") from None
    # Parameters a part gained after a model was saved take their neutral value.
    later = getattr(part, "ADDED_LATER", {})
    lacking = sorted(set(missing) - set(later))
    if lacking or unexpected:
        found = ([f"it lacks {lacking}"] if lacking else []) + (
            [f"it has unknown {sorted(unexpected)}"] if unexpected else [])
        raise ZhtextError(f"cannot load {path}: {' and '.join(found)}: not {what} of this version")
    with torch.no_grad():
        for name in missing:
            getattr(part, name).fill_(later[name])
    check_weights(weights.items(), f"cannot load {path}")
