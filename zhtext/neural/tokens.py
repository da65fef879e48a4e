"""Text and tokens: one decoding rule for titles and GPT-2, and the one rule for how much of a long
text a model command tokenizes (:func:`clip_for_tokens`)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


# Wide (East Asian W/F) characters: CJK ideographs, kana, hangul, CJK and full-width punctuation.
_WIDE = ("\u1100-\u115f\u2e80-\u303e\u3041-\u33ff\u3400-\u4dbf\u4e00-\u9fff\ua000-\ua4cf"
         "\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6"
         "\U00020000-\U0003fffd")


_SPACE_BY_WIDE = re.compile(f"(?<=[{_WIDE}]) +| +(?=[{_WIDE}])")


def squeeze_spaces(text: str) -> str:
    """Drop the spaces a BERT tokenizer puts around wide (CJK) characters; keep the others."""
    return _SPACE_BY_WIDE.sub("", text)


def decode_text(tokenizer: PreTrainedTokenizerBase, ids: Iterable[int], bert_style: bool = True) -> str:
    """Text of generated token ids, special tokens dropped. A BERT-style tokenizer's ``##`` pieces
    are joined and the spaces it puts around Chinese characters removed; spaces between Latin
    words stay. Other tokenizers (byte-level BPE) decode as they are."""
    text = tokenizer.decode(list(ids), skip_special_tokens=True,
                            clean_up_tokenization_spaces=bert_style)
    return squeeze_spaces(text) if bert_style else text


# --------------------------------------------------------------------------- the head a model reads

# A model that reads at most N tokens of a text is handed its first (or last)
# CHARS_PER_TOKEN * (N + TOKEN_MARGIN) characters, not the whole text: memory stays that of a
# normal line however long the text. Chinese takes one character a token, Latin text about four;
# the margin of tokens covers the word cut at the edge, which may tokenize differently from the
# whole word (a WordPiece word has at most 100 characters). If the cut text yields fewer than
# N + TOKEN_MARGIN tokens (long runs of spaces, characters a tokenizer drops), four times as
# much is taken, up to MAX_CLIP_CHARS.
CHARS_PER_TOKEN = 8
TOKEN_MARGIN = 128
MAX_CLIP_CHARS = 1 << 20


def clip_for_tokens(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], tokens: int,
                    keep: str = "head") -> list[str]:
    """``texts`` cut to their head (``keep="tail"``: their tail) of characters, enough that the
    first (last) ``tokens`` tokens are those of the whole text; shorter texts come back whole.
    The one rule every model command follows before tokenizing."""
    if keep not in ("head", "tail"):
        raise ValueError(f"keep is 'head' or 'tail', not {keep!r}")
    out = list(texts)
    size = CHARS_PER_TOKEN * (tokens + TOKEN_MARGIN)
    todo = [i for i, text in enumerate(out) if len(text) > size]
    while todo:
        pieces = [out[i][:size] if keep == "head" else out[i][-size:] for i in todo]
        counts = tokenizer(pieces, add_special_tokens=False, verbose=False)["input_ids"]
        few = []
        for i, piece, ids in zip(todo, pieces, counts):
            if len(ids) >= tokens + TOKEN_MARGIN or size >= MAX_CLIP_CHARS:
                out[i] = piece
            else:
                few.append(i)
        size = min(4 * size, MAX_CLIP_CHARS)
        todo = [i for i in few if len(out[i]) > size]
    return out
