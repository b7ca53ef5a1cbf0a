"""Describe a dataset on disk and list what is wrong with it, without refusing to look.

:func:`inspect_path` backs ``tans data inspect PATH``. Where a loader raises on the first problem
(an empty class folder, a single class), inspection reports every problem it finds so the user can
fix them all in one go. Only a path that is not there, or not a dataset format at all, raises.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import PurePath

import numpy as np

from tans.data.dataset import split_problem, stratified_split
from tans.data.images import UnreadableImageError, image_to_array, open_image
from tans.data.loaders import (
    NPZ_FILE,
    ZipTree,
    find_idx_labels,
    path_kind,
    read_idx_arrays,
    read_npz_arrays,
    read_zip,
    require_path,
    scan_imagefolder,
)
from tans.data.loaders.folder import folder_splits

__all__ = ["IMBALANCE_RATIO", "Problem", "inspect_path"]

# A dataset whose largest class has at least this many times the images of its smallest is flagged.
IMBALANCE_RATIO = 10.0
_MAX_SHOWN = 3


@dataclass
class Problem:
    """One kind of problem, how often it occurs and a few places where."""

    kind: str  # e.g. "zero-byte", "empty class folder", "duplicate images"
    count: int
    detail: str  # one line for people
    examples: list[str] = field(default_factory=list)  # paths relative to the dataset root, or classes
    refused: bool = False  # search and finetune refuse the dataset (the rest are warnings)


def inspect_path(
    path: str | os.PathLike, *, max_pixels: int | None = None, imbalance_ratio: float = IMBALANCE_RATIO
) -> dict:
    """Classes, counts, image sizes and modes, and the problems of a dataset on disk.

    Parameters
    ----------
    path : str or PathLike
        An ImageFolder directory, a ``.zip`` of one (read in place, nothing extracted), a ``.npz``
        or an MNIST IDX images file.
    max_pixels : int, optional
        Decompression-bomb guard per image (default :data:`tans.data.images.MAX_PIXELS`).
    imbalance_ratio : float
        Flag class imbalance when the largest class is this many times the smallest.

    Returns
    -------
    dict
        ``path``, ``format``, ``layout`` (``"flat"``, ``"splits"`` or ``"arrays"``), ``classes``,
        ``counts`` (readable images per class), ``images``, ``files`` (candidate files, folders
        only), ``split_counts`` (when the split is fixed), ``sizes`` (``{"WxH": n}``), ``modes``
        (``{"RGB": n}``, the Pillow mode before conversion), ``problems`` (a list of
        ``{kind, count, detail, examples, refused}``), ``ok`` (no problems) and ``usable`` (no
        problem for which search and finetune refuse the dataset: an empty or single class, a
        class too small for the train/val/test split, a symbolic link loop).

    Raises
    ------
    DatasetError
        When the path does not exist, is not a dataset format, or is an unsafe or damaged
        archive / array file.
    """
    path = require_path(path)
    kind = path_kind(path)
    if kind == "imagefolder":
        report = _inspect_folder(path, max_pixels)
    elif kind == "zip":
        with read_zip(path) as tree:
            report = _inspect_folder(tree.root, max_pixels, tree)
    elif kind in ("npz", "tans-npz"):
        images, labels, names, splits = read_npz_arrays(path / NPZ_FILE if kind == "tans-npz" else path)
        report = _inspect_arrays(images, labels, names, splits)
    else:
        images, labels, names = read_idx_arrays(path, find_idx_labels(path))
        report = _inspect_arrays(images, labels, names, None)
    problems: list[Problem] = report.pop("problems")
    problems += _imbalance(report["counts"], imbalance_ratio)
    return {
        "path": str(path.absolute()),
        "format": "npz" if kind == "tans-npz" else kind,
        **report,
        "problems": [asdict(p) for p in problems],
        "ok": not problems,
        "usable": not any(p.refused for p in problems),
    }


def _inspect_folder(root: PurePath, max_pixels: int | None, tree: ZipTree | None = None) -> dict:
    """A folder on disk, or one inside ``tree`` (a zip read in place)."""
    scan = scan_imagefolder(root, on_loop="record", listing=None if tree is None else tree.list_dir)
    problems: list[Problem] = []
    classes = scan.class_names
    counts: Counter[str] = Counter({c: 0 for c in classes})
    split_counts: dict[str, Counter[str]] = defaultdict(Counter)
    sizes: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    unreadable: dict[str, list[str]] = defaultdict(list)
    seen: dict[str, list[tuple[str, str | None, str]]] = defaultdict(list)  # digest -> (class, split, file)
    empty_folders: list[str] = []
    label_of = {c: i for i, c in enumerate(classes)}
    labels: list[int] = []  # class index and split of each readable image
    split_of: list[str | None] = []

    for folder in scan.folders:
        readable = 0
        for file in folder.files:
            rel = _rel(file, root)
            try:
                with (
                    nullcontext() if tree is None else tree.open(file) as fp,
                    open_image(file, max_pixels=max_pixels, fp=fp) as img,
                ):
                    mode, (w, h) = img.mode, img.size
                    pixels = image_to_array(img)
            except UnreadableImageError as exc:
                unreadable[str(exc.reason)].append(rel)
                continue
            except (ValueError, OSError):
                unreadable["unreadable"].append(rel)
                continue
            readable += 1
            sizes[f"{w}x{h}"] += 1
            modes[mode] += 1
            counts[folder.name] += 1
            labels.append(label_of[folder.name])
            split_of.append(folder.split)
            if folder.split:
                split_counts[folder.split][folder.name] += 1
            seen[_digest(pixels)].append((folder.name, folder.split, rel))
        if readable == 0:
            empty_folders.append(_rel(folder.path, root))

    for reason, files in sorted(unreadable.items()):
        problems.append(
            Problem(reason, len(files), f"{len(files)} {reason} file{_s(files)} skipped", files[:_MAX_SHOWN])
        )
    if empty_folders:
        problems.append(
            Problem(
                "empty class folder",
                len(empty_folders),
                f"{len(empty_folders)} class folder{_s(empty_folders)} without readable images",
                empty_folders[:_MAX_SHOWN],
                refused=True,
            )
        )
    if scan.loops:
        loops = [_rel(p, root) for p in scan.loops]
        problems.append(
            Problem(
                "symlink loop",
                len(loops),
                f"{len(loops)} symbolic link{_s(loops)} back to a parent folder",
                loops[:_MAX_SHOWN],
                refused=True,
            )
        )
    if not classes:
        stray = len(scan.stray_files)
        detail = f"{stray} files but no class sub-folders" if stray else "the folder is empty"
        problems.append(Problem("no class folders", 1, detail + "; expected root/<class>/<image>", refused=True))
    elif len(classes) == 1:
        problems.append(Problem("single class", 1, f"only class {classes[0]!r}; need at least 2", classes, True))
    if not any(p.refused for p in problems):
        y = np.array(labels, dtype=np.int64)
        splits = folder_splits(split_of, y, scan) if scan.layout == "splits" else stratified_split(y)
        problems += _split_problem(y, splits, classes)
    problems += _duplicates(list(seen.values()))

    report = {
        "layout": scan.layout,
        "classes": classes,
        "counts": dict(counts),
        "images": sum(counts.values()),
        "files": sum(len(f.files) for f in scan.folders),
        "sizes": dict(sizes.most_common()),
        "modes": dict(modes.most_common()),
        "problems": problems,
    }
    if scan.layout == "splits":
        report["split_counts"] = {s: dict(split_counts[s]) for s in ("train", "val", "test")}
    return report


def _inspect_arrays(images: np.ndarray, labels: np.ndarray, names: list[str], splits: dict | None) -> dict:
    n, h, w, c = images.shape
    counts = np.bincount(labels, minlength=len(names))
    problems: list[Problem] = []
    if len(names) < 2:
        problems.append(Problem("single class", 1, f"only {len(names)} class; need at least 2", list(names), True))
    empty = [names[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        detail = f"{len(empty)} class{'es' if len(empty) > 1 else ''} without images"
        problems.append(Problem("empty class", len(empty), detail, empty[:_MAX_SHOWN], True))
    if not problems:
        problems += _split_problem(labels, splits if splits is not None else stratified_split(labels), names)
    split_of = np.full(n, None, dtype=object)
    if splits is not None:
        for s, idx in splits.items():
            split_of[idx] = s
    seen: dict[str, list[tuple[str, str | None, str]]] = defaultdict(list)
    for i in range(n):
        seen[_digest(images[i])].append((names[labels[i]], split_of[i], f"#{i}"))
    problems += _duplicates(list(seen.values()))
    report = {
        "layout": "arrays",
        "classes": list(names),
        "counts": {name: int(k) for name, k in zip(names, counts)},
        "images": int(n),
        "sizes": {f"{w}x{h}": int(n)},
        "modes": {"L" if c == 1 else "RGB": int(n)},
        "problems": problems,
    }
    if splits is not None:
        report["split_counts"] = {
            s: {name: int(k) for name, k in zip(names, np.bincount(labels[idx], minlength=len(names)))}
            for s, idx in splits.items()
        }
    return report


def _split_problem(labels: np.ndarray, splits: dict, names: list[str]) -> list[Problem]:
    """The problem :meth:`~tans.data.Dataset.check_splits` refuses training for, if any."""
    detail = split_problem(labels, splits, names)
    return [Problem("too few images", 1, detail, [], True)] if detail else []


def _duplicates(groups: list[list[tuple[str, str | None, str]]]) -> list[Problem]:
    """Problems for identical images: extra copies, copies under different classes or splits."""
    dupes = [g for g in groups if len(g) > 1]
    if not dupes:
        return []
    problems = []
    extra = sum(len(g) - 1 for g in dupes)
    problems.append(
        Problem(
            "duplicate images",
            extra,
            f"{extra} image{'s' if extra > 1 else ''} identical to another one",
            [" = ".join(item[2] for item in g[:2]) for g in dupes[:_MAX_SHOWN]],
        )
    )
    conflicting = [g for g in dupes if len({item[0] for item in g}) > 1]
    if conflicting:
        problems.append(
            Problem(
                "duplicates across classes",
                len(conflicting),
                f"{len(conflicting)} image{_s(conflicting)} appear under different classes",
                [" = ".join(item[2] for item in g[:2]) for g in conflicting[:_MAX_SHOWN]],
            )
        )
    leaking = [g for g in dupes if len({item[1] for item in g} - {None}) > 1]
    if leaking:
        problems.append(
            Problem(
                "duplicates across splits",
                len(leaking),
                f"{len(leaking)} image{_s(leaking)} appear in more than one split (test leakage)",
                [" = ".join(item[2] for item in g[:2]) for g in leaking[:_MAX_SHOWN]],
            )
        )
    return problems


def _imbalance(counts: dict[str, int], ratio: float) -> list[Problem]:
    present = {c: k for c, k in counts.items() if k > 0}
    if len(present) < 2:
        return []
    small = min(present, key=present.get)
    large = max(present, key=present.get)
    if present[large] < ratio * present[small]:
        return []
    return [
        Problem(
            "class imbalance",
            1,
            f"largest class {large!r} has {present[large]} images, smallest {small!r} has {present[small]} "
            f"({present[large] / present[small]:.0f}x)",
            [large, small],
        )
    ]


def _digest(pixels: np.ndarray) -> str:
    h = hashlib.sha256(repr(pixels.shape).encode())
    h.update(np.ascontiguousarray(pixels).tobytes())
    return h.hexdigest()


def _rel(path: PurePath, root: PurePath) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _s(items: list) -> str:
    return "s" if len(items) != 1 else ""
