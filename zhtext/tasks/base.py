"""What every model class shares: the five verbs and the one training flow behind ``train``.

``Tagger``, ``TitleGenerator``, ``TextGenerator`` and ``Embedder`` subclass :class:`Model`:

- ``Cls.load(name_or_dir, *, device=None, batch_size=None)``: a hub id or a local folder (one
  zhtext saved, or a plain Hugging Face checkpoint where that makes sense);
- ``model.save(directory)``: the Hugging Face layout plus ``zhtext.json``, never torn;
- ``model(text)`` gives one result, ``model([texts])`` a list (both through :meth:`predict`);
- ``model.evaluate(data)``: a dict of the task's figures;
- ``Cls.train(config)``: one :class:`~zhtext.neural.trainer.TrainConfig` (a task's subclass).

The pipeline, the CLI and (later) the cluster and the server call only these verbs.

A model that fails while it runs (damaged weights that passed the checks on loading give NaN
scores, then an IndexError deep in decoding) is reported once, here: the methods that run a model
turn such a failure into one :class:`~zhtext.errors.ZhtextError` naming the model's folder.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from zhtext.errors import ZhtextError
from zhtext.neural.batching import bucketed_batches
from zhtext.neural.decoding import DecodeConfig, resolve_decoding
from zhtext.neural.hub import first_line
from zhtext.neural.modeldir import check_output_folder, removed_if_failed, update_task_meta
from zhtext.neural.trainer import Trainer, TrainConfig

if TYPE_CHECKING:
    import torch

M = TypeVar("M", bound="Model")

# The methods that run a model (the verbs and what the CLI and the pipeline call besides), where
# a failure of the model itself becomes one line naming its folder.
_RUNS = frozenset({"predict", "nbest", "cut", "evaluate", "generate", "generate_ids", "stream",
                   "encode", "encode_raw", "encode_and_fit", "fit_whitening"})
# What damaged weights raise at run time (NaN scores in decoding, out-of-range ids); a TypeError
# or an AttributeError is a caller's or a programming error and stays one.
_MODEL_FAILURES = (ArithmeticError, IndexError, KeyError, ValueError, RuntimeError, MemoryError)


def _run_failure(model: Model, exc: BaseException) -> ZhtextError:
    where = f"the model in {model.source}" if model.source else "the model"
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return ZhtextError(f"out of memory running {where} (a smaller batch size may fit): "
                           f"{first_line(exc)}")
    return ZhtextError(f"{where} failed while running ({type(exc).__name__}: {first_line(exc)}); "
                       "its folder may be damaged: save or download the model again")


@contextlib.contextmanager
def _reported(model: Model) -> Iterator[None]:
    try:
        yield
    except _MODEL_FAILURES as exc:  # (a ZhtextError is none of these: it passes as it is)
        if os.environ.get("ZHTEXT_DEBUG"):  # a maintainer chasing a bug wants the real error
            raise
        raise _run_failure(model, exc) from exc


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` with a model failure raised as one line (see the module docstring)."""
    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def run(self: Model, *args: Any, **kwargs: Any) -> Any:
            with _reported(self):
                yield from method(self, *args, **kwargs)
    else:
        @functools.wraps(method)
        def run(self: Model, *args: Any, **kwargs: Any) -> Any:
            with _reported(self):
                return method(self, *args, **kwargs)

    run.guarded = True  # type: ignore[attr-defined]
    return run


