"""One exception type for every problem a user can fix, and close-name suggestions."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["TansError", "TansWarning", "did_you_mean"]


class TansError(Exception):
    """A problem with the user's input or environment, explained in one line.

    The message says what was expected, what arrived and how to fix it. The command line prints
    it without a traceback and exits non-zero.
    """


class TansWarning(UserWarning):
    """Something was skipped or degraded but the work went on (e.g. unreadable files skipped).

    The command line prints it as one ``warning: ...`` line.
    """


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``" Did you mean 'a', 'b'?"`` for close matches of ``name``, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + ", ".join(repr(c) for c in close) + "?"
