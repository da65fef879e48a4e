"""BERT+CRF sequence tagger: named entities, or words (BMES) for segmentation-as-tagging.

Any Hugging Face encoder (a hub id such as ``bert-base-chinese``, or a local ``save_pretrained``
directory; a small BERT built from scratch for tests and CPU budgets) gives one vector per
character; dropout and a linear layer turn it into emission scores; a :class:`~zhtext.crf.CRF` with
the label scheme's constraints scores whole tag paths, and the Numba Viterbi decodes them.

Characters, not word pieces: every character of the text gets exactly one position (mapped
through the tokenizer's vocabulary; unknown ones, emoji and astral characters included, become
``[UNK]``, whitespace an unused token), so a span's offsets index the original string directly.

Long texts: the encoder sees windows of ``max_len - 2`` characters that overlap by half a window;
each position takes its emission scores from the window in which it is most central, and the CRF
then decodes the whole text at once. Decoding the stitched emissions (rather than decoding each
window and merging tags) always yields one path that obeys the scheme, so no entity is cut or
duplicated at a window seam.

Span scores are exact marginal probabilities: the probability, under the CRF, that the text's tag
path labels exactly that span (its tags, and for BIO no continuation after it), read off the
forward-backward variables (a Numba kernel, linear in the text length). An n-best candidate's
``prob`` is the probability of its whole tag path.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from zhtext.neural.crf import CRF
from zhtext.errors import ZhtextError
from zhtext.labels.marginals import PathScorer, forward_backward
from zhtext.eval.metrics import PRF, SegScore, entity_scores, score_segmentation
from zhtext.neural.scratch import build_char_vocab, char_tokenizer, small_bert_config
from zhtext.neural.hub import load_model, load_tokenizer, pick_device
from zhtext.neural.modeldir import (
    load_task_meta,
    model_dir_writer,
    save_task_meta,
    update_task_meta,
)
from zhtext.labels.formats import WORD, Example, read_examples, to_spans, to_tags, words_of
from zhtext.neural.trainer import TrainConfig, param_groups, seed_everything, Trainer
from zhtext.neural.batching import bucketed_batches

__all__ = ["Candidate", "Span", "Tagger", "evaluate_tagger", "tag_names"]

TASK = "tagger"
HEAD_FILE = "tagger_head.safetensors"
# Sentence-final punctuation: preferred places to cut a long training text.
_CUT_AFTER = frozenset("。！？；!?;\n")


class Span(NamedTuple):
    """A labelled span of a text: ``text[start:end] == span.text``; ``score`` in [0, 1]."""

    start: int
    end: int
    label: str
    text: str
    score: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (score rounded to 6 digits)."""
        return {"start": self.start, "end": self.end, "label": self.label, "text": self.text,
                "score": round(self.score, 6)}


class Candidate(NamedTuple):
    """One of the n best taggings of a text: its spans and the probability of its tag path."""

    spans: list[Span]
    prob: float


def tag_names(labels: Sequence[str], scheme: str) -> list[str]:
    """The CRF's tag set for entity ``labels`` in ``scheme``: ``O`` first, then each label's tags."""
    if scheme == "BMES":
        return ["B", "M", "E", "S"]
    prefixes = {"BIO": "BI", "BIOES": "BIES"}.get(scheme)
    if prefixes is None:
        raise ZhtextError(f"unknown tag scheme {scheme!r}; choose BIO, BIOES or BMES")
    return ["O"] + [f"{p}-{label}" for label in labels for p in prefixes]


# --------------------------------------------------------------------------- characters and windows


class CharIds:
    """Maps each character to one vocabulary id, so character offsets survive tokenisation.

    Tries the character itself, then its lower case and NFKC forms (full-width letters, as BERT's
    uncased vocabularies hold them); whitespace becomes ``[unused1]`` where the vocabulary has it;
    anything else ``[UNK]``.
    """

    def __init__(self, tokenizer: Any):
        self.vocab: dict[str, int] = dict(tokenizer.get_vocab())
        self.unk = int(tokenizer.unk_token_id)
        self.cls = int(tokenizer.cls_token_id)
        self.sep = int(tokenizer.sep_token_id)
        self.pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.space = self.vocab.get("[unused1]", self.unk)
        self._cache: dict[str, int] = {}

    def _lookup(self, ch: str) -> int:
        import unicodedata

        if ch.isspace():
            return self.vocab.get(ch, self.space)
        for form in (ch, ch.lower(), unicodedata.normalize("NFKC", ch)):
            for candidate in (form, form.lower()):
                if candidate in self.vocab:
                    return self.vocab[candidate]
        return self.unk

    def __call__(self, text: str) -> list[int]:
        cache = self._cache
        out = []
        for ch in text:
            idx = cache.get(ch)
            if idx is None:
                idx = cache[ch] = self._lookup(ch)
            out.append(idx)
        return out


