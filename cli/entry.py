"""The ``zhtext`` console script. The CLI takes about half a second to import (torch, numba);
Ctrl-C, SIGTERM or SIGHUP in that time exit as they do in a command, without a traceback."""

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
