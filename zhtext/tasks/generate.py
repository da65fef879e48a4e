"""GPT-2 text generation: any GPT-2 checkpoint, with a BERT character tokenizer or its own BPE.

Chinese GPT-2s in the uer style (``uer/gpt2-chinese-cluecorpussmall``) pair ``GPT2LMHeadModel``
with a BERT tokenizer. Three things follow, and zhtext handles each:

- a prompt starts with ``[CLS]`` (the model was trained on ``[CLS] text [SEP]``), and no
  ``token_type_ids`` are passed (GPT-2 would add the *token* embedding of type 0, i.e. ``[PAD]``);
- ``[SEP]`` ends the text, while the config's ``eos_token_id`` (50256, GPT-2's) lies outside the
  21,128-token vocabulary: an eos id outside the vocabulary is ignored;
- the tokenizer decodes with a space between every pair of tokens: spaces that touch a wide
  (CJK) character are dropped, spaces between Latin words stay.

Decoding is :mod:`zhtext.neural.decoding`'s; this module supplies the step function
(:class:`GPTStep`), which always keeps a key/value cache (a transformers ``DynamicCache``).
Prompts in a batch are padded on the left, and every row carries its own attention mask and
position ids (``cumsum(mask) - 1``, as transformers' ``generate()`` does), so a prompt's
continuation does not depend on the other prompts of its batch. Training (:class:`GPTTrainConfig`)
packs raw text into blocks (:mod:`zhtext.neural.lmdata`) and runs the shared trainer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch

from zhtext.errors import ZhtextError
from zhtext.neural.batching import length_order, pad
from zhtext.neural.decoding import DecodeConfig, generate, iter_generate
from zhtext.neural.hub import load_model, load_tokenizer, pick_device
from zhtext.neural.incremental import SplitCache, StepState, gpt2_step, prefill, prepare_gpt2
from zhtext.neural.lmdata import heldout_problems, pack_blocks, read_texts, split_heldout
from zhtext.neural.modeldir import (
    META_FILE,
    load_task_meta,
    model_dir_writer,
    save_task_meta,
)
from zhtext.neural.scratch import scratch_model
from zhtext.neural.tokens import clip_for_tokens, decode_text
from zhtext.neural.trainer import TrainConfig, param_groups, seed_everything
from zhtext.tasks.base import Generator

__all__ = ["GPTStep", "GPTTrainConfig", "Piece", "TextGenerator"]

TASK = "gpt"

# Prompt tokens decoded with the continuation, so its first piece joins the prompt correctly
# (a space before a Latin word, none before a Chinese character, a split UTF-8 byte completed).
_CONTEXT_TOKENS = 4


# --------------------------------------------------------------------------- the step function


class GPTStep:
    """A ``GPT2LMHeadModel`` seen one token at a time (a :class:`~zhtext.neural.decoding.StepModel`):
    the prompts run through transformers' forward once, each new token through
    :func:`~zhtext.neural.incremental.gpt2_step`."""

    def __init__(self, lm: torch.nn.Module):
        self.lm = lm
        prepare_gpt2(lm)

    @torch.no_grad()
    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                ) -> tuple[torch.Tensor, StepState]:
        """Run left-padded prompts (B, T) once: each prompt's next-token logits (B, V) and the cache."""
        mask = attention_mask.long()
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        padded = not bool(mask.all())
        hidden, cache = prefill(self.lm.transformer, self.lm.config, input_ids=input_ids,
                                attention_mask=mask if padded else None, position_ids=positions)
        # The vocabulary projection only at the last position: it is the costliest matrix.
        logits = self.lm.lm_head(hidden[:, -1]).float()
        return logits, StepState(SplitCache.from_hf(cache, mask.bool()), positions[:, -1] + 1)

    def step(self, tokens: torch.Tensor, state: StepState) -> tuple[torch.Tensor, StepState]:
        logits = gpt2_step(self.lm, tokens, state.next_pos, state.cache)
        return logits.float(), state.advanced()

    def reorder(self, state: StepState, index: torch.Tensor) -> StepState:
        return state.reordered(index)


# --------------------------------------------------------------------------- streaming text


@dataclass(frozen=True)
class Piece:
    """A piece of streamed text: of prompt ``prompt``'s sample ``sample``; ``last`` ends it."""

    prompt: int
    sample: int
    text: str
    last: bool


