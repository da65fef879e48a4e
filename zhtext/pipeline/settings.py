"""A step's settings, declared once as a dataclass; checking, parsing and describing come from it.

A step declares its settings in a nested ``Settings`` dataclass: each field's name, type and default
(no default: the setting is required). :func:`setting` adds what a type cannot say: a positive
integer, a setting that names a file or folder (taken from the config file's folder when relative),
a line of help. Supported types: ``str``, ``int``, ``float``, ``bool``, ``Literal["a", "b"]`` (one of
those strings), and any of them ``| None`` (None: unset)::

    @dataclass
    class Settings:
        model: str = setting(path=True, help="the model: a folder or a hub id")
        batch_size: int = setting(32, positive=True)
        pooling: Literal["cls", "mean"] = "cls"
        whitening: str | None = setting(None, path=True)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING
from typing import Any, Literal, NamedTuple

from zhtext.errors import ZhtextError

__all__ = ["Spec", "check_value", "describe", "parse_value", "setting", "specs"]

_KINDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def setting(default: Any = MISSING, *, positive: bool = False, path: bool = False, help: str = "") -> Any:
    """A field of a step's ``Settings`` dataclass: ``default`` (none: required), ``positive`` for
    an integer that must be 1 or more, ``path`` for a file or folder name, a line of ``help``."""
    return dataclasses.field(default=default, metadata={"positive": positive, "path": path, "help": help})


class Spec(NamedTuple):
    """One declared setting: ``kind`` is str, int, float or bool; ``choices`` the strings a
    ``Literal`` allows; ``optional`` whether None is allowed; ``default`` is MISSING if required."""

    name: str
    kind: type
    choices: tuple[str, ...]
    optional: bool
    default: Any
    positive: bool
    path: bool
    help: str

    @property
    def required(self) -> bool:
        return self.default is MISSING

    def expects(self) -> str:
        """What a value must be, for error messages: "a positive integer", "one of a, b"."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        return "a positive integer" if self.positive else _KINDS[self.kind]


def specs(settings_class: type) -> dict[str, Spec]:
    """The settings a ``Settings`` dataclass declares, by name; TypeError for an unsupported one."""
    if not dataclasses.is_dataclass(settings_class):
        raise TypeError(f"{settings_class.__qualname__} must be a @dataclass")
    try:
        hints = typing.get_type_hints(settings_class)
    except NameError as exc:
        raise TypeError(f"{settings_class.__qualname__}: {exc} (declare settings with module-level types)") from None
    out = {}
    for f in dataclasses.fields(settings_class):
        kind, choices, optional = _kind(hints[f.name], f"{settings_class.__qualname__}.{f.name}")
        meta = f.metadata
        if meta.get("positive") and kind is not int:
            raise TypeError(f"{settings_class.__qualname__}.{f.name}: only an integer can be positive")
        if f.default_factory is not MISSING:
            raise TypeError(f"{settings_class.__qualname__}.{f.name}: a setting's default is a plain value")
        spec = Spec(f.name, kind, choices, optional, f.default, bool(meta.get("positive")),
                    bool(meta.get("path")), str(meta.get("help", "")))  # fmt: skip
        if not spec.required:
            check_value(f.name, spec, spec.default)  # a default of the wrong type is the step's bug
        out[f.name] = spec
    return out


def _kind(hint: Any, where: str) -> tuple[type, tuple[str, ...], bool]:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            kind, choices, _ = _kind(rest[0], where)
            return kind, choices, True
    if typing.get_origin(hint) is Literal and args and all(isinstance(a, str) for a in args):
        return str, tuple(args), False
    if hint in _KINDS:
        return hint, (), False
    raise TypeError(f"{where}: a setting is str, int, float, bool or a Literal of strings (or one | None), not {hint}")


def check_value(where: str, spec: Spec, value: Any) -> Any:
    """``value`` if it suits ``spec``, else ZhtextError naming the setting ``where`` (bool is no
    integer here; an integer is a number)."""
    if value is None and spec.optional:
        return value
    kind = spec.kind
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 1 or not spec.positive)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind) and (not spec.choices or value in spec.choices)
    if not ok:
        raise ZhtextError(f"setting {where} must be {spec.expects()}, got {value!r}")
    return float(value) if kind is float else value


def parse_value(where: str, spec: Spec, text: str) -> Any:
    """A value typed on the command line (``--set tag.batch_size=8``), read as ``spec``'s type and
    checked; an empty text is None for a setting that may be unset."""
    if text == "" and spec.optional:
        return None
    value: Any = text
    try:
        if spec.kind is int:
            value = int(text)
        elif spec.kind is float:
            value = float(text)
        elif spec.kind is bool:
            value = {"true": True, "false": False}[text.lower()]
    except (ValueError, KeyError):
        pass  # left a string: check_value names what it should be
    return check_value(where, spec, value)


def describe(spec: Spec) -> str:
    """``name (kind, default): help`` for a listing of the settings, e.g. ``batch_size (positive
    integer, 32): texts per batch``."""
    if spec.choices:
        kind = "|".join(spec.choices)
    else:
        kind = "path" if spec.path else {str: "text", int: "integer", float: "number", bool: "true|false"}[spec.kind]
        kind = f"positive {kind}" if spec.positive else kind
    if spec.required:
        default = "required"
    elif spec.default is None:
        default = "optional"
    elif spec.default == "":
        default = '""'
    else:
        default = str(spec.default).lower() if spec.kind is bool else str(spec.default)
    return f"{spec.name} ({kind}, {default})" + (f": {spec.help}" if spec.help else "")
