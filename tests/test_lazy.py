"""Large folders are read lazily: only the rows a command indexes are decoded (issue 11, item 5).

Every folder here is tiny; ``lazy`` lowers the threshold so that it is read as a large one would be.
The bad-input tests of ``test_loaders.py`` run in both modes.
"""

from __future__ import annotations

import hashlib
import pickle
from collections import Counter

import numpy as np
import pytest
import torch

from tans.data import lazy as lazy_module
from tans.data import load_dataset, to_working
from tans.data.dataset import Dataset
from tans.data.images import UnreadableImageError
from tans.data.lazy import LazyImages
from tans.data.loaders import load_imagefolder
from tans.data.transforms import WorkingFormat
from tans.searcher import query_sample

torch.set_num_threads(1)


@pytest.fixture
def lazy(monkeypatch):
    """Read every folder lazily, and count decodes per file: ``lazy["a/0.png"]``, ``sum(lazy.values())``."""
    from tans.data.loaders import folder

    decoded: Counter[str] = Counter()
    read = lazy_module.read_image

    def counting(path, **kwargs):
        decoded[str(path)] += 1
        return read(path, **kwargs)

    monkeypatch.setattr(folder, "LAZY_BYTES", -1)
    monkeypatch.setattr(lazy_module, "read_image", counting)
    monkeypatch.setattr(folder, "read_image", counting)  # the eager loader: must not run
    return decoded


def test_loading_decodes_nothing_and_a_sample_decodes_only_its_rows(lazy, image_folder):
    root = image_folder({"a": 12, "b": 12, "c": 12})
    ds = load_imagefolder(root)
    assert isinstance(ds.images, LazyImages) and ds.image_shape == (6, 8, 3) and len(ds) == 36
    assert not lazy
    sample = query_sample(ds, per_class=2, seed=0)
    assert isinstance(sample.images, np.ndarray) and sample.images.shape == (6, 6, 8, 3)
    assert sum(lazy.values()) == 6 and len(lazy) == 6
    files = [ds.images.files[i] for i in ds.splits()["train"]]
    assert set(lazy) <= set(files)  # drawn from the training split


def test_lazy_rows_equal_the_eager_load(lazy, image_folder, png, monkeypatch):
    from tans.data.loaders import folder

    root = image_folder({"a": 4, "b": 4}, size=(10, 7))
    png(root / "a" / "grey.png", size=(10, 7), mode="L", seed=99)
    png(root / "b" / "wide.png", size=(20, 9), seed=98)  # a second size: everything becomes 64x64
    for kwargs in ({}, {"channels": 1}, {"image_size": 16}):
        lazily = load_imagefolder(root, **kwargs)
        monkeypatch.setattr(folder, "LAZY_BYTES", 2**40)
        eagerly = load_imagefolder(root, **kwargs)
        monkeypatch.setattr(folder, "LAZY_BYTES", -1)
        assert isinstance(lazily.images, LazyImages) and isinstance(eagerly.images, np.ndarray)
        assert lazily.image_shape == eagerly.image_shape
        np.testing.assert_array_equal(lazily.images[:], eagerly.images)
        np.testing.assert_array_equal(lazily.labels, eagerly.labels)
        for s in ("train", "val", "test"):
            np.testing.assert_array_equal(lazily.splits()[s], eagerly.splits()[s])
        np.testing.assert_array_equal(to_working(lazily, cache=False).images, to_working(eagerly, cache=False).images)


def test_search_on_a_folder_decodes_only_its_samples(lazy, image_folder, fitted_searcher, records_zoo):
    root = image_folder({"a": 20, "b": 20, "c": 20}, size=(16, 16))
    result = fitted_searcher.search(root, zoo=records_zoo, top_k=2)
    assert result.rows and result.probed  # stage 2 ran, on its own sample
    per_class = fitted_searcher.per_class + fitted_searcher.probe_per_class
    assert 0 < sum(lazy.values()) <= 3 * per_class < 60


