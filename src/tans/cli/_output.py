"""Shared output helpers for commands: JSON for scripts, rich tables for people."""

from __future__ import annotations

import math
import sys
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from tans._json import dumps

# Piped or logged output is not squeezed to 80 columns: ids and names must stay whole.
console = Console() if sys.stdout.isatty() else Console(width=200)
err_console = Console(stderr=True)


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (numpy scalars and paths become plain values, NaN null)."""
    sys.stdout.write(dumps(obj, indent=2, digits=None, ensure_ascii=False) + "\n")


def print_table(
    rows: Sequence[dict],
    columns: Sequence[str],
    title: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    fit: Collection[str] = (),
) -> None:
    """Print dict rows as a table with the given columns.

    Parameters
    ----------
    rows, columns
        The rows, and the keys shown, in order.
    title : str or None
        Shown above the table.
    headers : mapping or None
        Column headers other than the key, e.g. ``{"latency_ms": "ms"}``.
    fit : collection of str
        Columns that may be cut with "…" so that every row stays on one line of the terminal (the
        table is then drawn without vertical rules, and other columns are never cut). Without it,
        long cells wrap and nothing is cut.
    """
    headers = headers or {}
    cells = [[_cell(row.get(col)) for col in columns] for row in rows]
    if fit:
        table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    else:
        table = Table(title=title)
    for i, col in enumerate(columns):
        header = headers.get(col, col)
        if col in fit:  # wrappable, so rich narrows these first; names have no spaces, so they are cut
            table.add_column(header, overflow="ellipsis")
        elif fit:
            table.add_column(header, no_wrap=True, min_width=max([len(header)] + [len(r[i]) for r in cells]))
        else:
            table.add_column(header, overflow="fold")  # wrap, never cut: ids are meant to be copied
    for row in cells:
        table.add_row(*row)
    console.print(table)


def screen_row(row: Mapping[str, Any], *, wide: bool = False) -> dict[str, Any]:
    """``row`` for people: the short architecture label (full with ``wide``), ``params`` and ``flops``
    as 82K / 3.6M, accuracies (``*_acc``) as 96.3%, other floats to three figures."""
    from tans.space.arch import short_name

    out = dict(row)
    for key, value in row.items():
        if key == "arch" and not wide:
            out[key] = short_name(value)
        elif key in ("params", "flops"):
            out[key] = human_count(value)
        elif key.endswith("_acc"):
            out[key] = percent(value)
        elif isinstance(value, float):
            out[key] = f"{value:.3g}"
    return out


def human_count(value: float | None) -> str | None:
    """``82K``, ``3.6M``, ``1.2G``: a count in a few characters (None stays None)."""
    if value is None:
        return None
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale * 0.9995:  # what rounds to 1000 of the unit below
            return f"{value / scale:.{1 if abs(value) < 9.95 * scale else 0}f}{unit}"
    return f"{value:g}"


def resize_note(working_format) -> str:
    """``images are resized to 32x32 RGB``: what the networks see of a dataset (a zoo's working format)."""
    size, colour = working_format.size, "RGB" if working_format.channels == 3 else "grey"
    return f"images are resized to {size}x{size} {colour}"


def percent(value: float | None) -> str | None:
    """``96.3%`` for 0.963 (None and NaN stay unknown)."""
    return None if value is None or math.isnan(value) else f"{value:.1%}"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
