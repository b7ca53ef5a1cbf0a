"""Turn image and label arrays (from .npz or IDX files) into a checked Dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tans._errors import DatasetError
from tans.data.dataset import Dataset
from tans.data.images import composite_on_white
from tans.data.loaders._common import provenance, to_channels
from tans.data.transforms import resize_images


def images_from_array(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    """Any accepted image array -> uint8 ``(n, h, w, 1|3)``."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 2, 3, 4) or len(x) == 0:
        raise DatasetError(
            f"{str(path)!r}: '{key}' must be images of shape (n, h, w) or (n, h, w, c) with c in 1..4 "
            f"and n > 0, got shape {x.shape}."
        )
    if x.dtype == np.uint8:
        pass
    elif x.dtype == np.bool_:
        x = x.astype(np.uint8) * 255
    elif np.issubdtype(x.dtype, np.integer):
        if x.min() < 0 or x.max() > 255:
            raise DatasetError(
                f"{str(path)!r}: '{key}' is {x.dtype} with values in [{x.min()}, {x.max()}]; expected "
                "0..255: rescale to uint8 first."
            )
        x = x.astype(np.uint8)
    elif np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 255:
            raise DatasetError(
                f"{str(path)!r}: '{key}' is {x.dtype} with values outside [0, 255] or NaN; expected "
                "floats in [0, 1] or [0, 255]: rescale first."
            )
        scale = 255.0 if x.max() <= 1.0 else 1.0
        x = np.clip(np.rint(x * scale), 0, 255).astype(np.uint8)
    else:
        raise DatasetError(
            f"{str(path)!r}: '{key}' has dtype {x.dtype}; expected uint8, integer or float pixels."
        )
    c = x.shape[-1]
    if c in (2, 4):  # grey+alpha or RGBA
        x = composite_on_white(x[..., : c - 1], x[..., c - 1])
    return np.ascontiguousarray(x)


def strings(arr: np.ndarray, path: Path, key: str) -> list[str]:
    """A 1-D array of str or bytes (decoded as UTF-8) as a list of str."""
    if arr.ndim != 1 or arr.dtype.kind not in "US":
        raise DatasetError(
            f"{str(path)!r}: '{key}' must be a 1-D array of strings, got {arr.dtype} of shape {arr.shape}."
        )
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in arr.tolist()]


def labels_from_array(
    y: np.ndarray, n: int, names: list[str] | None, path: Path, key: str
) -> tuple[np.ndarray, list[str]]:
    """Labels ``(n,)`` int64 and class names, from integer or string labels."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise DatasetError(f"{str(path)!r}: '{key}' must hold {n} labels (one per image), got shape {y.shape}.")
    if y.dtype.kind in "US":
        values = strings(y, path, key)
        classes = names if names is not None else sorted(set(values))
        lookup = {c: i for i, c in enumerate(classes)}
        unknown = sorted(set(values) - set(lookup))
        if unknown:
            raise DatasetError(f"{str(path)!r}: labels {unknown[:5]} are not in class_names; add them.")
        return np.array([lookup[v] for v in values], dtype=np.int64), list(classes)
    if y.dtype.kind == "f" and np.isfinite(y).all() and np.array_equal(y, np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iub":
        raise DatasetError(f"{str(path)!r}: '{key}' must hold integer labels, got {y.dtype}.")
    y = y.astype(np.int64)
    if names is not None:
        if y.min() < 0 or y.max() >= len(names):
            raise DatasetError(
                f"{str(path)!r}: labels range over [{y.min()}, {y.max()}] but there are {len(names)} "
                "class_names; expected labels from 0 to len(class_names) - 1."
            )
        return y, names
    values, labels = np.unique(y, return_inverse=True)
    return labels.astype(np.int64), [str(v) for v in values]


def array_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    split_indices: dict | None,
    path: Path,
    meta: dict | None,
    *,
    image_size: int | None = None,
    channels: int | None = None,
    name: str | None = None,
) -> Dataset:
    """A Dataset from validated arrays, resized / channel-converted as asked."""
    if image_size is not None:
        images = resize_images(images, image_size, channels or images.shape[-1])
    elif channels is not None:
        images = to_channels(images, channels)
    return Dataset(
        images=images,
        labels=labels,
        class_names=tuple(class_names),
        split_indices=split_indices,
        **provenance(path, meta, name),
    )
