"""Shared fixtures: an isolated tans home, tiny image files written on the fly, and one tiny zoo with
transfer records and a searcher fitted on it (built once per test run)."""

from __future__ import annotations

import gzip
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session", autouse=True)
def _session_home(tmp_path_factory):
    """One temporary tans home for the whole run (data caches), reading the installed built-in sources.

    ``$TANS_SOURCES`` keeps pointing where the sources are installed now (``~/.cache/tans/sources``
    unless set), so built-in tasks still load; only derived data is written to the temporary home.
    """
    from tans.paths import sources_dir

    sources = str(sources_dir())  # resolved before $TANS_HOME moves
    home = _run_folder(tmp_path_factory) / "tans-home"  # pytest-xdist's workers share its data caches
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TANS_SOURCES", sources)
        mp.setenv("TANS_HOME", str(home))
        yield


@pytest.fixture
def memory_url():
    """A fresh folder of fsspec's in-memory filesystem, as a ``memory://`` URL (removed afterwards)."""
    import uuid

    import fsspec

    url = f"memory://tans-test-{uuid.uuid4().hex}"
    yield url
    fs = fsspec.filesystem("memory")
    if fs.exists(url):
        fs.rm(url, recursive=True)


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


# ----------------------------------------------------------------------------- the records zoo
# Two families (handwritten digits, European glyphs), two source tasks each, two architectures per
# task; two epochs on 128 images is the least that leaves most glyph models above the flag line
# (1.5x chance), so the transfer records come from models of both families.
RECORDS_SOURCES = ("digits-0-4", "digits-5-9", "glyphs-greek-upper-p1", "glyphs-latin-upper-p1")
RECORDS_TARGETS = ("mnist-0-4", "mnist-5-9", "glyphs-greek-lower-p1", "glyphs-latin-lower-p1")
# val_fraction 0.5 holds out one whole family: two validation targets, so stage 2's combiner is fitted.
TINY_SEARCHER = {"epochs": 2, "steps_per_epoch": 3, "extractor_epochs": 1, "per_class": 5, "pool_per_class": 10,
                 "val_fraction": 0.5, "probe_per_class": 4}


def _run_folder(tmp_path_factory) -> Path:
    """This test run's temporary folder: with pytest-xdist, the one above each worker's own."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _made_once(tmp_path_factory, name: str, make) -> Path:
    """``base / name`` made by ``make(path)`` once per test run, shared by pytest-xdist's workers.

    The first worker to get here makes it under a file lock; the others wait for the lock and use it.
    """
    from filelock import FileLock

    base = _run_folder(tmp_path_factory)
    path, done = base / name, base / f"{name}.done"
    with FileLock(str(base / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)  # a half-made one, from a worker that failed
            make(path)
            done.touch()
    return path


@pytest.fixture(scope="session")
def records_configs():
    """The build and transfer configs of :func:`records_zoo`, and the settings of :func:`fitted_searcher`."""
    from types import SimpleNamespace

    from tans.training.recipe import Recipe
    from tans.zoo.build import BuildConfig
    from tans.zoo.transfer import TransferConfig

    build = BuildConfig(
        tasks=RECORDS_SOURCES,
        num_archs=3,
        archs_per_task=2,
        recipe=Recipe(epochs=2, warmup_epochs=0, max_train_images=128, max_eval_images=64),
        latency_repeats=2,
    )
    transfer = TransferConfig(targets=RECORDS_TARGETS, models=4, max_train_images=32, max_eval_images=32)
    return SimpleNamespace(build=build, transfer=transfer, searcher=dict(TINY_SEARCHER))


@pytest.fixture(scope="session")
def records_zoo(tmp_path_factory, records_configs) -> Path:
    """A zoo of 8 tiny networks on 4 tasks of 2 families, with 16 transfer records (4 models x 4 targets).

    Shared by every test of the run: treat it as read-only (copy it with ``shutil.copytree`` to change it).
    """
    from tans.zoo.build import build_zoo
    from tans.zoo.transfer import run_transfers

    def build(path: Path) -> None:
        report = build_zoo(path, records_configs.build, workers=1)
        assert not report.failed, report.failed
        transfers = run_transfers(path, records_configs.transfer, workers=1)
        assert not transfers.failed and len(transfers.added) == transfers.planned == 16, transfers.to_dict()

    return _made_once(tmp_path_factory, "records-zoo", build)


@pytest.fixture(scope="session")
def fitted_searcher(records_zoo, records_configs, tmp_path_factory):
    """A searcher fitted on :func:`records_zoo` (stage 1 and stage 2). Shared: do not refit or mutate it."""
    import torch

    from tans.searcher import Searcher

    def fit(path: Path) -> None:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            Searcher(**records_configs.searcher).fit(records_zoo).save(path)
        finally:
            torch.set_num_threads(before)

    return Searcher.load(_made_once(tmp_path_factory, "fitted-searcher", fit))  # as every worker sees it


@pytest.fixture
def zoo_copy(records_zoo, tmp_path):
    """Factory: a private copy of :func:`records_zoo` to change.

    ``zoo_copy()`` copies everything (networks, records, task references); ``zoo_copy(records=False)``
    makes a new zoo holding the same networks (or those of ``ids``) and no transfer record.
    """
    import shutil

    from tans.zoo import Zoo

    made = []

    def make(*, records: bool = True, ids=None) -> Zoo:
        path = tmp_path / f"zoo-copy-{len(made)}"
        made.append(path)
        if records:
            assert ids is None, "a full copy holds every network"
            return Zoo.open(shutil.copytree(records_zoo, path))
        source, zoo = Zoo.open(records_zoo), Zoo.create(path)
        zoo.record_working_format(source.working_format)
        for entry_id in ids if ids is not None else source.ids():
            zoo.add(source.get(entry_id), source.load_state_dict(entry_id))
        return zoo

    return make
