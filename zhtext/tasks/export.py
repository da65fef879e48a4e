"""``zhtext export onnx``: which models export, found from a folder's ``zhtext.json``.

A tagger exports its encoder and emission layer, an embedder its encoder and pooling (see
:mod:`zhtext.neural.onnx`); a plain Hugging Face encoder folder exports as an embedder with the
default pooling. Titles and generation run token by token with caches and are not exported.
"""

from __future__ import annotations

import os
from pathlib import Path

from zhtext.errors import ZhtextError
from zhtext.neural.modeldir import META_FILE, load_task_meta
from zhtext.neural.onnx import EXPORT_KEY
from zhtext.tasks.base import Model

__all__ = ["export_onnx"]


def export_onnx(model_dir: str | os.PathLike, out_dir: str | os.PathLike) -> tuple[Model, Path]:
    """Export the model in ``model_dir`` to an ONNX folder ``out_dir`` (new, empty, or an earlier
    export, which is replaced); returns the torch model and the folder."""
    from zhtext.tasks.embed import Embedder
    from zhtext.tasks.tagger import Tagger

    folder = Path(model_dir).expanduser()
    if not folder.is_dir():
        raise ZhtextError(f"{model_dir} is not a folder: export takes a saved model's folder")
    meta = load_task_meta(folder) if (folder / META_FILE).is_file() else {"task": Embedder.task}
    if EXPORT_KEY in meta:
        raise ZhtextError(f"{model_dir} is an ONNX export already: export the torch model")
    task = meta["task"]
    classes: dict[str, type[Model]] = {Tagger.task: Tagger, Embedder.task: Embedder}
    if task not in classes:
        raise ZhtextError(f"{model_dir} is a zhtext {task} model: only taggers and embedders "
                          "export to ONNX")
    model = classes[task].load(folder, device="cpu", onnx=False)
    return model, model.export_onnx(out_dir)
