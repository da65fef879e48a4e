"""The settings of a pipeline: its steps, its own settings, and one table per step.

Keyword arguments, a TOML config and the command line all give the same shape::

    Pipeline(["segment", "tag"], batch_size=256, tag={"model": "ner"})
    # run.toml:  steps = ["segment", "tag"]  batch_size = 256  [tag] model = "ner"
    # zhtext pipe --steps segment,tag --batch-size 256 --set tag.model=ner

:func:`resolve` checks them against the declarations (the pipeline's :class:`PipelineSettings`,
each step's ``Settings``) and fills in the defaults. The flat names of zhtext 0.1
(``tag_model = "ner"``) are still read, with a warning, for one release.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from zhtext.errors import ZhtextError
from zhtext.io.config import load_config, local_path
from zhtext.pipeline.settings import (
    Spec,
    check_value,
    describe,
    parse_value,
    setting,
    specs,
)
from zhtext.pipeline.step import STEPS

__all__ = ["COMMON", "OLD_NAMES", "PipelineSettings", "describe_steps", "parse_assignments",
           "read_config", "resolve", "step_names", "with_local_paths"]  # fmt: skip


@dataclass
class PipelineSettings:
    """The settings of the pipeline itself, not of one step."""

    # 1024 documents a batch: the embedder and the tagger sort each batch by length, and on
    # news-like lengths 256 would pad to ~1.35x the tokens of sorting the whole corpus, 1024 ~1.04x.
    batch_size: int = setting(1024, positive=True, help="documents per batch through all steps")
    device: str | None = setting(None, help="cpu, cuda or cuda:N (default: cuda when available)")
    quantize: Literal["int8"] | None = setting(
        None, help="int8: every model's linear layers in int8 (CPU inference)")


COMMON: dict[str, Spec] = specs(PipelineSettings)

# The flat names of zhtext 0.1's keywords and config files -> (step, setting); read with a warning.
OLD_NAMES = {
    "dict": ("segment", "dict"), "user_dict": ("segment", "user_dict"),
    "tag_model": ("tag", "model"), "tag_batch_size": ("tag", "batch_size"),
    "title_model": ("title", "model"), "title_beam": ("title", "beam"),
    "title_max_len": ("title", "max_new_tokens"), "title_batch_size": ("title", "batch_size"),
    "gpt_model": ("generate", "model"), "max_new_tokens": ("generate", "max_new_tokens"),
    "seed": ("generate", "seed"), "gpt_batch_size": ("generate", "batch_size"),
    "embed_model": ("embed", "model"), "whitening": ("embed", "whitening"), "pooling": ("embed", "pooling"),
    "embed_max_len": ("embed", "max_len"), "embed_batch_size": ("embed", "batch_size"),
}  # fmt: skip


def step_names(steps: Any) -> list[str]:
    """``steps`` (a list of names or one comma-separated string) as a checked list of names."""
    if isinstance(steps, str):
        names = [s.strip() for s in steps.split(",")]
    elif isinstance(steps, (list, tuple)) and all(isinstance(s, str) for s in steps):
        names = list(steps)
    elif steps is None:
        names = []
    else:
        raise ZhtextError(
            f"setting steps must be a list of step names or a comma-separated string, got {steps!r}"
        )
    if not names or not all(names):
        raise ZhtextError(
            "no steps given: give --steps (e.g. --steps segment,tag,embed) or a config with steps = [...] "
            f"(choose from {', '.join(STEPS)})"
        )
    for name in names:
        if name not in STEPS:
            raise ZhtextError(f"unknown step {name!r} (choose from {', '.join(STEPS)})")
    if len(set(names)) != len(names):
        raise ZhtextError(f"a step is named twice in {','.join(names)}")
    return names


def from_flat(settings: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``settings`` with zhtext 0.1's flat names (``tag_model``) moved into their step's table,
    and a FutureWarning that names them and ``source`` (a file, or "Pipeline()")."""
    old = [key for key in settings if key in OLD_NAMES]
    out = {key: value for key, value in settings.items() if key not in OLD_NAMES}
    if not old:
        return out
    moves = ", ".join(f"{key} -> {'.'.join(OLD_NAMES[key])}" for key in old)
    warnings.warn(f"{source}: flat settings are the old layout, read for one more release; give each "
                  f"step's settings in its table ({moves})", FutureWarning, stacklevel=3)  # fmt: skip
    for key in old:
        step, name = OLD_NAMES[key]
        table = out.get(step, {})
        if isinstance(table, Mapping) and name in table:
            raise ZhtextError(f"{source}: setting {step}.{name} is given twice (also as {key})")
        out[step] = {**table, name: settings[key]} if isinstance(table, Mapping) else table
    return out