def window_starts(length: int, width: int, stride: int) -> list[int]:
    """Start offsets of windows of ``width`` covering ``length`` positions, ``stride`` apart; the
    last window is aligned to the end so none is short."""
    if length <= width:
        return [0]
    starts = list(range(0, length - width, stride))
    starts.append(length - width)
    return starts


def stitch(pieces: Sequence[torch.Tensor], starts: Sequence[int], length: int) -> torch.Tensor:
    """Join per-window rows ``[n_i, K]`` into ``[length, K]``, each position taken from the window in
    which it is most central: with equal widths, the seam between two windows is the middle of
    their overlap."""
    if len(pieces) == 1:
        return pieces[0]
    rows, pos = [], 0
    for j, (piece, start) in enumerate(zip(pieces, starts)):
        end = start + piece.shape[0]
        cut = length if j + 1 == len(pieces) else (starts[j + 1] + end) // 2
        rows.append(piece[pos - start : cut - start])
        pos = cut
    return torch.cat(rows)


def _cut_points(text: str, spans: Sequence[tuple[int, int, str]], width: int) -> list[int]:
    """Where to split a long training text into pieces of at most ``width`` characters: never inside
    a span when avoidable, preferably after sentence punctuation."""
    inside = np.zeros(len(text) + 1, dtype=bool)  # inside[p]: a span crosses the boundary before p
    for start, end, _ in spans:
        inside[start + 1 : end] = True
    cuts, pos = [0], 0
    while len(text) - pos > width:
        best = None
        for p in range(pos + width, pos + width // 2, -1):
            if not inside[p]:
                if text[p - 1] in _CUT_AFTER:
                    best = p
                    break
                best = best or p
        cuts.append(best or pos + width)
        pos = cuts[-1]
    cuts.append(len(text))
    return cuts


class TaggerModel(nn.Module):
    """Encoder + dropout + linear emissions + CRF; ``forward`` returns the training loss."""

    def __init__(self, encoder: nn.Module, tags: Sequence[str], scheme: str, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.emit = nn.Linear(encoder.config.hidden_size, len(tags))
        self.crf = CRF(len(tags), list(tags), scheme)

    def emissions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Emission scores ``[B, L-2, K]`` of the characters between ``[CLS]`` and ``[SEP]``."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.emit(self.dropout(hidden[:, 1:-1]))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, tags: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        return self.crf(self.emissions(input_ids, attention_mask), tags, mask)


def _encoder_limit(config: Any) -> int:
    limit = int(getattr(config, "max_position_embeddings", 512) or 512)
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2  # their position ids start after the padding index
    return limit


# --------------------------------------------------------------------------- exact probabilities


# --------------------------------------------------------------------------- the tagger


class Tagger:
    """A trained tagger: ``tagger(texts)`` gives labelled spans; see the module docstring.

    Build one with :meth:`train` or :meth:`load`. ``timings`` accumulates seconds spent in the
    encoder (``encode``), the Viterbi decode (``decode``) and span/path probabilities (``score``).
    """

    def __init__(self, model: TaggerModel, tokenizer: Any, labels: Sequence[str], scheme: str,
                 max_len: int, device: torch.device | None = None, batch_size: int = 32,
                 meta: dict[str, Any] | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.scheme = scheme
        self.tags = tag_names(self.labels, scheme)
        self.max_len = max_len
        self.width = max_len - 2  # characters per window: [CLS] and [SEP] take two positions
        self.stride = max(1, self.width // 2)
        self.batch_size = batch_size
        self.device = device or torch.device("cpu")
        self.meta = dict(meta or {})
        self.char_ids = CharIds(tokenizer)
        self.timings = {"encode": 0.0, "decode": 0.0, "score": 0.0}
        self.history: list[dict[str, Any]] = []
        self.model.to(self.device)
        self.model.eval()

    # ---------------------------------------------------------------- inference

    def _batch_inputs(self, rows: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows) + 2
        ids = torch.full((len(rows), width), self.char_ids.pad, dtype=torch.long)
        attn = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, 0] = self.char_ids.cls
            ids[i, 1 : len(row) + 1] = torch.tensor(row, dtype=torch.long)
            ids[i, len(row) + 1] = self.char_ids.sep
            attn[i, : len(row) + 2] = 1
        return ids.to(self.device), attn.to(self.device)

    @torch.no_grad()
    def emissions(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """Emission scores ``[len(text), K]`` (float32, CPU) of each text, windows stitched."""
        self.model.eval()
        ids = [self.char_ids(text) for text in texts]
        pieces: list[tuple[int, int, list[int]]] = []  # (text index, start, window ids)
        starts: list[list[int]] = []
        for i, row in enumerate(ids):
            st = window_starts(len(row), self.width, self.stride) if row else []
            starts.append(st)
            pieces.extend((i, s, row[s : s + self.width]) for s in st)
        order = sorted(range(len(pieces)), key=lambda j: len(pieces[j][2]))
        out: list[torch.Tensor | None] = [None] * len(pieces)
        begin = time.perf_counter()
        for b in range(0, len(order), self.batch_size):
            chunk = order[b : b + self.batch_size]
            input_ids, attn = self._batch_inputs([pieces[j][2] for j in chunk])
            em = self.model.emissions(input_ids, attn).float().cpu()
            for row, j in enumerate(chunk):
                out[j] = em[row, : len(pieces[j][2])]
        self.timings["encode"] += time.perf_counter() - begin
        result: list[torch.Tensor] = []
        cursor = 0
        for i, row in enumerate(ids):
            n_win = len(starts[i])
            result.append(stitch(out[cursor : cursor + n_win], starts[i], len(row)) if n_win
                          else torch.zeros((0, len(self.tags))))
            cursor += n_win
        return result

    def _pad(self, ems: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        longest = max((e.shape[0] for e in ems), default=0)
        padded = torch.zeros((len(ems), max(longest, 1), len(self.tags)))
        mask = torch.zeros((len(ems), max(longest, 1)), dtype=torch.bool)
        for i, e in enumerate(ems):
            padded[i, : e.shape[0]] = e
            mask[i, : e.shape[0]] = True
        return padded, mask

    def _spans_of(self, text: str, path: np.ndarray) -> list[tuple[int, int, str]]:
        return to_spans([self.tags[t] for t in path[: len(text)]], self.scheme)

    @torch.no_grad()
    def predict(self, texts: Sequence[str], top_k: int = 1) -> list[list[Candidate]]:
        """The ``top_k`` best taggings of each text, best first (fewer when fewer paths exist)."""
        if top_k < 1:
            raise ZhtextError(f"top_k must be at least 1, got {top_k}")
        texts = list(texts)
        results: list[list[Candidate]] = [[] for _ in texts]
        all_ems = self.emissions(texts)
        trans, start, end = (p.detach().cpu().double().numpy() for p in self.model.crf.constrained())
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            em, mask = self._pad([all_ems[i] for i in idx])
            begin = time.perf_counter()
            paths, _ = self.model.crf.decode(em, mask, top_k=top_k)
            self.timings["decode"] += time.perf_counter() - begin
            if top_k == 1:
                paths = paths[:, None, :]
            begin = time.perf_counter()
            em_np = em.numpy()
            lengths = mask.sum(1).numpy().astype(np.int64)
            alpha, beta, log_z = forward_backward(em_np, lengths, trans, start, end)
            for row, i in enumerate(idx):
                n = len(texts[i])
                scorer = PathScorer(em_np[row, :n], alpha[row, :n], beta[row, :n], log_z[row],
                                     trans, start, end)
                results[i] = self._candidates(texts[i], paths[row], scorer)
            self.timings["score"] += time.perf_counter() - begin
        return results

    def _candidates(self, text: str, paths: np.ndarray, scorer: PathScorer) -> list[Candidate]:
        if not text:
            return [Candidate([], 1.0)]
        out = []
        inside = {tag[2:]: i for i, tag in enumerate(self.tags) if tag.startswith("I-")}
        for path in paths:
            if path[0] < 0:  # fewer allowed paths than top_k
                break
            path = path[: len(text)]
            spans = []
            for start, end, label in self._spans_of(text, path):
                # In BIO a span also needs the next tag not to continue it.
                cont = inside.get(label, -1) if self.scheme == "BIO" and end < len(text) else -1
                score = scorer.span_prob(path, start, end, cont)
                spans.append(Span(start, end, label, text[start:end], score))
            out.append(Candidate(spans, scorer.path_prob(path)))
        return out

    def __call__(self, texts: str | Sequence[str]) -> list[Span] | list[list[Span]]:
        """The best spans of each text (of one text, given a plain string)."""
        if isinstance(texts, str):
            return self.predict([texts])[0][0].spans
        return [cands[0].spans for cands in self.predict(texts)]

    def cut(self, texts: str | Sequence[str]) -> list[str] | list[list[str]]:
        """Words of each text, for a BMES (segmentation) model; characters outside spans are words."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        words = [words_of(t, [(s.start, s.end, s.label) for s in spans])
                 for t, spans in zip(batch, self(batch))]
        return words[0] if single else words

    def tags_of(self, text: str, spans: Iterable[Span]) -> list[str]:
        """The tag of each character of ``text`` for the given spans, in this model's scheme."""
        return to_tags(len(text), [(s.start, s.end, s.label) for s in spans], self.scheme)

    # ---------------------------------------------------------------- save / load

    def save(self, directory: str | os.PathLike, **extra: Any) -> Path:
        """Save in the Hugging Face layout (encoder config + weights, tokenizer) plus the tagging
        head (``tagger_head.safetensors``) and ``zhtext.json``. Files are written to a temporary
        folder first and moved into place, so an interrupted save never leaves a torn model."""
        from safetensors.torch import save_file

        with model_dir_writer(directory) as tmp:
            self.model.encoder.save_pretrained(str(tmp))
            self.tokenizer.save_pretrained(str(tmp))
            head = {f"emit.{k}": v for k, v in self.model.emit.state_dict().items()}
            head.update({f"crf.{k}": v for k, v in self.model.crf.state_dict().items()})
            save_file({k: v.detach().cpu().contiguous() for k, v in head.items()}, str(tmp / HEAD_FILE))
            self.meta.update(extra)
            save_task_meta(tmp, TASK, self.meta, labels=self.labels, scheme=self.scheme,
                           tags=self.tags, max_len=self.max_len)
        return Path(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | None = None,
             batch_size: int = 32) -> Tagger:
        """Load a tagger saved by :meth:`save` (or :meth:`train`)."""
        from safetensors.torch import load_file

        meta = load_task_meta(directory, TASK)
        try:
            labels, scheme, max_len = list(meta["labels"]), str(meta["scheme"]), int(meta["max_len"])
            dropout = float(meta.get("dropout", 0.1))
        except (KeyError, TypeError, ValueError):
            raise ZhtextError(
                f"{directory}/zhtext.json lacks the tagger's labels, scheme or max_len") from None
        head_path = Path(directory) / HEAD_FILE
        if not head_path.is_file():
            raise ZhtextError(f"{directory} has no {HEAD_FILE}: not a complete tagger")
        tokenizer = load_tokenizer(directory)
        encoder = load_model(directory)
        tags = tag_names(labels, scheme)
        model = TaggerModel(encoder, tags, scheme, dropout)
        try:
            head = load_file(str(head_path))
            model.emit.load_state_dict({k[5:]: v for k, v in head.items() if k.startswith("emit.")})
            model.crf.load_state_dict({k[4:]: v for k, v in head.items() if k.startswith("crf.")})
        except (RuntimeError, OSError) as exc:
            raise ZhtextError(f"cannot load {head_path}: {str(exc).splitlines()[0]}") from None
        return cls(model, tokenizer, labels, scheme, max_len, pick_device(device), batch_size, meta)

    # ---------------------------------------------------------------- evaluation

    def evaluate(self, examples: Sequence[Example]) -> dict[str, PRF]:
        """Exact-span precision, recall and F1 per label and ``overall`` (micro) on ``examples``."""
        pred = self([ex.text for ex in examples])
        return entity_scores([list(ex.spans) for ex in examples],
                             [[(s.start, s.end, s.label) for s in spans] for spans in pred])

    def evaluate_segmentation(self, examples: Sequence[Example]) -> SegScore:
        """SIGHAN word P/R/F of a BMES model's words against the examples' words."""
        words = self.cut([ex.text for ex in examples])
        gold = [" ".join(words_of(ex.text, ex.spans)) for ex in examples]
        return score_segmentation(gold, [" ".join(w) for w in words])

    # ---------------------------------------------------------------- training

    @classmethod
    def train(
        cls,
        train: Sequence[Example],
        dev: Sequence[Example] | None = None,
        *,
        out_dir: str | os.PathLike,
        model: str | os.PathLike | None = None,
        layers: int = 2,
        hidden: int = 128,
        heads: int | None = None,
        scheme: str | None = None,
        epochs: int = 3,
        batch_size: int = 32,
        lr: float | None = None,
        head_lr: float | None = None,
        max_len: int = 256,
        seed: int = 42,
        dropout: float = 0.1,
        warmup: float = 0.1,
        grad_accum: int = 1,
        max_seconds: float | None = None,
        max_steps: int | None = None,
        eval_every: int | None = None,
        min_char_count: int = 1,
        resume: bool = False,
        progress: bool = True,
        device: str | None = None,
    ) -> Tagger:
        """Train a tagger on ``train`` examples, keep the best one by dev F1 in ``out_dir``, return it.

        ``model`` names a pretrained encoder (hub id or directory); without it a small BERT
        (``layers``, ``hidden``, ``heads``) is built from scratch over a character vocabulary of the
        training texts (characters seen at least ``min_char_count`` times). ``scheme`` defaults to
        BMES for segmentation data (every span labelled :data:`~zhtext.tagdata.WORD`), else BIOES.
        ``lr`` defaults to 3e-5 for a pretrained encoder and 1e-3 from scratch; the emission layer
        and the CRF train at ``head_lr`` (default 100 × lr, at most 1e-2), since under a BERT-sized
        rate the transitions would barely move. Stops after ``epochs``, ``max_steps`` or
        ``max_seconds``, whichever comes first; ``resume`` continues an interrupted run from
        ``out_dir/checkpoint``. Without dev data the last model is kept.
        """
        train = list(train)
        if not train:
            raise ZhtextError("no training examples")
        labels = sorted({span[2] for ex in train for span in ex.spans})
        if not labels:
            raise ZhtextError("the training data has no labelled spans")
        if scheme is None:
            scheme = "BMES" if labels == [WORD] else "BIOES"
        scheme = scheme.upper()
        if scheme == "BMES" and labels != [WORD]:
            raise ZhtextError("BMES tags untyped words (segmentation); use BIO or BIOES for labelled spans")
        tags = tag_names(labels, scheme)
        if max_len < 3:
            raise ZhtextError("max_len must be at least 3 ([CLS], one character, [SEP])")
        seed_everything(seed)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)

        if model is None:
            vocab = build_char_vocab((ex.text for ex in train), min_count=min_char_count)
            tokenizer = char_tokenizer(vocab, model_max_length=max_len)
            heads = heads or max(1, hidden // 64)
            config = small_bert_config(len(vocab), layers=layers, hidden=hidden, heads=heads,
                                       max_position=max_len, hidden_dropout_prob=dropout,
                                       attention_probs_dropout_prob=dropout)
            from transformers import AutoModel

            encoder = AutoModel.from_config(config)
            source = {"from_scratch": {"layers": layers, "hidden": hidden, "heads": heads,
                                       "vocab_size": len(vocab)}}
            lr = lr or 1e-3
        else:
            tokenizer = load_tokenizer(model)
            encoder = load_model(model)
            source = {"base_model": str(model)}
            lr = lr or 3e-5
        max_len = min(max_len, _encoder_limit(encoder.config))
        head_lr = head_lr or min(100 * lr, 1e-2)
        dev_device = pick_device(device)
        net = TaggerModel(encoder, tags, scheme, dropout)
        meta = {"dropout": dropout, **source}
        tagger = cls(net, tokenizer, labels, scheme, max_len, dev_device, batch_size, meta)

        rows = tagger._training_rows(train)
        batches_per_epoch = math.ceil(len(rows) / batch_size)

        lengths = [len(r[0]) for r in rows]

        def batches(epoch: int) -> Iterator[dict[str, torch.Tensor]]:
            for group in bucketed_batches(lengths, batch_size, seed, epoch):
                yield tagger._collate([rows[i] for i in group])

        evaluate = None
        if dev:
            dev = list(dev)

            def evaluate() -> dict[str, float]:
                scores = tagger.evaluate(dev)["overall"]
                return {"p": scores.p, "r": scores.r, "f1": scores.f}

        def on_best(record: dict[str, Any]) -> None:
            tagger.save(out, best=record)

        config_ = TrainConfig(epochs=epochs, max_steps=max_steps, max_seconds=max_seconds,
                              warmup=warmup, grad_accum=grad_accum, seed=seed, eval_every=eval_every,
                              resume=resume, progress=progress, output=out)
        groups = param_groups(net, lr, config_.weight_decay, head=("emit", "crf"), head_lr=head_lr)
        extra = {"tags": tags, "vocab": len(tagger.char_ids.vocab), "max_len": max_len,
                 "batch_size": batch_size, "train_size": len(rows)}
        history = Trainer(net, config_, batches, batches_per_epoch, groups=groups, evaluate=evaluate,
                          on_best=on_best, extra_state=extra).fit()
        # The best model is on disk already: only its metadata gains the history.
        update_task_meta(out, history=history)
        best = cls.load(out, device=device, batch_size=batch_size)
        best.history = history
        return best

    def _training_rows(self, examples: Sequence[Example]) -> list[tuple[list[int], list[int]]]:
        """(character ids, tag ids) per training piece; long texts are cut between entities."""
        tag_index = {tag: i for i, tag in enumerate(self.tags)}
        rows = []
        for ex in examples:
            if not ex.text:
                continue
            ids = self.char_ids(ex.text)
            cuts = _cut_points(ex.text, ex.spans, self.width)
            for a, b in zip(cuts, cuts[1:]):
                spans = [(max(s, a) - a, min(e, b) - a, label) for s, e, label in ex.spans
                         if s < b and e > a]
                tags = to_tags(b - a, spans, self.scheme)
                rows.append((ids[a:b], [tag_index[t] for t in tags]))
        return rows

    def _collate(self, rows: Sequence[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        input_ids, attn = self._batch_inputs([r[0] for r in rows])
        longest = input_ids.shape[1] - 2
        tags = torch.zeros((len(rows), longest), dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.bool)
        for i, (_, row_tags) in enumerate(rows):
            tags[i, : len(row_tags)] = torch.tensor(row_tags, dtype=torch.long)
            mask[i, : len(row_tags)] = True
        return {"input_ids": input_ids, "attention_mask": attn, "tags": tags.to(self.device),
                "mask": mask.to(self.device)}


def evaluate_tagger(tagger: Tagger, path: str | os.PathLike, format: str = "auto"
                    ) -> dict[str, PRF] | SegScore:
    """Score ``tagger`` on a labelled file: entity P/R/F per label (a BMES model: SIGHAN word P/R/F)."""
    examples = read_examples(path, format)
    if not examples:
        raise ZhtextError(f"{path} holds no examples")
    if tagger.scheme == "BMES":
        return tagger.evaluate_segmentation(examples)
    return tagger.evaluate(examples)


def prediction_record(text: str, candidates: Sequence[Candidate]) -> str:
    """One JSON line for ``zhtext tag``: the best spans, and all candidates when there are several."""
    record: dict[str, Any] = {"text": text, "spans": [s.as_dict() for s in candidates[0].spans]}
    if len(candidates) > 1:
        record["nbest"] = [{"prob": round(c.prob, 6), "spans": [s.as_dict() for s in c.spans]}
                           for c in candidates]
    return json.dumps(record, ensure_ascii=False)
