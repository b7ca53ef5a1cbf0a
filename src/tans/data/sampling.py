"""Class-balanced sampling: the same number of images from every class."""

from __future__ import annotations

import numpy as np

from tans._errors import DatasetError

__all__ = ["balanced_indices"]


def balanced_indices(labels: np.ndarray, per_class: int, seed: int | np.random.Generator = 0) -> np.ndarray:
    """Up to ``per_class`` indices from each class, drawn without replacement.

    A class with fewer images contributes all of them. The result is grouped by class, in class
    order, so it is reproducible for a given seed.

    Parameters
    ----------
    labels : np.ndarray
        ``(n,)`` integer labels.
    per_class : int
        How many images to take from each class (at least 1).
    seed : int or np.random.Generator
        Randomness for the draw.

    Returns
    -------
    np.ndarray
        ``(m,)`` int64 indices into ``labels``, ``m <= per_class * num_classes``.
    """
    if per_class < 1:
        raise DatasetError(f"per_class must be at least 1, got {per_class}.")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    labels = np.asarray(labels)
    chosen = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) > per_class:
            idx = rng.choice(idx, size=per_class, replace=False)
        chosen.append(np.sort(idx))
    return np.concatenate(chosen).astype(np.int64) if chosen else np.empty(0, dtype=np.int64)