class Model:
    """Base of the model classes. Subclasses set ``task`` (the name in ``zhtext.json``),
    ``config_class`` (their :class:`TrainConfig` subclass) and ``metric`` (the dev figure that
    picks the best model in training; ``lower_is_better`` for one such as perplexity)."""

    task: ClassVar[str] = ""
    config_class: ClassVar[type[TrainConfig]] = TrainConfig
    metric: ClassVar[str] = "f1"
    lower_is_better: ClassVar[bool] = False
    resumable: ClassVar[bool] = True  # trained by the Trainer, with checkpoints

    device: torch.device
    batch_size: int
    meta: dict[str, Any]
    history: list[dict[str, Any]]
    source: str | None = None  # the folder or hub id it was loaded from (named in errors)
    quantized: str | None = None  # "int8" once :meth:`quantize` ran
    exported: str | None = None  # the ONNX file it runs, when loaded from an export
    network: ClassVar[str] = "model"  # the attribute holding the torch module that runs

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _RUNS & vars(cls).keys():
            method = vars(cls)[name]
            if callable(method) and not getattr(method, "guarded", False):
                setattr(cls, name, _guarded(method))

    # ---------------------------------------------------------------- the verbs

    @classmethod
    def load(cls: type[M], name_or_dir: str | os.PathLike, *, device: str | None = None,
             batch_size: int | None = None, **options: Any) -> M:
        """A model from a hub id or a local folder."""
        raise NotImplementedError

    def save(self, directory: str | os.PathLike, **meta: Any) -> Path:
        """Save to ``directory`` (created if needed); ``meta`` joins ``zhtext.json``."""
        raise NotImplementedError

    def quantize(self: M, mode: str | None = "int8") -> M:
        """Quantize for CPU inference (``int8``: dynamic int8 linear layers, see
        :mod:`zhtext.neural.quantize`); returns the model. Every ``load`` takes ``quantize=``."""
        from zhtext.neural.quantize import quantize_module

        if mode is not None and self.exported:
            raise ZhtextError(f"{self.source} is an ONNX export: int8 quantization applies to "
                              "torch models (drop --quantize, or quantize the torch model)")
        if mode is not None and self.quantized is None:
            setattr(self, self.network, quantize_module(getattr(self, self.network), mode, self.device))
            self.quantized = mode
        return self

    def export_onnx(self, directory: str | os.PathLike) -> Path:
        """Export the model's tensor program to ONNX in ``directory`` (see
        :mod:`zhtext.neural.onnx`); ``load`` on that folder runs it with onnxruntime."""
        raise ZhtextError(f"a {self.task} model cannot be exported to ONNX (taggers and "
                          "embedders can)")

    def _check_exportable(self, directory: str | os.PathLike) -> None:
        """Before an export: a torch model in fp32, and a folder it may write."""
        from zhtext.neural.onnx import check_export_folder

        if self.exported:
            raise ZhtextError(f"{self.source} is an ONNX export already")
        if self.quantized:
            raise ZhtextError("export the fp32 model: int8 layers do not export to ONNX")
        check_export_folder(directory, self.source)

    def _check_savable(self) -> None:
        if self.exported:
            raise ZhtextError(f"{self.source} is an ONNX export: save the torch model it came "
                              "from instead")

    def predict(self, texts: list[str], **options: Any) -> list[Any]:
        """One result per text, in order."""
        raise NotImplementedError

    def __call__(self, texts: str | Sequence[str], **options: Any) -> Any:
        """The result of one text, or a list of results for a list of texts."""
        if isinstance(texts, str):
            return self.predict([texts], **options)[0]
        return self.predict(list(texts), **options)

    def evaluate(self, data: Any, **options: Any) -> dict[str, Any]:
        """The task's figures on labelled ``data`` (examples in memory, or a file path)."""
        raise NotImplementedError

    @classmethod
    def train(cls: type[M], config: TrainConfig) -> M:
        """Train under ``config``, keep the best model in ``config.output`` and return it."""
        raise NotImplementedError

    # ---------------------------------------------------------------- shared by the trainers

    @classmethod
    def read_data(cls, path: str | os.PathLike, config: TrainConfig) -> list[Any]:
        """The examples of a data file, read with the task's reader."""
        raise NotImplementedError

    @classmethod
    def _check_config(cls, config: TrainConfig) -> TrainConfig:
        if not isinstance(config, cls.config_class):
            raise ZhtextError(f"{cls.__name__}.train takes a {cls.config_class.__name__}, "
                              f"not a {type(config).__name__}")
        if config.output is None:
            raise ZhtextError("no output folder for the model")
        if config.train is None:
            raise ZhtextError("no training data")
        # Before anything is loaded or read: a refused folder costs nothing and stays as it was.
        check_output_folder(config.output, cls.task, overwrite=config.overwrite,
                            resume=config.resume and cls.resumable)
        return config

    @classmethod
    def _data(cls, source: Any, config: TrainConfig) -> list[Any]:
        """Examples from a path (read with :meth:`read_data`) or from memory."""
        if source is None:
            return []
        if isinstance(source, (str, os.PathLike)):
            return cls.read_data(source, config)
        return list(source)

    @classmethod
    def _fit(
        cls: type[M],
        model: M,
        net: torch.nn.Module,
        config: TrainConfig,
        rows: Sequence[Any],
        lengths: Sequence[int],
        collate: Callable[[list[Any]], Any],
        evaluate: Callable[[], Mapping[str, float]] | None,
        *,
        groups: Sequence[dict[str, Any]] | None = None,
        extra_state: Mapping[str, Any] | None = None,
    ) -> M:
        """The training flow every task shares: length-bucketed batches of ``rows`` made by
        ``collate``, the :class:`Trainer`, the best model saved to ``config.output`` whenever the
        dev ``metric`` improves, its history added to ``zhtext.json``, and that best model loaded
        back and returned."""
        size = config.batch_size

        def batches(epoch: int):
            for group in bucketed_batches(lengths, size, config.seed, epoch):
                yield collate([rows[i] for i in group])

        return cls._fit_batches(model, net, config, batches, math.ceil(len(rows) / size),
                                evaluate, groups=groups, extra_state=extra_state)

    @classmethod
    def _fit_batches(
        cls: type[M],
        model: M,
        net: torch.nn.Module,
        config: TrainConfig,
        batches: Callable[[int], Iterable[Any]],
        batches_per_epoch: int,
        evaluate: Callable[[], Mapping[str, float]] | None,
        *,
        groups: Sequence[dict[str, Any]] | None = None,
        extra_state: Mapping[str, Any] | None = None,
    ) -> M:
        """:meth:`_fit` over a batch factory of the caller's (``batches(epoch)``, deterministic in
        the epoch: see :class:`Trainer`), for data streamed rather than held as rows."""
        out = Path(config.output)
        size = config.batch_size

        def on_best(record: Mapping[str, Any]) -> None:
            model.save(out, best=dict(record))

        trainer = Trainer(net, config, batches, batches_per_epoch, groups=groups,
                          evaluate=evaluate, on_best=on_best, metric=cls.metric,
                          lower_is_better=cls.lower_is_better,
                          extra_state={"task": cls.task, **(extra_state or {})})
        with removed_if_failed(out):  # a run that fails before saving anything leaves no folder
            history = trainer.fit()
        # The best model is on disk already: only its metadata gains the history.
        update_task_meta(out, history=history)
        best = cls.load(out, device=config.device, batch_size=size)
        best.history = history
        return best


class Generator(Model):
    """A model that writes text (titles, GPT-2): ``decoding`` is the class's default
    :class:`DecodeConfig`; every call takes a whole config and/or single-field overrides."""

    decoding: ClassVar[DecodeConfig] = DecodeConfig()

    @classmethod
    def decode_config(cls, config: DecodeConfig | None = None, **overrides: Any) -> DecodeConfig:
        """The decoding settings of one call (see :func:`resolve_decoding`); the CLI calls it
        before loading anything, so bad settings fail first."""
        return resolve_decoding(cls.decoding, config, **overrides)
