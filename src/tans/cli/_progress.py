"""A rich progress bar with an ETA, shared by long-running commands."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tans.cli._output import err_console


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
