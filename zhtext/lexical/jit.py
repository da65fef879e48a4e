"""Calling a compiled Numba kernel without its dispatcher, where a call is short and frequent.

A Numba dispatcher matches the types of every argument on every call (~0.1 µs an array). For
``Segmenter.cut`` on one short line that is a quarter of the whole call, so the hot paths look the
compiled overload up once, for the argument types they always pass, and call it directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def direct(kernel: Any, *args: Any) -> Callable[..., Any]:
    """A callable equal to ``kernel`` for arguments of exactly the types of ``args``.

    Compiles (or loads from the cache) the overload for those types, then returns its entry point:
    the caller must pass the same types every time (the entry point converts, it does not check).
    Falls back to the dispatcher itself where Numba keeps its overloads differently.
    """
    try:
        signature = tuple(kernel.typeof_pyval(a) for a in args)
        overload = kernel.overloads.get(signature)
        if overload is None:
            kernel.compile(signature)
            overload = kernel.overloads[signature]
        return overload.entry_point
    except Exception:  # noqa: BLE001 - an internal API moved: the dispatcher is always right
        return kernel
