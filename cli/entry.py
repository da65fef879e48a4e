"""The ``zhtext`` console script. The CLI takes a few tenths of a second to import (typer, rich;
each command loads its own library, Numba or torch, when it runs); Ctrl-C, SIGTERM or SIGHUP in
that time exit as they do in a command, without a traceback."""

from __future__ import annotations

import sys


def main() -> None:
    """Import the CLI and run it; see :func:`zhtext_cli.app.main` for the exit statuses."""
    from . import signals

    signals.install()
    try:
        from .app import main as run
    except KeyboardInterrupt as exc:
        message, status = signals.exit_status(exc)
        sys.stderr.write(f"zhtext: {message}\n")
        sys.exit(status)
    run()
