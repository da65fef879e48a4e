"""The one training loop for every trainable zhtext model (tagger, UniLM titles, GPT-2).

:class:`TrainConfig` holds the settings every trainer shares (data, the model to start from or the
size of one built from scratch, the schedule); each task adds its own few in a small subclass.
:class:`Trainer` runs the loop and knows nothing about the task. It is given

- a ``model`` whose forward returns the loss (a scalar tensor, or an object with ``.loss`` as the
  Hugging Face models return) when called with one batch (``model(**batch)`` for a mapping,
  ``model(*batch)`` for a tuple or list, ``model(batch)`` otherwise);
- ``batches(epoch)``: a factory giving the batches of one epoch. It must be deterministic in
  ``epoch`` (shuffle with a generator seeded from the seed and the epoch, never the global RNG), so
  that a resumed run can skip exactly the batches it had already consumed;
- ``evaluate()``: the dev metrics as a dict, ``metric`` the key that picks the best model, and
  ``on_best(record)``: called whenever it improves, to save the best model;
- the parameter groups (e.g. a larger learning rate for a CRF head).

It provides AdamW, a linear warm-up then linear decay, gradient accumulation and clipping, seeding,
stopping by epochs, optimizer steps and/or wall-clock seconds, the progress bar, dev evaluation
after each epoch (and every N steps), and resumable checkpoints: everything needed to continue —
model, optimizer, schedule position, RNG states, the :class:`TrainState` — goes to one file,
``<output>/checkpoint/state.pt``, written atomically at each evaluation, at an interruption
(Ctrl-C, SIGTERM) and at the time budget. ``resume=True`` continues from it; an uninterrupted run
and an interrupted-then-resumed run with the same seed reach the same weights. A run that
completes its schedule removes the checkpoint (unless ``keep_checkpoint``); one stopped by the
time budget keeps it and says so. A non-finite loss stops the run with one line.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zhtext.errors import ZhtextError
from zhtext.io.progress import Bar
from zhtext.io.writing import atomic_path
from zhtext.neural.modeldir import CHECKPOINT_DIR, CHECKPOINT_FILE

DataSource = str | os.PathLike | Sequence[Any]


@dataclass
class TrainConfig:
    """Settings every trainer shares; a task's subclass adds its own (and may change defaults).

    Data: ``train`` and ``dev`` are file paths (read with the task's reader, ``input_format`` and
    ``encoding``) or in-memory examples. ``output`` is the folder the best model is saved to
    (Hugging Face layout + ``zhtext.json``), with ``output/checkpoint`` while training runs. It
    must be new, empty or a model of the same task, unless ``overwrite``; ``resume`` continues the
    run whose checkpoint it holds, and ``keep_checkpoint`` keeps that checkpoint after the schedule
    completes (to continue later with more epochs or steps).

    Model: ``model`` names a checkpoint to start from (hub id or folder); without it a small model
    (``layers``, ``hidden``, ``heads`` = hidden / 64 by default, ``dropout``) is built from
    scratch over a character vocabulary of the training text (characters seen at least
    ``min_char_count`` times, at most ``max_vocab`` entries).

    Schedule: ``lr`` defaults per task (smaller for a pretrained model). ``warmup`` is the
    fraction of the run spent warming the learning rate up from 0; after it the rate decays
    linearly to 0 at the end of the run. The run's length is ``max_steps`` optimizer steps if
    given, else ``epochs`` epochs; with ``max_seconds`` the schedule also follows the clock
    (progress = the larger of the step and time fractions), so a time-budgeted run still ends with
    a decayed rate. ``max_seconds`` is a total over a run and its resumptions: a resumed run goes
    on from the seconds already spent (``TrainState.elapsed``), in its schedule as in its stop.
    The dev set is scored after each epoch and every ``eval_every`` optimizer steps, on its first
    ``dev_limit`` examples when given.

    ``ema`` > 0 keeps an exponential moving average of the weights (decay ``ema``, e.g. 0.999;
    lower early in the run: ``min(ema, (1 + step) / (10 + step))``); the dev set scores the
    average and the average is what is saved. It smooths the last epochs' noise of a small model
    trained from scratch.
    """

    train: DataSource | None = None
    output: str | os.PathLike | None = None
    dev: DataSource | None = None
    model: str | os.PathLike | None = None
    input_format: str = "auto"
    encoding: str | None = None
    # a model built from scratch
    layers: int = 4
    hidden: int = 256
    heads: int | None = None
    dropout: float = 0.1
    min_char_count: int = 1
    max_vocab: int | None = None
    # the schedule
    epochs: int = 3
    batch_size: int = 16
    lr: float | None = None
    warmup: float = 0.1
    weight_decay: float = 0.01
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    ema: float = 0.0  # decay of the weights' moving average that is evaluated and saved; 0: off
    max_steps: int | None = None
    max_seconds: float | None = None
    eval_every: int | None = None  # optimizer steps between dev evaluations (besides epoch ends)
    dev_limit: int | None = None
    seed: int = 42
    resume: bool = False
    keep_checkpoint: bool = False  # keep checkpoint/ after the schedule completes
    overwrite: bool = False  # save into a non-empty folder that is not this task's model
    progress: bool = True
    device: str | None = None

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ZhtextError("bad training settings: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """What is wrong with these settings (a subclass extends the list)."""
        problems = []
        if self.epochs < 0:
            problems.append("epochs must be >= 0")
        if self.batch_size < 1:
            problems.append("batch_size must be >= 1")
        if self.max_steps is not None and self.max_steps < 0:
            problems.append("max_steps must be >= 0")
        if self.max_seconds is not None and not self.max_seconds >= 0:
            problems.append("max_seconds must be >= 0")
        if not 0 <= self.warmup < 1:
            problems.append("warmup must lie in [0, 1)")
        if self.grad_accum < 1:
            problems.append("grad_accum must be >= 1")
        if self.eval_every is not None and self.eval_every < 1:
            problems.append("eval_every must be >= 1")
        if self.dev_limit is not None and self.dev_limit < 1:
            problems.append("dev_limit must be >= 1")
        if self.lr is not None and not self.lr > 0:
            problems.append(f"the learning rate must be > 0, not {self.lr}")
        if min(self.layers, self.hidden) < 1 or (self.heads is not None and self.heads < 1):
            problems.append("layers, hidden and heads must be >= 1")
        elif self.hidden % self.n_heads:
            problems.append(f"hidden size {self.hidden} is not a multiple of the {self.n_heads} heads")
        if not 0 <= self.dropout < 1:
            problems.append("dropout must lie in [0, 1)")
        if not 0 <= self.ema < 1:
            problems.append("ema must lie in [0, 1)")
        return problems

    @property
    def n_heads(self) -> int:
        """Attention heads of a model built from scratch: ``heads``, or hidden / 64 (at least 1)."""
        return self.heads or max(1, self.hidden // 64)


@dataclass
class TrainState:
    """Where a run stands: saved in every checkpoint, restored on resume."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # batches of the current epoch consumed
    elapsed: float = 0.0  # training seconds over all invocations
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float = -math.inf
    evaluated_step: int = -1
    loss_sum: float = 0.0  # since the last evaluation
    loss_batches: int = 0


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def lr_factor(progress: float, warmup: float) -> float:
    """Multiplier of the base learning rate at ``progress`` in [0, 1]: linear up, then down."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return progress / warmup
    return max(0.0, (1.0 - progress) / max(1e-12, 1.0 - warmup))


def param_groups(
    model: torch.nn.Module,
    lr: float,
    weight_decay: float = 0.01,
    head: Iterable[str] = (),
    head_lr: float | None = None,
) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases, norms and CRF scores; ``head`` modules get ``head_lr``.

    ``head`` lists the names of the model's sub-modules (e.g. ``["emit", "crf"]``) that train with
    the larger rate; their parameters get no weight decay either, so transitions are not pulled to 0.
    """
    for rate in (lr, head_lr):
        if rate is not None and not rate > 0:
            raise ZhtextError(f"the learning rate must be > 0, not {rate}")
    prefixes = tuple(f"{name}." for name in head)
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        in_head = name.startswith(prefixes)
        no_decay = in_head or param.ndim < 2 or "norm" in name.lower()
        groups.setdefault((in_head, no_decay), []).append(param)
    result = []
    for (in_head, no_decay), params in sorted(groups.items()):
        result.append({
            "params": params,
            "lr": head_lr if in_head and head_lr is not None else lr,
            "weight_decay": 0.0 if no_decay else weight_decay,
        })
    return result


