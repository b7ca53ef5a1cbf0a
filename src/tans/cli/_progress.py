"""Rich progress bars with an ETA, shared by long-running commands, and the one place events become bars."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tans.cli._output import err_console
from tans.progress import ProgressEvent


def progress_bar() -> Progress:
    """A progress bar on stderr (so ``--json`` output on stdout stays clean).

    Shown only on a terminal: logs and pipes get the command's summary, not bar redraws.
    """
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=err_console,
        disable=not err_console.is_terminal,
        transient=True,  # the command prints its own summary; errors stay one line
    )


def bar_view(event: ProgressEvent) -> dict[str, Any]:
    """How an event shows by default: a bar per stage at ``done`` of ``total``, the message as status.

    A ``"plan"`` event (its ``done`` counts units done before the run) sets the total, the count at 0.
    """
    return {"name": event.stage, "total": event.total, "completed": 0 if event.stage == "plan" else event.done,
            "status": event.message or ""}


class EventBars:
    """A :data:`tans.progress.Progress` callback that draws each event on a bar of ``bar``.

    ``view(event)`` says how: the keywords of :meth:`show` (:func:`bar_view` by default; a command
    adapts its result), or None for an event that draws nothing.
    """

    def __init__(self, bar: Progress, view: Callable[[ProgressEvent], dict[str, Any] | None] = bar_view) -> None:
        self.bar = bar
        self._view = view
        self._jobs: dict[str, TaskID] = {}

    def __call__(self, event: ProgressEvent) -> None:
        shown = self._view(event)
        if shown is not None:
            self.show(**shown)

    def show(self, name: str, *, total: int | None = None, completed: int | None = None, status: str | None = None) -> None:
        """Add the bar ``name`` (empty status) unless shown, then set what is given (None: unchanged)."""
        if name not in self._jobs:
            self._jobs[name] = self.bar.add_task(name, total=total, status="")
        fields = {"status": status} if status is not None else {}
        self.bar.update(self._jobs[name], total=total, completed=completed, **fields)


@contextmanager
def event_bars(view: Callable[[ProgressEvent], dict[str, Any] | None] = bar_view) -> Iterator[EventBars]:
    """:class:`EventBars` on a :func:`progress_bar`, shown while the ``with`` block runs."""
    with progress_bar() as bar:
        yield EventBars(bar, view)