class _Detokenizer:
    """One row's continuation as text, growing a token at a time; emits only a stable suffix.

    Held back until the next token: a trailing U+FFFD (an incomplete UTF-8 character of a
    byte-level BPE) and, for BERT tokenizers, trailing spaces (dropped if a Chinese character
    follows). A ``##`` piece only extends the text, so what was emitted stays a prefix."""

    def __init__(self, text_of: Callable[[list[int]], str], context: list[int], hold_spaces: bool):
        self.text_of = text_of
        self.context = context
        self.base = text_of(context)
        self.hold_spaces = hold_spaces
        self.ids: list[int] = []
        self.emitted = ""

    def text(self) -> str:
        full = self.text_of(self.context + self.ids)
        return full[len(self.base):] if full.startswith(self.base) else self.text_of(self.ids)

    def _emit(self, text: str) -> str:
        if not text.startswith(self.emitted):
            return ""  # not stable yet: wait for more tokens
        new, self.emitted = text[len(self.emitted):], text
        return new

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.text().rstrip("\ufffd")
        return self._emit(text.rstrip() if self.hold_spaces else text)

    def finish(self) -> str:
        return self._emit(self.text())


class _InOrder:
    """Puts the streamed text of a batch's sequences in order: the sequence being shown passes
    straight through, later ones wait in a buffer until every sequence before them has ended."""

    def __init__(self, start: int, num: int, n: int):
        self.start, self.num = start, num
        self.pending = [""] * n
        self.done = [False] * n
        self.current = 0

    def add(self, row: int, text: str, last: bool = False) -> None:
        self.pending[row] += text
        self.done[row] = self.done[row] or last

    def ready(self) -> Iterator[Piece]:
        while self.current < len(self.pending):
            row = self.current
            if not (self.pending[row] or self.done[row]):
                return
            yield Piece(self.start + row // self.num, row % self.num, self.pending[row],
                        self.done[row])
            self.pending[row] = ""
            if not self.done[row]:
                return
            self.current += 1


# --------------------------------------------------------------------------- training settings


@dataclass
class GPTTrainConfig(TrainConfig):
    """:class:`~zhtext.neural.trainer.TrainConfig` for causal-LM training on raw text.

    ``train`` and ``dev``: a text file (one document per non-empty line), several files (a list
    of :class:`~pathlib.Path`), or the texts themselves (a list of strings). The documents are
    packed into blocks of ``block_size`` tokens (from scratch: also the model's positions).
    ``heldout_every`` N > 1 holds out every N-th training line as the dev text instead (both then
    cover the whole corpus). ``lr`` defaults to 1e-3 from scratch and 5e-5 from a pretrained
    ``model``.
    """

    block_size: int = 128
    epochs: int = 1
    heldout_every: int | None = None

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.block_size < 2:
            problems.append("block_size must be at least 2 (a token and the one after it)")
        problems += heldout_problems(self.heldout_every, self.dev)
        return problems


# --------------------------------------------------------------------------- the generator


def _is_bert_style(tokenizer: Any) -> bool:
    return getattr(tokenizer, "cls_token_id", None) is not None and \
        getattr(tokenizer, "sep_token_id", None) is not None


def _ids_in_vocab(value: Any, vocab: int) -> list[int]:
    values = value if isinstance(value, (list, tuple)) else [value]
    return [int(v) for v in values if isinstance(v, int) and 0 <= v < vocab]


# Keywords of the earlier generate() API, and the DecodeConfig fields that replaced them.