def _known(declared: Mapping[str, Spec], keys: Iterable[str], prefix: str) -> None:
    """ZhtextError for the first key that is not declared; ``prefix`` is "STEP." or ""."""
    for key in keys:
        if key not in declared:
            where = f"the {prefix[:-1]} step's" if prefix else "the pipeline's"
            raise ZhtextError(f"unknown setting {prefix}{key} ({where} settings: {', '.join(declared) or 'none'})")


def _fill(declared: Mapping[str, Spec], given: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Every declared setting: the value given (checked) or its default."""
    _known(declared, given, prefix)
    out = {}
    for name, spec in declared.items():
        value = given.get(name)
        if value is None:
            if spec.required:
                raise ZhtextError(f"the {prefix[:-1]} step needs the setting {prefix}{name} "
                                  f"(--set {prefix}{name}=... or {name} = ... under [{prefix[:-1]}])")
            value = spec.default
        out[name] = check_value(prefix + name, spec, value)
    return out


def resolve(steps: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    """The full settings of a pipeline: ``steps`` as a list, the pipeline's settings, and a table
    of each chosen step's settings with the defaults filled in (None means the default).
    ZhtextError for an unknown, misplaced, mistyped or missing setting."""
    names = step_names(steps)
    for key, value in given.items():
        if key in STEPS:
            if key not in names:
                raise ZhtextError(f"settings given for the {key} step, which is not in the steps")
            if value is not None and not isinstance(value, Mapping):
                raise ZhtextError(f"setting {key} must be a table of the {key} step's settings, got {value!r}")
        elif key not in COMMON:
            raise ZhtextError(f"unknown setting {key!r}")
    resolved: dict[str, Any] = {"steps": names}
    resolved.update(_fill(COMMON, {k: v for k, v in given.items() if k in COMMON}, ""))
    for name in names:
        resolved[name] = _fill(STEPS[name].specs(), given.get(name) or {}, f"{name}.")
    return resolved


def with_local_paths(settings: Mapping[str, Any], base: str | os.PathLike) -> dict[str, Any]:
    """``settings`` with each relative path setting (declared ``path=True``) that exists under
    ``base`` made absolute (see :func:`~zhtext.io.config.local_path`)."""
    out = dict(settings)
    for name, table in settings.items():
        if name in STEPS and isinstance(table, Mapping):
            declared = STEPS[name].specs()
            out[name] = {key: local_path(value, base) if key in declared and declared[key].path
                         and isinstance(value, str) else value for key, value in table.items()}  # fmt: skip
    return out


def read_config(path: str | os.PathLike, steps: Any = None) -> dict[str, Any]:
    """A config file's settings in tables, relative paths taken from its folder. ``steps`` (given
    apart, e.g. by --steps) narrows it: the tables of steps not chosen are dropped, so a config
    saved for segment,tag,embed runs segment alone."""
    settings = with_local_paths(from_flat(load_config(path), str(path)), Path(path).parent)
    if steps is not None:
        chosen = set(step_names(steps))
        settings = {k: v for k, v in settings.items() if k not in STEPS or k in chosen}
    return settings


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """Settings typed as ``STEP.NAME=VALUE`` (or ``NAME=VALUE`` for the pipeline's own), each
    value read as its declared type: ``["tag.model=ner", "tag.batch_size=8"]`` gives
    ``{"tag": {"model": "ner", "batch_size": 8}}``. A later one wins."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        step, dot, name = key.strip().rpartition(".")
        if not eq or not name or (dot and not step):
            raise ZhtextError(f"--set takes STEP.NAME=VALUE (e.g. tag.model=DIR), got {item!r}")
        if not dot:
            if name not in COMMON:
                raise ZhtextError(f"unknown setting {name!r} in --set {item} (a step's setting is "
                                  f"STEP.NAME; the pipeline's are {', '.join(COMMON)})")  # fmt: skip
            out[name] = parse_value(name, COMMON[name], text)
            continue
        step_names([step])  # an unknown step's error
        declared = STEPS[step].specs()
        _known(declared, [name], f"{step}.")
        out.setdefault(step, {})[name] = parse_value(f"{step}.{name}", declared[name], text)
    return out


def describe_steps() -> list[str]:
    """One line per registered step: its name and its settings (kind, default, help)."""
    return [f"{name}: {'; '.join(describe(s) for s in cls.specs().values()) or 'no settings'}"
            for name, cls in STEPS.items()]  # fmt: skip
