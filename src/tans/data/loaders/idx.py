"""Load MNIST-style IDX files, gzipped or raw."""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Unpack

import numpy as np

from tans._errors import DatasetError
from tans.data.dataset import Dataset
from tans.data.loaders._arrays import array_dataset, images_from_array, labels_from_array
from tans.data.loaders._common import ArrayOptions, check_options, require_path

__all__ = ["MAX_IDX_BYTES", "find_idx_labels", "is_idx", "load_idx", "read_idx", "read_idx_arrays"]

# An IDX file may declare at most this many bytes of data.
MAX_IDX_BYTES = 4 * 2**30
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike, *, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read one IDX file (the MNIST format), gzipped or raw, into a native-endian array.

    Parameters
    ----------
    path : str or PathLike
        The file; gzip is detected from its first bytes, not its name.
    max_bytes : int
        Refuse files declaring more data than this.

    Returns
    -------
    np.ndarray
        Shaped by the dimensions in the header.

    Raises
    ------
    DatasetError
        Bad magic number, unknown type code, or fewer bytes than the header declares.
    """
    path = require_path(path)
    opener = _opener(path)
    try:
        with opener(path, "rb") as f:
            magic = f.read(4)
            if not _is_idx_magic(magic):
                raise DatasetError(
                    f"{str(path)!r} is not an IDX file (magic bytes {magic.hex() or 'none'}); expected MNIST "
                    "IDX data such as train-images-idx3-ubyte[.gz]."
                )
            dtype = np.dtype(_IDX_DTYPES[magic[2]])
            header = f.read(4 * magic[3])
            if len(header) < 4 * magic[3]:
                raise DatasetError(f"IDX file {str(path)!r} is truncated inside its header; re-download it.")
            dims = tuple(int(d) for d in np.frombuffer(header, dtype=">u4"))
            size = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
            if size > max_bytes:
                raise DatasetError(
                    f"IDX file {str(path)!r} declares {dims} = {size:,} bytes, more than the {max_bytes:,} "
                    "allowed; split it or raise max_bytes."
                )
            data = f.read(size)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"Cannot read IDX file {str(path)!r} ({exc}); re-download it.") from exc
    if len(data) < size:
        raise DatasetError(
            f"IDX file {str(path)!r} is truncated: header declares {dims} ({size:,} bytes), found "
            f"{len(data):,}; re-download it."
        )
    return np.frombuffer(data, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def load_idx(
    images_path: str | os.PathLike, labels_path: str | os.PathLike | None = None, **options: Unpack[ArrayOptions]
) -> Dataset:
    """Load MNIST-style IDX images and labels.

    Parameters
    ----------
    images_path : str or PathLike
        ``(n, h, w)`` or ``(n, h, w, c)`` IDX images, ``.gz`` or raw.
    labels_path : str or PathLike, optional
        ``(n,)`` IDX labels. By default found next to the images by the MNIST naming convention:
        ``*-images-idx3-ubyte[.gz]`` -> ``*-labels-idx1-ubyte[.gz]`` (also ``*-images.idx3-ubyte``).
    **options
        ``image_size``, ``channels``, ``name``, as for :func:`load_npz`.

    Returns
    -------
    Dataset
        Classes are the sorted label values, named ``str(value)`` (``"0"``..``"9"`` for MNIST).

    Raises
    ------
    DatasetError
        Unreadable IDX files, no labels file found, or images and labels that do not match.
    """
    check_options(image_size=options.get("image_size"), channels=options.get("channels"))
    images_path = require_path(images_path)
    labels_path = require_path(labels_path) if labels_path is not None else find_idx_labels(images_path)
    images, labels, class_names = read_idx_arrays(images_path, labels_path)
    return array_dataset(images, labels, class_names, None, images_path, None, **options)


def read_idx_arrays(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(images (n,h,w,c) uint8, labels (n,) int64, class_names)`` from two IDX files."""
    x = read_idx(images_path)
    y = read_idx(labels_path)
    if x.ndim not in (3, 4):
        raise DatasetError(
            f"{str(images_path)!r} holds an array of shape {x.shape}; expected images (n, h, w) — is it "
            "the labels file? Pass the *-images-idx3-ubyte file first."
        )
    images = images_from_array(x, images_path, "images")
    labels, class_names = labels_from_array(y, len(images), None, labels_path, "labels")
    return images, labels, class_names


def find_idx_labels(images_path: Path) -> Path:
    """The labels file next to an MNIST images file, by the naming convention."""
    stem = images_path.name.removesuffix(".gz")
    guess = stem.replace("images", "labels").replace("idx3", "idx1")
    if guess != stem:
        for candidate in (guess, guess + ".gz"):
            if (images_path.parent / candidate).is_file():
                return images_path.parent / candidate
    raise DatasetError(
        f"No labels file found for IDX images {str(images_path)!r}; expected "
        f"{guess + '[.gz]' if guess != stem else '*-labels-idx1-ubyte[.gz]'!r} next to it: pass "
        "labels_path explicitly."
    )


def is_idx(path: Path) -> bool:
    """Whether ``path`` starts like an IDX file, gzipped or raw (unreadable files are not)."""
    try:
        with _opener(path)(path, "rb") as f:
            head = f.read(4)
    except (OSError, EOFError):
        return False
    return _is_idx_magic(head)


def _opener(path: Path):
    """``gzip.open`` for a gzipped file (told by its first bytes, not its name), else ``open``."""
    with open(path, "rb") as f:
        return gzip.open if f.read(2) == b"\x1f\x8b" else open


def _is_idx_magic(head: bytes) -> bool:
    """IDX files start with two zero bytes, a type code and the number of dimensions."""
    return len(head) == 4 and head[:2] == b"\x00\x00" and head[2] in _IDX_DTYPES and 1 <= head[3] <= 4
