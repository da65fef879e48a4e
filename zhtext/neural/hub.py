"""The one place that loads Hugging Face models and tokenizers, and picks the device.

Every model zhtext uses is named the same way: a local ``save_pretrained`` directory or a hub id
(``bert-base-chinese``). Loading never shows a traceback: a missing directory, an unusable one, or
a hub id that cannot be fetched becomes one :class:`~zhtext.errors.ZhtextError` line. 
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from zhtext.errors import ZhtextError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")


# --------------------------------------------------------------------------- loading


def first_line(exc: BaseException, limit: int = 200) -> str:
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
            raise ZhtextError(f"cannot load {what} from {path}: {first_line(exc)}") from None
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
            f"{first_line(exc)})"
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


def load_config(name_or_dir: str | os.PathLike) -> Any:
    """A model's ``config.json`` (``AutoConfig``), by hub id or folder, before any weights are
    read; errors as one line."""
    from transformers import AutoConfig

    return _load(AutoConfig.from_pretrained, name_or_dir, "model", ("config.json",))


def load_model(
    name_or_dir: str | os.PathLike, model_cls: Any = None, *, strict: bool = False,
    unused: tuple[str, ...] = (), **kwargs: Any
) -> PreTrainedModel:
    """Load a model by hub id or from a local directory with ``model_cls.from_pretrained``.

    ``model_cls`` defaults to ``AutoModel`` (the bare encoder/decoder, heads dropped); pass e.g.
    ``BertForMaskedLM`` or ``AutoModelForTokenClassification`` for a head. Extra keyword arguments
    go to ``from_pretrained``. The model is returned as loaded (training mode, on the CPU), without
    transformers' own progress bar.

    The weights are checked: every tensor the file holds must have the shape ``config.json``
    implies, and every weight must be finite and plausible (:func:`check_weights`). With
    ``strict`` (a model zhtext saved itself) every weight the model has must be in the file, where
    transformers would silently start a missing one from random values; otherwise such weights
    are one warning, except those under the prefixes ``unused`` (parts the caller never runs,
    e.g. ``("pooler.",)``).
    Raises ZhtextError with one line on any failure to load.
    """
    if model_cls is None:
        from transformers import AutoModel

        model_cls = AutoModel
    # Mismatched shapes and missing weights are reported here, in one line each, instead of
    # transformers' multi-line report (which also lists the heads a bare encoder leaves unused).
    kwargs = {"ignore_mismatched_sizes": True, **kwargs, "output_loading_info": True}
    with quiet_hf_bars(), quiet_hf_report():
        model, info = _load(model_cls.from_pretrained, name_or_dir, "model", ("config.json",),
                            **kwargs)
    where = f"cannot load model from {name_or_dir}"
    mismatched = info.get("mismatched_keys") or []
    if mismatched:
        first = min(mismatched, key=str)
        detail = str(first)
        if isinstance(first, tuple) and len(first) == 3:  # (name, shape in the file, config's)
            detail = f"{first[0]} has shape {list(first[1])}, the config implies {list(first[2])}"
        raise ZhtextError(f"{where}: the weights do not fit config.json ({detail})")
    missing = sorted(info.get("missing_keys") or [])
    if strict and missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise ZhtextError(f"{where}: the weight file lacks {missing[0]}{more} (the folder is "
                          "incomplete or damaged: save or download the model again)")
    missing = [key for key in missing if not key.startswith(unused)]
    if missing:
        more = f" and {len(missing) - 2} more" if len(missing) > 2 else ""
        warnings.warn(f"{name_or_dir}: {len(missing)} weight(s) of {type(model).__name__} are not "
                      f"in the checkpoint and start from random values ({', '.join(missing[:2])}"
                      f"{more})", stacklevel=2)
    check_weights(model.named_parameters(), where)
    return model


# Larger than any trained weight: a value beyond it is a damaged byte in a weight file.
_PLAUSIBLE = 1e8


def check_weights(tensors: Iterable[tuple[str, torch.Tensor]], where: str) -> None:
    """Raise ``ZhtextError("<where>: ...")`` naming the first floating-point tensor that holds NaN,
    an infinity or a value beyond any trained weight (|w| > 1e8): what damaged bytes in a weight
    file give, since its header (names, shapes) may still read fine.

    One pass over the weights (min and max per tensor), about 0.1 s for a BERT-base on a CPU.
    """
    import torch

    named = [(name, t) for name, t in tensors
             if t.is_floating_point() and t.numel() and t.device.type != "meta"]
    if not named:
        return
    with torch.no_grad():
        bounds = torch.stack([torch.stack(torch.aminmax(t.detach())).float().cpu() for _, t in named])
    bad = ~(torch.isfinite(bounds) & (bounds.abs() <= _PLAUSIBLE)).all(dim=1)
    if bool(bad.any()):
        name = named[int(bad.nonzero()[0])][0]
        raise ZhtextError(f"{where}: its weights are damaged ({name} holds NaN, infinite or "
                          "impossibly large values); save or download the model again")


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
def quiet_hf_report() -> Iterator[None]:
    """Silence transformers' warnings while loading (its multi-line load report among them):
    :func:`load_model` says what matters in one line."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def model_folder(name_or_dir: str | os.PathLike, what: str = "model",
                 needs: tuple[str, ...] = ("config.json",)) -> Path:
    """The local folder of a model: the path itself, or a hub id's snapshot in the Hugging Face
    cache (fetched if needed, errors as one line). For models that are more than one
    ``from_pretrained`` call (a tagger's head, an embedder's whitening)."""
    name = str(name_or_dir)
    if Path(name).expanduser().exists() or _looks_like_path(name):
        return Path(name).expanduser()
    from huggingface_hub import snapshot_download

    return Path(_load(snapshot_download, name, what, needs))
