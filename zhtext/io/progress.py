"""The one progress bar: rich's Progress on stderr, a no-op when disabled.

Reading, discovery, encoding and training all show their progress through :class:`Bar`, so every
long command looks the same and ``--quiet`` silences them all. :func:`stderr_console` makes the
one kind of console that bars and the CLI's messages are drawn on.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def stderr_console() -> Console:
    """A rich console on stderr that never breaks a printed line: rich wraps at 80 columns when
    stderr is a file or a pipe, which would split an error or warning naming a long path over
    several lines of a log. Tables and bars still fit the width."""
    return Console(stderr=True, soft_wrap=True)


class Bar:
    """A context manager over rich's Progress: ``add`` a task, ``advance`` or ``update`` it.

    ``unit`` is printed after the counts; each task also has a free ``status`` text (a training
    run shows its loss, learning rate and speed there). Silent when ``enabled`` is false.
    """

    def __init__(self, enabled: bool = True, unit: str = "chars") -> None:
        self.enabled = enabled
        self.unit = unit
        self._progress: Progress | None = None
        self._last: TaskID | None = None

    def __enter__(self) -> Bar:
        if self.enabled:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description:<22}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(self.unit),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=stderr_console(),
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            if exc[0] is not None and exc[0] is not KeyboardInterrupt:
                # On an error the bars would only bury the one-line message: erase them (on a
                # terminal), or print nothing more (elsewhere, where the last frame would be a
                # blank line before the message).
                self._progress.live.transient = True
                if not self._progress.console.is_terminal:
                    self._progress.console.quiet = True
            else:
                self._finish_last()
            self._progress.__exit__(*exc)

    def _finish_last(self) -> None:
        if self._progress is not None and self._last is not None:
            task = self._progress.tasks[self._last]
            if task.total is None or task.completed < task.total:
                self._progress.update(self._last, total=task.completed)

    def add(self, description: str, total: int | None = None, completed: int = 0) -> TaskID | None:
        """Start a new task (finishing the previous one)."""
        if self._progress is None:
            return None
        self._finish_last()
        self._last = self._progress.add_task(description, total=total, completed=completed, status="")
        return self._last

    def advance(self, task: TaskID | None, amount: int) -> None:
        if self._progress is not None and task is not None:
            self._progress.advance(task, amount)

    def update(self, task: TaskID | None, *, completed: int | None = None,
               description: str | None = None, status: str | None = None) -> None:
        """Set a task's count, description or status text."""
        if self._progress is None or task is None:
            return
        fields = {} if status is None else {"status": status}
        self._progress.update(task, completed=completed, description=description, **fields)

    def print(self, message: str) -> None:
        """A line above the bars (e.g. a training run's dev scores)."""
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
