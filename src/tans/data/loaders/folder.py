"""Load an ImageFolder directory: scan its class folders, check each file's header, then decode and
stack the images, or for a large folder leave them to be decoded row by row when indexed.

Layouts: ``root/<class>/<image>``, or ``root/{train,val,test}/<class>/<image>`` for a fixed split.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import NoReturn

import numpy as np

from tans._errors import DatasetError, TansWarning
from tans.data.dataset import SPLITS, Dataset, stratified_split
from tans.data.images import SkipReason, UnreadableImageError, image_header, read_image
from tans.data.lazy import LazyImages
from tans.data.loaders._common import (
    check_options,
    list_dir,
    provenance,
    read_meta,
    require_path,
    to_channels,
)
from tans.data.transforms import resize_images

__all__ = [
    "CARVE_FRACTION",
    "LAZY_BYTES",
    "MIXED_SIZE_DEFAULT",
    "ClassFolder",
    "FolderScan",
    "load_imagefolder",
    "scan_imagefolder",
]

# Images of different sizes are all resized to this square size unless image_size is given.
MIXED_SIZE_DEFAULT = 64
# A folder whose images would take more than this many bytes decoded is read lazily: its files are
# checked from their headers, and a row is decoded only when a command indexes it (LazyImages).
LAZY_BYTES = 64 * 2**20
# When a split layout lacks val/ or test/, this share of train/ is carved out for each.
CARVE_FRACTION = 0.15


@dataclass(frozen=True)
class ClassFolder:
    """One class folder found on disk and the candidate files in it (any depth, natural order)."""

    split: str | None  # "train", "val" or "test" in a split layout, None in a flat one
    name: str  # the folder name, exactly as on disk
    path: PurePath  # a Path on disk, a PurePosixPath inside a zip read in place
    files: tuple[PurePath, ...]


@dataclass(frozen=True)
class FolderScan:
    """What :func:`scan_imagefolder` found under a root, before any image is decoded."""

    root: PurePath
    layout: str  # "flat" (root/<class>) or "splits" (root/<split>/<class>)
    folders: tuple[ClassFolder, ...]
    splits_present: tuple[str, ...]  # split folders that exist (splits layout only)
    stray_files: tuple[PurePath, ...]  # files where class folders were expected
    loops: tuple[PurePath, ...]  # directories skipped because they link back to an ancestor

    @property
    def class_names(self) -> list[str]:
        """Union of class folder names over all splits, sorted."""
        return sorted({f.name for f in self.folders})


_Listing = Callable[[PurePath], tuple[list, list]]  # a folder's sub-folders and files, as list_dir gives them


def scan_imagefolder(
    root: str | os.PathLike | PurePath, *, on_loop: str = "raise", listing: _Listing | None = None
) -> FolderScan:
    """List the class folders and files of an ImageFolder tree without decoding anything.

    Hidden entries (name starting with ``.``) and OS clutter (``__MACOSX``, ``Thumbs.db``...) are
    ignored. Symbolic links are followed; a link that leads back to one of its own ancestor
    directories is a loop.

    Parameters
    ----------
    root : str or PathLike
        The dataset folder.
    on_loop : {"raise", "record"}
        Raise a :class:`DatasetError` on a symlink loop, or record it in ``FolderScan.loops`` and
        skip it (used by inspection).
    listing : callable, optional
        Lists a folder of a tree that is not on disk, as :func:`list_dir` does (a zip read in place,
        see :func:`tans.data.loaders.archive.read_zip`); such a tree has no links.

    Returns
    -------
    FolderScan

    Raises
    ------
    DatasetError
        When ``root`` does not exist or is not a directory, or on a symlink loop.
    """
    if listing is None:
        root = require_path(root)
        if not root.is_dir():
            raise DatasetError(
                f"Expected a folder of class sub-folders, got the file {str(root)!r}; pass the folder "
                "that holds one sub-folder per class, or use load_path() for .zip, .npz and IDX files."
            )
    tree = (list_dir, os.path.realpath) if listing is None else (listing, str)  # no links: paths are real
    list_, real = tree
    loops: list[PurePath] = []
    root_real = real(root)
    top_dirs, top_files = list_(root)
    split_dirs = [d for d in top_dirs if d.name in SPLITS]
    is_splits = (
        bool(top_dirs)
        and len(split_dirs) == len(top_dirs)
        and any(d.name == "train" for d in split_dirs)
        and bool(list_(root / "train")[0])
    )
    folders: list[ClassFolder] = []
    stray = list(top_files)
    if is_splits:
        for split_dir in sorted(split_dirs, key=lambda d: SPLITS.index(d.name)):
            split_real = real(split_dir)
            if split_real == root_real:
                _loop(split_dir, on_loop, loops)
                continue
            class_dirs, files = list_(split_dir)
            stray += files
            for d in class_dirs:
                found = _walk_files(d, (root_real, split_real), on_loop, loops, tree)
                if found is not None:
                    folders.append(ClassFolder(split_dir.name, d.name, d, found))
    else:
        for d in top_dirs:
            found = _walk_files(d, (root_real,), on_loop, loops, tree)
            if found is not None:
                folders.append(ClassFolder(None, d.name, d, found))
    return FolderScan(
        root=root,
        layout="splits" if is_splits else "flat",
        folders=tuple(folders),
        splits_present=tuple(d.name for d in split_dirs) if is_splits else (),
        stray_files=tuple(stray),
        loops=tuple(loops),
    )


def files_under(folder: str | os.PathLike[str]) -> list[Path]:
    """Every file under the folder ``folder`` on disk, at any depth (symbolic-link loops skipped)."""
    return [Path(f) for f in _walk_files(Path(folder), (), "skip", [], (list_dir, os.path.realpath)) or ()]


def _walk_files(
    folder: PurePath,
    ancestors: tuple[str, ...],
    on_loop: str,
    loops: list[PurePath],
    tree: tuple[_Listing, Callable[[PurePath], str]],
) -> tuple[PurePath, ...] | None:
    """Every file under ``folder`` at any depth, or None when ``folder`` itself is a loop.

    ``tree`` is how to list a folder and find its real path.
    """
    list_, realpath = tree
    if realpath(folder) in ancestors:
        _loop(folder, on_loop, loops)
        return None
    files: list[PurePath] = []
    # Depth-first with an explicit stack; each item carries the real paths of its ancestors.
    stack = [(folder, ancestors)]
    while stack:
        path, chain = stack.pop()
        real = realpath(path)
        if real in chain:
            _loop(path, on_loop, loops)
            continue
        sub_dirs, sub_files = list_(path)
        files += sub_files
        stack += [(d, chain + (real,)) for d in reversed(sub_dirs)]
    return tuple(files)


def _loop(path: PurePath, on_loop: str, loops: list[PurePath]) -> None:
    if on_loop == "raise":
        raise DatasetError(
            f"Symbolic link loop: {str(path)!r} points back to {os.path.realpath(path)!r}, one of its "
            "own parent folders; remove or fix the link so the folder tree has an end."
        )
    loops.append(path)


def load_imagefolder(
    path: str | os.PathLike,
    *,
    image_size: int | None = None,
    channels: int | None = None,
    name: str | None = None,
    max_pixels: int | None = None,
) -> Dataset:
    """Load an ImageFolder directory.

    Layouts: ``root/<class>/<image>`` (images may sit in sub-folders of a class folder), or
    ``root/{train,val,test}/<class>/<image>``, whose folders then fix the split; a missing ``val/``
    or ``test/`` is carved from ``train/`` by a seeded stratified split (15 % each). Class names
    are the folder names exactly, sorted (the union over the splits); images are in natural
    file-name order.

    Every file is first checked from its header. When the images would take more than
    :data:`LAZY_BYTES` decoded, none is decoded here: the dataset holds a
    :class:`~tans.data.lazy.LazyImages` that decodes a row when it is indexed (a search decodes its
    sample only; :func:`~tans.data.transforms.to_working` decodes and resizes one image at a time),
    and its fingerprint covers the files' bytes instead of the pixels. A file damaged past its
    header is then found when its row is decoded, as a one-line error, not skipped. A folder
    :func:`~tans.data.writers.write_dataset` wrote is always decoded whole, so that it reads back
    with the fingerprint of the dataset written.

    Parameters
    ----------
    path : str or PathLike
        The dataset folder.
    image_size : int, optional
        Resize every image to ``image_size`` x ``image_size``. By default images keep their size
        when they all share one, and are all resized to 64x64 when sizes differ.
    channels : {1, 3}, optional
        Output channels. By default 3 if any image is in colour, else 1.
    name : str, optional
        Dataset name (default: the folder name).
    max_pixels : int, optional
        Decompression-bomb guard per image (default :data:`tans.data.images.MAX_PIXELS`).

    Returns
    -------
    Dataset
        Family ``"user"`` and the folder's absolute path as ``source``, unless its
        ``dataset.json`` says otherwise.

    Raises
    ------
    DatasetError
        Nonexistent path, a file instead of a folder, an empty folder, no class folders, a single
        class, a class folder without readable images, or a symlink loop.

    Warns
    -----
    TansWarning
        Once, counting the unreadable files that were skipped, per reason.
    """
    check_options(image_size=image_size, channels=channels)
    scan = scan_imagefolder(path)
    root = scan.root
    _require_classes(scan)
    meta = read_meta(root)
    class_names, folder_label = _class_mapping(scan, meta)

    headers = _read_headers(scan, max_pixels)
    shape = _row_shape(headers, image_size, channels)
    written = meta is not None and meta.get("layout") == "imagefolder"  # its pixels are what it was written from
    if not written and shape is not None and sum(len(h.rows) for h in headers) * int(np.prod(shape)) > LAZY_BYTES:
        images, rows, skipped, example = _lazy_images(headers, shape, channels is not None, max_pixels, root)
    else:
        images, rows, skipped, example = _decode_images(scan, image_size, channels, max_pixels, root)
    labels_arr = np.asarray([folder_label[folder.name] for folder, _ in rows], dtype=np.int64)
    split_of = [folder.split for folder, _ in rows]
    order = _restore_order([file.stem for _, file in rows], meta)
    if order is not None:
        images, labels_arr = images[order], labels_arr[order]  # in memory: only a folder tans wrote has an order
        split_of = [split_of[i] for i in order]
    split_indices = folder_splits(split_of, labels_arr, scan) if scan.layout == "splits" else None
    if skipped:
        _warn_skipped(root, skipped, example)
    return Dataset(
        images=images,
        labels=labels_arr,
        class_names=tuple(class_names),
        split_indices=split_indices,
        **provenance(root, meta, name),
    )


_Rows = list[tuple[ClassFolder, PurePath]]  # the class folder and file of each image, in row order


@dataclass
class _Headers:
    """One class folder's files read up to their headers: the readable ones and their shapes."""

    folder: ClassFolder
    rows: list[tuple[PurePath, tuple[int, int, int]]]  # (file, (height, width, channels))
    unreadable: Counter[SkipReason]
    example: PurePath | None  # the first unreadable file


