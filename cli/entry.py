"""The ``zhtext`` console script. The CLI takes about half a second to import (torch, numba);
Ctrl-C in that time exits like Ctrl-C in a command, without a traceback."""

from __future__ import annotations

import sys


def main() -> None:
    """Import the CLI and run it; see :func:`zhtext_cli.app.main` for the exit statuses."""
    try:
        from .app import main as run
    except KeyboardInterrupt:
        sys.stderr.write("zhtext: interrupted\n")
        sys.exit(130)
    run()
