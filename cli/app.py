"""Entry point of the ``zhtext`` command: registers the command modules and maps errors to exits."""

from __future__ import annotations

import sys

from zhtext.errors import ZhtextError

# Each module registers its commands on the apps in .base when imported.
from . import discover, embed, evaluate_segment, segment, tag  # noqa: F401
from .base import app


def main() -> None:
    """Run the CLI; a ZhtextError becomes one line on stderr and exit status 1."""
    try:
        app()
    except ZhtextError as exc:
        sys.stderr.write(f"zhtext: error: {exc}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("zhtext: interrupted\n")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
