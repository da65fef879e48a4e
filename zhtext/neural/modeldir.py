"""Model folders: the ``zhtext.json`` beside the Hugging Face files, torn-free saving, and which
folders a training run may write into.

Models that zhtext trains carry a small ``zhtext.json`` naming the task, the label set and the
settings needed to use them; :func:`model_dir_writer` saves into a temporary folder first, so an
interrupted save never leaves new config beside old weights. :func:`check_output_folder` keeps a
training run out of a folder that holds anything else, and :func:`removed_if_failed` takes away a
folder that a failed run created.
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
# A training run's resumable state: <output>/checkpoint/state.pt (see zhtext.neural.trainer).
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.pt"
_SAVING = ".saving-"  # model_dir_writer's temporary folders


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


# Tasks whose folders are plain pretrained checkpoints: any task loads or starts from them as it
# would from a hub checkpoint (``zhtext train mlm``'s BERT).
PRETRAINED_TASKS = frozenset({"mlm"})


def own_task_meta(model_dir: str | os.PathLike, task: str) -> dict[str, Any]:
    """The ``zhtext.json`` of a folder holding a zhtext ``task`` model; ``{}`` for a plain
    checkpoint (no ``zhtext.json``, or one of :data:`PRETRAINED_TASKS`). Another task's model
    raises as :func:`load_task_meta` does."""
    path = Path(model_dir).expanduser()
    if not (path.is_dir() and (path / META_FILE).is_file()):
        return {}
    meta = load_task_meta(path)
    if meta["task"] in PRETRAINED_TASKS and task not in PRETRAINED_TASKS:
        return {}
    return load_task_meta(path, task)


def _contents(folder: Path) -> list[str]:
    """The names in ``folder``, leaving out temporary folders of saves."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(_SAVING))


def check_output_folder(output: str | os.PathLike, task: str, *, overwrite: bool = False,
                        resume: bool = False) -> None:
    """Refuse a training run's output folder unless it is new, empty, or this task's own.

    A folder holding a zhtext ``task`` model is retrained in place; one holding anything else (the
    user's files, another task's model) only with ``overwrite`` (files of the same names are then
    replaced, others left). A checkpoint of an unfinished run is continued with ``resume`` or
    started over with ``overwrite``, never silently replaced. ``resume`` needs this task's folder
    and its checkpoint. Nothing is written: a refused run leaves the folder as it was.
    """
    out = Path(output).expanduser()
    checkpoint = out / CHECKPOINT_DIR / CHECKPOINT_FILE
    if out.exists() and not out.is_dir():
        raise ZhtextError(f"{out} is a file; the model needs a folder")
    owner = None
    if (out / META_FILE).is_file():
        try:
            owner = load_task_meta(out)["task"]
        except ZhtextError:
            owner = "?"  # an unreadable zhtext.json: not known to be this task's
    if resume:
        if not out.is_dir():
            raise ZhtextError(f"nothing to resume: {out} does not exist (drop --resume to start)")
        if owner == "?":
            load_task_meta(out)  # says what is wrong with it
        if owner not in (None, task):
            raise ZhtextError(f"nothing to resume in {out}: it holds a zhtext {owner} model, "
                              f"not a {task} model")
        if not checkpoint.is_file():
            raise ZhtextError(f"nothing to resume: no {checkpoint} (a run that completes removes "
                              "it unless --keep-checkpoint); drop --resume to train again")
        return
    if not out.is_dir() or overwrite:
        return
    names = _contents(out)
    if checkpoint.is_file() and owner in (None, task):
        raise ZhtextError(f"{out} holds a training checkpoint ({CHECKPOINT_DIR}/{CHECKPOINT_FILE}): "
                          "--resume continues that run, --overwrite starts again")
    if names and owner != task:
        what = f"a zhtext {owner} model" if owner not in (None, "?") else \
            ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise ZhtextError(f"{out} is not empty and not a zhtext {task} model (it holds {what}); "
                          "give --overwrite to save the model into it anyway, or another folder")


@contextmanager
def removed_if_failed(folder: str | os.PathLike) -> Iterator[Path]:
    """Run a block that may create ``folder``; if the block fails and the folder did not exist
    before and holds no file (only empty folders or a save's temporary folder), take it away, so
    a failed start leaves nothing behind. A folder with a file in it (an interrupted run's
    checkpoint, a best model saved before the failure) stays."""
    path = Path(folder).expanduser()
    existed = path.exists()
    try:
        yield path
    except BaseException:
        if not existed and path.is_dir() and not any(
                p.is_file() and _SAVING not in str(p.relative_to(path)) for p in path.rglob("*")):
            shutil.rmtree(path, ignore_errors=True)
        raise


@contextmanager
def model_dir_writer(directory: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder inside ``directory`` to save a model into.

    When the block ends without error its files move into ``directory``, with the mode the umask
    gives (transformers writes weights 0600; this covers every file a save writes: weights,
    tokenizer, head, whitening, ``zhtext.json``); the temporary folder always goes, and one left by
    a killed run is removed by the next save. An interrupted save therefore never leaves a torn
    model (new config, old weights) behind, and a failed first save no empty folder.
    transformers' progress bars are off meanwhile.
    """
    with removed_if_failed(directory) as out:
        try:
            out.mkdir(parents=True, exist_ok=True)
            for stale in out.glob(f"{_SAVING}*"):
                pid = stale.name.split("-")[1]
                if pid.isdigit() and not process_alive(int(pid)):
                    shutil.rmtree(stale, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix=f"{_SAVING}{os.getpid()}-", dir=out))
        except OSError as exc:
            raise write_error(out, exc) from None
        try:
            with quiet_hf_bars():
                yield tmp
            for item in tmp.iterdir():
                for path in (item, *item.rglob("*")):
                    if path.is_file():
                        publish_mode(path)
                if item.is_dir() and (out / item.name).is_dir():
                    shutil.rmtree(out / item.name)  # a folder a saver writes is replaced whole
                os.replace(item, out / item.name)
        except OSError as exc:
            raise write_error(out, exc) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