def test_fingerprint_reads_bytes_is_stable_and_follows_every_file(lazy, image_folder, png):
    root = image_folder({"a": 3, "b": 3})
    first = load_imagefolder(root)
    assert first.fingerprint == load_imagefolder(root).fingerprint
    assert not lazy  # fingerprinted without decoding
    png(root / "b" / "1.png", seed=1234)  # same size and mode, other pixels
    changed = load_imagefolder(root)
    assert changed.fingerprint != first.fingerprint
    renamed = load_imagefolder(root, name="other")  # identity is not content
    assert renamed.fingerprint == changed.fingerprint
    assert load_imagefolder(root, channels=1).fingerprint != changed.fingerprint  # other pixels


def test_a_folder_tans_wrote_reads_back_whole_with_its_fingerprint(lazy, tmp_path):
    from tans.data.writers import write_dataset

    rng = np.random.default_rng(0)
    ds = Dataset(images=rng.integers(0, 256, (12, 5, 5, 3), dtype=np.uint8), labels=np.arange(12) % 3,
                 class_names=("x", "y", "z"))
    back = load_imagefolder(write_dataset(ds, tmp_path / "written"))
    assert isinstance(back.images, np.ndarray) and back.fingerprint == ds.fingerprint


def test_in_memory_fingerprint_is_unchanged():
    """Built-in tasks and arrays keep the fingerprint zoos and searchers stored: pixels, not files."""
    images = np.arange(2 * 3 * 3 * 1, dtype=np.uint8).reshape(2, 3, 3, 1)
    ds = Dataset(images=images, labels=np.array([0, 1]), class_names=("x", "y"))
    h = hashlib.sha256()
    h.update(repr((images.shape, ("x", "y"))).encode())
    h.update(images.tobytes())
    h.update(np.array([0, 1], dtype="<i8").tobytes())
    assert ds.fingerprint == h.hexdigest()


def test_a_pickled_copy_needs_no_files_and_keeps_the_fingerprint(lazy, image_folder):
    import shutil

    root = image_folder({"a": 3, "b": 3})
    ds = load_imagefolder(root)
    copy = pickle.loads(pickle.dumps(ds))
    shutil.rmtree(root)
    assert isinstance(copy.images, np.ndarray) and copy.images.shape == ds.images.shape
    assert copy.fingerprint == ds.fingerprint


def test_to_working_decodes_each_row_once_into_memory(lazy, image_folder):
    root = image_folder({"a": 4, "b": 4}, size=(32, 32))  # already the working size: still materialised
    ds = load_imagefolder(root)
    working = to_working(ds, WorkingFormat(size=32, channels=3), cache=False)
    assert isinstance(working.images, np.ndarray) and working.images.shape == (8, 32, 32, 3)
    assert sorted(lazy.values()) == [1] * 8


def test_a_file_damaged_after_loading_is_one_line_when_decoded(lazy, image_folder):
    root = image_folder({"a": 3, "b": 3})
    ds = load_dataset(str(root))
    (root / "a" / "0.png").write_bytes(b"not an image any more")
    with pytest.raises(UnreadableImageError, match=r"Cannot read image .*0\.png': not an image") as excinfo:
        ds.images[0]
    assert "\n" not in str(excinfo.value)
    np.testing.assert_array_equal(ds.images[[1, 2]], ds.images[1:3])  # the other rows still decode


def test_indexing_follows_numpy(lazy, image_folder):
    ds = load_imagefolder(image_folder({"a": 3, "b": 2}))
    full = ds.images[:]
    for key in (0, -1, slice(1, 4), slice(None, None, -2), [4, 0], np.array([True, False, True, False, True]),
                (1, 0, 0), (slice(0, 2), ..., 0)):
        np.testing.assert_array_equal(ds.images[key], full[key])
    np.testing.assert_array_equal(np.asarray(ds.images), full)
    with pytest.raises(IndexError):
        ds.images[5]