class TextGenerator(Generator):
    """A GPT-2 and its tokenizer: ``TextGenerator.load(name_or_dir)("林黛玉")``.

    ``model(prompt)`` continues one prompt, ``model([prompts])`` several (:meth:`predict`);
    :meth:`generate` gives several continuations per prompt, :meth:`stream` the text as it is
    generated, :meth:`evaluate` the perplexity of texts. Decoding follows :attr:`decoding`
    (sampling with top-k 50, up to 64 new tokens) unless a call passes a
    :class:`~zhtext.neural.decoding.DecodeConfig` or overrides single fields by name
    (``sample=False`` is greedy, ``beam=4`` beam search, ``num_return=3`` samples per prompt).
    ``batch_size`` prompts are decoded together. Build one with :meth:`load`, :meth:`from_scratch`
    or :meth:`train`.
    """

    task: ClassVar[str] = TASK
    config_class: ClassVar[type[TrainConfig]] = GPTTrainConfig
    metric: ClassVar[str] = "ppl"
    lower_is_better: ClassVar[bool] = True
    network: ClassVar[str] = "lm"
    decoding: ClassVar[DecodeConfig] = DecodeConfig(sample=True, top_k=50, max_new_tokens=64)

    def __init__(self, lm: torch.nn.Module, tokenizer: Any, device: torch.device | str | None = None,
                 batch_size: int = 8, meta: dict[str, Any] | None = None):
        from transformers import GPT2LMHeadModel

        if not isinstance(lm, GPT2LMHeadModel):
            raise ZhtextError(f"not a GPT-2 language model ({type(lm).__name__}); zhtext generate "
                              "needs model_type 'gpt2'")
        if batch_size < 1:
            raise ZhtextError("batch_size must be at least 1")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.lm = lm.to(self.device).eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.meta = dict(meta or {})
        self.history: list[dict[str, Any]] = []
        config = lm.config
        vocab = int(config.vocab_size)
        self.max_positions = int(config.n_positions)
        self.bert_style = _is_bert_style(tokenizer)
        if self.bert_style:
            # uer checkpoints: [SEP] ends the text; the config's eos (GPT-2's 50256) is not a token.
            self.bos_id: int | None = int(tokenizer.cls_token_id)
            self.eos_ids = [int(tokenizer.sep_token_id)]
        else:
            starts = _ids_in_vocab(config.bos_token_id, vocab) + \
                _ids_in_vocab(tokenizer.bos_token_id, vocab) + _ids_in_vocab(tokenizer.eos_token_id, vocab)
            self.bos_id = starts[0] if starts else None
            self.eos_ids = sorted(set(_ids_in_vocab(config.eos_token_id, vocab)
                                      + _ids_in_vocab(tokenizer.eos_token_id, vocab)))
        pad_id = tokenizer.pad_token_id
        self.pad_id = int(pad_id) if pad_id is not None and 0 <= pad_id < vocab else 0  # masked anyway

    # ---------------------------------------------------------------- building

    @classmethod
    def load(cls, name_or_dir: str | os.PathLike, *, device: str | None = None,
             batch_size: int | None = None, quantize: str | None = None) -> TextGenerator:
        """Load any GPT-2 checkpoint by hub id (``uer/gpt2-chinese-cluecorpussmall``, ``gpt2``) or
        local ``save_pretrained`` directory (a model from :meth:`train` included), with its
        tokenizer: a BERT tokenizer (uer style) or GPT-2's byte-level BPE. ``batch_size``
        (default 8): prompts decoded together; ``quantize="int8"``: see
        :meth:`~zhtext.tasks.base.Model.quantize`."""
        from transformers import AutoModelForCausalLM

        meta: dict[str, Any] = {}
        if (Path(name_or_dir) / META_FILE).is_file():
            meta = load_task_meta(name_or_dir, TASK)
        tokenizer = load_tokenizer(name_or_dir)
        # A model zhtext saved must hold every weight (transformers would draw a missing one).
        lm = load_model(name_or_dir, AutoModelForCausalLM, strict=bool(meta))
        gen = cls(lm, tokenizer, pick_device(device), batch_size or 8, meta)
        gen.source = str(name_or_dir)
        return gen.quantize(quantize)

    @classmethod
    def from_scratch(cls, texts: Sequence[str], config: GPTTrainConfig | None = None, *,
                     device: torch.device | str | None = None, batch_size: int = 8,
                     **sizes: Any) -> TextGenerator:
        """A small GPT-2 with random weights over a character vocabulary of ``texts`` (a BERT-style
        character tokenizer, so prompts and ends work as in uer checkpoints). Its size comes from
        ``config`` (``layers``, ``hidden``, ``heads``, ``dropout``, ``min_char_count``,
        ``max_vocab``; ``block_size`` positions), with ``sizes`` overriding single fields
        (``from_scratch(texts, layers=2, hidden=64)``). Seed torch first for repeatable weights."""
        config = replace(config, **sizes) if config is not None else GPTTrainConfig(**sizes)
        lm, tokenizer, meta = scratch_model("gpt2", texts, config, max_position=config.block_size)
        return cls(lm, tokenizer, device=device, batch_size=batch_size, meta=meta)

    # ---------------------------------------------------------------- text <-> ids

    def documents(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of whole texts as the model is trained on them: ``[CLS] text [SEP]`` for a BERT
        tokenizer, ``bos text eos`` for BPE (where those exist)."""
        starts = [self.bos_id] if self.bos_id is not None else []
        ends = self.eos_ids[:1]
        return [starts + ids + ends for ids in self._encode(texts)]

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return [list(ids) for ids in
                self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]]

    def cap_new_tokens(self, options: DecodeConfig) -> DecodeConfig:
        """``options`` with max_new_tokens capped so that a prompt keeps at least half the model's
        positions (there are no positions beyond them). The cap is the same for every prompt, so a
        continuation never depends on the rest of its batch."""
        most = self.max_positions - max(self.max_positions - options.max_new_tokens,
                                        self.max_positions // 2)
        if options.max_new_tokens <= most:
            return options
        return replace(options, max_new_tokens=most,
                       min_new_tokens=min(options.min_new_tokens, most))

    def prompt_ids(self, prompts: Sequence[str], max_new_tokens: int) -> list[list[int]]:
        """Each prompt's ids: ``[CLS]`` first for a BERT tokenizer (bos for BPE when the prompt is
        empty); the head is dropped when prompt and continuation would not fit the positions (a
        long prompt's tail alone is tokenized: :func:`~zhtext.neural.tokens.clip_for_tokens`)."""
        room = self.max_positions - max_new_tokens
        if room < 1:
            raise ZhtextError(f"max_new_tokens {max_new_tokens} leaves no room for a prompt in the "
                              f"model's {self.max_positions} positions")
        rows = []
        for ids in self._encode(clip_for_tokens(self.tokenizer, prompts, room, keep="tail")):
            if self.bert_style:
                ids = [self.bos_id, *ids]
            elif not ids:
                if self.bos_id is None:
                    raise ZhtextError("empty prompt, and the model has no start token to begin from")
                ids = [self.bos_id]
            if len(ids) > room:
                # Keep the tail (what the continuation follows) and a BERT prompt's [CLS].
                head = ids[:1] if self.bert_style else []
                ids = head + ids[len(ids) - room + len(head):]
            rows.append(ids)
        return rows

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids: special tokens dropped; for BERT tokenizers ``##`` pieces joined and
        no spaces around Chinese characters (spaces between Latin words kept)."""
        return decode_text(self.tokenizer, ids, self.bert_style)

    def continuation(self, prompt: Sequence[int], ids: Sequence[int]) -> str:
        """Text of ``ids`` as it continues ``prompt`` (so the two concatenate correctly)."""
        detok = _Detokenizer(self.decode, list(prompt[-_CONTEXT_TOKENS:]), False)
        detok.ids = list(ids)
        return detok.text()

    # ---------------------------------------------------------------- generation

    def _batches(self, stepper: GPTStep, prompts: Sequence[str], options: DecodeConfig
                 ) -> Iterator[tuple[int, list[list[int]], torch.Tensor, StepState]]:
        """Per batch of prompts: the first prompt's index, the prompts' ids, logits and cache."""
        for start in range(0, len(prompts), self.batch_size):
            rows = self.prompt_ids(prompts[start:start + self.batch_size], options.max_new_tokens)
            logits, state = stepper.prefill(*pad(rows, self.pad_id, left=True, device=self.device))
            yield start, rows, logits, state

    def _history(self, rows: list[list[int]]) -> list[list[int]]:
        # What the repetition penalty and n-gram ban look at: the prompt's text tokens.
        return [[t for t in row if t != self.bos_id] for row in rows]

    def generate_ids(self, prompts: Sequence[str], options: DecodeConfig
                     ) -> list[tuple[list[int], list[list[int]]]]:
        """Per prompt: its ids, and ``options.num_return`` lists of new token ids (the end token
        excluded; beam search: the best first)."""
        options = self.cap_new_tokens(options)
        results: list[tuple[list[int], list[list[int]]]] = []
        stepper = GPTStep(self.lm)
        for _, rows, logits, state in self._batches(stepper, prompts, options):
            outs = generate(stepper, logits, state, options, self.eos_ids, self._history(rows))
            results.extend(zip(rows, outs))
        return results

    def predict(self, prompts: Sequence[str], config: DecodeConfig | None = None,
                **overrides: Any) -> list[str]:
        """The continuation of each prompt (beam search: the best one). ``config`` and
        ``overrides`` as :meth:`decoding`; ``num_return`` is 1 here (see :meth:`generate`)."""
        options = self.decode_config(config, **{**overrides, "num_return": 1})
        return [texts[0] for texts in self.generate(_as_list(prompts), options)]

    def generate(self, prompts: str | Sequence[str], config: DecodeConfig | None = None,
                 **overrides: Any) -> list[list[str]] | list[str]:
        """``num_return`` continuations of each prompt (beam search: the best first): a list per
        prompt, or for one prompt given as a ``str`` its list. ``config`` and ``overrides`` as
        :meth:`decoding`."""
        options = self.decode_config(config, **overrides)
        out = [[self.continuation(row, seq) for seq in seqs]
               for row, seqs in self.generate_ids(_as_list(prompts), options)]
        return out[0] if isinstance(prompts, str) else out

    def stream(self, prompts: str | Sequence[str], config: DecodeConfig | None = None,
               **overrides: Any) -> Iterator[Piece]:
        """Continuations as they are generated, as :class:`Piece` s in order: all of prompt 0's
        sample 0, then its sample 1, ..., each ending with a ``last`` piece. The sequence being
        shown streams token by token; the others are buffered until their turn. The pieces of a
        sequence join to exactly what :meth:`generate` returns. Beam search cannot stream."""
        texts = _as_list(prompts)
        opts = self.cap_new_tokens(self.decode_config(config, **overrides))
        if opts.beam > 1:
            raise ZhtextError("beam search cannot be streamed: use generate() (--no-stream)")
        num = opts.num_return
        stepper = GPTStep(self.lm)
        for start, rows, logits, state in self._batches(stepper, texts, opts):
            n = len(rows) * num
            detok = [_Detokenizer(self.decode, rows[r // num][-_CONTEXT_TOKENS:], self.bert_style)
                     for r in range(n)]
            order = _InOrder(start, num, n)
            alive = set(range(n))
            for live, tokens in iter_generate(stepper, logits, state, opts, self.eos_ids,
                                              self._history(rows)):
                now = live.tolist()
                for r in alive.difference(now):  # ended with EOS at this step
                    order.add(r, detok[r].finish(), last=True)
                alive = set(now)
                for r, t in zip(now, tokens.tolist()):
                    order.add(r, detok[r].push(t))
                yield from order.ready()
            for r in range(n):  # reached max_new_tokens (or never started)
                if not order.done[r]:
                    order.add(r, detok[r].finish(), last=True)
            yield from order.ready()

    # ---------------------------------------------------------------- perplexity

    @classmethod
    def read_data(cls, path: str | os.PathLike, config: TrainConfig) -> list[str]:
        """The non-empty lines of a text file, each one document."""
        return read_texts(path, config.encoding)

    @classmethod
    def _data(cls, source: Any, config: TrainConfig) -> list[str]:
        return _texts(source, config.encoding)

    @torch.no_grad()
    def evaluate(self, data: str | os.PathLike | Sequence[str], *, batch_size: int | None = None,
                 encoding: str | None = None) -> dict[str, Any]:
        """Perplexity of texts, each as a whole document (``[CLS] text [SEP]``: every token after
        the first is predicted, the end token included), over all texts together. ``data``: the
        texts, a text file (one document per non-empty line) or several (a list of Paths).

        Returns ``ppl`` (per token), ``bits_per_char`` (total bits over the non-space characters of
        the texts, comparable with the lexicon's bits per character), ``nll`` (nats), ``tokens``
        and ``chars``. A document longer than the model's positions is scored in windows that
        overlap by half, each token once, with at least half a window of context."""
        texts = _texts(data, encoding)
        docs = [d for d in self.documents([t for t in texts if t.strip()]) if len(d) > 1]
        if not docs:
            raise ZhtextError("no text to score")
        windows = []  # (ids, first scored target position)
        span = self.max_positions
        stride = max(1, span // 2)
        for doc in docs:
            begin, scored_to = 0, 1
            while True:
                end = min(begin + span, len(doc))
                windows.append((doc[begin:end], scored_to - begin))
                if end == len(doc):
                    break
                begin, scored_to = begin + stride, end
        windows = [windows[i] for i in length_order([len(ids) for ids, _ in windows])]
        nll, count = 0.0, 0
        size = batch_size or self.batch_size
        for start in range(0, len(windows), size):
            chunk = windows[start:start + size]
            ids, mask = pad([row for row, _ in chunk], self.pad_id, device=self.device)
            first = torch.tensor([f for _, f in chunk], device=self.device)
            positions = torch.arange(ids.shape[1], device=self.device)
            target = mask.bool() & (positions[None] >= first[:, None])
            hidden = self.lm.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
            # Position t - 1 predicts target t; project only the positions that are scored.
            states = hidden[:, :-1][target[:, 1:]]
            gold = ids[:, 1:][target[:, 1:]]
            for part in range(0, len(gold), 4096):
                logits = self.lm.lm_head(states[part:part + 4096]).float()
                nll += float(torch.nn.functional.cross_entropy(logits, gold[part:part + 4096],
                                                               reduction="sum"))
            count += int(gold.numel())
        chars = sum(len("".join(t.split())) for t in texts)
        return {"ppl": math.exp(nll / count), "bits_per_char": nll / math.log(2) / max(chars, 1),
                "nll": nll, "tokens": count, "chars": chars}

    # ---------------------------------------------------------------- save / train

    def save(self, directory: str | os.PathLike, **meta: Any) -> Path:
        """Save in the Hugging Face layout (``GPT2LMHeadModel`` + tokenizer) plus ``zhtext.json``
        (``meta`` joins it); written to a temporary folder first and moved into place, so a save
        is never torn."""
        with model_dir_writer(directory) as tmp:
            self.lm.save_pretrained(str(tmp))
            self.tokenizer.save_pretrained(str(tmp))
            self.meta.update(meta)
            save_task_meta(tmp, TASK, self.meta)
        return Path(directory)

    @classmethod
    def train(cls, config: TrainConfig) -> TextGenerator:
        """Causal-LM training on raw text (:class:`GPTTrainConfig`), the best model kept in
        ``config.output`` and returned.

        ``config.model`` names a GPT-2 checkpoint to continue from (hub id or directory); without
        it a small GPT-2 (``layers``, ``hidden``, ``heads``, positions = ``block_size``) is built
        over a character vocabulary of the training text. Documents are packed into blocks of
        ``block_size`` tokens. With ``dev`` texts the model with the lowest dev perplexity is
        kept; ``resume`` continues from ``output/checkpoint``.
        """
        config = cls._check_config(config)
        texts = cls._data(config.train, config)
        dev = cls._data(config.dev, config)
        if config.dev is not None and not dev:
            raise ZhtextError("the dev text has no non-empty lines")
        if config.heldout_every is not None:
            texts, dev = split_heldout(texts, config.heldout_every)
        dev = dev[:config.dev_limit]
        seed_everything(config.seed)  # before the weights are drawn
        if config.model is None:
            gen = cls.from_scratch(texts, config, device=pick_device(config.device),
                                   batch_size=config.batch_size)
            lr = config.lr or 1e-3
        else:
            gen = cls.load(config.model, device=config.device, batch_size=config.batch_size)
            if config.block_size > gen.max_positions:
                raise ZhtextError(f"block_size {config.block_size} exceeds the model's "
                                  f"{gen.max_positions} positions")
            gen.meta["base_model"] = str(config.model)
            lr = config.lr or 5e-5
        gen.meta["block_size"] = config.block_size
        gen.lm.loss_type = "ForCausalLM"  # what GPT2LMHeadModel computes; saying so keeps it quiet
        blocks = torch.from_numpy(pack_blocks(texts, gen.documents, config.block_size))

        def collate(rows: list[torch.Tensor]) -> dict[str, torch.Tensor]:
            ids = torch.stack(rows).to(gen.device)
            return {"input_ids": ids, "labels": ids}

        def evaluate() -> dict[str, float]:
            scores = gen.evaluate(dev)
            return {"ppl": scores["ppl"], "bits_per_char": scores["bits_per_char"]}

        extra = {"vocab": len(gen.tokenizer), "block_size": config.block_size,
                 "batch_size": config.batch_size, "blocks": len(blocks)}
        return cls._fit(gen, gen.lm, config, blocks, [config.block_size] * len(blocks), collate,
                        evaluate if dev else None,
                        groups=param_groups(gen.lm, lr, config.weight_decay), extra_state=extra)


def _as_list(prompts: str | Sequence[str]) -> list[str]:
    return [prompts] if isinstance(prompts, str) else list(prompts)


def _texts(source: Any, encoding: str | None) -> list[str]:
    """Texts from a file, several files (a list of Paths) or memory (a list of strings)."""
    if source is None:
        return []
    files = isinstance(source, (list, tuple)) and bool(source) and \
        all(isinstance(s, os.PathLike) for s in source)
    if files or isinstance(source, (str, os.PathLike)):
        return read_texts(source, encoding)
    return list(source)
