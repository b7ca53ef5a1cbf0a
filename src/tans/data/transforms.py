"""Conversion of a dataset to the zoo's working resolution, cached on disk.

Every network in a zoo sees images of one size and channel count (default 32x32 RGB). Converting
is cheap for small sets but not free for tens of thousands of images, so the result is cached under
a key made of the dataset fingerprint and the settings. Writes go to a temporary file that is then
renamed into place, so two processes filling the cache at once both end with a complete file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tans._atomic import new_file
from tans._errors import DatasetError
from tans.data.dataset import Dataset
from tans.data.lazy import LazyImages, resize_to
from tans.paths import cache_dir

__all__ = ["WorkingFormat", "to_working", "resize_images"]

_CACHE_VERSION = 1


@dataclass(frozen=True)
class WorkingFormat:
    """The image format networks of a zoo consume."""

    size: int = 32  # height = width, pixels
    channels: int = 3  # 1 (grey) or 3 (RGB)

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise DatasetError(f"Working channels must be 1 or 3, got {self.channels}.")
        if not 4 <= self.size <= 1024:
            raise DatasetError(f"Working size must be between 4 and 1024 pixels, got {self.size}.")

    @property
    def key(self) -> str:
        return f"{self.size}x{self.size}x{self.channels}"


def resize_images(images: np.ndarray, size: int, channels: int) -> np.ndarray:
    """Resize ``(n, h, w, c)`` uint8 images to ``(n, size, size, channels)`` with Pillow.

    Grey becomes RGB by repetition, RGB becomes grey by luminance; resampling is bilinear with
    antialiasing when shrinking (Pillow's reduce-then-resample), so thin strokes survive.
    """
    n, h, w, _ = images.shape
    out = np.empty((n, size, size, channels), dtype=np.uint8)
    for i in range(n):
        img = images[i]  # one row at a time: a LazyImages decodes just this file
        if (h, w) != (size, size):
            img = resize_to(img, size, size)
        if img.shape[-1] == channels:
            out[i] = img
        elif channels == 3:
            out[i] = np.repeat(img, 3, axis=-1)
        else:
            grey = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            out[i, ..., 0] = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return out


def to_working(
    dataset: Dataset, fmt: WorkingFormat = WorkingFormat(), *, cache: bool | Path = True
) -> Dataset:
    """The dataset at the working resolution and channel count.

    Parameters
    ----------
    dataset : Dataset
        Any dataset.
    fmt : WorkingFormat
        Target size and channels.
    cache : bool or Path
        ``True`` caches under the tans home, a path caches there, ``False`` never touches disk.

    Returns
    -------
    Dataset
        Same labels, names, provenance and split; images ``(n, size, size, channels)`` in memory
        (images read lazily from files are decoded and resized one at a time, so only the working
        copy is ever held whole).
    """
    if dataset.image_shape == (fmt.size, fmt.size, fmt.channels) and not isinstance(dataset.images, LazyImages):
        return dataset
    path = None
    if cache:
        root = Path(cache) if not isinstance(cache, bool) else cache_dir("working")
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"{dataset.fingerprint}-{fmt.key}-v{_CACHE_VERSION}.npy"
        if path.exists():
            try:
                images = np.load(path, allow_pickle=False)
                if images.shape == (len(dataset), fmt.size, fmt.size, fmt.channels):
                    return replace(dataset, images=images)
            except (OSError, ValueError):
                pass  # a corrupt cache entry is simply rebuilt
    images = resize_images(dataset.images, fmt.size, fmt.channels)
    if path is not None:
        _atomic_save(path, images)
    return replace(dataset, images=images)


def _atomic_save(path: Path, array: np.ndarray) -> None:
    with new_file(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
