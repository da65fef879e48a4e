"""The ``zhtext`` console script. The CLI takes a few tenths of a second to import (typer, rich;
each command loads its own library, Numba or torch, when it runs); Ctrl-C, SIGTERM or SIGHUP in
that time exit as they do in a command, without a traceback.

The process is the command's alone, so two costs of a short run that buy nothing are skipped here
(not in the library, which shares its process with its caller): Numba's probe for SciPy's BLAS
(see :class:`_SkipBlasProbe`) and the interpreter's teardown (see :func:`_exit`). Together they
were about a quarter of ``zhtext segment`` on one line (1.0 s -> 0.77 s).
"""

from __future__ import annotations

import atexit
import importlib.abc
import os
import sys
import threading


class _SkipBlasProbe(importlib.abc.MetaPathFinder):
    """Numba's first compile or cache load imports ``numba.np.arraymath``, which imports
    ``scipy.linalg`` (~0.15 s) only to choose how ``np.correlate`` and ``np.convolve`` take inner
    products. zhtext's kernels call neither, and ``np.dot`` and the like still import SciPy when
    they are compiled; so while that module runs, ``scipy.linalg`` is not found."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "scipy.linalg" or name.startswith("scipy.linalg."):
            probing = sys.modules.get("numba.np.arraymath")
            if probing is not None and not hasattr(probing, "_HAVE_BLAS"):
                raise ImportError("SciPy's BLAS is not probed in the zhtext command")


def _exit(code: object) -> None:
    """Exit with ``code`` as ``sys.exit`` would, without the interpreter's teardown: freeing every
    object of Numba, LLVM and torch one by one takes 0.2 s or more after the output is written.
    Only when nothing else runs: atexit handlers (Ray, multiprocessing, temporary folders) still
    run and the standard streams are flushed; a non-daemon thread still alive takes the slow way."""
    others = [t for t in threading.enumerate() if t is not threading.current_thread()]
    if any(t.is_alive() and not t.daemon for t in others):
        sys.exit(code)
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): the message on stderr, status 1
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: cli/app.py has already said so
            pass
    os._exit(status & 0xFF)


def main() -> None:
    """Import the CLI and run it; see :func:`zhtext_cli.app.main` for the exit statuses."""
    from . import signals

    signals.install()
    sys.meta_path.insert(0, _SkipBlasProbe())
    try:
        from .app import main as run
    except KeyboardInterrupt as exc:
        message, status = signals.exit_status(exc)
        sys.stderr.write(f"zhtext: {message}\n")
        sys.exit(status)
    try:
        run()
    except SystemExit as exc:
        _exit(exc.code)
