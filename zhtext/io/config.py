"""Pipeline settings in a TOML file, so that a run can be repeated exactly.

The file is flat: the same names as :class:`~zhtext.pipeline.Pipeline`'s keyword settings and the
``zhtext pipe`` options (``--tag-model`` is ``tag_model``)::

    steps = ["segment", "tag", "embed"]
    batch_size = 256
    tag_model = "/models/ner"
    embed_model = "bert-base-chinese"
    whitening = "/models/w.npz"

Relative paths in a file are taken from the file's own folder, so a config travels with the models
beside it. :func:`save_config` writes local paths absolute (a hub id stays as it is).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zhtext.errors import ZhtextError
from zhtext.io.writing import atomic_output

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the stdlib reader arrived in 3.11
    import tomli as tomllib

__all__ = ["PATH_SETTINGS", "load_config", "resolve_paths", "save_config"]

# Settings that name a file or a model directory (a model may also be a hub id).
PATH_SETTINGS = frozenset(
    {"dict", "user_dict", "tag_model", "title_model", "gpt_model", "embed_model", "whitening"}
)


def resolve_paths(settings: Mapping[str, Any], base: str | os.PathLike) -> dict[str, Any]:
    """``settings`` with each relative path setting that exists under ``base`` made absolute.

    A name that is no file or folder there (a hub id such as ``bert-base-chinese``) is kept as is.
    """
    out = dict(settings)
    for key in PATH_SETTINGS & out.keys():
        value = out[key]
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            candidate = Path(base) / Path(value).expanduser()
            if candidate.exists():
                out[key] = str(candidate.resolve())
    return out


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a pipeline config; relative paths in it are resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise ZhtextError(f"no such config file: {path}")
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ZhtextError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError as exc:  # tomllib reads bytes but wants UTF-8
        raise ZhtextError(f"{path}: not UTF-8 text (byte {exc.start}), so not a TOML config") from None
    nested = [key for key, value in data.items() if isinstance(value, dict)]
    if nested:
        raise ZhtextError(f"{path}: settings are flat 'name = value' lines; found a table [{nested[0]}]")
    return resolve_paths(data, path.parent)


def _toml_value(key: str, value: Any) -> str:
    # JSON's string escapes are valid TOML basic-string escapes; ensure_ascii=False keeps Chinese.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ZhtextError(f"setting {key} = {value} cannot be saved")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(key, v) for v in value) + "]"
    raise ZhtextError(f"setting {key} = {value!r} cannot be saved in a config")


def save_config(path: str | os.PathLike, settings: Mapping[str, Any]) -> None:
    """Write ``settings`` as a flat TOML file (atomically); ``None`` values are left out."""
    lines = ["# zhtext pipe settings: zhtext pipe FILE --config THIS.toml -o OUT.jsonl"]
    for key, value in resolve_paths(settings, Path.cwd()).items():
        if value is not None:
            lines.append(f"{key} = {_toml_value(key, value)}")
    with atomic_output(path) as handle:
        handle.write("\n".join(lines) + "\n")
