"""Where tans keeps its caches and installed data sources.

Everything lives under one home directory, ``$TANS_HOME`` or ``~/.cache/tans``, so a user can move
or wipe it in one place.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["tans_home", "cache_dir", "sources_dir", "default_zoo_dir", "default_searcher_path"]


def tans_home() -> Path:
    """The root of every tans cache: ``$TANS_HOME`` if set, else ``~/.cache/tans``."""
    env = os.environ.get("TANS_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tans"


def cache_dir(kind: str) -> Path:
    """A named sub-directory of the tans home for derived data (created on demand)."""
    path = tans_home() / "cache" / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def sources_dir() -> Path:
    """Where ``scripts/setup.sh`` unpacks the npm packages that carry built-in image data."""
    env = os.environ.get("TANS_SOURCES")
    return Path(env).expanduser() if env else tans_home() / "sources"


def default_zoo_dir() -> Path:
    """The zoo that commands use when no ``--zoo`` is given (``tans demo`` builds it)."""
    return tans_home() / "zoo"


def default_searcher_path() -> Path:
    """The searcher artifact that commands use when no ``--searcher`` is given."""
    return tans_home() / "searcher"
