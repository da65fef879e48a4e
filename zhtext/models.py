"""The one place that loads Hugging Face models and tokenizers, and builds small ones from scratch.

Every model zhtext uses is named the same way: a local ``save_pretrained`` directory or a hub id
(``bert-base-chinese``). Loading never shows a traceback: a missing directory, an unusable one, or
a hub id that cannot be fetched becomes one :class:`~zhtext.errors.ZhtextError` line. Models that
zhtext trains carry a small ``zhtext.json`` beside the Hugging Face files naming the task, the
label set and the settings needed to use them.

For from-scratch models (tests, small corpora) there is a character vocabulary builder, a BERT-style
tokenizer over it that splits every character into its own token, and a small ``BertConfig``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from .errors import ZhtextError
from .io import atomic_output

if TYPE_CHECKING:
    import torch
    from transformers import BertConfig, PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "META_FILE",
    "SPECIAL_TOKENS",
    "build_char_vocab",
    "char_tokenizer",
    "load_model",
    "load_task_meta",
    "load_tokenizer",
    "model_dir_writer",
    "pick_device",
    "quiet_hf_bars",
    "save_task_meta",
    "small_bert_config",
]

META_FILE = "zhtext.json"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_PAD, _UNK, _CLS, _SEP, _MASK = SPECIAL_TOKENS
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")


# --------------------------------------------------------------------------- loading


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception message, shortened: enough to act on, no dump."""
    for line in str(exc).splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return type(exc).__name__