def _read_headers(scan: FolderScan, max_pixels: int | None) -> list[_Headers]:
    """Every class folder's files checked from their headers (:func:`image_header`), none decoded."""
    found = []
    for folder in scan.folders:
        entry = _Headers(folder, [], Counter(), None)
        for file in folder.files:
            try:
                entry.rows.append((file, image_header(file, max_pixels=max_pixels)))
            except UnreadableImageError as exc:
                entry.unreadable[exc.reason] += 1
                entry.example = entry.example or file
        found.append(entry)
    return found


def _row_shape(headers: list[_Headers], size: int | None, channels: int | None) -> tuple[int, int, int] | None:
    """The shape the eager loader would give every image, from the headers (None: nothing readable)."""
    shapes = {shape for h in headers for _, shape in h.rows}
    if not shapes:
        return None
    sides = {shape[:2] for shape in shapes}
    if size is None:
        size = None if len(sides) == 1 else MIXED_SIZE_DEFAULT
    height, width = (size, size) if size is not None else next(iter(sides))
    return height, width, channels or max(shape[2] for shape in shapes)


def _lazy_images(
    headers: list[_Headers], shape: tuple[int, int, int], convert_first: bool, max_pixels: int | None, root: Path
) -> tuple[LazyImages, _Rows, Counter[SkipReason], PurePath | None]:
    """The readable files as a :class:`LazyImages` of ``shape``, their rows, and what was skipped."""
    rows: _Rows = []
    skipped: Counter[SkipReason] = Counter()
    example = None
    for h in headers:
        if not h.rows:
            _no_readable_images(h.folder, h.unreadable, root)
        rows += [(h.folder, file) for file, _ in h.rows]
        skipped += h.unreadable
        example = example or h.example
    images = LazyImages([file for _, file in rows], shape, convert_first=convert_first, max_pixels=max_pixels)
    return images, rows, skipped, example


