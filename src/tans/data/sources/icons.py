"""Desktop icons from installed icon themes, classified by concept or by context.

Debian icon themes ship PNG files at several sizes in freedesktop layout, either
``<theme>/<size>x<size>/<context>/<name>.png`` (oxygen, gnome, Adwaita, Tango) or
``<theme>/<context>/<size>/<name>.png`` (elementary-xfce). Two kinds of class:

- a *concept* (the icon name, e.g. ``printer``): every theme draws it, at every size from 16 to 64
  pixels; each size is hand-drawn separately, so a concept present in 4 themes at 5 sizes gives
  about 20 images;
- a *context* (``apps``, ``devices``, ``places``, ``mimetypes``, ``actions``, ``status`` ...):
  every icon of that folder at 32 pixels (or the size nearest to 32 the theme has).

Aliases (symlinks to the same file) count once; a file that two classes of one task share is
dropped from both, since it cannot be told apart. Images are composited on white and resized to
32x32 RGB.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from tans._errors import DatasetError, did_you_mean
from tans.data.dataset import Dataset
from tans.data.sources import artwork_dataset, check_artwork_size, loader_arguments

__all__ = [
    "BY",
    "CONTEXTS",
    "INSTALL_HINT",
    "THEMES",
    "IconFile",
    "Theme",
    "count_icons",
    "icon_files",
    "icons_root",
    "installed",
    "load_icons",
]

BY = ("concept", "context")
CONTEXTS = ("actions", "apps", "categories", "devices", "emblems", "emotes", "mimetypes", "places", "status")
_CONTEXT_ALIASES = {"mimes": "mimetypes"}  # elementary-xfce's folder name
CONCEPT_SIZES = (16, 22, 24, 32, 48, 64)


@dataclass(frozen=True)
class Theme:
    """Where one icon theme lives and under which licence (from its Debian copyright file)."""

    name: str
    folder: str  # relative to the icons root
    layout: str  # "size/context" or "context/size"
    package: str  # Debian package
    licence: str


THEMES: dict[str, Theme] = {
    t.name: t
    for t in (
        Theme("oxygen", "oxygen/base", "size/context", "oxygen-icon-theme", "LGPL-3+"),
        Theme("elementary-xfce", "elementary-xfce", "context/size", "elementary-xfce-icon-theme", "GPL-2+"),
        Theme("gnome", "gnome", "size/context", "gnome-icon-theme", "GPL-2+"),
        Theme("Adwaita", "Adwaita", "size/context", "adwaita-icon-theme", "CC-BY-SA-3.0 or LGPL-3"),
        Theme("Tango", "Tango", "size/context", "tango-icon-theme", "public-domain"),
    )
}
INSTALL_HINT = "apt-get install " + " ".join(t.package for t in THEMES.values()) + " (or run scripts/setup.sh)"


@dataclass(frozen=True)
class IconFile:
    """One PNG of one theme."""

    theme: str
    context: str
    size: int
    name: str  # icon concept, the file stem
    path: str  # resolved path: aliases of one drawing share it


def icons_root() -> Path:
    """The icon themes directory: ``$TANS_ICONS`` if set, else ``/usr/share/icons``."""
    return Path(os.environ.get("TANS_ICONS", "/usr/share/icons"))


def _check_themes(themes: Sequence[str]) -> None:
    for theme in themes:
        if theme not in THEMES:
            raise DatasetError(
                f"Unknown icon theme '{theme}': expected one of {', '.join(THEMES)}." + did_you_mean(theme, THEMES)
            )


def installed(themes: Sequence[str] = tuple(THEMES)) -> bool:
    """Whether every given theme's folder exists."""
    _check_themes(themes)
    return all((icons_root() / THEMES[t].folder).is_dir() for t in themes)


def _pngs(theme: str, context: str, size: int, folder: str, out: list[IconFile]) -> None:
    context = _CONTEXT_ALIASES.get(context, context)
    if context not in CONTEXTS:
        return
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.endswith(".png"):
                path = os.path.realpath(entry.path) if entry.is_symlink() else entry.path
                out.append(IconFile(theme, context, size, entry.name[:-4], path))