def _differences(saved: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    """What a checkpoint's settings and this run's disagree on, one ``key: A in it, B now`` each
    (a setting a checkpoint predates is ``none``), so that a refused resume says what to change."""

    def shown(value: Any) -> str:
        text = "none" if value is None else repr(value)
        return text if len(text) <= 40 else text[:37] + "..."

    return "; ".join(f"{key}: {shown(saved.get(key))} in it, {shown(now.get(key))} now"
                     for key in sorted(set(saved) | set(now)) if saved.get(key) != now.get(key))


def _loss_of(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    if isinstance(batch, Mapping):
        out = model(**batch)
    elif isinstance(batch, (tuple, list)):
        out = model(*batch)
    else:
        out = model(batch)
    loss = getattr(out, "loss", out)
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise TypeError("the model's forward must return a scalar loss tensor (or an output with .loss)")
    return loss


def _format_metrics(metrics: Mapping[str, Any]) -> str:
    parts = []
    for key, value in metrics.items():
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return "  ".join(parts)



def checkpoint_path(output: str | os.PathLike) -> Path:
    """Where :class:`Trainer` keeps its resumable state for a run saving to ``output``."""
    return Path(output) / CHECKPOINT_DIR / CHECKPOINT_FILE


class Trainer:
    """Train ``model`` under ``config``; :meth:`fit` returns the history.

    The history has one dict per dev evaluation (epoch ends, every ``eval_every`` steps, and the
    end of the run), with ``epoch`` (fractional), ``step``, the mean training ``loss`` since the
    previous entry, ``lr``, ``seconds`` and the dev metrics. Without ``evaluate``, ``on_best`` is
    called at each evaluation with the training loss (the latest model counts as the best).
    ``extra_state`` (e.g. the label set) is stored in the checkpoint and must match on resume, so
    a checkpoint is never continued with different data or settings. ``groups`` default to
    :func:`param_groups` of the model at ``config.lr``. Seed (:func:`seed_everything`) before
    building the model so its initial weights follow the seed.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: TrainConfig,
        batches: Callable[[int], Iterable[Any]],
        batches_per_epoch: int,
        *,
        groups: Sequence[dict[str, Any]] | None = None,
        evaluate: Callable[[], Mapping[str, float]] | None = None,
        on_best: Callable[[Mapping[str, Any]], None] | None = None,
        metric: str = "f1",
        lower_is_better: bool = False,
        extra_state: Mapping[str, Any] | None = None,
    ) -> None:
        if config.output is None:
            raise ZhtextError("no output folder for the model")
        if batches_per_epoch <= 0:
            raise ZhtextError("no training batches: the training data is empty")
        self.model = model
        self.config = config
        self.batches = batches
        self.batches_per_epoch = batches_per_epoch
        self.evaluate = evaluate
        self.on_best = on_best
        self.metric = metric
        self.lower_is_better = lower_is_better
        self.extra = dict(extra_state or {})
        self.accum = config.grad_accum
        self.total_steps = config.epochs * math.ceil(batches_per_epoch / self.accum)
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        if self.total_steps <= 0:
            raise ZhtextError("nothing to train: epochs and max_steps are both 0")
        if groups is None:
            groups = param_groups(model, config.lr or 1e-3, config.weight_decay)
        self.optimizer = torch.optim.AdamW(groups, lr=groups[0]["lr"], weight_decay=config.weight_decay)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.checkpoint = checkpoint_path(config.output)
        self.state = TrainState()
        self._bar = Bar(enabled=config.progress, unit="steps")
        self._task = None
        self._run_start = 0.0
        self._run_elapsed = 0.0  # this invocation's training seconds (its speed)
        self._rng = _rng_state()  # RNG states as of the last completed step
        self._params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self._average = [p.detach().clone() for p in self._params] if config.ema else None

    # ---------------------------------------------------------------- checkpoints

    def _restore(self) -> None:
        # On the CPU: RNG states must stay CPU tensors; weights and moments are copied to the device.
        saved = torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        differ = _differences({**(saved.get("extra") or {}),
                               "batches_per_epoch": saved.get("batches_per_epoch")},
                              {**self.extra, "batches_per_epoch": self.batches_per_epoch})
        if differ:
            raise ZhtextError(f"{self.checkpoint} was written for other data or settings "
                              f"({differ}); remove it or drop --resume")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self._average is not None:
            if saved.get("ema") is None:
                raise ZhtextError(f"{self.checkpoint} holds no moving average of the weights; "
                                  "resume without --ema or start again")
            for average, kept in zip(self._average, saved["ema"]):
                average.copy_(kept)
        _set_rng_state(saved["rng"])
        self.state = TrainState(**saved["loop"])

    def _save_checkpoint(self) -> None:
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": self._average,
            "rng": self._rng,
            "loop": asdict(self.state),
            "extra": self.extra,
            "batches_per_epoch": self.batches_per_epoch,
            # The settings' scalars, read field by field: asdict would deep-copy the training
            # examples and a lexicon given as objects, seconds per checkpoint out of the budget.
            "config": {f.name: getattr(self.config, f.name) for f in fields(self.config)
                       if isinstance(getattr(self.config, f.name),
                                     (int, float, str, bool, type(None)))},
        }
        with atomic_path(self.checkpoint) as tmp:
            torch.save(payload, tmp)

    # ---------------------------------------------------------------- one step, one evaluation

    def _set_lr(self) -> float:
        progress = self.state.step / self.total_steps
        if self.config.max_seconds:  # the budget is a total: resumed runs go on from its spent part
            progress = max(progress, self.state.elapsed / self.config.max_seconds)
        factor = lr_factor(progress, self.config.warmup)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        return self.base_lrs[0] * factor

    def _update_average(self) -> None:
        """One step of the weights' moving average (after an optimizer step)."""
        decay = min(self.config.ema, (1 + self.state.step) / (10 + self.state.step))
        with torch.no_grad():
            for average, param in zip(self._average, self._params):
                average.lerp_(param, 1.0 - decay)

    def _swap_average(self) -> None:
        """Exchange the model's weights and their moving average (twice: back as they were)."""
        if self._average is None:
            return
        with torch.no_grad():
            for param, average in zip(self._params, self._average):
                param.data, average.data = average.data, param.data

    def _evaluate(self) -> None:
        state = self.state
        self.model.eval()
        self._swap_average()  # the average is scored, and saved by on_best
        try:
            with torch.no_grad():
                metrics = dict(self.evaluate()) if self.evaluate is not None else {}
            self._evaluate_rest(metrics)
        finally:
            self._swap_average()
            self.model.train()
        self._rng = _rng_state()
        if state.step < self.total_steps or self.config.keep_checkpoint:
            self._save_checkpoint()

    def _evaluate_rest(self, metrics: dict[str, Any]) -> None:
        """Record one evaluation and save the model if it is the best yet."""
        state = self.state
        record: dict[str, Any] = {
            "epoch": round(state.epoch + state.batch / self.batches_per_epoch, 4),
            "step": state.step,
            "loss": state.loss_sum / state.loss_batches if state.loss_batches else None,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": round(state.elapsed, 2),
            **metrics,
        }
        state.loss_sum, state.loss_batches = 0.0, 0
        state.history.append(record)
        state.evaluated_step = state.step
        self._bar.print(_format_metrics(record))
        if self.evaluate is None:
            score = float(state.step)  # without dev data the latest model is the best
        elif self.metric in metrics:
            score = float(metrics[self.metric])
            score = -score if self.lower_is_better else score
        else:
            raise ZhtextError(f"evaluate() returned no {self.metric!r} metric")
        if score > state.best:
            state.best = score
            if self.on_best is not None:
                self.on_best(record)

    def _train_epoch(self, steps_at_start: int, elapsed_before: float) -> bool:
        """Run the rest of the current epoch; True when the run must stop (steps or time)."""
        state, config, optimizer = self.state, self.config, self.optimizer
        skip = state.batch  # batches of this epoch consumed before a resume
        accumulated, pending_loss = 0, 0.0
        seen = 0
        optimizer.zero_grad(set_to_none=True)
        for index, batch in enumerate(self.batches(state.epoch)):
            seen = index + 1
            if index < skip:
                continue
            loss = _loss_of(self.model, batch)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise ZhtextError(f"training diverged: the loss is {value} at step {state.step + 1} "
                                  "(a lower learning rate may help)")
            (loss / self.accum).backward()
            pending_loss += value
            accumulated += 1
            last_in_epoch = index + 1 == self.batches_per_epoch
            if accumulated < self.accum and not last_in_epoch:
                continue
            lr = self._set_lr()
            if config.max_grad_norm:
                params = [p for g in optimizer.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if self._average is not None:
                self._update_average()
            state.loss_sum += pending_loss
            state.loss_batches += accumulated
            accumulated, pending_loss = 0, 0.0
            state.step += 1
            state.batch = index + 1
            self._rng = _rng_state()
            self._run_elapsed = time.perf_counter() - self._run_start
            state.elapsed = elapsed_before + self._run_elapsed
            speed = (state.step - steps_at_start) / max(1e-9, self._run_elapsed)
            self._bar.update(self._task, completed=state.step, description=f"epoch {state.epoch + 1}",
                             status=f"loss {value:.4f}  lr {lr:.2e}  {speed:.2f} it/s")
            if state.step >= self.total_steps or self._out_of_time():
                return True
            if last_in_epoch:
                return False
            if config.eval_every and state.step % config.eval_every == 0:
                self._evaluate()
        if seen < self.batches_per_epoch:
            raise ZhtextError(f"the batch factory gave {seen} batches, not the "
                              f"{self.batches_per_epoch} announced")
        return False

    # ---------------------------------------------------------------- the run

    def _out_of_time(self) -> bool:
        budget = self.config.max_seconds
        return budget is not None and self.state.elapsed >= budget

    def fit(self) -> list[dict[str, Any]]:
        """Train to the end of the schedule (or the budget) and return the history."""
        config = self.config
        if config.resume:
            if not self.checkpoint.is_file():
                raise ZhtextError(f"nothing to resume: no {self.checkpoint}")
            self._restore()
            if self.state.step < self.total_steps and self._out_of_time():
                raise ZhtextError(
                    f"the time budget is spent: {self.state.elapsed:.0f} s of --max-seconds "
                    f"{config.max_seconds:g} trained already; give a larger --max-seconds to go on "
                    f"from step {self.state.step}")
        else:
            seed_everything(config.seed)
        self._rng = _rng_state()
        with self._bar:
            self._task = self._bar.add("train", total=self.total_steps, completed=self.state.step)
            if config.resume:
                self._bar.print(f"resuming at step {self.state.step} (epoch {self.state.epoch + 1})")
            self._run_start = time.perf_counter()
            self._run_elapsed = 0.0
            steps_at_start, elapsed_before = self.state.step, self.state.elapsed
            self.model.train()
            try:
                while self.state.step < self.total_steps:
                    stop = self._train_epoch(steps_at_start, elapsed_before)
                    if self.state.batch >= self.batches_per_epoch:
                        self.state.epoch += 1
                        self.state.batch = 0
                    if stop:
                        break
                    self._evaluate()
                if self.state.evaluated_step != self.state.step:
                    self._evaluate()
                if self.state.step >= self.total_steps and not config.keep_checkpoint:
                    shutil.rmtree(self.checkpoint.parent, ignore_errors=True)
            except KeyboardInterrupt:
                # The saved state is that of the last optimizer step; a partly accumulated step is redone.
                self._save_checkpoint()
                self._bar.print(f"interrupted: checkpoint saved to {self.checkpoint} (continue with --resume)")
                raise
        if self.state.step < self.total_steps:  # stopped by the clock: say what is left on disk
            warnings.warn(
                f"training stopped at the time budget (--max-seconds {config.max_seconds:g}) at "
                f"step {self.state.step} of {self.total_steps}; its checkpoint {self.checkpoint} "
                "is kept: --resume with a larger --max-seconds continues the run", stacklevel=2)
        return list(self.state.history)