def _decode_images(
    scan: FolderScan, size: int | None, channels: int | None, max_pixels: int | None, root: Path
) -> tuple[np.ndarray, _Rows, Counter[SkipReason], PurePath | None]:
    """Every readable file decoded into one array, their rows, and what was skipped."""
    stack = _ImageStack(size, channels)
    rows: _Rows = []
    skipped: Counter[SkipReason] = Counter()
    example = None
    for folder in scan.folders:
        readable, unreadable = 0, Counter()
        for file in folder.files:
            try:
                image = read_image(file, max_pixels=max_pixels)
            except UnreadableImageError as exc:
                unreadable[exc.reason] += 1
                example = example or file
                continue
            stack.add(image)
            rows.append((folder, file))
            readable += 1
        skipped += unreadable
        if readable == 0:
            _no_readable_images(folder, unreadable, root)
    return stack.finish(), rows, skipped, example


def _no_readable_images(folder: ClassFolder, unreadable: Counter, root: Path) -> NoReturn:
    raise DatasetError(
        f"Class folder {_rel(folder.path, root)!r} in {str(root)!r} has no readable images "
        f"({_count_phrase(unreadable)}); add images to it or remove the folder."
    )


def _require_classes(scan: FolderScan) -> None:
    """Raise for a folder that cannot be a classification dataset, before decoding anything."""
    root = scan.root
    if not scan.folders:
        if scan.stray_files:
            raise DatasetError(
                f"Folder {str(root)!r} holds {len(scan.stray_files)} files but no class sub-folders; "
                "expected root/<class>/<image>: move each class's images into a sub-folder named "
                "after the class."
            )
        raise DatasetError(
            f"Folder {str(root)!r} is empty; expected one sub-folder per class with images in it "
            "(root/<class>/<image>, e.g. root/cat/1.png and root/dog/1.png)."
        )
    empty = [f for f in scan.folders if not f.files]
    if empty:
        raise DatasetError(
            f"Class folder {_rel(empty[0].path, root)!r} in {str(root)!r} has no images"
            f"{f' (and {len(empty) - 1} more empty folders)' if len(empty) > 1 else ''}; add images "
            "to it or remove the folder."
        )
    classes = scan.class_names
    if len(classes) < 2:
        raise DatasetError(
            f"Found a single class folder ({classes[0]!r}) in {str(root)!r}; need at least 2 classes "
            "for classification: add one sub-folder of images per class."
        )


