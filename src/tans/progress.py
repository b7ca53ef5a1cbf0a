"""Progress reports: one event type and one callback type for every long-running function.

A function that takes a while accepts ``progress: Progress | None`` and calls it with a
:class:`ProgressEvent` as it goes; its docstring names the stages it emits. The library prints
nothing itself (the command line turns events into bars, see ``tans.cli._progress``)::

    def show(event: ProgressEvent) -> None:
        print(event.stage, event.done, event.total, event.message)

    tans.search("path/to/images", progress=show)

A function that plans its units before running them (:func:`tans.zoo.build.build_zoo`,
:func:`tans.zoo.transfer.run_transfers`) first emits stage ``"plan"``: ``done`` units were already
done before, ``total`` are to run now; its later events count from 0 to that ``total``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["Progress", "ProgressEvent", "emit", "prefixed"]


@dataclass(frozen=True)
class ProgressEvent:
    """How far one stage of a long-running function has come.

    Attributes
    ----------
    stage : str
        Which part of the work (the emitting function's docstring lists its stages).
    done, total : int, int or None
        Units of the stage done so far, out of ``total`` (None while unknown).
    message : str or None
        A short human-readable status, e.g. the unit just finished.
    extra : mapping
        Structured details for callers that want more than a bar, e.g. ``{"log": EpochLog}``.
    """

    stage: str
    done: int
    total: int | None
    message: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)


#: The callback every long-running function takes as ``progress``.
Progress = Callable[[ProgressEvent], None]


def emit(progress: Progress | None, stage: str, done: int, total: int | None, message: str | None = None,
         **extra: Any) -> None:
    """Call ``progress`` (when given) with a :class:`ProgressEvent` of these fields."""
    if progress is not None:
        progress(ProgressEvent(stage, done, total, message, MappingProxyType(extra)))


def prefixed(progress: Progress | None, prefix: str) -> Progress | None:
    """``progress`` receiving the events of a step of a larger job, their stage as ``"<prefix>/<stage>"``."""
    if progress is None:
        return None

    def forward(event: ProgressEvent) -> None:
        progress(ProgressEvent(f"{prefix}/{event.stage}", event.done, event.total, event.message, event.extra))

    return forward
