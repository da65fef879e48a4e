"""SIGTERM and SIGHUP end a command the way Ctrl-C does.

``kill``, systemd, Docker, Kubernetes and CI stop a process with SIGTERM; a closed terminal sends
SIGHUP. Both are turned into :class:`Terminated`, a KeyboardInterrupt, so everything that cleans up
after Ctrl-C (atomic outputs remove their temporary files, training saves its checkpoint) does so
after them too, and the command exits with one line and 128 + the signal's number.
"""

from __future__ import annotations

import signal

NAMES = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated", signal.SIGHUP: "hung up"}


class Terminated(KeyboardInterrupt):
    """A SIGTERM or SIGHUP, raised where the program was."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise(signum: int, frame: object) -> None:
    raise Terminated(signum)


def install() -> None:
    """Route SIGTERM and SIGHUP to :class:`Terminated` (the main thread only, as Python requires)."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise)


def exit_status(exc: BaseException | None) -> tuple[str, int]:
    """The message and exit status of an interruption: 130 for Ctrl-C, 143 for SIGTERM, 129 SIGHUP."""
    while exc is not None and not isinstance(exc, Terminated):
        exc = exc.__cause__ or exc.__context__
    signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
    return NAMES.get(signum, "terminated"), 128 + signum