def _class_mapping(scan: FolderScan, meta: dict | None) -> tuple[list[str], dict[str, int]]:
    """Class names in label order and the label of every folder name.

    A tans ``dataset.json`` maps (possibly escaped) folder names back to the original class
    names in their original order; otherwise the sorted folder names are the classes.
    """
    found = scan.class_names
    if meta is not None and meta.get("layout") == "imagefolder":
        folders = meta.get("folders")
        if (
            isinstance(folders, list)
            and len(folders) == len(meta["classes"])
            and set(found) <= set(folders)
        ):
            return list(meta["classes"]), {f: i for i, f in enumerate(folders)}
    return found, {c: i for i, c in enumerate(found)}


def _restore_order(stems: list[str], meta: dict | None) -> np.ndarray | None:
    """The written order of a folder tans wrote (files named by their index), else None."""
    if meta is None or meta.get("layout") != "imagefolder" or not all(s.isdigit() for s in stems):
        return None
    index = np.array([int(s) for s in stems], dtype=np.int64)
    if len(index) == 0 or not np.array_equal(np.sort(index), np.arange(len(index))):
        return None  # files were added or removed since: keep natural order
    return np.argsort(index)


def folder_splits(split_of: list[str | None], labels: np.ndarray, scan: FolderScan) -> dict[str, np.ndarray]:
    """Split indices from the split folders; a missing val/ or test/ is carved from train/."""
    where = np.array(split_of)
    parts = {s: np.flatnonzero(where == s).astype(np.int64) for s in SPLITS}
    missing = [s for s in ("val", "test") if s not in scan.splits_present]
    if missing:
        train = parts["train"]
        fractions = {s: CARVE_FRACTION if s in missing else 0.0 for s in ("val", "test")}
        carved = stratified_split(
            labels[train], (1.0 - sum(fractions.values()), fractions["val"], fractions["test"]), seed=0
        )
        parts["train"] = train[carved["train"]]
        for s in missing:
            parts[s] = train[carved[s]]
    return {s: np.sort(idx) for s, idx in parts.items()}


