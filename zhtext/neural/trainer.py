"""One training loop for every trainable zhtext model (tagger, UniLM titles, GPT-2).

The loop knows nothing about the task. It is given

- a ``model`` whose forward returns the loss (a scalar tensor, or an object with ``.loss`` as the
  Hugging Face models return) when called with one batch (``model(**batch)`` for a mapping,
  ``model(*batch)`` for a tuple or list, ``model(batch)`` otherwise);
- ``batches(epoch)``: a factory giving the batches of one epoch. It must be deterministic in
  ``epoch`` (shuffle with a generator seeded from the seed and the epoch, never the global RNG), so
  that a resumed run can skip exactly the batches it had already consumed;
- ``evaluate()``: the dev metrics as a dict (higher ``metric`` is better), and ``on_best(metrics)``:
  called whenever the dev metric improves, to save the best model;
- the parameter groups (e.g. a larger learning rate for a CRF head).

It provides AdamW, a linear warm-up then linear decay, gradient accumulation and clipping, seeding,
stopping by epochs, optimizer steps and/or wall-clock seconds, a rich progress bar, dev evaluation
after each epoch (and every N steps), and resumable checkpoints: everything needed to continue —
model, optimizer, schedule position, RNG states, history, best metric — goes to one file,
``<out_dir>/checkpoint/state.pt``, written atomically at each evaluation, at an interruption
(Ctrl-C) and at the time budget. ``resume=True`` continues from it; an uninterrupted run and an
interrupted-then-resumed run with the same seed reach the same weights.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zhtext.errors import ZhtextError
from zhtext.io.writing import atomic_path

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.pt"


@dataclass
class TrainConfig:
    """Settings of :func:`train_loop` (the learning rates live in the parameter groups).

    ``warmup`` is the fraction of the run spent warming the learning rate up from 0; after it the
    rate decays linearly to 0 at the end of the run. The run's length is ``max_steps`` optimizer
    steps if given, else ``epochs`` epochs; with ``max_seconds`` the schedule also follows the
    clock (progress = the larger of the step and time fractions), so a time-budgeted run still
    ends with a decayed rate. ``max_seconds`` counts this invocation's training time only.
    """

    epochs: int = 3
    max_steps: int | None = None
    max_seconds: float | None = None
    warmup: float = 0.1
    weight_decay: float = 0.01
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    seed: int = 42
    eval_every: int | None = None  # optimizer steps between dev evaluations (besides epoch ends)
    metric: str = "f1"  # key of the evaluate() dict that picks the best model
    lower_is_better: bool = False  # True for a metric such as perplexity
    resume: bool = False
    keep_checkpoint: bool = False  # keep checkpoint/ after the schedule completes
    progress: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 0:
            problems.append("epochs must be >= 0")
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
        if problems:
            raise ZhtextError("bad training settings: " + "; ".join(problems))


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


class _Progress:
    """A rich progress bar on stderr showing loss, learning rate and speed; a no-op when disabled."""

    def __init__(self, enabled: bool, total: int, completed: int):
        self._bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  {task.fields[speed]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._bar.add_task("train", total=total, completed=completed, loss=float("nan"),
                                        lr=0.0, speed="")
        self._bar.start()

    def update(self, step: int, epoch: int, loss: float, lr: float, it_per_s: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=step, description=f"epoch {epoch + 1}", loss=loss,
                             lr=lr, speed=f"{it_per_s:.2f} it/s")

    def print(self, message: str) -> None:
        if self._bar is not None:
            self._bar.console.print(message)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _format_metrics(metrics: Mapping[str, Any]) -> str:
    parts = []
    for key, value in metrics.items():
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return "  ".join(parts)


def checkpoint_path(out_dir: str | Path) -> Path:
    """Where :func:`train_loop` keeps its resumable state for ``out_dir``."""
    return Path(out_dir) / CHECKPOINT_DIR / CHECKPOINT_FILE


def train_loop(
    model: torch.nn.Module,
    groups: Sequence[dict[str, Any]],
    batches: Callable[[int], Iterable[Any]],
    batches_per_epoch: int,
    out_dir: str | Path,
    config: TrainConfig,
    evaluate: Callable[[], Mapping[str, float]] | None = None,
    on_best: Callable[[Mapping[str, Any]], None] | None = None,
    extra_state: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` and return the history: one dict per dev evaluation (epoch ends, every
    ``eval_every`` steps, and the end of the run), with ``epoch`` (fractional), ``step``, the mean
    training ``loss`` since the previous entry, ``lr``, ``seconds`` and the dev metrics.

    Without ``evaluate``, ``on_best`` is called at each epoch end with the training loss (the latest
    model counts as the best). ``extra_state`` (e.g. the label set) is stored in the checkpoint and
    must match on resume, so a checkpoint is never continued with different data or settings.
    Call :func:`seed_everything` before building the model so its initial weights follow the seed.
    """
    if batches_per_epoch <= 0:
        raise ZhtextError("no training batches: the training data is empty")
    accum = max(1, config.grad_accum)
    steps_per_epoch = math.ceil(batches_per_epoch / accum)
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    if total_steps <= 0:
        raise ZhtextError("nothing to train: epochs and max_steps are both 0")
    optimizer = torch.optim.AdamW(groups, lr=groups[0]["lr"], weight_decay=config.weight_decay)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    ckpt = checkpoint_path(out_dir)
    extra = dict(extra_state or {})

    state: dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0, "elapsed": 0.0, "history": [],
                             "best": -math.inf, "evaluated_step": -1, "loss_sum": 0.0,
                             "loss_batches": 0}
    if config.resume and ckpt.is_file():
        # On the CPU: RNG states must stay CPU tensors; weights and moments are copied to the device.
        saved = torch.load(ckpt, map_location="cpu", weights_only=False)
        if saved.get("extra") != extra or saved.get("batches_per_epoch") != batches_per_epoch:
            raise ZhtextError(f"{ckpt} was written for other data or settings; remove it or drop --resume")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        _set_rng_state(saved["rng"])
        state.update(saved["loop"])
    else:
        seed_everything(config.seed)

    bar = _Progress(config.progress, total_steps, state["step"])
    if config.resume:
        bar.print(f"resuming at step {state['step']} (epoch {state['epoch'] + 1})" if state["step"]
                  else f"no checkpoint at {ckpt}: starting from scratch")
    run_start = time.perf_counter()
    run_elapsed = 0.0  # this invocation's training seconds (what max_seconds limits)
    steps_at_start = state["step"]
    elapsed_before = state["elapsed"]  # seconds spent by earlier (interrupted) invocations
    # RNG states as of the last completed step: what an interrupted run must resume from.
    rng_snapshot = _rng_state()

    def save_checkpoint() -> None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": rng_snapshot,
            "loop": dict(state),
            "extra": extra,
            "batches_per_epoch": batches_per_epoch,
            "config": asdict(config),
        }
        with atomic_path(ckpt) as tmp:
            torch.save(payload, tmp)

    def set_lr() -> float:
        progress = state["step"] / total_steps
        if config.max_seconds:
            progress = max(progress, run_elapsed / config.max_seconds)
        factor = lr_factor(progress, config.warmup)
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * factor
        return base_lrs[0] * factor

    def run_evaluation() -> None:
        nonlocal rng_snapshot
        model.eval()
        with torch.no_grad():
            metrics = dict(evaluate()) if evaluate is not None else {}
        model.train()
        record: dict[str, Any] = {
            "epoch": round(state["epoch"] + state["batch"] / batches_per_epoch, 4),
            "step": state["step"],
            "loss": state["loss_sum"] / state["loss_batches"] if state["loss_batches"] else None,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(state["elapsed"], 2),
            **metrics,
        }
        state["loss_sum"], state["loss_batches"] = 0.0, 0
        state["history"].append(record)
        state["evaluated_step"] = state["step"]
        bar.print(_format_metrics(record))
        if evaluate is None:
            score = float(state["step"])  # without dev data the latest model is the best
        elif config.metric in metrics:
            score = float(metrics[config.metric])
            score = -score if config.lower_is_better else score
        else:
            raise ZhtextError(f"evaluate() returned no {config.metric!r} metric")
        if score > state["best"]:
            state["best"] = score
            if on_best is not None:
                on_best(record)
        rng_snapshot = _rng_state()
        if state["step"] < total_steps or config.keep_checkpoint:
            save_checkpoint()

    def train_one_epoch() -> bool:
        """Run the rest of the current epoch; True when the run must stop (steps or time)."""
        nonlocal run_elapsed, rng_snapshot
        skip = state["batch"]  # batches of this epoch consumed before a resume
        accumulated, pending_loss = 0, 0.0
        seen = 0
        optimizer.zero_grad(set_to_none=True)
        for index, batch in enumerate(batches(state["epoch"])):
            seen = index + 1
            if index < skip:
                continue
            loss = _loss_of(model, batch)
            (loss / accum).backward()
            pending_loss += float(loss.detach())
            accumulated += 1
            last_in_epoch = index + 1 == batches_per_epoch
            if accumulated < accum and not last_in_epoch:
                continue
            lr = set_lr()
            if config.max_grad_norm:
                params = [p for g in optimizer.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state["loss_sum"] += pending_loss
            state["loss_batches"] += accumulated
            accumulated, pending_loss = 0, 0.0
            state["step"] += 1
            state["batch"] = index + 1
            rng_snapshot = _rng_state()
            now = time.perf_counter()
            run_elapsed = now - run_start
            state["elapsed"] = elapsed_before + run_elapsed
            speed = (state["step"] - steps_at_start) / max(1e-9, run_elapsed)
            bar.update(state["step"], state["epoch"], float(loss.detach()), lr, speed)
            if state["step"] >= total_steps:
                return True
            if config.max_seconds is not None and run_elapsed >= config.max_seconds:
                return True
            if last_in_epoch:
                return False
            if config.eval_every and state["step"] % config.eval_every == 0:
                run_evaluation()
        if seen < batches_per_epoch:
            raise ZhtextError(f"the batch factory gave {seen} batches, not the {batches_per_epoch} announced")
        return False

    model.train()
    try:
        while state["step"] < total_steps:
            stop = train_one_epoch()
            if state["batch"] >= batches_per_epoch:
                state["epoch"] += 1
                state["batch"] = 0
            if stop:
                break
            run_evaluation()
        if state["evaluated_step"] != state["step"]:
            run_evaluation()
        if state["step"] >= total_steps and not config.keep_checkpoint:
            shutil.rmtree(ckpt.parent, ignore_errors=True)
    except KeyboardInterrupt:
        # The saved state is that of the last optimizer step; a partly accumulated step is redone.
        save_checkpoint()
        bar.print(f"interrupted: checkpoint saved to {ckpt} (continue with resume)")
        raise
    finally:
        bar.close()
    return list(state["history"])
