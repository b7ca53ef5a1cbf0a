"""Close-name suggestions for error messages; the error classes live in :mod:`tans.errors`.

``from tans._errors import TansError`` keeps working: the classes are re-exported here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from tans.errors import ConfigError, DatasetError, SearchError, TansError, TansWarning, ZooError

__all__ = ["ConfigError", "DatasetError", "SearchError", "TansError", "TansWarning", "ZooError", "did_you_mean"]


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``" Did you mean 'a', 'b'?"`` for close matches of ``name``, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + ", ".join(repr(c) for c in close) + "?"
