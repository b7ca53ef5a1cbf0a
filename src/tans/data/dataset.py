"""The one dataset type every stage of tans consumes.

A :class:`Dataset` is a labelled image collection held as uint8 arrays, with the facts a model zoo
needs to remember about it: class names, a content fingerprint, where it came from and under which
licence, and a deterministic stratified train/val/test split. The images are in memory, or, for a
large folder, a :class:`~tans.data.lazy.LazyImages` that decodes only the rows a command indexes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from tans._errors import DatasetError
from tans.data.lazy import LazyImages

__all__ = ["MIN_IMAGES_PER_CLASS", "SPLITS", "Dataset", "split_problem", "stratified_split"]

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
# The least a class needs for the stratified split to give it a training, a validation and a test image.
MIN_IMAGES_PER_CLASS = 3


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image dataset.

    Parameters
    ----------
    images : np.ndarray or LazyImages
        ``(n, height, width, channels)`` uint8, channels 1 (grey) or 3 (RGB); a
        :class:`~tans.data.lazy.LazyImages` decodes rows from files when indexed (views such as
        :meth:`subset` and :meth:`split` then hold the decoded rows).
    labels : np.ndarray
        ``(n,)`` integer class indices into ``class_names``.
    class_names : tuple of str
        One name per class, in label order.
    name : str
        Short identifier, e.g. ``"glyphs-greek"``.
    family : str
        The source family the data comes from (``"glyphs"``, ``"emoji"``...). A benchmark holds
        out whole families so that related slices never sit on both sides of a split.
    source : str
        Provenance: the package, file or folder the images were read from.
    licence : str
        Licence of the images, as stated by their source.
    split_indices : dict or None
        ``{"train": idx, "val": idx, "test": idx}`` when the source fixes the split (e.g. an
        ImageFolder with ``train/`` ``val/`` ``test/``). ``None`` means a seeded stratified split
        is computed on demand by :meth:`split`.
    """

    # content
    images: np.ndarray | LazyImages
    labels: np.ndarray
    class_names: tuple[str, ...]
    # identity and provenance
    name: str = "dataset"
    family: str = ""
    source: str = ""
    licence: str = "unknown"
    # split
    split_indices: dict[str, np.ndarray] | None = field(default=None, repr=False)
    seed: int = 0

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if not isinstance(images, (np.ndarray, LazyImages)) or images.dtype != np.uint8 or images.ndim != 4:
            got = f"{type(images).__name__} {getattr(images, 'dtype', '')} {getattr(images, 'shape', '')}"
            raise DatasetError(
                f"Dataset '{self.name}': expected images as a uint8 array (n, height, width, channels), "
                f"got {got.strip()}; convert with np.asarray(x, dtype=np.uint8) and add a channel axis."
            )
        if images.shape[-1] not in (1, 3):
            raise DatasetError(
                f"Dataset '{self.name}': expected 1 or 3 channels, got {images.shape[-1]}; "
                "drop alpha or convert to grey/RGB first."
            )
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
            raise DatasetError(
                f"Dataset '{self.name}': expected {len(images)} integer labels, got {labels.dtype} "
                f"of shape {labels.shape}."
            )
        object.__setattr__(self, "labels", labels.astype(np.int64, copy=False))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        n_classes = len(self.class_names)
        if len(images) == 0:
            raise DatasetError(f"Dataset '{self.name}': expected at least one image, got none.")
        if labels.min() < 0 or labels.max() >= n_classes:
            raise DatasetError(
                f"Dataset '{self.name}': labels must lie in [0, {n_classes}) for {n_classes} class "
                f"names, got range [{labels.min()}, {labels.max()}]."
            )
        if n_classes < 2:
            raise DatasetError(
                f"Dataset '{self.name}': a classification task needs at least 2 classes, got "
                f"{n_classes}; add images of another class."
            )
        if len(set(self.class_names)) != n_classes:
            raise DatasetError(f"Dataset '{self.name}': class names must be unique, got {self.class_names}.")

    # ------------------------------------------------------------------ facts
    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)`` of every image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def chance_accuracy(self) -> float:
        """Accuracy of always predicting the most frequent class."""
        return float(np.bincount(self.labels, minlength=self.num_classes).max() / len(self.labels))

    def class_counts(self) -> np.ndarray:
        """Number of images per class, ``(num_classes,)``."""
        return np.bincount(self.labels, minlength=self.num_classes)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the content: equal data, equal fingerprint.

        It covers the image shape, the class names, the labels and the pixels; for images read
        lazily from files (:class:`~tans.data.lazy.LazyImages`), the files' bytes in row order
        instead of the pixels, so that nothing is decoded (one file changed, another fingerprint).
        """
        h = hashlib.sha256()
        h.update(repr((self.images.shape, self.class_names)).encode())
        if isinstance(self.images, LazyImages):
            h.update(b"files:" + self.images.digest())
        else:
            h.update(np.ascontiguousarray(self.images).tobytes())
        h.update(self.labels.astype("<i8").tobytes())
        return h.hexdigest()

    def __getstate__(self) -> dict:
        # Lazy images pickle as their pixels: send the files' fingerprint along, or a copy that a
        # worker unpickles would fingerprint its pixels and no longer match its plan.
        state = dict(self.__dict__)
        if isinstance(self.images, LazyImages):
            state["fingerprint"] = self.fingerprint
        return state

    # ------------------------------------------------------------------ views
    def subset(self, indices: np.ndarray, name: str | None = None) -> Dataset:
        """The images at ``indices`` with the same class list and provenance (no fixed split)."""
        indices = np.asarray(indices, dtype=np.int64)
        return replace(
            self,
            images=self.images[indices],
            labels=self.labels[indices],
            name=name or self.name,
            split_indices=None,
        )

    def splits(self) -> dict[str, np.ndarray]:
        """Index arrays for ``train``/``val``/``test``: the fixed split, or a seeded stratified one."""
        if self.split_indices is not None:
            return self.split_indices
        cached = self.__dict__.get("_computed_splits")
        if cached is None:
            cached = stratified_split(self.labels, DEFAULT_FRACTIONS, seed=self.seed)
            self.__dict__["_computed_splits"] = cached
        return cached

    def check_splits(self) -> None:
        """Raise unless every class has an image in each of ``train``, ``val`` and ``test``.

        Raises
        ------
        DatasetError
            Naming the first class short of images and how many it needs (see :func:`split_problem`).
        """
        problem = split_problem(self.labels, self.splits(), self.class_names)
        if problem:
            raise DatasetError(f"Dataset '{self.name}': {problem}")

    def split(self, which: str) -> Dataset:
        """One split as a :class:`Dataset` (``which`` is ``train``, ``val`` or ``test``)."""
        if which not in SPLITS:
            raise DatasetError(f"Unknown split '{which}': expected one of {', '.join(SPLITS)}.")
        return self.subset(self.splits()[which], name=f"{self.name}:{which}")

    def select_classes(self, classes: list[int] | range, name: str | None = None) -> Dataset:
        """A slice with only the given classes, relabelled 0..k-1 in the given order."""
        classes = list(classes)
        remap = np.full(self.num_classes, -1, dtype=np.int64)
        remap[classes] = np.arange(len(classes))
        keep = np.flatnonzero(remap[self.labels] >= 0)
        return replace(
            self,
            images=self.images[keep],
            labels=remap[self.labels[keep]],
            class_names=tuple(self.class_names[c] for c in classes),
            name=name or self.name,
            split_indices=None,
        )

    def summary(self) -> dict:
        """Plain facts for printing or JSON."""
        counts = self.class_counts()
        return {
            "name": self.name,
            "family": self.family,
            "classes": self.num_classes,
            "images": len(self),
            "image_shape": list(self.image_shape),
            "min_per_class": int(counts.min()),
            "max_per_class": int(counts.max()),
            "licence": self.licence,
            "source": self.source,
            "fingerprint": self.fingerprint[:16],
        }


def split_problem(labels: np.ndarray, splits: dict[str, np.ndarray], class_names: tuple[str, ...] | list[str]) -> str | None:
    """Why training on these splits would be refused, in one line, or ``None`` when every class has an
    image in each split (without, validation or test accuracy is undefined for it).

    Parameters
    ----------
    labels : np.ndarray
        ``(n,)`` class index per image.
    splits : dict of str to np.ndarray
        ``{"train": idx, "val": idx, "test": idx}``, as :meth:`Dataset.splits` gives.
    class_names : sequence of str
        One name per class.
    """
    counts = {s: np.bincount(labels[splits[s]], minlength=len(class_names)) for s in SPLITS}
    for c, name in enumerate(class_names):
        train, val, test = (int(counts[s][c]) for s in SPLITS)
        total = train + val + test
        if train == 0 and total:
            return (f"class {name!r} has images only in the val or test split, none to train on; "
                    "move some of them to train/ or remove the class.")
        if total < MIN_IMAGES_PER_CLASS:
            return (f"class {name!r} has {total} image{'s' if total != 1 else ''}; every class needs at least "
                    f"{MIN_IMAGES_PER_CLASS} (one each for training, validation and test): add images or remove the class.")
        if not (val and test):
            return (f"class {name!r} has {train}/{val}/{test} train/val/test images; every class needs at least "
                    "one in each split: add images to val/ and test/, or leave them out to carve both from train/.")
    return None


def stratified_split(
    labels: np.ndarray, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, seed: int = 0
) -> dict[str, np.ndarray]:
    """Split indices per class in the given proportions, deterministically for a seed.

    Every class with at least one image keeps at least one in ``train``; classes with three or
    more also get at least one in ``val`` and ``test``, so no split misses a class it could have.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise DatasetError(f"Split fractions must be three non-negative numbers summing to 1, got {fractions}.")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = len(idx)
        n_val = int(round(n * fractions[1]))
        n_test = int(round(n * fractions[2]))
        if n >= 3:
            n_val = max(n_val, 1 if fractions[1] > 0 else 0)
            n_test = max(n_test, 1 if fractions[2] > 0 else 0)
        n_val = min(n_val, max(n - 1, 0))
        n_test = min(n_test, max(n - 1 - n_val, 0))
        parts["val"].append(idx[:n_val])
        parts["test"].append(idx[n_val : n_val + n_test])
        parts["train"].append(idx[n_val + n_test :])
    return {s: np.sort(np.concatenate(p)).astype(np.int64) for s, p in parts.items()}
