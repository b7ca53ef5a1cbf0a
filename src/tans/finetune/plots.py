"""Learning curves of fine-tuning runs: train and validation accuracy per epoch, one PNG."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tans._atomic import new_file
from tans._errors import TansError

if TYPE_CHECKING:
    from tans.finetune.result import FinetuneResult

__all__ = ["plot_curves"]

_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def plot_curves(
    results: Sequence[FinetuneResult], path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Plot train (dashed) and validation (solid) accuracy per epoch of each run, with chance.

    A star at the last epoch marks each run's final validation accuracy, measured after the
    BatchNorm statistics are re-estimated (per-epoch points use the running statistics).

    Parameters
    ----------
    results : sequence of FinetuneResult
        Runs to draw, e.g. a fine-tuned model and the same architecture from scratch; each gets
        one colour, and its final test accuracy in the legend.
    path : path
        The PNG file to write (parent directories are created).
    title : str or None
        Defaults to the dataset and architecture of the first run.

    Returns
    -------
    Path
        The image written, ``~`` expanded (its format follows the suffix).

    Raises
    ------
    TansError
        When ``results`` is empty.
    """
    # Figure + Agg canvas directly: no pyplot state, no display needed, safe in threads.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not results:
        raise TansError("plot_curves needs at least one fine-tuning result, got none.")
    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    max_epoch = 1
    for i, run in enumerate(results):
        colour = _COLOURS[i % len(_COLOURS)]
        x = [e.epoch + 1 for e in run.epochs]
        max_epoch = max(max_epoch, len(x))
        ax.plot(x, [e.train_acc for e in run.epochs], "--", color=colour, alpha=0.7, label=f"{run.label}: train")
        val = [e.val_acc for e in run.epochs]
        if not all(math.isnan(v) for v in val):
            ax.plot(x, val, "-o", color=colour, markersize=3,
                    label=f"{run.label}: val (test {run.test_acc:.1%})")
        if x and not math.isnan(run.val_acc):
            # per-epoch val uses BatchNorm's running statistics, which lag early in training;
            # the final val accuracy (statistics re-estimated) is what the model really scores
            ax.plot([x[-1]], [run.val_acc], "*", color=colour, markersize=10,
                    label="final val (BatchNorm re-estimated)" if i == 0 else None)
    ax.axhline(results[0].chance, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0.0, 1.02)
    ax.set_xlim(0.8, max_epoch + 0.2)
    ax.set_xticks(range(1, max_epoch + 1, max(1, max_epoch // 10)))
    ax.grid(alpha=0.3)
    first = results[0]
    ax.set_title(title or f"{first.dataset}: {_short(first.arch)}", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    out = Path(path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    with new_file(out) as tmp:
        fig.savefig(tmp, format=out.suffix.lstrip(".") or "png")
    return out


def _short(name: str, width: int = 60) -> str:
    """Architecture names can be long; keep the title on one line."""
    return name if len(name) <= width else name[: width - 3] + "..."
