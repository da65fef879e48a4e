"""Entry point of the ``zhtext`` command: registers the command modules and maps errors to exits."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from zhtext.errors import ZhtextError

# Each module registers its commands on the apps in .base when imported.
from . import discover, embed, evaluate_segment, generate, pipe, segment, tag, title  # noqa: F401
from . import signals
from .base import Interrupted, app


def _quit(message: str, code: int) -> NoReturn:
    sys.stderr.write(f"zhtext: {message}\n")
    sys.exit(code)


def main() -> None:
    """Run the CLI and turn every outcome into an exit status with at most one line on stderr.

    A ZhtextError gives ``zhtext: error: ...`` and status 1; Ctrl-C gives ``zhtext: interrupted``
    and 130 (128 + SIGINT, as shells report it), SIGTERM ``terminated`` and 143, SIGHUP 129; a
    usage error gives click's usage message and 2.
    Click runs in non-standalone mode, so that these reach here instead of being printed (or, for
    Ctrl-C, swallowed) by click and Typer.
    """
    try:
        code = app(standalone_mode=False, prog_name="zhtext")
    except ZhtextError as exc:
        _quit(f"error: {exc}", 1)
    except (Interrupted, KeyboardInterrupt) as exc:
        # (A bare KeyboardInterrupt: Ctrl-C before any command started.) SIGTERM and SIGHUP
        # arrive as signals.Terminated, a KeyboardInterrupt: the same clean-up, their own status.
        _quit(*signals.exit_status(exc))
    except typer.Abort:
        _quit("aborted", 1)  # end of input at a prompt
    except typer.TyperException as exc:
        # Typer's click exceptions (a usage error, a bad parameter) all have show().
        exc.show()  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    # `code` is the status of a --help or typer.Exit, or None once a command has run.
    sys.exit(code if isinstance(code, int) else 0)
