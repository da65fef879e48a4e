"""Decoding over a step function with a cache: greedy, sampling and beam search.

UniLM titles and GPT-2 generation share this module. A model only has to say how to take one step
(`StepModel.step`: the new token of every live row in, next-token logits out, its cache updated)
and how to pick rows of its cache (`StepModel.reorder`). Everything else lives here: the logits
processing, the search, dropping finished rows, streaming. Rows never influence each other, so a
prompt's output does not depend on what else is in the batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

import torch

from zhtext.errors import ZhtextError

__all__ = ["DecodeConfig", "StepModel", "generate", "iter_generate", "process_logits", "resolve_decoding"]


@dataclass(frozen=True)
class DecodeConfig:
    """How to choose tokens: one vocabulary for titles and generation (API, CLI and pipe alike).

    The defaults give greedy decoding of up to 32 tokens; each model class keeps its own default
    config (titles: beam 3; GPT-2: sampling with top-k 50) and a call overrides single fields.
    ``sample`` and ``beam`` > 1 exclude each other; ``num_return`` sequences come back per input.
    """

    max_new_tokens: int = 32
    min_new_tokens: int = 0          # EOS is banned until this many tokens exist
    beam: int = 1                    # > 1: beam search (not streamable)
    length_penalty: float = 1.0      # beam score = sum of log-probs / length ** length_penalty
    sample: bool = False
    temperature: float = 1.0
    top_k: int = 0                   # 0: off
    top_p: float = 1.0               # 1.0: off
    repetition_penalty: float = 1.0  # 1.0: off; > 1 makes seen tokens less likely
    no_repeat_ngram: int = 0         # 0: off
    num_return: int = 1              # sequences per input: samples, or the best beams
    seed: int | None = None          # seeds sampling; None uses torch's global generator

    def __post_init__(self) -> None:
        problems = []
        if self.max_new_tokens < 0:
            problems.append("max_new_tokens must be >= 0")
        if not 0 <= self.min_new_tokens <= max(self.max_new_tokens, 0):
            problems.append("min_new_tokens must lie between 0 and max_new_tokens")
        if self.beam < 1:
            problems.append("beam must be >= 1")
        if self.beam > 1 and self.sample:
            problems.append("sampling and beam search do not mix: choose one")
        if self.num_return < 1:
            problems.append("num_return must be >= 1")
        if self.beam > 1 and self.num_return > self.beam:
            problems.append(f"num_return ({self.num_return}) cannot exceed beam ({self.beam})")
        if not self.temperature > 0:
            problems.append("temperature must be > 0")
        if self.top_k < 0:
            problems.append("top_k must be >= 0")
        if not 0 < self.top_p <= 1:
            problems.append("top_p must lie in (0, 1]")
        if not self.repetition_penalty > 0:
            problems.append("repetition_penalty must be > 0")
        if self.no_repeat_ngram < 0:
            problems.append("no_repeat_ngram must be >= 0")
        if problems:
            raise ZhtextError("bad decoding options: " + "; ".join(problems))


_FIELDS = frozenset(f.name for f in fields(DecodeConfig))
# Names of earlier releases (and of transformers), for a hint in the error.
_RENAMED = {"beams": "beam", "num_beams": "beam", "num": "num_return", "do_sample": "sample",
            "max_len": "max_new_tokens", "min_len": "min_new_tokens"}


def resolve_decoding(defaults: DecodeConfig, config: DecodeConfig | None = None,
                     **overrides: Any) -> DecodeConfig:
    """The settings of one call: ``config`` (else a model's ``defaults``) with single fields
    overridden; an override of ``None`` means "not given".

    Sampling and beam search exclude each other, so asking for one switches the other off unless
    it was asked for too (then the config is refused): ``sample=True`` alone over a beam-3
    default samples; ``beam=4`` alone over a sampling default searches. Raises ZhtextError on an
    unknown name (with the new name of an old one) or a bad value.
    """
    if config is not None and not isinstance(config, DecodeConfig):
        raise ZhtextError(f"decoding settings must be a DecodeConfig, not a {type(config).__name__}")
    for name in overrides:
        if name not in _FIELDS:
            hint = f" (now {_RENAMED[name]!r})" if name in _RENAMED else ""
            raise ZhtextError(f"unknown decoding option {name!r}{hint}; the options are "
                              f"{', '.join(sorted(_FIELDS))}")
    given = {k: v for k, v in overrides.items() if v is not None}
    if given.get("sample") and "beam" not in given:
        given["beam"] = 1
    if given.get("beam", 1) > 1 and "sample" not in given:
        given["sample"] = False
    base = config or defaults
    # A shorter cap lowers a default floor with it (a title's 1 token under max_new_tokens=0).
    if "max_new_tokens" in given and "min_new_tokens" not in given:
        given["min_new_tokens"] = min(base.min_new_tokens, max(given["max_new_tokens"], 0))
    return replace(base, **given)


class StepModel(Protocol):
    """A model with a cache, seen one token at a time."""

    def step(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Feed one new token per live row: tokens (M,) -> next-token logits (M, V) and new state."""
        ...

    def reorder(self, state: Any, index: torch.Tensor) -> Any:
        """The state's rows picked by index (M',): rows may repeat, vanish or move."""
        ...


class _Tracker:
    """Per-row token history that the repetition penalty and no-repeat n-gram look at.

    It costs nothing when both are off. The penalty keeps a (rows, vocab) mask of seen tokens;
    the n-gram ban keeps each row's tokens as a list (prefix + output).
    """

    def __init__(self, options: DecodeConfig, history: Sequence[Sequence[int]], vocab: int,
                 device: torch.device):
        self.penalty = options.repetition_penalty
        self.ngram = options.no_repeat_ngram
        self.seen: torch.Tensor | None = None
        self.tokens: list[list[int]] | None = None
        if self.penalty != 1.0:
            self.seen = torch.zeros(len(history), vocab, dtype=torch.bool, device=device)
            for row, ids in enumerate(history):
                ids = [i for i in ids if 0 <= i < vocab]
                if ids:
                    self.seen[row, ids] = True
        if self.ngram > 0:
            self.tokens = [list(ids) for ids in history]

    def reorder(self, index: torch.Tensor) -> None:
        if self.seen is not None:
            self.seen = self.seen[index]
        if self.tokens is not None:
            self.tokens = [list(self.tokens[i]) for i in index.tolist()]

    def push(self, tokens: torch.Tensor) -> None:
        if self.seen is not None:
            self.seen[torch.arange(len(tokens), device=tokens.device), tokens] = True
        if self.tokens is not None:
            for row, tok in zip(self.tokens, tokens.tolist()):
                row.append(tok)

    def banned_ngrams(self) -> list[list[int]]:
        """Per row, the tokens that would complete an n-gram already present."""
        n = self.ngram
        out = []
        for seq in self.tokens or []:
            if len(seq) < n:
                out.append([])
                continue
            tail = seq[len(seq) - n + 1:]
            out.append([seq[i + n - 1] for i in range(len(seq) - n + 1) if seq[i:i + n - 1] == tail])
        return out


def process_logits(logits: torch.Tensor, options: DecodeConfig, produced: int,
                   eos_ids: Sequence[int], tracker: _Tracker | None = None) -> torch.Tensor:
    """The scores tokens are chosen from, in transformers' order.

    First the constraints: repetition penalty, no-repeat n-gram, min length. Then, when
    sampling, the warpers: temperature, top-k, top-p. ``produced`` is how many tokens each row
    has generated so far. Banned tokens get -inf.
    """
    scores = logits.float()
    if tracker is not None and tracker.seen is not None:
        # Sign-correct: dividing a negative logit by p > 1 would *raise* the token's probability.
        p = tracker.penalty
        penalised = torch.where(scores < 0, scores * p, scores / p)
        scores = torch.where(tracker.seen, penalised, scores)
    if tracker is not None and tracker.tokens is not None:
        banned = tracker.banned_ngrams()
        if any(banned):
            scores = scores.clone()
            for row, toks in enumerate(banned):
                if toks:
                    scores[row, toks] = -math.inf
    if produced < options.min_new_tokens and eos_ids:
        scores = scores.clone()
        scores[:, list(eos_ids)] = -math.inf
    if not options.sample:
        return scores
    if options.temperature != 1.0:
        scores = scores / options.temperature
    if 0 < options.top_k < scores.shape[-1]:
        kth = torch.topk(scores, options.top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, -math.inf)
    if options.top_p < 1.0:
        ordered, order = torch.sort(scores, dim=-1, descending=True)
        probs = torch.softmax(ordered, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs
        # Keep the smallest head whose mass reaches top_p; the best token always survives.
        drop_sorted = mass_before >= options.top_p
        drop_sorted[:, 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
        scores = scores.masked_fill(drop, -math.inf)
    return scores


def _check_inputs(logits: torch.Tensor, history: Sequence[Sequence[int]] | None) -> list[list[int]]:
    if logits.dim() != 2:
        raise ZhtextError(f"decoding needs logits of shape (rows, vocab), got {tuple(logits.shape)}")
    rows = logits.shape[0]
    if history is None:
        return [[] for _ in range(rows)]
    if len(history) != rows:
        raise ZhtextError(f"history has {len(history)} rows, logits have {rows}")
    return [list(h) for h in history]


def _expand(model: StepModel, logits: torch.Tensor, state: Any, history: list[list[int]],
            times: int) -> tuple[torch.Tensor, Any, list[list[int]]]:
    """Repeat each row ``times`` times (for several samples, or for beams)."""
    if times == 1:
        return logits, state, history
    index = torch.arange(logits.shape[0], device=logits.device).repeat_interleave(times)
    return logits[index], model.reorder(state, index), [history[i] for i in index.tolist()]


def iter_generate(model: StepModel, logits: torch.Tensor, state: Any, options: DecodeConfig,
                  eos_ids: Sequence[int], history: Sequence[Sequence[int]] | None = None,
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Greedy decoding or sampling, one step at a time.

    ``logits`` (N, V) are the next-token logits after each input's prefix and ``state`` the cache
    after it. Yields ``(rows, tokens)`` per step: ``rows`` index the N * num_return output
    sequences (sequence r belongs to input r // num_return) and ``tokens`` are their new tokens.
    EOS is never yielded; a sequence that emitted EOS or reached max_new_tokens stops appearing,
    and its row leaves the batch.
    """
    if options.beam > 1:
        raise ZhtextError("beam search cannot be streamed; use generate()")
    hist = _check_inputs(logits, history)
    if options.max_new_tokens == 0 or logits.shape[0] == 0:
        return
    logits, state, hist = _expand(model, logits, state, hist, options.num_return)
    device = logits.device
    rows = torch.arange(logits.shape[0], device=device)
    tracker = _Tracker(options, hist, logits.shape[-1], device)
    eos = torch.tensor(sorted(set(eos_ids)), dtype=torch.long, device=device)
    generators = None
    if options.sample and options.seed is not None:
        # One generator per sequence, seeded by the seed and the sample's number, so that what
        # a prompt gets does not depend on the other prompts of its batch.
        generators = [torch.Generator(device=device).manual_seed(
            hash((options.seed, r % options.num_return)) % 2**63) for r in range(len(rows))]
    for produced in range(options.max_new_tokens):
        scores = process_logits(logits, options, produced, eos_ids, tracker)
        if not options.sample:
            tokens = scores.argmax(dim=-1)
        elif generators is None:
            tokens = torch.multinomial(torch.softmax(scores, dim=-1), 1).squeeze(1)
        else:
            probs = torch.softmax(scores, dim=-1)
            tokens = torch.cat([torch.multinomial(probs[r], 1, generator=g)
                                for r, g in enumerate(generators)])
        alive = ~torch.isin(tokens, eos)
        if not bool(alive.all()):
            keep = alive.nonzero().squeeze(1)
            rows, tokens = rows[keep], tokens[keep]
            state = model.reorder(state, keep)
            tracker.reorder(keep)
            if generators is not None:
                generators = [generators[i] for i in keep.tolist()]
        if rows.numel() == 0:
            return
        yield rows, tokens
        if produced + 1 == options.max_new_tokens:
            return
        tracker.push(tokens)
        logits, state = model.step(tokens, state)


def _beam_search(model: StepModel, logits: torch.Tensor, state: Any, options: DecodeConfig,
                 eos_ids: Sequence[int], history: list[list[int]]) -> list[list[list[int]]]:
    """Batched beam search; inputs whose search is settled leave the batch."""
    n_inputs, vocab = logits.shape
    k = options.beam
    device = logits.device
    eos = set(eos_ids)
    lp = options.length_penalty
    logits, state, hist = _expand(model, logits, state, history, k)
    tracker = _Tracker(options, hist, vocab, device)
    # Only the first copy of each input starts alive, so step one does not pick k equal beams.
    running = torch.full((n_inputs, k), -math.inf, device=device)
    running[:, 0] = 0.0
    sequences: list[list[int]] = [[] for _ in range(n_inputs * k)]
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n_inputs)]
    active = list(range(n_inputs))  # inputs still searching, in row-block order

    def settled(i: int, best_running: float, length: int) -> bool:
        hyps = finished[i]
        if len(hyps) < k:
            return False
        # transformers' heuristic: the best running beam, scored at today's length, cannot win.
        worst = min(score for score, _ in hyps)
        return best_running / (length ** lp) <= worst

    for produced in range(options.max_new_tokens):
        logp = torch.log_softmax(process_logits(logits, options, produced, eos_ids, tracker), dim=-1)
        total = (running.reshape(-1, 1) + logp).reshape(len(active), k * vocab)
        top_scores, top_index = torch.topk(total, min(2 * k, k * vocab), dim=1)
        top_scores_l, top_index_l = top_scores.tolist(), top_index.tolist()
        pick_rows: list[int] = []
        pick_tokens: list[int] = []
        pick_scores: list[float] = []
        still: list[int] = []
        length = produced + 1
        for a, i in enumerate(active):
            chosen: list[tuple[int, int, float]] = []
            for score, flat in zip(top_scores_l[a], top_index_l[a]):
                if score == -math.inf:
                    break
                beam, token = divmod(flat, vocab)
                row = a * k + beam
                if token in eos:
                    finished[i].append((score / (length ** lp), list(sequences[row])))
                else:
                    chosen.append((row, token, score))
                if len(chosen) == k:
                    break
            last = produced + 1 == options.max_new_tokens
            if not chosen or last or settled(i, chosen[0][2], length):
                if not last or not chosen:
                    continue
                for row, token, score in chosen:
                    finished[i].append((score / (length ** lp), sequences[row] + [token]))
                continue
            while len(chosen) < k:  # too few live candidates: pad with dead copies
                chosen.append((chosen[0][0], chosen[0][1], -math.inf))
            still.append(i)
            for row, token, score in chosen:
                pick_rows.append(row)
                pick_tokens.append(token)
                pick_scores.append(score)
        if not still:
            break
        index = torch.tensor(pick_rows, dtype=torch.long, device=device)
        tokens = torch.tensor(pick_tokens, dtype=torch.long, device=device)
        sequences = [sequences[r] + [t] for r, t in zip(pick_rows, pick_tokens)]
        running = torch.tensor(pick_scores, device=device).reshape(len(still), k)
        active = still
        state = model.reorder(state, index)
        tracker.reorder(index)
        tracker.push(tokens)
        logits, state = model.step(tokens, state)

    results = []
    for hyps in finished:
        hyps.sort(key=lambda h: -h[0])
        results.append([seq for _, seq in hyps[:options.num_return]])
    return results


def generate(model: StepModel, logits: torch.Tensor, state: Any, options: DecodeConfig,
             eos_ids: Sequence[int], history: Sequence[Sequence[int]] | None = None,
             ) -> list[list[list[int]]]:
    """Decode every input: per input, ``num_return`` lists of new token ids (EOS excluded).

    ``logits`` (N, V) follow each input's prefix and ``state`` is the cache after it;
    ``history`` gives each input's prefix ids for the repetition penalty and the n-gram ban.
    Beam search returns the best sequences first. Greedy and sampling collect `iter_generate`,
    so streamed and non-streamed output are the same.
    """
    hist = _check_inputs(logits, history)
    n = logits.shape[0]
    if options.max_new_tokens == 0 or n == 0:
        return [[[] for _ in range(options.num_return)] for _ in range(n)]
    if options.beam > 1:
        return _beam_search(model, logits, state, options, eos_ids, hist)
    out: list[list[int]] = [[] for _ in range(n * options.num_return)]
    for rows, tokens in iter_generate(model, logits, state, options, eos_ids, hist):
        for r, t in zip(rows.tolist(), tokens.tolist()):
            out[r].append(t)
    r = options.num_return
    return [out[i * r:(i + 1) * r] for i in range(n)]
