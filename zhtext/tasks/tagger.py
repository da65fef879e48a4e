"""BERT+CRF sequence tagger: named entities, or words (BMES) for segmentation-as-tagging.

Any Hugging Face encoder (a hub id such as ``bert-base-chinese``, or a local ``save_pretrained``
directory; a small BERT built from scratch for tests and CPU budgets) gives one vector per
character; dropout and a linear layer turn it into emission scores; a
:class:`~zhtext.neural.crf.CRF` with the label scheme's constraints scores whole tag paths, and the
Numba Viterbi decodes them. :class:`Tagger` has the verbs every zhtext model has (see
ARCHITECTURE.md in the repository): ``load``, ``save``, ``__call__``/``predict``, ``evaluate``,
``train``; plus ``nbest`` (the n most probable taggings) and ``cut`` (words, for a BMES model).

Characters, not word pieces: every character of the text gets exactly one position (mapped
through the tokenizer's vocabulary; unknown ones, emoji and astral characters included, become
``[UNK]``, whitespace an unused token), so a span's offsets index the original string directly.

Long texts: the encoder sees windows of ``max_len - 2`` characters that overlap by half a window;
each position takes its emission scores from the window in which it is most central, and the CRF
then decodes the whole text at once. Decoding the stitched emissions (rather than decoding each
window and merging tags) always yields one path that obeys the scheme, so no entity is cut or
duplicated at a window seam. A text over :data:`LONG_TEXT` characters is decoded on its own, its
windows streamed into :class:`~zhtext.labels.stream.LongChain`: the same spans, in memory that does
not grow with the text (beyond the text and its spans).

Span scores are exact marginal probabilities: the probability, under the CRF, that the text's tag
path labels exactly that span (its tags, and for BIO no continuation after it), read off the
forward-backward variables (a Numba kernel, linear in the text length). An n-best candidate's
``prob`` is the probability of its whole tag path.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from zhtext.errors import ZhtextError
from zhtext.eval.metrics import PRF, entity_scores, score_segmentation
from zhtext.labels.formats import (
    WORD,
    Example,
    check_format,
    read_examples,
    to_tags,
    words_of,
)
from zhtext.labels.marginals import forward_backward, score_paths
from zhtext.labels.schemes import SCHEMES, tag_codes
from zhtext.labels.spans import read_spans
from zhtext.labels.stream import LongChain
from zhtext.lexical.softlex import (
    FEATURE_DIM,
    LEXICON_FILE,
    WORD_SLOTS,
    LexiconFeatures,
    read_lexicon,
)
from zhtext.neural.batching import length_batches, length_order, pad
from zhtext.neural.bilstm import BiLSTM
from zhtext.neural.crf import CRF
from zhtext.neural.hub import (
    check_weights,
    first_line,
    load_model,
    load_tokenizer,
    model_folder,
    pick_device,
)
from zhtext.neural.modeldir import (
    META_FILE,
    load_task_meta,
    model_dir_writer,
    save_task_meta,
)
from zhtext.neural.scratch import scratch_model
from zhtext.neural.trainer import TrainConfig, param_groups, seed_everything
from zhtext.tasks.base import Model

__all__ = ["Candidate", "Span", "Tagger", "TaggerTrainConfig", "prediction_record", "spans_json",
           "tag_names"]

HEAD_FILE = "tagger_head.safetensors"
# Longer texts are decoded one at a time, streamed (memory does not grow with their length).
LONG_TEXT = 4096
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


def window_seams(starts: Sequence[int], width: int, length: int) -> list[int]:
    """Where each window's rows end when windows of ``width`` are stitched: the middle of its
    overlap with the next window, so every position comes from the window in which it is most
    central (the text's end for the last window)."""
    return [(following + start + width) // 2 for start, following in zip(starts, starts[1:])] + [length]


def stitch(pieces: Sequence[torch.Tensor], starts: Sequence[int], length: int) -> torch.Tensor:
    """Join per-window rows ``[n_i, K]`` of equal widths into ``[length, K]`` at the
    :func:`window_seams`."""
    if len(pieces) == 1:
        return pieces[0]
    rows, pos = [], 0
    for piece, start, cut in zip(pieces, starts, window_seams(starts, pieces[0].shape[0], length)):
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
    """Encoder (+ BiLSTM) + dropout + linear emissions + CRF; ``forward`` returns the training loss.

    With ``lstm`` a bidirectional LSTM (:class:`~zhtext.neural.bilstm.BiLSTM`, half the encoder's
    width each way) reads the encoder's states before the emission layer: the order of the
    characters, which a small encoder trained from scratch learns late from its position
    embeddings alone.

    With ``lexicon_dim`` > 0 (a lexicon-aware tagger), each position's lexicon features
    (:mod:`zhtext.lexical.softlex`, zeros at ``[CLS]``, ``[SEP]`` and padding) are projected by
    ``lexicon`` (a linear layer) and added to its token embedding before the encoder. With
    ``word_slots`` > 0 the features also carry words (ids into a lexicon of ``lexicon_size``
    words): ``word_row`` maps each to a row of ``lexicon_words`` (``word_rows`` rows of
    ``word_dim``; row 0: no word, row 1: every word the training texts never showed), and the
    weighted sum of each B/M/E/S set's rows joins the marks before the projection. Row 1 starts
    at zero, and in training ``word_dropout`` of the words met are shown as row 1: it learns what
    an unseen word means, where it would otherwise stay an untrained random vector that every
    word outside the training texts (most of a jieba-sized lexicon) meets at inference.
    """

    def __init__(self, encoder: nn.Module, tags: Sequence[str], scheme: str, dropout: float = 0.1,
                 lexicon_dim: int = 0, word_slots: int = 0, word_rows: int = 2, word_dim: int = 0,
                 lexicon_size: int = 0, lstm: bool = False):
        super().__init__()
        self.encoder = encoder
        size = encoder.config.hidden_size
        self.lstm = BiLSTM(size, size // 2) if lstm else None
        self.dropout = nn.Dropout(dropout)
        self.emit = nn.Linear(2 * (size // 2) if lstm else size, len(tags))
        self.crf = CRF(len(tags), list(tags), scheme)
        self.lexicon: nn.Linear | None = None
        self.lexicon_words: nn.Embedding | None = None
        self.word_slots = word_slots if lexicon_dim and word_dim else 0
        self.word_dropout = 0.0  # set for training (TaggerTrainConfig.word_dropout)
        if self.word_slots:
            self.lexicon_words = nn.Embedding(word_rows, word_dim, padding_idx=0)
            with torch.no_grad():
                self.lexicon_words.weight[1].zero_()
            self.register_buffer("word_row", torch.ones(lexicon_size + 1, dtype=torch.long))
            self.word_row[0] = 0
            lexicon_dim += len("BMES") * word_dim
        if lexicon_dim:
            self.lexicon = nn.Linear(lexicon_dim, encoder.config.hidden_size, bias=False)
            # On the scale of the encoder's own embeddings, so the features do not drown them.
            std = float(getattr(encoder.config, "initializer_range", 0.02))
            nn.init.normal_(self.lexicon.weight, std=std)

    def give_rows(self, word_ids: np.ndarray) -> None:
        """Rows 2, 3, ... of ``lexicon_words`` to the words ``word_ids`` (the rest share row 1)."""
        assert self.lexicon_words is not None and len(word_ids) + 2 <= self.lexicon_words.num_embeddings
        self.word_row[1:] = 1
        self.word_row[torch.as_tensor(word_ids, dtype=torch.long) + 1] = torch.arange(
            2, len(word_ids) + 2)

    def lexicon_input(self, features: torch.Tensor) -> torch.Tensor:
        """What the projection takes: the marks, and with words each set's pooled embeddings."""
        marks = features[..., :FEATURE_DIM]
        if self.lexicon_words is None:
            return marks
        n = len("BMES") * self.word_slots
        ids = features[..., FEATURE_DIM : FEATURE_DIM + n].long()
        weights = features[..., FEATURE_DIM + n :].unsqueeze(-1)
        rows = self.word_row[ids]
        if self.training and self.word_dropout > 0:
            shown_unseen = torch.rand(rows.shape, device=rows.device) < self.word_dropout
            rows = rows.masked_fill(shown_unseen & (rows > 1), 1)
        vectors = self.lexicon_words(rows) * weights  # [B, L, 4 x slots, D]
        pooled = vectors.unflatten(-2, (len("BMES"), self.word_slots)).sum(-2).flatten(-2)
        return torch.cat([marks, pooled], dim=-1)

    def emissions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  features: torch.Tensor | None = None) -> torch.Tensor:
        """Emission scores ``[B, L-2, K]`` of the characters between ``[CLS]`` and ``[SEP]``;
        ``features`` ``[B, L, F]``: the lexicon features of a lexicon-aware model."""
        if self.lexicon is None:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        else:
            embeds = (self.encoder.get_input_embeddings()(input_ids)
                      + self.lexicon(self.lexicon_input(features)))
            hidden = self.encoder(inputs_embeds=embeds, attention_mask=attention_mask)
        states = hidden.last_hidden_state
        if self.lstm is not None:
            states = self.lstm(states, attention_mask)
        return self.emit(self.dropout(states[:, 1:-1]))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, tags: torch.Tensor,
                mask: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        return self.crf(self.emissions(input_ids, attention_mask, features), tags, mask)


class ExportedTagger(nn.Module):
    """A tagger's network when its encoder and emission layer run as an ONNX graph
    (:class:`~zhtext.neural.onnx.OnnxGraph`): the same ``emissions``, and the CRF in torch."""

    def __init__(self, graph: Any, tags: Sequence[str], scheme: str):
        super().__init__()
        self.graph = graph
        self.crf = CRF(len(tags), list(tags), scheme)

    def emissions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Emission scores ``[B, L-2, K]``, as :meth:`TaggerModel.emissions` gives them."""
        return self.graph(input_ids=input_ids, attention_mask=attention_mask)


def _encoder_limit(config: Any) -> int:
    limit = int(getattr(config, "max_position_embeddings", 512) or 512)
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2  # their position ids start after the padding index
    return limit




def pad_emissions(ems: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-text emission rows ``[n_i, K]`` as one ``[B, L, K]`` tensor (zeros past each end) and its
    ``[B, L]`` bool mask, as the CRF takes them. Float rows, so torch's own padding; ids go
    through :func:`~zhtext.neural.batching.pad`."""
    padded = pad_sequence(list(ems), batch_first=True)
    lengths = torch.tensor([e.shape[0] for e in ems])
    return padded, torch.arange(padded.shape[1])[None, :] < lengths[:, None]


# --------------------------------------------------------------------------- training settings


@dataclass
class TaggerTrainConfig(TrainConfig):
    """:class:`~zhtext.neural.trainer.TrainConfig` plus the tagger's own settings.

    ``train`` and ``dev`` are data files (CoNLL, CLUENER JSON lines or a segmented corpus, read
    with ``input_format``) or lists of :class:`~zhtext.labels.formats.Example`. ``scheme`` defaults
    to BMES for segmentation data (every span labelled :data:`~zhtext.labels.formats.WORD`), else
    BIOES. ``max_len`` is the encoder window in tokens, ``[CLS]`` and ``[SEP]`` included; longer
    texts are cut (training) or windowed (inference). ``lr`` defaults to 3e-5 for a pretrained
    encoder and 1e-3 from scratch; the emission layer and the CRF train at ``head_lr`` (default
    100 × lr, at most 1e-2), since under a BERT-sized rate the transitions would barely move.
    ``lexicon`` (a lexicon file, TSV or jieba format, ``"jieba"`` for jieba's dictionary, or a
    :class:`~zhtext.lexical.lexicon.Lexicon`) makes a lexicon-aware tagger: see
    :mod:`zhtext.lexical.softlex`; the lexicon is saved with the model. ``word_dim`` > 0 adds
    embeddings of the lexicon's words (of that size, 50 by default; 0: the features of lengths and
    counts only), ``word_dropout`` the share of them shown in training as a word the training texts
    never held.
    ``lstm`` puts a BiLSTM between the encoder and the emission layer (see :class:`TaggerModel`);
    by default on from scratch and off for a pretrained encoder.
    """

    scheme: str | None = None
    max_len: int = 256
    head_lr: float | None = None
    # a lexicon-aware tagger: a lexicon file (TSV or jieba format), "jieba", or a Lexicon
    lexicon: Any = None
    word_dim: int = 50  # with a lexicon: embeddings of its words, this wide; 0: none
    word_dropout: float = 0.1  # with word_dim: the share of training words shown as unseen
    lstm: bool | None = None  # a BiLSTM before the emissions; None: from scratch only
    # defaults that differ from the shared ones: a small model, bigger batches
    layers: int = 2
    hidden: int = 128
    batch_size: int = 32

    def __post_init__(self) -> None:
        if isinstance(self.scheme, str):
            self.scheme = self.scheme.upper()
        super().__post_init__()

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.scheme is not None and self.scheme not in SCHEMES:
            problems.append(f"unknown tag scheme {self.scheme!r}; choose {', '.join(SCHEMES)}")
        if self.max_len < 3:
            problems.append("max_len must be at least 3 ([CLS], one character, [SEP])")
        if self.word_dim < 0:
            problems.append(f"word_dim must be >= 0, not {self.word_dim}")
        if not 0 <= self.word_dropout < 1:
            problems.append(f"word_dropout must be in [0, 1), not {self.word_dropout}")
        if self.head_lr is not None and not self.head_lr > 0:
            problems.append(f"the head learning rate must be > 0, not {self.head_lr}")
        try:
            check_format(self.input_format)
        except ZhtextError as exc:
            problems.append(str(exc))
        return problems


# --------------------------------------------------------------------------- the tagger


class Tagger(Model):
    """A trained tagger: ``tagger(text)`` gives the labelled spans of one text, ``tagger(texts)``
    (or :meth:`predict`) a list of them; see the module docstring.

    Build one with :meth:`train` or :meth:`load`. ``timings`` accumulates seconds spent in the
    encoder (``encode``), the Viterbi decode (``decode``) and span/path probabilities (``score``).
    """

    task: ClassVar[str] = "tagger"
    config_class: ClassVar[type[TrainConfig]] = TaggerTrainConfig
    metric: ClassVar[str] = "f1"

    def __init__(self, model: TaggerModel | ExportedTagger, tokenizer: Any, labels: Sequence[str],
                 scheme: str, max_len: int, device: torch.device | None = None, batch_size: int = 32,
                 meta: dict[str, Any] | None = None, lexicon: LexiconFeatures | None = None):
        if (lexicon is None) != (getattr(model, "lexicon", None) is None):
            raise ZhtextError("a lexicon-aware tagger needs both its lexicon and its projection")
        if lexicon is not None and lexicon.slots != getattr(model, "word_slots", lexicon.slots):
            raise ZhtextError(f"the lexicon gives {lexicon.slots} words per set, the model takes "
                              f"{model.word_slots}")
        self.model = model
        self.lexicon = lexicon
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
        # The tags as the Numba span reader takes them (kind names: one string per label, bare
        # BMES words as WORD), and per kind BIO's inside tag (-1: none), which a span's
        # probability must not continue into (marginals.score_paths).
        inside = {tag[2:]: i for i, tag in enumerate(self.tags) if tag.startswith("I-")}
        interned = {label: label for label in self.labels}
        roles, kinds, names = tag_codes(self.tags, scheme)
        names = [interned.get(name or WORD, name or WORD) for name in names]
        cont = np.array([inside.get(name, -1) if scheme == "BIO" else -1 for name in names])
        self._span_codes = (roles, kinds, cont, names)
        # tags after which no span is open: where a long text's decoding may hand spans out
        self._closes = np.array([tag.split("-")[0] in ("O", "E", "S") for tag in self.tags])
        self.timings = {"encode": 0.0, "decode": 0.0, "score": 0.0}
        self.history: list[dict[str, Any]] = []
        self.model.to(self.device)
        self.model.eval()

    # ---------------------------------------------------------------- inference

    def _encoder_inputs(self, rows: Sequence[list[int]],
                        features: Sequence[np.ndarray] | None = None) -> tuple[torch.Tensor, ...]:
        """``[CLS] chars [SEP]`` ids of each row, padded, and the attention mask, on the device;
        for a lexicon-aware tagger also each row's lexicon ``features`` (``[n_i, F]``), padded with
        zero rows (``[CLS]``, ``[SEP]`` and padding have none)."""
        ids = self.char_ids
        input_ids, mask = pad([[ids.cls, *row, ids.sep] for row in rows], ids.pad,
                              device=self.device)
        if self.lexicon is None:
            return input_ids, mask
        # Characters, not word pieces (see CharIds): row position p + 1 is character p, so the
        # features line up with the tokens without offsets, whatever the tokenizer.
        feats = np.zeros((len(rows), input_ids.shape[1], self.lexicon.dim), dtype=np.float32)
        for i, f in enumerate(features or ()):
            feats[i, 1 : 1 + len(f)] = f
        return input_ids, mask, torch.from_numpy(feats).to(self.device)

    def _window_inputs(self, text: str, starts: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """The encoder inputs of the windows of ``text`` at ``starts``."""
        ends = [min(len(text), s + self.width) for s in starts]
        feats = None if self.lexicon is None else [self.lexicon.window(text, s, e)
                                                   for s, e in zip(starts, ends)]
        return self._encoder_inputs([self.char_ids(text[s:e]) for s, e in zip(starts, ends)], feats)

    @torch.no_grad()
    def emissions(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """Emission scores ``[len(text), K]`` (float32, CPU) of each text, windows stitched."""
        if self.model.training:  # (left so by training; eval() walks every module: 0.6 ms a call)
            self.model.eval()
        ids = [self.char_ids(text) for text in texts]
        pieces: list[list[int]] = []  # the windows of all texts, in text order
        feats: list[np.ndarray] = []  # and their lexicon features, for a lexicon-aware model
        starts: list[list[int]] = []
        for text, row in zip(texts, ids):
            st = window_starts(len(row), self.width, self.stride) if row else []
            starts.append(st)
            pieces.extend(row[s : s + self.width] for s in st)
            if self.lexicon is not None and st:
                whole = self.lexicon(text)
                feats.extend(whole[s : s + self.width] for s in st)
        out: list[torch.Tensor | None] = [None] * len(pieces)
        begin = time.perf_counter()
        for chunk in length_batches([len(p) for p in pieces], self.batch_size):
            inputs = self._encoder_inputs([pieces[j] for j in chunk],
                                          feats and [feats[j] for j in chunk])
            em = self.model.emissions(*inputs).float().cpu()
            for row, j in enumerate(chunk):
                out[j] = em[row, : len(pieces[j])]
        self.timings["encode"] += time.perf_counter() - begin
        result: list[torch.Tensor] = []
        cursor = 0
        for i, row in enumerate(ids):
            n_win = len(starts[i])
            result.append(stitch(out[cursor : cursor + n_win], starts[i], len(row)) if n_win
                          else torch.zeros((0, len(self.tags))))
            cursor += n_win
        return result

    def _spans_of(self, path: np.ndarray) -> list[tuple[int, int, str]]:
        """Spans of the tag ids ``path``, read by the Numba reader from the tag codes kept at
        construction (no tag strings made and parsed again per text)."""
        roles, kinds, _, names = self._span_codes
        starts, ends, found = read_spans(np.ascontiguousarray(path, dtype=np.int64), roles, kinds)
        return [(a, e, names[k]) for a, e, k in zip(starts.tolist(), ends.tolist(), found.tolist())]

    def predict(self, texts: Sequence[str]) -> list[list[Span]]:
        """The labelled spans of each text (its most probable tagging), in order."""
        return [candidates[0].spans for candidates in self.nbest(texts, 1)]

    @torch.no_grad()
    def nbest(self, texts: Sequence[str], n: int) -> list[list[Candidate]]:
        """The ``n`` most probable taggings of each text, best first (fewer when fewer paths exist),
        each with its spans and the probability of its whole tag path.

        Texts up to :data:`LONG_TEXT` characters are decoded together; a longer one alone, its
        windows streamed through :class:`~zhtext.labels.stream.LongChain`, so its memory does
        not grow with its length (the spans are the same)."""
        if not isinstance(n, int) or n < 1:
            raise ZhtextError(f"n-best needs n >= 1, not {n!r}")
        texts = list(texts)
        results: list[list[Candidate]] = [[] for _ in texts]
        short = [i for i, text in enumerate(texts) if len(text) <= LONG_TEXT]
        for i, candidates in zip(short, self._nbest_together([texts[i] for i in short], n)):
            results[i] = candidates
        for i, text in enumerate(texts):
            if len(text) > LONG_TEXT:
                results[i] = self._nbest_long(text, n)
        return results

    def _decoded(self, texts: list[str], n: int
                 ) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor, np.ndarray]]:
        """The texts' emissions, padded a batch at a time in length order, with their ``n`` best
        tag paths: ``(indices into texts, emissions, mask, paths)`` per batch."""
        all_ems = self.emissions(texts)
        order = length_order([len(t) for t in texts])
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            em, mask = pad_emissions([all_ems[i] for i in idx])
            begin = time.perf_counter()
            paths, _ = self.model.crf.decode(em, mask, top_k=n)
            self.timings["decode"] += time.perf_counter() - begin
            yield idx, em, mask, paths

    def _nbest_together(self, texts: list[str], n: int) -> list[list[Candidate]]:
        results: list[list[Candidate]] = [[] for _ in texts]
        trans, start, end = (p.detach().cpu().double().numpy() for p in self.model.crf.constrained())
        for idx, em, mask, paths in self._decoded(texts, n):
            if n == 1:
                paths = paths[:, None, :]
            begin = time.perf_counter()
            em_np = em.numpy()
            lengths = mask.sum(1).numpy().astype(np.int64)
            alpha, beta, log_z = forward_backward(em_np, lengths, trans, start, end)
            batch = [texts[i] for i in idx]
            scored = self._scored([len(t) for t in batch], paths, em_np, alpha, beta, log_z,
                                  (trans, start, end))
            for i, text, candidates in zip(idx, batch, scored):
                results[i] = ([Candidate(self._spans(text, spans), prob) for spans, prob in candidates]
                              if text else [Candidate([], 1.0)])
            self.timings["score"] += time.perf_counter() - begin
        return results

    @torch.no_grad()
    def _best_spans(self, texts: list[str]) -> list[list[tuple[int, int, str]]]:
        """The spans of each text's most probable tagging as ``(start, end, label)``: what scoring
        and segmenting need, without the forward-backward behind :meth:`predict`'s probabilities."""
        results: list[list[tuple[int, int, str]]] = [[] for _ in texts]
        short = [i for i, text in enumerate(texts) if len(text) <= LONG_TEXT]
        for idx, _, _, paths in self._decoded([texts[i] for i in short], 1):
            for row, r in enumerate(idx):
                text = texts[short[r]]
                results[short[r]] = self._spans_of(paths[row][: len(text)])
        for i, text in enumerate(texts):
            if len(text) > LONG_TEXT:
                results[i] = [(s.start, s.end, s.label) for s in self._nbest_long(text, 1)[0].spans]
        return results

    def _scored(self, limits: list[int], paths: np.ndarray, em: np.ndarray, alpha: np.ndarray,
                beta: np.ndarray, log_z: np.ndarray, chain: tuple[np.ndarray, ...]
                ) -> list[list[tuple[list[tuple[int, int, str, float]], float]]]:
        """For each row of a batch, its present paths ``[N, L]`` as ``(spans, path probability)``,
        each span ``(start, end, label, probability)``; the first ``limits[b]`` tags are read, and
        those are the tokens a span may be continued into (:func:`score_paths`)."""
        roles, kinds, cont, names = self._span_codes
        lengths = np.minimum(np.asarray(limits, dtype=np.int64), paths.shape[2])
        starts, ends, found, probs, counts, path_probs = score_paths(
            paths, lengths, limits, roles, kinds, cont, em, alpha, beta, log_z, *chain)
        rows = zip(starts.tolist(), ends.tolist(), found.tolist(), probs.tolist())
        out = []
        for row_counts, row_probs in zip(counts.tolist(), path_probs.tolist()):
            out.append([([(a, e, names[k], p) for a, e, k, p in itertools.islice(rows, c)], prob)
                        for c, prob in zip(row_counts, row_probs) if c >= 0])
        return out

    @staticmethod
    def _spans(text: str, spans: list[tuple[int, int, str, float]], offset: int = 0) -> list[Span]:
        return [Span(offset + a, offset + e, label, text[offset + a : offset + e], p)
                for a, e, label, p in spans]

    def _nbest_long(self, text: str, n: int) -> list[Candidate]:
        """:meth:`nbest` of one long text: its windows run through the encoder a batch at a time
        and their stitched emissions through a :class:`LongChain` (exact, bounded memory)."""
        trans, start, end = (p.detach().cpu().numpy() for p in self.model.crf.constrained())
        chain = LongChain(trans, start, end, n, self._closes)
        for rows in self._window_rows(text):
            chain.add(rows)
        begin = time.perf_counter()
        parts: list[list[list[Span]]] = [[] for _ in range(n)]  # per path, region by region
        for region in chain.regions():  # last first; each region's arrays go once it is read
            sc = region.scorer
            paths = np.asarray(region.paths)[None]
            scored = self._scored([len(text) - region.offset], paths, sc.em[None], sc.alpha[None],
                                  sc.beta[None], np.array([sc.log_z]), (sc.trans, sc.start, sc.end))
            for m, (spans, _) in enumerate(scored[0]):
                parts[m].append(self._spans(text, spans, region.offset))
        self.timings["decode"] += time.perf_counter() - begin
        return [Candidate([span for part in reversed(parts[m]) for span in part], prob)
                for m, prob in enumerate(chain.probs)]

    def _window_rows(self, text: str) -> Iterator[np.ndarray]:
        """The emission rows of ``text`` in order, as :meth:`emissions` stitches them, a batch of
        windows at a time."""
        starts = window_starts(len(text), self.width, self.stride)
        seams = window_seams(starts, self.width, len(text))
        pos = 0
        for b in range(0, len(starts), self.batch_size):
            begin = time.perf_counter()
            chunk = starts[b : b + self.batch_size]
            em = self.model.emissions(*self._window_inputs(text, chunk)).float().cpu().numpy()
            self.timings["encode"] += time.perf_counter() - begin
            for row, (s, cut) in enumerate(zip(chunk, seams[b : b + self.batch_size])):
                yield em[row, pos - s : cut - s]
                pos = cut

    def cut(self, texts: str | Sequence[str]) -> list[str] | list[list[str]]:
        """Words of each text, for a BMES (segmentation) model; characters outside spans are words."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        words = [words_of(t, spans) for t, spans in zip(batch, self._best_spans(batch))]
        return words[0] if single else words

    def tags_of(self, text: str, spans: Iterable[Span]) -> list[str]:
        """The tag of each character of ``text`` for the given spans, in this model's scheme."""
        return to_tags(len(text), [(s.start, s.end, s.label) for s in spans], self.scheme)

    # ---------------------------------------------------------------- save / load

    def save(self, directory: str | os.PathLike, **meta: Any) -> Path:
        """Save in the Hugging Face layout (encoder config + weights, tokenizer) plus the tagging
        head (``tagger_head.safetensors``) and ``zhtext.json``, to which ``meta`` is added. Files
        are written to a temporary folder first and moved into place, so an interrupted save never
        leaves a torn model."""
        self._check_savable()
        with model_dir_writer(directory) as tmp:
            self.model.encoder.save_pretrained(str(tmp))
            self.meta.update(meta)
            self._save_rest(tmp, self.meta)
        return Path(directory)

    def _save_rest(self, tmp: Path, meta: dict[str, Any]) -> None:
        """What a saved tagger and an ONNX export share: the tokenizer, the head (emission layer
        and CRF) and ``zhtext.json``."""
        from safetensors.torch import save_file

        self.tokenizer.save_pretrained(str(tmp))
        head = {f"{name}.{k}": v for name, part in _head_parts(self.model)
                for k, v in part.state_dict().items()}
        if isinstance(self.model, TaggerModel):  # (an export's graph holds its BiLSTM)
            meta = {**meta, "lstm": self.model.lstm is not None}
        if self.lexicon is not None:
            self.lexicon.save(tmp)
            about = {"file": LEXICON_FILE, "words": len(self.lexicon), "features": FEATURE_DIM}
            words = self.model.lexicon_words
            if words is not None:
                head["word_row"] = self.model.word_row  # (a buffer: which row each word has)
                about.update(word_slots=self.lexicon.slots, word_rows=words.num_embeddings,
                             word_dim=words.embedding_dim)
            meta = {**meta, "lexicon": about}
        save_file({k: v.detach().cpu().contiguous() for k, v in head.items()}, str(tmp / HEAD_FILE))
        save_task_meta(tmp, self.task, meta, labels=self.labels, scheme=self.scheme,
                       tags=self.tags, max_len=self.max_len)

    def export_onnx(self, directory: str | os.PathLike) -> Path:
        """Export the encoder and emission layer (inputs ``input_ids`` and ``attention_mask``,
        output ``emissions``; any batch, any window length) to ``directory``, with the tokenizer,
        the CRF and ``zhtext.json``: ``Tagger.load(directory)`` then tags the same spans through
        onnxruntime (see :mod:`zhtext.neural.onnx`)."""
        from zhtext.neural.onnx import ONNX_FILE, export_graph

        self._check_exportable(directory)
        if self.lexicon is not None:  # the features would be a third graph input: not yet
            raise ZhtextError("a tagger with a lexicon cannot be exported to ONNX; run the torch "
                              "model (with --quantize int8 for speed)")
        sample = [self.char_ids("一二三四五六七八")[: max(1, self.width)]] * 2
        input_ids, attention_mask = self._encoder_inputs(sample)
        model = self.model
        with model_dir_writer(directory) as tmp:
            info = export_graph(model, model.emissions, {"input_ids": input_ids,
                                                         "attention_mask": attention_mask},
                                tmp / ONNX_FILE, "emissions", min_len=3, max_len=self.max_len)
            self._save_rest(tmp, {**self.meta, "exported_from": self.source, "onnx": info})
        return Path(directory)

    @classmethod
    def load(cls, name_or_dir: str | os.PathLike, *, device: str | None = None,
             batch_size: int | None = None, quantize: str | None = None,
             onnx: bool | None = None) -> Tagger:
        """A tagger saved by :meth:`save` (or :meth:`train`): a local folder, or the hub id of one
        (fetched into the Hugging Face cache). ``batch_size`` (default 32): encoder windows run
        together; ``quantize="int8"``: see :meth:`~zhtext.tasks.base.Model.quantize`. A folder
        :meth:`export_onnx` wrote runs its encoder through onnxruntime (``onnx=True`` insists on
        one, ``onnx=False`` refuses it)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from zhtext.neural.onnx import open_export

        batch_size = 32 if batch_size is None else batch_size
        if batch_size < 1:
            raise ZhtextError(f"batch size must be >= 1, not {batch_size}")
        directory = model_folder(name_or_dir, "tagger", (META_FILE,))
        meta = load_task_meta(directory, cls.task)
        try:
            labels, scheme, max_len = list(meta["labels"]), str(meta["scheme"]), int(meta["max_len"])
            dropout = float(meta.get("dropout", 0.1))
            lstm = bool(meta.get("lstm", False))
            about = meta.get("lexicon") or {}
            lexicon_dim = int(about["features"]) if about else 0
            words = {k: int(about.get(k, v)) for k, v in
                     (("word_slots", 0), ("word_rows", 2), ("word_dim", 0))}
        except (KeyError, TypeError, ValueError):
            raise ZhtextError(
                f"{directory}/{META_FILE} lacks the tagger's labels, scheme or max_len") from None
        head_path = Path(directory) / HEAD_FILE
        if not head_path.is_file():
            raise ZhtextError(f"{directory} has no {HEAD_FILE}: not a complete tagger")
        if lexicon_dim not in (0, FEATURE_DIM):
            raise ZhtextError(f"{directory}: its lexicon has {lexicon_dim} features per character, "
                              f"this zhtext makes {FEATURE_DIM}")
        graph = open_export(directory, meta, onnx, device)
        tokenizer = load_tokenizer(directory)
        lexicon = LexiconFeatures.load(directory, words["word_slots"]) if lexicon_dim else None
        model: nn.Module
        if graph is None:
            model = TaggerModel(load_model(directory, strict=True), tag_names(labels, scheme),
                                scheme, dropout, lexicon_dim, **words,
                                lexicon_size=len(lexicon) if lexicon else 0, lstm=lstm)
        else:  # the emission layer is in the graph
            model = ExportedTagger(graph, tag_names(labels, scheme), scheme)
        try:
            head = load_file(str(head_path))
            for name, part in _head_parts(model):
                part.load_state_dict({k[len(name) + 1:]: v for k, v in head.items()
                                      if k.startswith(name + ".")})
            if getattr(model, "lexicon_words", None) is not None:
                model.word_row.copy_(head["word_row"])
        except (SafetensorError, RuntimeError, OSError, KeyError) as exc:  # damaged, missing or misshapen
            raise ZhtextError(f"cannot load {head_path}: {first_line(exc)}") from None
        check_weights(head.items(), f"cannot load {head_path}")
        tagger = cls(model, tokenizer, labels, scheme, max_len, pick_device(device), batch_size,
                     meta, lexicon)
        tagger.source = str(directory)
        tagger.exported = graph and str(graph.path)
        return tagger.quantize(quantize)

    # ---------------------------------------------------------------- evaluation

    def evaluate(self, data: str | os.PathLike | Sequence[Example], *, input_format: str = "auto",
                 encoding: str | None = None) -> dict[str, Any]:
        """Scores on labelled ``data``: a file (read in ``input_format``, ``auto`` detects it) or
        a list of :class:`~zhtext.labels.formats.Example`.

        An entity model: exact-span ``p``, ``r``, ``f1`` and ``support`` (gold spans) over all
        labels (micro average), and the same per label under ``labels``. A BMES model: the SIGHAN
        word figures (:meth:`~zhtext.eval.metrics.SegScore.as_dict`: ``p``, ``r``, ``f``, word
        counts ...) with ``f1`` = ``f``, the name every tagger's figures share.
        """
        if isinstance(data, (str, os.PathLike)):
            examples = read_examples(data, check_format(input_format), encoding)
            if not examples:
                raise ZhtextError(f"{data} holds no examples")
        else:
            examples = list(data)
        texts = [ex.text for ex in examples]
        if self.scheme == "BMES":
            gold = [" ".join(words_of(ex.text, ex.spans)) for ex in examples]
            score = score_segmentation(gold, [" ".join(words) for words in self.cut(texts)])
            return {**score.as_dict(), "f1": score.f}
        scores = entity_scores([list(ex.spans) for ex in examples], self._best_spans(texts))
        overall = scores.pop("overall")
        return {**_figures(overall), "labels": {label: _figures(prf) for label, prf in scores.items()}}

    # ---------------------------------------------------------------- training

    @classmethod
    def read_data(cls, path: str | os.PathLike, config: TrainConfig) -> list[Example]:
        """The examples of a data file (CoNLL, CLUENER JSON lines or segmented)."""
        return read_examples(path, config.input_format, config.encoding)

    @classmethod
    def train(cls, config: TaggerTrainConfig) -> Tagger:
        """Train a tagger under ``config``, keep the best one by dev F1 in ``config.output`` and
        return it (see :class:`TaggerTrainConfig`).

        ``config.model`` names a pretrained encoder (hub id or folder); without it a small BERT is
        built from scratch over a character vocabulary of the training texts. Training texts
        longer than the window are cut between entities. Stops after ``epochs``, ``max_steps`` or
        ``max_seconds``, whichever comes first; ``resume`` continues an interrupted run from
        ``output/checkpoint``. Without dev data the last model is kept.
        """
        config = cls._check_config(config)
        slots = WORD_SLOTS if config.word_dim else 0
        lexicon = None if config.lexicon is None else read_lexicon(config.lexicon, slots)
        train = cls._data(config.train, config)
        if not train:
            raise ZhtextError("no training examples")
        dev = cls._data(config.dev, config)[: config.dev_limit]
        labels = sorted({span[2] for ex in train for span in ex.spans})
        if not labels:
            raise ZhtextError("the training data has no labelled spans")
        scheme = config.scheme or ("BMES" if labels == [WORD] else "BIOES")
        if scheme == "BMES" and labels != [WORD]:
            raise ZhtextError("BMES tags untyped words (segmentation); use BIO or BIOES for labelled spans")
        tags = tag_names(labels, scheme)
        seed_everything(config.seed)  # before the weights are drawn

        if config.model is None:
            encoder, tokenizer, source = scratch_model("bert", (ex.text for ex in train), config,
                                                       config.max_len)
            lr = config.lr or 1e-3
        else:
            tokenizer = load_tokenizer(config.model)
            encoder = load_model(config.model, unused=("pooler.",))  # emissions: hidden states
            source = {"base_model": str(config.model)}
            lr = config.lr or 3e-5
        max_len = min(config.max_len, _encoder_limit(encoder.config))
        head_lr = config.head_lr or min(100 * lr, 1e-2)
        seen = lexicon.seen(ex.text for ex in train) if lexicon is not None and slots else []
        lstm = config.model is None if config.lstm is None else config.lstm
        net = TaggerModel(encoder, tags, scheme, config.dropout,
                          FEATURE_DIM if lexicon is not None else 0, slots, len(seen) + 2,
                          config.word_dim, len(lexicon) if lexicon is not None else 0, lstm)
        if net.lexicon_words is not None:
            net.give_rows(seen)
            net.word_dropout = config.word_dropout
        meta = {"dropout": config.dropout, **source, "train_examples": len(train),
                "dev_examples": len(dev)}
        tagger = cls(net, tokenizer, labels, scheme, max_len, pick_device(config.device),
                     config.batch_size, meta, lexicon)

        rows = tagger._training_rows(train)
        evaluate = None
        if dev:
            def evaluate() -> dict[str, float]:
                figures = tagger.evaluate(dev)
                return {"p": figures["p"], "r": figures["r"], "f1": figures["f1"]}

        groups = param_groups(net, lr, config.weight_decay, head=("emit", "crf"), head_lr=head_lr)
        extra = {"tags": tags, "vocab": len(tagger.char_ids.vocab), "max_len": max_len,
                 "batch_size": config.batch_size, "train_size": len(rows)}
        if lstm:  # (a run resumed from before the setting existed: pass --no-lstm)
            extra["lstm"] = True
        if lexicon is not None:  # a resumed run must use the same lexicon (as far as told here)
            extra.update(lexicon_words=len(lexicon), word_rows=len(seen) + 2,
                         word_dim=config.word_dim if slots else 0)
        return cls._fit(tagger, net, config, rows, [len(r[0]) for r in rows], tagger._collate,
                        evaluate, groups=groups, extra_state=extra)

    def _training_rows(self, examples: Sequence[Example]) -> list[tuple[Any, ...]]:
        """(character ids, tag ids) per training piece, and for a lexicon-aware tagger its
        lexicon features (matched over the whole text); long texts are cut between entities."""
        tag_index = {tag: i for i, tag in enumerate(self.tags)}
        rows: list[tuple[Any, ...]] = []
        for ex in examples:
            if not ex.text:
                continue
            ids = self.char_ids(ex.text)
            feats = None if self.lexicon is None else self.lexicon(ex.text)
            cuts = _cut_points(ex.text, ex.spans, self.width)
            for a, b in zip(cuts, cuts[1:]):
                spans = [(max(s, a) - a, min(e, b) - a, label) for s, e, label in ex.spans
                         if s < b and e > a]
                tags = to_tags(b - a, spans, self.scheme)
                row = (ids[a:b], [tag_index[t] for t in tags])
                rows.append(row if feats is None else (*row, feats[a:b]))
        return rows

    def _collate(self, rows: Sequence[tuple[Any, ...]]) -> dict[str, torch.Tensor]:
        inputs = self._encoder_inputs([r[0] for r in rows],
                                      None if self.lexicon is None else [r[2] for r in rows])
        tags, mask = pad([r[1] for r in rows], device=self.device)
        batch = {"input_ids": inputs[0], "attention_mask": inputs[1], "tags": tags,
                 "mask": mask.bool()}
        if self.lexicon is not None:
            batch["features"] = inputs[2]
        return batch


# The sub-modules of a tagger's network that tagger_head.safetensors holds, each under its name
# (the encoder is saved in the Hugging Face layout; an ONNX export's graph holds emit and lstm).
HEAD_PARTS = ("emit", "crf", "lstm", "lexicon", "lexicon_words")


def _head_parts(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The :data:`HEAD_PARTS` that ``model`` has, by name."""
    parts = ((name, getattr(model, name, None)) for name in HEAD_PARTS)
    return [(name, part) for name, part in parts if part is not None]


def _figures(prf: PRF) -> dict[str, float | int]:
    return {"p": prf.p, "r": prf.r, "f1": prf.f, "support": prf.support}


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _spans_parts(spans: Sequence[Span], parts: list[str]) -> list[str]:
    """Append the JSON list of ``spans`` to ``parts`` in pieces of a few thousand spans: a long
    text's spans as dicts, or as json's pieces, would take many times the memory of their text."""
    parts.append("[")
    for begin in range(0, len(spans), 4096):  # one call of json's C encoder per piece
        parts.append(", " if begin else "")
        parts.append(_dump([s.as_dict() for s in spans[begin : begin + 4096]])[1:-1])
    parts.append("]")
    return parts


def spans_json(spans: Sequence[Span]) -> str:
    """``json.dumps([span.as_dict() for span in spans], ensure_ascii=False)``: the same text, made
    in little memory."""
    return "".join(_spans_parts(spans, []))


def prediction_record(text: str, candidates: Sequence[Candidate]) -> str:
    """One JSON line for ``zhtext tag``: the best spans, and all candidates when there are several
    (``{"text", "spans", "nbest": [{"prob", "spans"}]}``, as ``json.dumps`` writes it)."""
    parts = _spans_parts(candidates[0].spans, ['{"text": ', _dump(text), ', "spans": '])
    if len(candidates) > 1:
        parts.append(', "nbest": [')
        for i, candidate in enumerate(candidates):
            parts.append(f'{", " if i else ""}{{"prob": {_dump(round(candidate.prob, 6))}, "spans": ')
            _spans_parts(candidate.spans, parts).append("}")
        parts.append("]")
    parts.append("}")
    return "".join(parts)
