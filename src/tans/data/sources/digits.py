"""scikit-learn's handwritten digits: 1,797 images, 8x8 grey, 10 classes (BSD-3-Clause)."""

from __future__ import annotations

import gzip
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tans._errors import DatasetError
from tans.data.dataset import Dataset
from tans.data.sources import digits_dataset

__all__ = ["INSTALL_HINT", "LICENCE", "SOURCE", "count_digits", "installed", "load_digits"]

SOURCE = "scikit-learn: sklearn.datasets.load_digits (sklearn/datasets/data/digits.csv.gz)"
LICENCE = "BSD-3-Clause"
INSTALL_HINT = "pip install scikit-learn (or run scripts/setup.sh)"


def installed() -> bool:
    """Whether scikit-learn (which carries the digits file) can be imported."""
    return importlib.util.find_spec("sklearn") is not None


def count_digits(*, classes: Sequence[int] | None = None) -> int:
    """Number of images :func:`load_digits` returns, read from the data file without importing sklearn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"Built-in source 'digits' needs scikit-learn, which is not installed; {INSTALL_HINT}.")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt") as fh:
        labels = [int(float(line.rsplit(",", 1)[1])) for line in fh if line.strip()]
    wanted = set(range(10)) if classes is None else {int(c) for c in classes}
    return sum(label in wanted for label in labels)


def load_digits(*, classes: Sequence[int] | None = None) -> Dataset:
    """Load the digits at their native 8x8, scaled from 0..16 to 0..255.

    Parameters
    ----------
    classes : sequence of int, optional
        Digits to keep, relabelled 0..k-1 in the given order (default: all ten).

    Returns
    -------
    Dataset
        ``(n, 8, 8, 1)`` uint8 images, class names ``"0"``..``"9"``.

    Raises
    ------
    DatasetError
        If scikit-learn is missing or ``classes`` names a digit outside 0..9.
    """
    if not installed():
        raise DatasetError(f"Built-in source 'digits' needs scikit-learn, which is not installed; {INSTALL_HINT}.")
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (1797, 8, 8, 1)
    return digits_dataset(images, bunch.target.astype(np.int64), classes, what="Digits", name="digits", source=SOURCE,
                          licence=LICENCE)
