"""Pick the loader for a path from what the path is: folder, .zip, .npz or IDX file."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Unpack

from tans._errors import DatasetError
from tans.data.dataset import Dataset
from tans.data.loaders._common import ACCEPTED_FORMATS, NPZ_FILE, LoadOptions, read_meta, require_path
from tans.data.loaders.archive import load_zip
from tans.data.loaders.folder import load_imagefolder
from tans.data.loaders.idx import is_idx, load_idx
from tans.data.loaders.npz import load_npz

__all__ = ["ACCEPTED_FORMATS", "load_path", "path_kind"]


def load_path(path: str | os.PathLike, **options: Unpack[LoadOptions]) -> Dataset:
    """Load a dataset from whatever ``path`` is.

    A folder is an ImageFolder (or a folder :func:`tans.data.writers.write_dataset` wrote in npz
    format); a ``.zip`` a zipped ImageFolder; a ``.npz`` arrays; an IDX file MNIST data. The
    keyword options are those of :func:`load_imagefolder` (``max_pixels`` only matters for
    image files).

    Raises
    ------
    DatasetError
        For a path of none of these kinds (the message lists the accepted formats), or any
        error of the chosen loader.
    """
    path = require_path(path)
    kind = path_kind(path)
    max_pixels = options.pop("max_pixels", None)
    if kind == "imagefolder":
        return load_imagefolder(path, max_pixels=max_pixels, **options)
    if kind == "tans-npz":
        return load_npz(path / NPZ_FILE, **options)
    if kind == "zip":
        return load_zip(path, max_pixels=max_pixels, **options)
    if kind == "npz":
        return load_npz(path, **options)
    return load_idx(path, **options)


def path_kind(path: Path) -> str:
    """``"imagefolder"``, ``"tans-npz"``, ``"zip"``, ``"npz"`` or ``"idx"``; raises otherwise."""
    if path.is_dir():
        meta = read_meta(path)
        if meta is not None and meta.get("layout") == "npz" and (path / NPZ_FILE).is_file():
            return "tans-npz"
        return "imagefolder"
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix == ".zip":
        return "zip"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        return "npz" if names and all(n.endswith(".npy") for n in names) else "zip"
    if is_idx(path):
        return "idx"
    image_suffixes = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")
    what = "an image file" if suffix in image_suffixes else "a file of unknown format"
    raise DatasetError(
        f"{str(path)!r} is {what}, not a dataset; expected {ACCEPTED_FORMATS}: pass the folder that "
        "holds the class sub-folders instead."
    )
