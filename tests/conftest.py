"""Shared fixtures: an isolated tans home and tiny image files written on the fly."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def tans_home(tmp_path, monkeypatch) -> Path:
    """Point ``$TANS_HOME`` at a fresh folder so caches never touch the user's home."""
    home = tmp_path / "tans-home"
    monkeypatch.setenv("TANS_HOME", str(home))
    return home


def write_png(path: Path, *, size: tuple[int, int] = (8, 6), mode: str = "RGB", seed: int = 0) -> Path:
    """Write a small PNG of random content (``size`` is width, height) and return its path."""
    rng = np.random.default_rng(seed)
    w, h = size
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(path)
    return path


@pytest.fixture
def image_folder(tmp_path):
    """Factory: ``image_folder({"cat": 3, "dog": 2})`` writes ``root/<class>/<i>.png`` and returns root.

    Every image has distinct random content; ``root`` defaults to ``tmp_path / "data"``.
    """

    def make(classes: dict[str, int], root: Path | None = None, **png) -> Path:
        root = root or tmp_path / "data"
        seed = 0
        for name, count in classes.items():
            for i in range(count):
                seed += 1
                write_png(root / name / f"{i}.png", seed=seed, **png)
        root.mkdir(parents=True, exist_ok=True)
        return root

    return make


@pytest.fixture
def png():
    """The :func:`write_png` helper, as a fixture."""
    return write_png


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 array as an MNIST IDX file, gzipped when ``path`` ends in ``.gz``."""
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + np.asarray(array, dtype=np.uint8).tobytes())
    return path


@pytest.fixture
def idx():
    """The :func:`write_idx` helper, as a fixture."""
    return write_idx
