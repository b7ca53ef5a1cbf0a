"""An image array backed by files: rows are decoded when they are indexed, never all at once.

A folder of many large photos does not fit in memory at its native resolution, and most commands
need only part of it: a search encodes a class-balanced sample of a few hundred images. A
:class:`LazyImages` stands where a :class:`~tans.data.dataset.Dataset` holds its ``(n, h, w, c)``
uint8 array: it has the array's ``shape``, ``dtype`` and ``len``, and indexing it decodes just the
rows asked for (with :func:`tans.data.images.read_image`), fitted to the declared shape. It keeps
the file names and nothing decoded, so indexing the same row twice decodes it twice.

Its content is named by the files' bytes (:meth:`LazyImages.digest`), read in row order without
decoding. Pickling sends the decoded array, so a worker that receives it needs no access to the
files (a process pool, a Ray node).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image

from tans._errors import DatasetError
from tans.data.images import read_image

__all__ = ["LazyImages"]

_CHUNK = 1 << 20  # bytes read at a time while hashing a file


class LazyImages:
    """``(n, height, width, channels)`` uint8 images, one file per row, decoded on indexing.

    Parameters
    ----------
    files : sequence of path
        One image file per row, in row order.
    shape : (int, int, int)
        ``(height, width, channels)`` every row is fitted to: resized (bilinear, antialiased when
        shrinking) when its size differs, grey repeated to RGB or RGB reduced to luminance when its
        channels differ.
    convert_first : bool
        Convert channels before resizing instead of after (the order the eager loader uses when
        the channels were asked for), so both give the same pixels.
    max_pixels : int, optional
        Decompression-bomb guard per image (default :data:`tans.data.images.MAX_PIXELS`).

    Raises
    ------
    UnreadableImageError
        On indexing, for a file that cannot be decoded any more (damaged past its header, deleted).
    """

    ndim = 4
    dtype = np.dtype(np.uint8)

    def __init__(
        self,
        files: Sequence[str | os.PathLike[str]],
        shape: tuple[int, int, int],
        *,
        convert_first: bool = False,
        max_pixels: int | None = None,
    ) -> None:
        if len(shape) != 3 or shape[-1] not in (1, 3) or min(shape) < 1:
            raise DatasetError(f"LazyImages: expected a row shape (height, width, 1 or 3), got {shape}.")
        self.files = tuple(os.fspath(f) for f in files)
        self.shape = (len(self.files), *(int(s) for s in shape))
        self.convert_first = convert_first
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"LazyImages(shape={self.shape}, files={len(self.files)})"

    def __getitem__(self, key) -> np.ndarray:
        """Decode the rows ``key`` selects (an int, a slice, an index or boolean array).

        A tuple key selects rows with its first element and applies the rest to the decoded result.
        """
        if isinstance(key, tuple):
            rows = self[key[0]]
            rest = key[1:] if np.ndim(rows) == 3 else (slice(None), *key[1:])
            return rows[rest]
        if isinstance(key, (int, np.integer)):
            n = len(self)
            if not -n <= key < n:
                raise IndexError(f"row {key} is out of range for {n} images")
            return self._row(int(key) % n)
        if isinstance(key, slice):
            rows = range(*key.indices(len(self)))
        else:
            rows = np.arange(len(self))[np.asarray(key)]  # checks bounds and boolean masks like numpy
            if rows.ndim != 1:
                raise IndexError(f"expected a 1-d index of rows, got shape {rows.shape}")
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        for i, row in enumerate(rows):
            out[i] = self._row(int(row))
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self._row(i) for i in range(len(self)))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """Every row decoded into one array (all of it in memory: prefer indexing)."""
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __reduce__(self):
        # A pickled copy carries the pixels, so whoever unpickles it needs no access to the files.
        return np.asarray, (self[:],)

    def digest(self) -> bytes:
        """sha256 over the sha256 of each file's bytes, in row order (nothing decoded)."""
        outer = hashlib.sha256()
        for file in self.files:
            inner = hashlib.sha256()
            try:
                with open(file, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        inner.update(chunk)
            except OSError as exc:
                raise DatasetError(
                    f"Cannot read image {file!r} to fingerprint the dataset: {exc.strerror or exc}; "
                    "the folder changed since it was loaded: load it again."
                ) from exc
            outer.update(inner.digest())
        return outer.digest()

    def _row(self, i: int) -> np.ndarray:
        """Row ``i``: its file decoded and fitted to the declared shape, ``(h, w, c)``."""
        from tans.data.loaders._common import to_channels

        height, width, channels = self.shape[1:]
        image = read_image(self.files[i], max_pixels=self.max_pixels)
        if self.convert_first:
            image = to_channels(image, channels)
        if image.shape[:2] != (height, width):
            image = resize_to(image, height, width)
        return to_channels(image, channels)


def resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """One ``(h, w, c)`` uint8 image resized to ``(height, width, c)``: bilinear, antialiased when
    shrinking (Pillow's reduce-then-resample), so thin strokes survive."""
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    out = np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0))
    return out[..., None] if out.ndim == 2 else out
