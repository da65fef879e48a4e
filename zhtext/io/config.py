"""Settings in a TOML file, so that a run can be repeated exactly (``zhtext pipe --config``).

A file holds top-level settings and one table per part, one level deep::

    steps = ["segment", "tag", "embed"]
    batch_size = 1024

    [tag]
    model = "/models/ner"

    [embed]
    model = "bert-base-chinese"
    whitening = "/models/w.npz"

This module reads and writes such files; what the names mean, and which values are paths (taken
from the file's own folder when relative, see :func:`local_path`), is the reader's business.
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

__all__ = ["load_config", "local_path", "save_config"]


def local_path(value: str, base: str | os.PathLike) -> str:
    """``value`` made absolute if it is a relative path that exists under ``base``; anything else
    (an absolute path, a hub id such as ``bert-base-chinese``) as it is."""
    if value and not Path(value).expanduser().is_absolute():
        candidate = Path(base) / Path(value).expanduser()
        if candidate.exists():
            return str(candidate.resolve())
    return value


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """The settings of a TOML file, as they are written (tables as dicts)."""
    path = Path(path)
    if not path.is_file():
        raise ZhtextError(f"no such config file: {path}")
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ZhtextError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError as exc:  # tomllib reads bytes but wants UTF-8
        raise ZhtextError(f"{path}: not UTF-8 text (byte {exc.start}), so not a TOML config") from None


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


def save_config(path: str | os.PathLike, settings: Mapping[str, Any], comment: str = "") -> None:
    """Write ``settings`` as TOML (atomically): plain values first, then each mapping as a
    ``[table]`` of plain values (an empty one is left out); ``None`` values are left out, and a
    ``comment`` goes on top."""
    lines = [f"# {comment}"] if comment else []
    tables = {k: v for k, v in settings.items() if isinstance(v, Mapping)}
    lines += [f"{k} = {_toml_value(k, v)}" for k, v in settings.items() if k not in tables and v is not None]
    for name, table in tables.items():
        values = [f"{k} = {_toml_value(f'{name}.{k}', v)}" for k, v in table.items() if v is not None]
        if values:
            lines += ["", f"[{name}]", *values]
    with atomic_output(path) as handle:
        handle.write("\n".join(lines) + "\n")
