"""Building small models from nothing: a character vocabulary, a BERT-style character tokenizer over
it, and a small ``BertConfig``. Every trainer's ``--from-scratch`` goes through here, so all run
end to end without a hub checkpoint.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zhtext.errors import ZhtextError
from zhtext.io.writing import atomic_output

if TYPE_CHECKING:
    from transformers import BertConfig, PreTrainedTokenizerBase


SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_PAD, _UNK, _CLS, _SEP, _MASK = SPECIAL_TOKENS


def build_char_vocab(
    texts: Iterable[str], min_count: int = 1, max_size: int | None = None
) -> list[str]:
    """A character vocabulary: the five BERT special tokens, then characters by falling frequency.

    Whitespace and control characters are skipped (the tokenizer drops them). Ties break by
    codepoint so the result is deterministic. ``max_size`` caps the whole list, specials included.
    """
    if max_size is not None and max_size < len(SPECIAL_TOKENS):
        raise ZhtextError(f"max_size must be at least {len(SPECIAL_TOKENS)} (the special tokens)")
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(text)
    chars = [
        ch
        for ch, n in counts.items()
        if n >= min_count and not ch.isspace() and ch.isprintable()
    ]
    chars.sort(key=lambda ch: (-counts[ch], ch))
    vocab = list(SPECIAL_TOKENS) + chars
    return vocab if max_size is None else vocab[:max_size]


def char_tokenizer(
    vocab: list[str], out_dir: str | os.PathLike | None = None, model_max_length: int = 512
) -> PreTrainedTokenizerBase:
    """A BERT-style fast tokenizer over a character vocabulary; saved to ``out_dir`` if given.

    Token ids are the positions in ``vocab`` (so a model needs ``vocab_size=len(vocab)``). Text is
    cleaned like BERT's (control characters removed, whitespace dropped) but not lower-cased, then
    every character becomes its own token: Chinese characters as in bert-base-chinese, and also
    letters and digits, which BERT's WordPiece would otherwise turn into ``[UNK]`` for a whole word
    whose ``##`` pieces are missing. ``[CLS] text [SEP]`` (and pairs) with token type ids, as BERT.
    The saved directory loads back with :func:`load_tokenizer`.
    """
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    ids = {token: i for i, token in enumerate(vocab)}
    if len(ids) != len(vocab):
        dup = next(t for t in vocab if vocab.count(t) > 1)
        raise ZhtextError(f"vocabulary has duplicate entry {dup!r}")
    missing = [t for t in SPECIAL_TOKENS if t not in ids]
    if missing:
        raise ZhtextError(f"vocabulary lacks special tokens: {' '.join(missing)}")

    backend = Tokenizer(WordPiece(ids, unk_token=_UNK))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    # BERT's split on whitespace and punctuation, then every remaining character on its own.
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.BertPreTokenizer(), pre_tokenizers.Split(Regex("."), "isolated")]
    )
    backend.post_processor = processors.TemplateProcessing(
        single=f"{_CLS}:0 $A:0 {_SEP}:0",
        pair=f"{_CLS}:0 $A:0 {_SEP}:0 $B:1 {_SEP}:1",
        special_tokens=[(_CLS, ids[_CLS]), (_SEP, ids[_SEP])],
    )
    backend.decoder = decoders.Fuse()  # characters join back without spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=_UNK,
        pad_token=_PAD,
        cls_token=_CLS,
        sep_token=_SEP,
        mask_token=_MASK,
        model_max_length=model_max_length,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(str(out))
        # vocab.txt too: readable, and what BERT tooling elsewhere expects to find.
        with atomic_output(out / "vocab.txt") as handle:
            handle.write("".join(token + "\n" for token in vocab))
    return tokenizer


def small_bert_config(
    vocab_size: int,
    layers: int = 2,
    hidden: int = 128,
    heads: int = 2,
    intermediate: int | None = None,
    max_position: int = 512,
    **kw: Any,
) -> BertConfig:
    """A ``BertConfig`` for a small model trained from scratch (``intermediate`` defaults to 4×hidden).

    Extra keyword arguments go to ``BertConfig`` (e.g. ``is_decoder=True``, ``num_labels``).
    """
    from transformers import BertConfig

    if hidden % heads:
        raise ZhtextError(f"hidden size {hidden} is not a multiple of the {heads} attention heads")
    if min(vocab_size, layers, hidden, heads, max_position) <= 0:
        raise ZhtextError("vocab_size, layers, hidden, heads and max_position must be positive")
    kw.setdefault("pad_token_id", 0)
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate or 4 * hidden,
        max_position_embeddings=max_position,
        **kw,
    )


# The architectures a trainer can build from scratch.
ARCHITECTURES = ("bert", "bert-lm", "bert-mlm", "gpt2")

# A masked LM from scratch with BERT's tied head and 0.02 initialisation stays at the unigram
# plateau (filling every [MASK] with a frequent character) for thousands of steps on a CPU; its
# own output layer, a wider initialisation and sinusoidal position embeddings (so that "the
# character before" is a linear function of the positions) let it leave within minutes.
MLM_SCRATCH = {"tie_word_embeddings": False, "initializer_range": 0.05}
POSITION_STD = 0.1


def sinusoidal_positions_(weight: Any, std: float = POSITION_STD) -> None:
    """Fill a (positions, width) position-embedding table in place with sines and cosines of
    geometrically spaced frequencies (the Transformer's), scaled to standard deviation ``std``;
    they stay trainable."""
    import torch

    n, width = weight.shape
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    freq = 10000.0 ** (-torch.arange(0, width, 2, dtype=torch.float64) / width)
    table = torch.zeros(n, width, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: width // 2])
    with torch.no_grad():
        weight.copy_((table / table.std() * std).to(weight.dtype))


def scratch_model(arch: str, texts: Iterable[str], config: Any, max_position: int,
                  **model_kw: Any) -> tuple[Any, PreTrainedTokenizerBase, dict[str, Any]]:
    """A model with random weights over a character vocabulary of ``texts``: the one builder
    behind every trainer's from-scratch start.

    ``arch``: ``bert`` (a bare encoder, for the tagger), ``bert-lm`` (a ``BertLMHeadModel`` set
    as a decoder, for UniLM titles), ``bert-mlm`` (``BertForMaskedLM``, for pretraining;
    untied and sinusoidal: :data:`MLM_SCRATCH`) or
    ``gpt2`` (``GPT2LMHeadModel``). Sizes come from ``config``
    (a :class:`~zhtext.neural.trainer.TrainConfig`: ``layers``, ``hidden``, ``n_heads``,
    ``dropout``, ``min_char_count``, ``max_vocab``); ``max_position`` is the longest input.
    Returns the model, its character tokenizer and the ``from_scratch`` metadata to save with it.
    """
    if arch not in ARCHITECTURES:
        raise ZhtextError(f"unknown architecture {arch!r} (choose from {', '.join(ARCHITECTURES)})")
    vocab = build_char_vocab(texts, min_count=config.min_char_count, max_size=config.max_vocab)
    tokenizer = char_tokenizer(vocab, model_max_length=max_position)
    size = {"layers": config.layers, "hidden": config.hidden, "heads": config.n_heads}
    drop = config.dropout
    if arch == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        gpt = GPT2Config(vocab_size=len(vocab), n_positions=max_position, n_embd=config.hidden,
                         n_layer=config.layers, n_head=config.n_heads, resid_pdrop=drop,
                         embd_pdrop=drop, attn_pdrop=drop, bos_token_id=tokenizer.cls_token_id,
                         eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id,
                         **model_kw)
        model = GPT2LMHeadModel(gpt)
        size["block_size"] = max_position
    else:
        if arch == "bert-lm":
            model_kw = {"is_decoder": True, **model_kw}
        elif arch == "bert-mlm":
            model_kw = {**MLM_SCRATCH, **model_kw}
        bert = small_bert_config(len(vocab), layers=config.layers, hidden=config.hidden,
                                 heads=config.n_heads, max_position=max_position,
                                 hidden_dropout_prob=drop, attention_probs_dropout_prob=drop,
                                 **model_kw)
        if arch == "bert-lm":
            from transformers import BertLMHeadModel

            model = BertLMHeadModel(bert)
        elif arch == "bert-mlm":
            from transformers import BertForMaskedLM

            model = BertForMaskedLM(bert)
            sinusoidal_positions_(model.bert.embeddings.position_embeddings.weight)
        else:
            from transformers import AutoModel

            model = AutoModel.from_config(bert)
    return model, tokenizer, {"from_scratch": {**size, "vocab_size": len(vocab)}}
