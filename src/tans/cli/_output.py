"""Shared output helpers for commands: JSON for scripts, rich tables for people."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from tans._json import dumps

# Piped or logged output is not squeezed to 80 columns: ids and names must stay whole.
console = Console() if sys.stdout.isatty() else Console(width=200)
err_console = Console(stderr=True)


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (numpy scalars and paths become plain values, NaN null)."""
    sys.stdout.write(dumps(obj, indent=2, digits=None, ensure_ascii=False) + "\n")


def print_table(rows: Sequence[dict], columns: Sequence[str], title: str | None = None) -> None:
    """Print dict rows as a table with the given columns."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")  # wrap, never cut: ids are meant to be copied
    for row in rows:
        table.add_row(*(_cell(row.get(col)) for col in columns))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
