"""Helpers every loader shares: path checks, option checks, ``dataset.json`` and provenance."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path, PurePath
from typing import TypedDict

import numpy as np

from tans._errors import DatasetError

ACCEPTED_FORMATS = (
    "an ImageFolder directory (root/<class>/<image>), a .zip of one, a NumPy .npz with 'x' and 'y', "
    "or MNIST IDX files (*-images-idx3-ubyte[.gz])"
)
USER_FAMILY = "user"
USER_LICENCE = "unknown (user data)"

META_FILE = "dataset.json"
META_FORMAT = "tans-dataset"
META_VERSION = 1
NPZ_FILE = "dataset.npz"


class ArrayOptions(TypedDict, total=False):
    """The keyword options of every loader; :func:`~tans.data.loaders.load_npz` says what each does."""

    image_size: int | None
    channels: int | None
    name: str | None


class LoadOptions(ArrayOptions, total=False):
    """:class:`ArrayOptions` and the decompression-bomb guard of image files (folders and zips)."""

    max_pixels: int | None


# Operating-system clutter that is never a class or an image.
_IGNORED_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini", "$RECYCLE.BIN", "lost+found"})


def require_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path (``~`` expanded), or a DatasetError saying it does not exist."""
    path = Path(path).expanduser()
    if not path.exists():
        hint = " (it is a broken symbolic link)" if path.is_symlink() else ""
        raise DatasetError(
            f"No such file or directory: {str(path)!r}{hint}; expected {ACCEPTED_FORMATS}. Check the path."
        )
    return path


def list_dir(path: Path) -> tuple[list[Path], list[Path]]:
    """Visible sub-directories and other entries of ``path``, each in natural order.

    Hidden entries (name starting with ``.``) and OS clutter (``__MACOSX``, ``Thumbs.db``...) are
    left out.
    """
    dirs, files = [], []
    try:
        entries = list(os.scandir(path))
    except OSError as exc:
        raise DatasetError(f"Cannot list folder {str(path)!r}: {exc.strerror}; check its permissions.") from exc
    for entry in entries:
        if not visible(entry.name):
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=True)
        except OSError:  # e.g. a link loop that cannot even be stat-ed
            is_dir = False
        # Broken links and other non-directories count as files; decoding then reports them.
        (dirs if is_dir else files).append(Path(entry.path))
    return sorted(dirs, key=natural_key), sorted(files, key=natural_key)


def visible(name: str) -> bool:
    """False for a hidden entry (name starting with ``.``) or OS clutter (``__MACOSX``, ``Thumbs.db``...)."""
    return not name.startswith(".") and name not in _IGNORED_NAMES


def natural_key(path: PurePath) -> tuple:
    """Sort ``img2`` before ``img10``: digit runs compare as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name))


def read_meta(folder: str | os.PathLike) -> dict | None:
    """The ``dataset.json`` that :mod:`tans.data.writers` left in ``folder``, or None.

    A ``dataset.json`` that is missing, unparsable or not written by tans is ignored: it may be
    the user's own file.
    """
    path = Path(folder) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT or meta.get("version") != META_VERSION:
        return None
    if not isinstance(meta.get("classes"), list) or not all(isinstance(c, str) for c in meta["classes"]):
        return None
    return meta


def provenance(path: Path, meta: dict | None, name: str | None) -> dict:
    """Dataset identity fields: from ``dataset.json`` when tans wrote one, else user defaults."""
    stem = path.name
    for suffix in (".gz", ".zip", ".npz"):
        stem = stem.removesuffix(suffix)
    meta = meta or {}
    return {
        "name": name or meta.get("name") or stem or "dataset",
        "family": meta.get("family") or USER_FAMILY,
        "licence": meta.get("licence") or USER_LICENCE,
        "source": str(path.absolute()),
    }


def check_options(*, image_size: int | None = None, channels: int | None = None) -> None:
    """Raise for a ``channels`` or ``image_size`` option no loader accepts."""
    if channels not in (None, 1, 3):
        raise DatasetError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}.")
    if image_size is not None and (not isinstance(image_size, int) or not 4 <= image_size <= 1024):
        raise DatasetError(f"image_size must be a whole number of pixels from 4 to 1024, got {image_size!r}.")


def to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """``(..., 1|3)`` uint8 -> ``(..., channels)``: grey repeated, or RGB to luminance."""
    if images.shape[-1] == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=-1)
    grey = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None]