@lru_cache(maxsize=16)
def icon_files(theme: str) -> tuple[IconFile, ...]:
    """Every PNG of a theme in a known context, sorted (scanned once per process).

    Raises
    ------
    DatasetError
        If the theme is unknown or not installed.
    """
    _check_themes([theme])
    spec = THEMES[theme]
    root = icons_root() / spec.folder
    if not root.is_dir():
        raise DatasetError(f"Icon theme '{theme}' not found at {root}; {INSTALL_HINT}.")
    out: list[IconFile] = []
    for outer in sorted(os.scandir(root), key=lambda e: e.name):
        if not outer.is_dir():
            continue
        for inner in sorted(os.scandir(outer.path), key=lambda e: e.name):
            if not inner.is_dir():
                continue
            size_name, context = (outer.name, inner.name) if spec.layout == "size/context" else (inner.name, outer.name)
            match = re.fullmatch(r"(\d+)(?:x\1)?", size_name)
            if match:
                _pngs(theme, context, int(match.group(1)), inner.path, out)
    return tuple(sorted(out, key=lambda f: (f.context, f.name, f.size, f.path)))


def _select(
    themes: Sequence[str], by: str, classes: Sequence[str] | None, size: int
) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    if by not in BY:
        raise DatasetError(f"Unknown icon grouping '{by}': expected 'concept' or 'context'.")
    if not themes:
        raise DatasetError("Icon loader needs at least one theme, e.g. themes=('Tango', 'gnome', 'oxygen').")
    _check_themes(themes)
    members: dict[str, set[str]] = defaultdict(set)  # class -> resolved paths
    for theme in themes:
        files = icon_files(theme)
        if by == "concept":
            for f in files:
                if f.size in CONCEPT_SIZES:
                    members[f.name].add(f.path)
            continue
        sizes: dict[str, set[int]] = defaultdict(set)
        for f in files:
            sizes[f.context].add(f.size)
        # per context: 32 px, or the nearest size this theme has (ties go to the larger size)
        best = {c: min(s, key=lambda v: (abs(v - size), -v)) for c, s in sizes.items()}
        for f in files:
            if f.size == best[f.context]:
                members[f.context].add(f.path)
    names = tuple(classes) if classes is not None else tuple(sorted(members))
    missing = [c for c in names if not members.get(c)]
    if missing:
        raise DatasetError(
            f"Icon {by} {missing[0]!r} has no PNG in themes {', '.join(themes)}; check the name or install "
            f"the themes ({INSTALL_HINT})." + did_you_mean(missing[0], members)
        )
    owners: dict[str, list[int]] = defaultdict(list)
    for label, c in enumerate(names):
        for path in members[c]:
            owners[path].append(label)
    paths = sorted(p for p, labels in owners.items() if len(labels) == 1)  # shared drawings are ambiguous
    labels = np.array([owners[p][0] for p in paths], dtype=np.int64)
    return paths, labels, names


def count_icons(**kwargs: Any) -> int:
    """Number of images ``load_icons(**kwargs)`` returns, without decoding."""
    return len(_select(**loader_arguments(load_icons, kwargs))[0])


def load_icons(
    *,
    themes: Sequence[str] = tuple(THEMES),
    by: str = "concept",
    classes: Sequence[str] | None = None,
    size: int = 32,
) -> Dataset:
    """Load icons as a classification task.

    Parameters
    ----------
    themes : sequence of str
        Themes to pool (keys of :data:`THEMES`).
    by : {"concept", "context"}
        What a class is: the icon name (all sizes 16..64) or the context folder (one size per
        theme and context, the one nearest ``size``).
    classes : sequence of str, optional
        Class names in label order; default every concept or context found.
    size : int
        Output side in pixels.

    Returns
    -------
    Dataset
        One image per icon file of the kept classes, ``(n, size, size, 3)`` uint8 RGB, transparency
        composited on white.

    Raises
    ------
    DatasetError
        If a theme is unknown or missing, a class has no icon, or fewer than two classes remain.
    """
    check_artwork_size(size, "Icon")
    paths, labels, names = _select(themes, by, classes, size)
    return artwork_dataset(
        paths, labels, names, size, what="icons", name=f"icons-{by}", family="icons",
        source="; ".join(f"Debian {THEMES[t].package}: {icons_root() / THEMES[t].folder}" for t in themes),
        licence=" | ".join(f"{t}: {THEMES[t].licence}" for t in themes),
    )