def _warn_skipped(root: Path, skipped: Counter, example: Path) -> None:
    """One warning for all skipped files, per reason, with ``example`` the first of them."""
    total = sum(skipped.values())
    warnings.warn(
        f"Skipped {total} unreadable file{'s' if total != 1 else ''} in {str(root)!r}: "
        f"{_count_phrase(skipped)} (e.g. {_rel(example, root)!r}); remove or replace them to silence "
        "this warning.",
        TansWarning,
        stacklevel=3,
    )


def _count_phrase(counts: Counter) -> str:
    """``"2 zero-byte, 1 truncated"``, most frequent first."""
    return ", ".join(f"{n} {reason}" for reason, n in counts.most_common())


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


class _ImageStack:
    """Collects decoded images of any size into one ``(n, h, w, c)`` array.

    Images are kept at their own size only while all sizes agree; on the first different size
    (with no ``size`` given) everything is resized to :data:`MIXED_SIZE_DEFAULT`, so a folder of
    large photos of mixed sizes never sits in memory at full resolution.
    """

    def __init__(self, size: int | None, channels: int | None) -> None:
        self.size = size
        self.channels = channels
        self.images: list[np.ndarray] = []
        self.shape: tuple[int, int] | None = None  # (h, w) shared by all images so far

    def add(self, image: np.ndarray) -> None:
        """Append one ``(h, w, 1|3)`` uint8 image."""
        if self.channels is not None:
            image = to_channels(image, self.channels)
        if self.size is None:
            if self.shape is None:
                self.shape = image.shape[:2]
            elif image.shape[:2] != self.shape:
                self.size = MIXED_SIZE_DEFAULT
                self.images = [self._resize(im) for im in self.images]
        if self.size is not None:
            image = self._resize(image)
        self.images.append(image)

    def finish(self) -> np.ndarray:
        """The stacked images; grey ones repeated to RGB when any image is in colour."""
        channels = self.channels or max(im.shape[-1] for im in self.images)
        stacked = np.stack([to_channels(im, channels) for im in self.images])
        self.images = []
        return stacked

    def _resize(self, image: np.ndarray) -> np.ndarray:
        if image.shape[:2] == (self.size, self.size):
            return image
        return resize_images(image[None], self.size, image.shape[-1])[0]
