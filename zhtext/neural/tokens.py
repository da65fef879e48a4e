"""Text of generated token ids: one decoding rule for titles and GPT-2."""

from __future__ import annotations

import re
from collections.abc import Iterable
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
