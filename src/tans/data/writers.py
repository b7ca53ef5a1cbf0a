"""Write a :class:`~tans.data.dataset.Dataset` to disk as an ImageFolder or a ``.npz``.

Both formats carry a ``dataset.json`` (name, family, licence, source, fingerprint, classes) that
the loaders read back, so writing and loading gives the same images, labels, class names, split
and provenance. Output is written to a temporary folder next to the target and renamed into place:
a crash never leaves half a dataset behind.

Class names that cannot be folder names as they are (containing ``/``, ``\\``, control
characters or characters Windows forbids, starting with ``.``) are percent-escaped (``a/b`` ->
``a%2Fb``, ``..`` -> ``%2E.``); ``dataset.json`` maps each folder back to its exact class name.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from tans._errors import DatasetError, did_you_mean
from tans._json import dumps
from tans.data.dataset import SPLITS, Dataset
from tans.data.loaders import META_FILE, META_FORMAT, META_VERSION, NPZ_FILE, read_meta

__all__ = ["FORMATS", "class_folder_name", "write_dataset"]

FORMATS = ("imagefolder", "npz")

# Characters escaped in folder names: path separators, the escape character itself, and those
# Windows forbids, so a written folder can be copied anywhere.
_UNSAFE_CHARS = frozenset('%/\\:*?"<>|')
_MAX_NAME_BYTES = 255  # the file-name limit of common file systems


def write_dataset(dataset: Dataset, out_dir: str | os.PathLike, *, format: str = "imagefolder") -> Path:
    """Write ``dataset`` under ``out_dir``.

    Layouts:

    - ``imagefolder``: ``out/{train,val,test}/<class>/<i>.png`` following ``dataset.splits()``
      (``i`` is the image's index in the dataset), plus ``out/dataset.json``.
    - ``npz``: ``out/dataset.npz`` with ``x`` (n, h, w, c) uint8, ``y`` (n,) int64,
      ``class_names`` (unicode array), ``split_train`` / ``split_val`` / ``split_test`` index
      arrays, plus ``out/dataset.json``.

    Parameters
    ----------
    dataset : Dataset
        What to write.
    out_dir : str or PathLike
        Target folder; it must not exist, be empty, or already hold this same dataset (then
        nothing is written).
    format : {"imagefolder", "npz"}
        Output layout.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    DatasetError
        Unknown format, a target that is a file or a non-empty folder holding something else,
        or a class name that cannot become a folder name.
    """
    if format not in FORMATS:
        raise DatasetError(
            f"Unknown dataset format {format!r}; expected one of {', '.join(FORMATS)}."
            f"{did_you_mean(format, FORMATS)}"
        )
    out = Path(out_dir).expanduser()
    folders = [class_folder_name(c) for c in dataset.class_names] if format == "imagefolder" else None
    meta = _meta(dataset, format, folders)
    if _already_written(out, meta):
        return out

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        if format == "imagefolder":
            _write_imagefolder(dataset, tmp, folders)
        else:
            _write_npz(dataset, tmp)
        (tmp / META_FILE).write_text(dumps(meta, indent=2, digits=None, ensure_ascii=False) + "\n", encoding="utf-8")
        if out.is_dir():
            out.rmdir()  # checked empty above; rename cannot replace a folder everywhere
        try:
            tmp.rename(out)
        except OSError:
            if not _already_written(out, meta):  # another process wrote the same dataset meanwhile
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def class_folder_name(name: str) -> str:
    """The folder name for a class: the name itself when safe, else reversibly percent-escaped.

    Raises
    ------
    DatasetError
        For an empty name or one too long for a file system even before escaping.
    """
    if not name:
        raise DatasetError("Cannot write a class with an empty name as a folder; rename the class.")
    escaped = "".join(f"%{ord(ch):02X}" if _unsafe_char(ch) else ch for ch in name)
    if escaped.startswith("."):  # "." and ".." are special; other dot names are hidden
        escaped = "%2E" + escaped[1:]
    if len(escaped.encode("utf-8")) > _MAX_NAME_BYTES:
        raise DatasetError(
            f"Class name {name[:40]!r}... is too long for a folder name ({len(escaped.encode('utf-8'))} "
            f"bytes, limit {_MAX_NAME_BYTES}); shorten it or write with format='npz'."
        )
    return escaped


def _unsafe_char(ch: str) -> bool:
    return ch in _UNSAFE_CHARS or ord(ch) < 32 or ord(ch) == 127  # control characters too


def _meta(dataset: Dataset, format: str, folders: list[str] | None) -> dict:
    splits = dataset.splits()
    meta = {
        "format": META_FORMAT,
        "version": META_VERSION,
        "layout": format,
        "name": dataset.name,
        "family": dataset.family,
        "licence": dataset.licence,
        "source": dataset.source,
        "fingerprint": dataset.fingerprint,
        "images": len(dataset),
        "image_shape": list(dataset.image_shape),
        "splits": {s: len(splits[s]) for s in SPLITS},
        "classes": list(dataset.class_names),
    }
    if folders is not None:
        meta["folders"] = folders
    else:
        meta["file"] = NPZ_FILE
    return meta


def _already_written(out: Path, meta: dict) -> bool:
    """True when ``out`` holds exactly this dataset; raise when it holds something else."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise DatasetError(
            f"Output {str(out)!r} is a file; expected a folder to write into: choose another path."
        )
    if not any(out.iterdir()):
        return False
    if read_meta(out) == meta:
        return True
    raise DatasetError(
        f"Output folder {str(out)!r} is not empty and does not hold this dataset; expected a new or "
        "empty folder: choose another output path or delete that folder."
    )


def _write_imagefolder(dataset: Dataset, root: Path, folders: list[str]) -> None:
    width = len(str(len(dataset) - 1))
    grey = dataset.images.shape[-1] == 1
    for split, indices in dataset.splits().items():
        (root / split).mkdir()  # every split folder exists, even empty, so the split reads back exactly
        for i in indices:
            folder = root / split / folders[dataset.labels[i]]
            folder.mkdir(exist_ok=True)
            image = dataset.images[i]
            pil = Image.fromarray(image[..., 0], "L") if grey else Image.fromarray(image, "RGB")
            pil.save(folder / f"{i:0{width}d}.png", format="PNG")


def _write_npz(dataset: Dataset, root: Path) -> None:
    splits = dataset.splits()
    with open(root / NPZ_FILE, "wb") as f:
        np.savez_compressed(
            f,
            x=dataset.images,
            y=dataset.labels,
            class_names=np.array(dataset.class_names, dtype=str),
            **{f"split_{s}": np.asarray(splits[s], dtype=np.int64) for s in SPLITS},
        )