def _looks_like_path(name: str) -> bool:
    # A hub id is "name" or "owner/name"; anything else can only have meant a directory.
    return (
        name.startswith((".", "/", "~"))
        or "\\" in name
        or name.count("/") > 1
        or os.path.isabs(name)
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint answers a TCP connection.

    huggingface_hub retries a dead network for most of a minute per file before giving up; this
    probe lets an offline user get the error at once. Behind a proxy the probe proves nothing, so
    the download is simply attempted.
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _load(
    loader: Callable[..., Any],
    name_or_dir: str | os.PathLike,
    what: str,
    needs: tuple[str, ...],
    **kwargs: Any,
):
    """Call ``loader(source, **kwargs)`` for a local directory or a hub id; errors as one line.

    ``needs``: file names of which a local directory must hold at least one, so that a wrong
    directory gets a plain answer rather than the loader's guess at what went wrong.
    """
    from huggingface_hub import is_offline_mode

    name = str(name_or_dir)
    path = Path(name).expanduser()
    if path.is_dir():
        if not any((path / f).is_file() for f in needs):
            raise ZhtextError(
                f"cannot load {what} from {path}: no {' or '.join(needs)} there "
                "(not a save_pretrained directory)"
            )
        try:
            return loader(str(path), local_files_only=True, **kwargs)
        except Exception as exc:  # any failure of a local directory is the user's to fix
            raise ZhtextError(f"cannot load {what} from {path}: {_first_line(exc)}") from None
    if path.exists():
        raise ZhtextError(f"cannot load {what} from {path}: it is a file, not a model directory")
    if _looks_like_path(name):
        raise ZhtextError(f"cannot load {what} from {name}: no such directory")

    # A hub id: the local Hugging Face cache first, so a cached model works offline.
    try:
        return loader(name, local_files_only=True, **kwargs)
    except Exception:  # not cached (or cached incompletely): fall through to the hub
        pass
    if is_offline_mode():
        raise ZhtextError(
            f"cannot load {what} {name!r}: not a local directory, not in the Hugging Face cache, "
            "and HF_HUB_OFFLINE is set"
        )
    if not _hub_reachable():
        raise ZhtextError(
            f"cannot load {what} {name!r}: not a local directory and the Hugging Face hub is "
            "unreachable"
        )
    try:
        return loader(name, **kwargs)
    except Exception as exc:  # 404, gated repo, bad files: report, do not dump
        raise ZhtextError(
            f"cannot load {what} {name!r} (not a local directory; from the Hugging Face hub: "
            f"{_first_line(exc)})"
        ) from None


def load_tokenizer(name_or_dir: str | os.PathLike, **kwargs: Any) -> PreTrainedTokenizerBase:
    """Load a tokenizer by hub id or from a local directory (``AutoTokenizer``).

    Raises ZhtextError with one line when the directory is missing or unusable, or the hub id
    cannot be fetched.
    """
    from transformers import AutoTokenizer

    return _load(
        AutoTokenizer.from_pretrained, name_or_dir, "tokenizer", _TOKENIZER_FILES, **kwargs
    )


def load_model(
    name_or_dir: str | os.PathLike, model_cls: Any = None, **kwargs: Any
) -> PreTrainedModel:
    """Load a model by hub id or from a local directory with ``model_cls.from_pretrained``.

    ``model_cls`` defaults to ``AutoModel`` (the bare encoder/decoder, heads dropped); pass e.g.
    ``BertForMaskedLM`` or ``AutoModelForTokenClassification`` for a head. Extra keyword arguments
    go to ``from_pretrained``. The model is returned as loaded (training mode, on the CPU), without
    transformers' own progress bar.
    Raises ZhtextError with one line on any failure to load.
    """
    if model_cls is None:
        from transformers import AutoModel

        model_cls = AutoModel
    with quiet_hf_bars():
        return _load(model_cls.from_pretrained, name_or_dir, "model", ("config.json",), **kwargs)


def pick_device(device: str | None = None) -> torch.device:
    """The torch device to run on: ``device`` if given and usable, else CUDA when present, else CPU."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ZhtextError(f"unknown device {device!r} (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ZhtextError(f"device {device!r} requested but CUDA is not available here")
    return dev


# --------------------------------------------------------------------------- task metadata


def save_task_meta(out_dir: str | os.PathLike, task: str, settings: Mapping[str, Any] | None = None,
                   **more: Any) -> Path:
    """Write ``zhtext.json`` into a model directory: the task name, this zhtext's version, and the
    JSON-serialisable ``settings`` (a model's metadata as loaded: its own task and version are
    replaced) updated with ``more``."""
    from . import __version__

    path = Path(out_dir) / META_FILE
    meta = {**(settings or {}), **more, "task": task, "zhtext_version": __version__}
    try:
        text = json.dumps(meta, ensure_ascii=False, indent=2)
    except TypeError as exc:
        raise ZhtextError(f"settings for {path} are not JSON-serialisable: {exc}") from None
    with atomic_output(path) as handle:
        handle.write(text + "\n")
    return path


def update_task_meta(model_dir: str | os.PathLike, **settings: Any) -> dict[str, Any]:
    """Add ``settings`` to a model directory's ``zhtext.json`` (atomically); the weights are not
    touched. Returns the new metadata."""
    meta = load_task_meta(model_dir)
    save_task_meta(model_dir, meta["task"], meta, **settings)
    return load_task_meta(model_dir)


def load_task_meta(model_dir: str | os.PathLike, task: str | None = None) -> dict[str, Any]:
    """Read a model directory's ``zhtext.json``; with ``task``, insist the model is for that task.

    Raises ZhtextError when the directory is not a zhtext model (no or unreadable ``zhtext.json``)
    or is one for another task.
    """
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        raise ZhtextError(f"{model_dir} is not a zhtext model directory (no {META_FILE})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ZhtextError(f"cannot read {path}: {_first_line(exc)}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("task"), str):
        raise ZhtextError(f"{path} does not name a task")
    if task is not None and meta["task"] != task:
        raise ZhtextError(f"{model_dir} is a zhtext {meta['task']} model, not a {task} model")
    return meta


# --------------------------------------------------------------------------- from-scratch models


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


@contextmanager
def quiet_hf_bars() -> Iterator[None]:
    """Silence transformers' "Loading weights" / "Writing" bars: ours are enough on stderr."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


@contextmanager
def model_dir_writer(directory: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder inside ``directory`` to save a model into.

    When the block ends without error its files move into ``directory``; the temporary folder
    always goes. An interrupted save therefore never leaves a torn model (new config, old
    weights) behind. transformers' progress bars are off meanwhile.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".saving-", dir=out))
    try:
        with quiet_hf_bars():
            yield tmp
        for item in tmp.iterdir():
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
