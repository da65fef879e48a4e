"""ONNX: an encoder's graph exported with torch's exporter and run with onnxruntime on the CPU.

Only the part of a model that is one tensor program is exported: the tagger's encoder and emission
layer (emissions), the embedder's encoder and pooling (pooled vectors). What follows stays in
zhtext and runs the same on either backend: the CRF and its Viterbi, span probabilities, the
whitening. The batch and sequence axes of the graph are dynamic, so one export takes any batch of
any length the encoder allows.

An export is a folder like a saved model, its ``zhtext.json`` naming the graph under
:data:`EXPORT_KEY` (the file, its output, the opset and the torch that wrote it), with the
tokenizer and the task's own small files (the CRF, the whitening) but no torch weights. A model
class's ``load`` sees that entry and runs the graph through :class:`OnnxGraph`.

Exporting needs ``onnx`` and ``onnxscript`` (torch's dynamo exporter writes through them), running
needs ``onnxruntime``: the ``onnx`` extra installs all three.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from zhtext.errors import ZhtextError
from zhtext.neural.hub import first_line
from zhtext.neural.modeldir import META_FILE

__all__ = ["EXPORT_KEY", "ONNX_FILE", "OnnxGraph", "check_export_folder", "export_graph",
           "open_export"]

ONNX_FILE = "model.onnx"
EXPORT_KEY = "onnx"  # the entry of zhtext.json that makes a folder an export
_INSTALL = "pip install 'zhtext[onnx]'"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # what a graph may take


class _Call(torch.nn.Module):
    """``fn`` (a method of ``module``, or a function of it) as a module's forward, for the
    exporter; ``module`` is held so that its weights become the graph's. The inputs are named in
    the signature: torch.export gives dynamic axes to named parameters, not to ``**kwargs``."""

    def __init__(self, module: torch.nn.Module, fn: Callable[..., torch.Tensor]):
        super().__init__()
        self.inner = module
        self.fn = fn

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        given = {"input_ids": input_ids, "attention_mask": attention_mask,
                 "token_type_ids": token_type_ids}
        return self.fn(**{k: v for k, v in given.items() if v is not None})


def _exporter_ready() -> None:
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            raise ZhtextError(f"exporting to ONNX needs {name} (torch's exporter writes through "
                              f"it): {_INSTALL}") from None


def export_graph(module: torch.nn.Module, fn: Callable[..., torch.Tensor],
                 inputs: Mapping[str, torch.Tensor], path: str | os.PathLike, output: str,
                 *, min_len: int, max_len: int) -> dict[str, Any]:
    """Write ``fn(**inputs)`` (``fn`` runs ``module``, in eval mode) as an ONNX graph to ``path``,
    its inputs named as in ``inputs`` (``[batch, sequence]`` int64 tensors, both axes dynamic:
    sequences of ``min_len`` to ``max_len`` tokens), its one output named ``output``. Returns the
    :data:`EXPORT_KEY` entry describing it."""
    _exporter_ready()
    from torch.export import Dim

    module.eval()
    batch, seq = Dim("batch"), Dim("sequence", min=min_len, max=max_len)
    if not set(inputs) <= set(_INPUTS) or "input_ids" not in inputs:
        raise ZhtextError(f"an exported graph takes {', '.join(_INPUTS)}, not {', '.join(inputs)}")
    wrapper = _Call(module, fn).eval()
    # The exporter reports its passes and the limits of the torch.export tracing as warnings and
    # prints; the one thing that matters, a failure, is an exception.
    with warnings.catch_warnings(), torch.no_grad(), _quiet_logger("torch.onnx"):
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                wrapper, (), kwargs=dict(inputs), input_names=list(inputs), output_names=[output],
                dynamic_shapes={name: {0: batch, 1: seq} for name in inputs}, dynamo=True,
                verbose=False)
            assert program is not None
            program.save(str(path), external_data=False)
        except ZhtextError:
            raise
        except Exception as exc:  # the exporter's failures come in many types
            raise ZhtextError(f"cannot export to ONNX: {_cause(exc)}") from None
    import onnx

    opset = next((o.version for o in onnx.load(str(path), load_external_data=False).opset_import
                  if o.domain in ("", "ai.onnx")), None)
    return {"file": Path(path).name, "inputs": list(inputs), "output": output, "opset": opset,
            "torch": torch.__version__}


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """``name``'s log records below errors dropped meanwhile (the exporter logs every op it does
    not register, e.g. torchvision's, to stderr)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _cause(exc: BaseException) -> str:
    """The line that says why an export failed: the exporter wraps the cause in pages of advice,
    under an "Exception summary" heading."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).splitlines()]
    summary = next((line for line in lines if line.startswith("<class")), None)
    return first_line(summary) if summary else f"{type(exc).__name__}: {first_line(exc)}"


class OnnxGraph:
    """An exported graph in an onnxruntime session on the CPU: ``graph(**tensors)`` feeds the
    inputs it takes (by name, from torch tensors) and returns its output as a float32 tensor."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        try:
            import onnxruntime
        except ImportError:
            raise ZhtextError(f"ONNX inference needs onnxruntime: {_INSTALL}") from None
        options = onnxruntime.SessionOptions()
        # As many threads as torch uses, so that --onnx and torch compare like for like.
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3  # errors only: its warnings would go to stderr raw
        try:
            self.session = onnxruntime.InferenceSession(str(path), options,
                                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for damaged files
            raise ZhtextError(f"cannot load {path}: {first_line(exc)}") from None
        self.path = Path(path)
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, **tensors: torch.Tensor) -> torch.Tensor:
        feed = {name: tensors[name].detach().cpu().numpy() for name in self.inputs}
        return torch.from_numpy(self.session.run(None, feed)[0]).float()


def open_export(directory: str | os.PathLike, meta: Mapping[str, Any], onnx: bool | None,
                device: str | None) -> OnnxGraph | None:
    """The graph of an export folder (``meta`` its ``zhtext.json``), or None for a torch model.
    ``onnx``: True insists on an export, False on a torch model, None takes either."""
    entry = meta.get(EXPORT_KEY)
    if entry is None:
        if onnx:
            raise ZhtextError(f"{directory} is not an ONNX export: make one with "
                              f"'zhtext export onnx {directory} -o OUT_DIR'")
        return None
    if onnx is False:
        raise ZhtextError(f"{directory} is an ONNX export: it runs only through onnxruntime")
    if device not in (None, "cpu"):
        raise ZhtextError(f"an ONNX export runs on the CPU here, not on {device}: "
                          "drop --device or use the torch model")
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise ZhtextError(f"{directory}/{META_FILE} has a damaged '{EXPORT_KEY}' entry")
    path = Path(directory) / entry["file"]
    if not path.is_file():
        raise ZhtextError(f"{directory} has no {entry['file']}: not a complete ONNX export")
    return OnnxGraph(path)


def check_export_folder(out: str | os.PathLike, source: str | os.PathLike | None) -> None:
    """Refuse an export's output folder unless it is new, empty or an earlier export (replaced);
    never the model's own folder."""
    import json

    out = Path(out).expanduser()
    if source is not None and out.exists() and Path(source).expanduser().exists() \
            and out.resolve() == Path(source).expanduser().resolve():
        raise ZhtextError(f"{out} is the model's own folder: export into another one")
    if out.exists() and not out.is_dir():
        raise ZhtextError(f"{out} is a file; the export needs a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    try:
        meta = json.loads((out / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or EXPORT_KEY not in meta:
        raise ZhtextError(f"{out} is not empty and not an ONNX export: give a new or empty folder")
