"""Model folders: the ``zhtext.json`` beside the Hugging Face files, and torn-free saving.

Models that zhtext trains carry a small ``zhtext.json`` naming the task, the label set and the
settings needed to use them; :func:`model_dir_writer` saves into a temporary folder first, so an
interrupted save never leaves new config beside old weights.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zhtext.errors import ZhtextError
from zhtext.io.writing import atomic_output, process_alive, publish_mode, write_error
from zhtext.neural.hub import first_line, quiet_hf_bars


META_FILE = "zhtext.json"


def save_task_meta(out_dir: str | os.PathLike, task: str, settings: Mapping[str, Any] | None = None,
                   **more: Any) -> Path:
    """Write ``zhtext.json`` into a model directory: the task name, this zhtext's version, and the
    JSON-serialisable ``settings`` (a model's metadata as loaded: its own task and version are
    replaced) updated with ``more``."""
    from zhtext import __version__

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
        raise ZhtextError(f"cannot read {path}: {first_line(exc)}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("task"), str):
        raise ZhtextError(f"{path} does not name a task")
    if task is not None and meta["task"] != task:
        raise ZhtextError(f"{model_dir} is a zhtext {meta['task']} model, not a {task} model")
    return meta


@contextmanager
def model_dir_writer(directory: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder inside ``directory`` to save a model into.

    When the block ends without error its files move into ``directory``, with the mode the umask
    gives (transformers writes weights 0600); the temporary folder always goes, and one left by a
    killed run is removed by the next save. An interrupted save therefore never leaves a torn model
    (new config, old weights) behind. transformers' progress bars are off meanwhile.
    """
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".saving-*"):
            pid = stale.name.split("-")[1]
            if pid.isdigit() and not process_alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".saving-{os.getpid()}-", dir=out))
    except OSError as exc:
        raise write_error(out, exc) from None
    try:
        with quiet_hf_bars():
            yield tmp
        for item in tmp.iterdir():
            if item.is_file():
                publish_mode(item)
            os.replace(item, out / item.name)
    except OSError as exc:
        raise write_error(out, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
