"""What a step is, and the registry through which pipelines find steps by name.

Adding a step is one class::

    @register("upper")
    class Upper(Step):
        \"\"\"Each text in capitals.\"\"\"

        @dataclass
        class Settings:
            times: int = setting(1, positive=True)

        def run(self, texts):
            return [t.upper() * self.settings.times for t in texts]

after which ``Pipeline(["segment", "upper"], upper={"times": 2})``, a config's ``[upper]`` table
and ``zhtext pipe --steps upper --set upper.times=2`` all work, and each record gets ``"upper"``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from zhtext.pipeline.settings import Spec, specs

__all__ = ["STEPS", "Step", "register"]

STEPS: dict[str, type[Step]] = {}  # step name -> class, in the order registered
# A step's name is a TOML table name and the STEP of --set STEP.NAME=VALUE.
_NAME = re.compile(r"[a-z][a-z0-9_-]*")
# Names a step (or the record key it fills) cannot take: a Doc's own attributes and record keys.
_RESERVED = frozenset({"text", "line", "error", "problems", "results", "as_dict", "to_json",
                       "steps", "batch_size", "device", "quantize"})  # fmt: skip

S = TypeVar("S", bound="type[Step]")


class Step:
    """One model (or dictionary, or rule) applied to a batch of texts.

    A subclass declares its settings in a nested ``Settings`` dataclass (see
    :mod:`zhtext.pipeline.settings`), loads what it needs in ``__init__`` and implements
    :meth:`run`; :func:`register` gives it its name. Optional:

    - ``field``: the record key (and :class:`~zhtext.pipeline.Doc` attribute) of its result, if
      not the step's name (``tag`` fills ``spans``);
    - ``writes_text``: a blank line then gets "" without the step seeing it, as the standalone
      commands skip blank lines;
    - :meth:`check` and :attr:`problem`: the texts it handles with a caveat (too long for a model);
    - :meth:`to_json` / :meth:`json_text`: how its result is written in a record.
    """

    name: ClassVar[str] = ""  # set by register()
    field: ClassVar[str] = ""  # "": the name
    writes_text: ClassVar[bool] = False

    @dataclass
    class Settings:
        """No settings."""

    #: What :meth:`check` finds, for the report (e.g. "longer than the tagger's window").
    problem: str = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "options" in cls.__dict__:  # zhtext 0.1's way, which registered a step by defining it
            raise TypeError(f"{cls.__qualname__}: Step.options is gone; declare the settings in a nested "
                            "@dataclass Settings and register the step with @register(name)")

    def __init__(self, settings: Any, device: str | None = None) -> None:
        """``settings``: an instance of the class's ``Settings``, checked; ``device``: the
        pipeline's (None: the default)."""
        self.settings = settings
        self.device = device

    def run(self, texts: list[str]) -> list[Any]:
        """The step's result for each text, in order."""
        raise NotImplementedError

    def check(self, texts: list[str]) -> dict[int, str]:
        """The texts that have :attr:`problem` (index -> detail such as the length); none by default."""
        return {}

    @staticmethod
    def to_json(result: Any) -> Any:
        """The result as a JSON-ready value (as it is, by default)."""
        return result

    @classmethod
    def json_text(cls, result: Any) -> str:
        """The result's JSON text in a record line."""
        return json.dumps(cls.to_json(result), ensure_ascii=False)

    @classmethod
    def specs(cls) -> dict[str, Spec]:
        """The step's declared settings by name."""
        return specs(cls.Settings)


def register(name: str) -> Callable[[S], S]:
    """Class decorator: make a :class:`Step` subclass the step ``name`` of every pipeline.

    The name is a lowercase word (``-`` and ``_`` allowed). Registering another class under a
    taken name is an error, unless it is the same class defined again (a module reloaded, a
    notebook cell run twice). The settings declaration is checked here, so a mistake in it shows
    when the class is defined, not when a pipeline first uses it.
    """

    def add(cls: S) -> S:
        if not (isinstance(cls, type) and issubclass(cls, Step)):
            raise TypeError(f"@register({name!r}) decorates a Step subclass, not {cls!r}")
        if not _NAME.fullmatch(name) or name in _RESERVED:
            raise ValueError(f"a step name is a lowercase word other than {', '.join(sorted(_RESERVED))}, "
                             f"not {name!r}")
        field = cls.__dict__.get("field") or name
        if field in _RESERVED:
            raise ValueError(f"step {name!r} cannot fill the record key {field!r}")
        for other in STEPS.values():
            same = other.__module__ == cls.__module__ and other.__qualname__ == cls.__qualname__
            if same and other.name == name:
                continue
            if name in (other.name, other.field) or field in (other.name, other.field):
                raise ValueError(f"step {name!r} (record key {field!r}) clashes with step {other.name!r} "
                                 f"({other.__module__}.{other.__qualname__})")
        specs(cls.Settings)  # TypeError for a declaration it cannot check
        cls.name, cls.field = name, field
        STEPS[name] = cls
        return cls

    return add
