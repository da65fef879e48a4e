"""Progress bars on stderr for long library work (a no-op when disabled)."""

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
)


class Bar:
    """A context manager over rich's Progress: ``add`` a task, ``advance`` it; silent if disabled."""

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
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            if exc[0] is not None:
                # On an error the bars would only bury the one-line message: erase them.
                self._progress.live.transient = True
            else:
                self._finish_last()
            self._progress.__exit__(*exc)

    def _finish_last(self) -> None:
        if self._progress is not None and self._last is not None:
            task = self._progress.tasks[self._last]
            self._progress.update(self._last, total=task.completed)

    def add(self, description: str, total: int | None = None) -> TaskID | None:
        """Start a new task (finishing the previous one)."""
        if self._progress is None:
            return None
        self._finish_last()
        self._last = self._progress.add_task(description, total=total)
        return self._last

    def advance(self, task: TaskID | None, amount: int) -> None:
        if self._progress is not None and task is not None:
            self._progress.advance(task, amount)
