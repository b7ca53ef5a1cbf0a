"""Load images and labels from a NumPy ``.npz`` (never unpickling anything)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from tans._errors import DatasetError
from tans.data.dataset import SPLITS, Dataset
from tans.data.loaders._arrays import array_dataset, images_from_array, labels_from_array, strings
from tans.data.loaders._common import check_options, read_meta, require_path

__all__ = ["load_npz", "read_npz_arrays"]


def load_npz(
    path: str | os.PathLike,
    *,
    image_size: int | None = None,
    channels: int | None = None,
    name: str | None = None,
) -> Dataset:
    """Load images and labels from a NumPy ``.npz`` (never unpickling anything).

    Keys: ``x`` images ``(n, h, w)`` or ``(n, h, w, c)`` with c in 1..4 (alpha composited on
    white); uint8, or integers in 0..255, or floats in [0, 1] (scaled by 255) or [0, 255]
    (rounded). ``y``: ``(n,)`` integer labels, or strings (then the sorted unique strings are the
    classes). Optional ``class_names``: one string per class, ``y`` indexing into it; without it
    the sorted unique label values become classes named ``str(value)``. Optional
    ``split_train``, ``split_val``, ``split_test``: index arrays fixing the split.

    Parameters
    ----------
    path : str or PathLike
        The ``.npz`` file.
    image_size : int, optional
        Resize to a square of this size (default: keep).
    channels : {1, 3}, optional
        Output channels (default: as stored).
    name : str, optional
        Dataset name (default: the file stem).

    Returns
    -------
    Dataset

    Raises
    ------
    DatasetError
        Missing keys (the message lists the keys found), wrong shapes or value ranges, pickled
        objects, or a damaged file.
    """
    check_options(image_size=image_size, channels=channels)
    path = require_path(path)
    meta = read_meta(path.parent)
    if meta is not None and (meta.get("layout") != "npz" or meta.get("file") != path.name):
        meta = None
    images, labels, class_names, split_indices = read_npz_arrays(path)
    if meta is not None and len(meta["classes"]) == len(class_names):
        class_names = list(meta["classes"])  # exact names (numpy drops trailing NUL characters)
    return array_dataset(images, labels, class_names, split_indices, path, meta, image_size=image_size, channels=channels,
                         name=name)


def read_npz_arrays(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[str], dict | None]:
    """``(images (n,h,w,c) uint8, labels (n,) int64, class_names, split_indices or None)`` of an npz.

    See :func:`load_npz` for the accepted keys; this does not require two classes.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise DatasetError(
            f"{str(path)!r} is not a .npz archive; expected a file written by np.savez(path, x=images, "
            "y=labels): re-save it that way."
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            missing = [k for k in ("x", "y") if k not in keys]
            if missing:
                raise DatasetError(
                    f"{str(path)!r} lacks key{'s' if len(missing) > 1 else ''} "
                    f"{', '.join(map(repr, missing))}; "
                    f"found keys {keys}; expected 'x' (images), 'y' (labels) and optionally 'class_names': "
                    "save with np.savez(path, x=images, y=labels)."
                )
            arrays = {k: npz[k] for k in keys if k in ("x", "y", "class_names") or k.startswith("split_")}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, ValueError) and "pickle" in str(exc):
            raise DatasetError(
                f"{str(path)!r} holds Python objects that would need unpickling, which tans refuses for "
                "safety; expected plain numeric arrays (and a string array for class_names)."
            ) from exc
        raise DatasetError(f"Cannot read {str(path)!r} as .npz ({exc}); re-save it with np.savez.") from exc

    images = images_from_array(arrays["x"], path, "x")
    names = None
    if "class_names" in arrays:
        names = strings(arrays["class_names"], path, "class_names")
    labels, class_names = labels_from_array(arrays["y"], len(images), names, path, "y")
    split_keys = sorted(k for k in arrays if k.startswith("split_"))
    split_indices = _split_from_arrays(arrays, split_keys, len(images), path) if split_keys else None
    return images, labels, class_names, split_indices


def _split_from_arrays(arrays: dict, split_keys: list[str], n: int, path: Path) -> dict[str, np.ndarray]:
    """Checked ``split_train`` / ``split_val`` / ``split_test`` index arrays: all three, disjoint."""
    wanted = [f"split_{s}" for s in SPLITS]
    if not all(k in arrays for k in wanted):
        raise DatasetError(
            f"{str(path)!r} has some split keys ({split_keys}) "
            f"but not all of {wanted}; store all three index arrays or none."
        )
    parts = {}
    seen = np.zeros(n, dtype=bool)
    for s in SPLITS:
        idx = np.asarray(arrays[f"split_{s}"])
        # ndim first: len() of a 0-d array raises TypeError.
        valid = idx.ndim == 1 and (
            len(idx) == 0 or (np.issubdtype(idx.dtype, np.integer) and idx.min() >= 0 and idx.max() < n)
        )
        if not valid:
            raise DatasetError(
                f"{str(path)!r}: 'split_{s}' must be a 1-D array of indices in [0, {n}), got "
                f"{idx.dtype} of shape {idx.shape}."
            )
        idx = idx.astype(np.int64)
        if seen[idx].any() or len(np.unique(idx)) != len(idx):
            raise DatasetError(f"{str(path)!r}: split index arrays overlap; each image belongs to one split.")
        seen[idx] = True
        parts[s] = np.sort(idx)
    return parts
