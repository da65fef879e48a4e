"""Entry point of the ``zhtext`` command: registers the command modules and maps errors to exits."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from typing import Any, NoReturn, TextIO

import typer
from typer._click.exceptions import (
    BadParameter,
    MissingParameter,
    NoArgsIsHelpError,
    NoSuchOption,
    UsageError,
)

from zhtext.errors import ZhtextError
from zhtext.io.writing import STDOUT, write_error

# Each module registers its commands on the apps in .base when imported.
from . import (  # noqa: F401
    discover,
    embed,
    evaluate_segment,
    export,
    generate,
    keywords,
    mlm,
    pipe,
    segment,
    serve,
    signals,
    tag,
    title,
)
from .base import Interrupted, app


def _quit(message: str, code: int) -> NoReturn:
    _settle(sys.stdout)  # what is left of the output, before the message
    try:
        sys.stderr.write(f"zhtext: {message}\n")
        sys.stderr.flush()
    except OSError:  # stderr is a closed pipe too: the status alone says it
        _settle(sys.stderr)
    sys.exit(code)


def _settle(stream: TextIO) -> None:
    """Flush ``stream``; if that fails (a closed pipe), point its descriptor at /dev/null so that
    Python's own flush at exit does not print "Exception ignored ... BrokenPipeError" (what the
    Python docs advise for SIGPIPE)."""
    try:
        stream.flush()
    except OSError:
        with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)


def _flush_stdout() -> None:
    # Results still buffered fail here, not silently at the interpreter's exit.
    try:
        sys.stdout.flush()
    except OSError as exc:
        raise write_error(STDOUT, exc) from None


def _typed(param: Any, args: list[str]) -> str:
    """The spelling of an option the user typed last (``-k`` or ``--neighbours``; ``-k5`` and
    ``--neighbours=5`` too), else its longest one; an argument's name in capitals."""
    names = [*param.opts, *param.secondary_opts] if param.param_type_name == "option" else []
    if not names:
        return (param.metavar or param.name or "argument").upper()
    for arg in reversed(args):
        for name in names:
            if arg == name or arg.startswith(name + "=") or len(name) == 2 and arg.startswith(name):
                return name
    return max(names, key=len)


def _number(value: Any) -> str:
    # A bound as the option declares it (1, not 1.0), a value as typed.
    return format(value, "g") if isinstance(value, float) else str(value).strip()


# Typer checks an option's type and min/max with pydantic; its error, the exception's cause, says
# which bound was broken. Each kind of error as the end of a sentence that starts with the option.
_PYDANTIC = {
    "greater_than_equal": lambda e: f"must be at least {_number(e['ctx']['ge'])}, got {_number(e['input'])}",
    "greater_than": lambda e: f"must be more than {_number(e['ctx']['gt'])}, got {_number(e['input'])}",
    "less_than_equal": lambda e: f"must be at most {_number(e['ctx']['le'])}, got {_number(e['input'])}",
    "less_than": lambda e: f"must be less than {_number(e['ctx']['lt'])}, got {_number(e['input'])}",
    "int_parsing": lambda e: f"must be a whole number, got {e['input']!r}",
    "int_from_float": lambda e: f"must be a whole number, got {e['input']!r}",
    "float_parsing": lambda e: f"must be a number, got {e['input']!r}",
    "finite_number": lambda e: f"must be a finite number, got {e['input']!r}",
    "value_error": lambda e: _choice(str(e["ctx"]["error"])),
}


def _choice(message: str) -> str:
    # Typer's "'xml' is not one of 'jsonl', 'conll'." as "must be one of jsonl, conll, got 'xml'".
    match = re.fullmatch(r"(.*) is not one of (.*?)\.?", message)
    if match is None:
        return _sentence(message)
    return f"must be one of {match[2].replace(chr(39), '')}, got {match[1]}"


def _sentence(message: str) -> str:
    """Click's message as the rest of a line: no capital, no full stop."""
    message = message.strip().rstrip(".")
    return message[:1].lower() + message[1:]


def usage_message(exc: UsageError, args: list[str]) -> str:
    """One line for a usage error, naming the option as the user typed it (``args``: the command
    line): ``--batch-size must be at least 1, got 0``, ``missing option -m/--model``."""
    param = getattr(exc, "param", None)
    if isinstance(exc, MissingParameter) and param is not None:
        if param.param_type_name == "option":
            return f"missing option {'/'.join(param.opts)}"
        return f"missing argument {_typed(param, args)}"
    if isinstance(exc, BadParameter) and param is not None:
        name = _typed(param, args)
        errors = getattr(exc.__cause__, "errors", None)
        error = errors()[0] if callable(errors) and errors() else None
        describe = _PYDANTIC.get(error["type"]) if error else None
        if describe is not None:
            return f"{name} {describe(error)}"
        if exc.message.startswith("must "):  # our own callbacks (cli/base.py: above, below)
            return f"{name} {exc.message}"
        return f"{name}: {_sentence(exc.message)}"
    if isinstance(exc, BadParameter) and exc.param_hint:
        hint = exc.param_hint if isinstance(exc.param_hint, str) else "/".join(exc.param_hint)
        return f"{hint}: {_sentence(exc.message)}"
    if isinstance(exc, NoSuchOption):
        near = f" (did you mean {' or '.join(sorted(exc.possibilities))}?)" if exc.possibilities else ""
        return f"no such option: {exc.option_name}{near}"
    return _sentence(exc.message)


def main() -> None:
    """Run the CLI and turn every outcome into an exit status with at most one line on stderr.

    A ZhtextError gives ``zhtext: error: ...`` and status 1; Ctrl-C gives ``zhtext: interrupted``
    and 130 (128 + SIGINT, as shells report it), SIGTERM ``terminated`` and 143, SIGHUP 129; a
    usage error (a bad, missing or unknown option) gives one line naming the option as typed and
    click's status 2. A closed stdout pipe (``zhtext segment big.txt | head -1``) is a failure to
    write like any other: ``cannot write <stdout>: broken pipe ...``, status 1.
    Click runs in non-standalone mode, so that these reach here instead of being printed (or, for
    Ctrl-C, swallowed) by click and Typer.
    """
    try:
        _run()
    finally:  # the exit itself must not print "Exception ignored ... BrokenPipeError"
        _settle(sys.stdout)
        _settle(sys.stderr)


def _run() -> NoReturn:
    try:
        code = app(standalone_mode=False, prog_name="zhtext")
        _flush_stdout()
    except ZhtextError as exc:
        _quit(f"error: {exc}", 1)
    except (Interrupted, KeyboardInterrupt) as exc:
        # (A bare KeyboardInterrupt: Ctrl-C before any command started.) SIGTERM and SIGHUP
        # arrive as signals.Terminated, a KeyboardInterrupt: the same clean-up, their own status.
        _quit(*signals.exit_status(exc))
    except typer.Abort:
        _quit("aborted", 1)  # end of input at a prompt
    except NoArgsIsHelpError as exc:
        exc.show()  # `zhtext` or `zhtext train` alone: the help, status 2 as click gives it
        sys.exit(exc.exit_code)
    except UsageError as exc:
        _quit(f"error: {usage_message(exc, sys.argv[1:])}", exc.exit_code)
    except typer.TyperException as exc:
        # Typer's other click exceptions (none is raised today) all have show().
        exc.show()  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)
    # `code` is the status of a --help or typer.Exit, or None once a command has run.
    sys.exit(code if isinstance(code, int) else 0)
