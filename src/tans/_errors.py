"""Close-name suggestions for error messages; the error classes live in :mod:`tans.errors`.

``from tans._errors import TansError`` keeps working: the classes are re-exported here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar

from tans.errors import ConfigError, DatasetError, SearchError, TansError, TansWarning, ZooError

__all__ = ["ConfigError", "DatasetError", "SearchError", "TansError", "TansWarning", "ZooError", "did_you_mean", "lookup", "unknown_choice"]

_V = TypeVar("_V")


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``" Did you mean 'a', 'b'?"`` for close matches of ``name``, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + ", ".join(repr(c) for c in close) + "?"


def unknown_choice(what: str, name: object, choices: Iterable[str], error: type[TansError] = TansError) -> TansError:
    """The one-line error for a name that is not among ``choices``: what was expected, close names.

    ``raise unknown_choice("probe score", name, PROBE_SCORES)`` ->
    ``Unknown probe score 'lgme'; expected one of logme, ncm. Did you mean 'logme'?``
    """
    choices = list(choices)
    return error(f"Unknown {what} {str(name)!r}; expected one of {', '.join(choices)}.{did_you_mean(str(name), choices)}")


def lookup(what: str, name: str, registry: Mapping[str, _V], error: type[TansError] = TansError) -> _V:
    """``registry[name]``, or the :func:`unknown_choice` error naming ``what`` was asked for."""
    if name not in registry:
        raise unknown_choice(what, name, registry, error)
    return registry[name]
