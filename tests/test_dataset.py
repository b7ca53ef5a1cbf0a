"""The Dataset type: validation, fingerprint, splits, class slices, sampling, working format."""

import multiprocessing as mp

import numpy as np
import pytest

from tans._errors import TansError, did_you_mean
from tans.data.dataset import Dataset, stratified_split
from tans.data.sampling import balanced_indices
from tans.data.transforms import WorkingFormat, resize_images, to_working


def make_dataset(n_per_class=10, n_classes=3, size=8, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    images = rng.integers(0, 256, size=(len(labels), size, size, channels), dtype=np.uint8)
    return Dataset(images=images, labels=labels, class_names=[f"c{i}" for i in range(n_classes)], name="toy")


def test_facts():
    ds = make_dataset()
    assert len(ds) == 30 and ds.num_classes == 3 and ds.image_shape == (8, 8, 1)
    assert ds.chance_accuracy == pytest.approx(1 / 3)
    assert ds.summary()["min_per_class"] == 10


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(images=np.zeros((4, 8, 8, 1), np.float32)), "uint8"),
        (dict(images=np.zeros((4, 8, 8), np.uint8)), "uint8 array"),
        (dict(images=np.zeros((4, 8, 8, 4), np.uint8)), "1 or 3 channels"),
        (dict(labels=np.array([0, 1, 2])), "expected 4 integer labels"),
        (dict(labels=np.array([0, 1, 5, 1])), r"labels must lie in \[0, 2\)"),
        (dict(class_names=["only"], labels=np.zeros(4, int)), "at least 2 classes"),
        (dict(class_names=["a", "a"]), "unique"),
    ],
)
def test_invalid_input_is_one_clear_line(kwargs, match):
    base = dict(images=np.zeros((4, 8, 8, 1), np.uint8), labels=np.array([0, 1, 0, 1]), class_names=["a", "b"])
    base.update(kwargs)
    with pytest.raises(TansError, match=match) as info:
        Dataset(**base)
    assert "\n" not in str(info.value)


def test_fingerprint_depends_on_content_only():
    a, b = make_dataset(seed=1), make_dataset(seed=1)
    assert a.fingerprint == b.fingerprint
    assert make_dataset(seed=2).fingerprint != a.fingerprint
    flipped = Dataset(images=a.images, labels=a.labels[::-1].copy(), class_names=a.class_names)
    assert flipped.fingerprint != a.fingerprint


def test_split_is_stratified_disjoint_and_seeded():
    ds = make_dataset(n_per_class=20)
    parts = ds.splits()
    all_idx = np.concatenate([parts[s] for s in ("train", "val", "test")])
    assert sorted(all_idx.tolist()) == list(range(len(ds)))
    for s in ("train", "val", "test"):
        assert set(ds.labels[parts[s]]) == {0, 1, 2}
    assert len(parts["train"]) == 42
    again = stratified_split(ds.labels, seed=0)
    other = stratified_split(ds.labels, seed=1)
    assert all(np.array_equal(parts[s], again[s]) for s in parts)
    assert not np.array_equal(parts["train"], other["train"])
    assert len(ds.split("test")) == len(parts["test"])


def test_split_tiny_classes_keep_a_training_image():
    labels = np.array([0, 1, 1, 2, 2, 2])
    parts = stratified_split(labels)
    assert set(labels[parts["train"]]) == {0, 1, 2}


@pytest.mark.parametrize(
    "counts, splits, match",
    [
        ((10, 2, 10), None, "class 'c1' has 2 images; every class needs at least 3 "),
        ((1, 1, 1), None, "class 'c0' has 1 image; every class needs at least 3 "),
        ((3, 4), {"train": [0], "val": [1, 3, 4], "test": [2, 5, 6]}, "class 'c1' has images only in the val or test"),
        ((4, 4), {"train": [0, 1, 4, 5], "val": [2, 6], "test": [3]}, "class 'c1' has 2/1/0 train/val/test images"),
    ],
)
def test_splits_short_of_a_class_are_refused_in_one_line(counts, splits, match):
    labels = np.repeat(np.arange(len(counts)), counts)
    images = np.zeros((len(labels), 4, 4, 1), np.uint8)
    fixed = None if splits is None else {s: np.array(idx) for s, idx in splits.items()}
    ds = Dataset(images=images, labels=labels, class_names=[f"c{i}" for i in range(len(counts))], split_indices=fixed)
    with pytest.raises(TansError, match=match) as info:
        ds.check_splits()
    assert "\n" not in str(info.value)


def test_three_images_per_class_are_enough():
    make_dataset(n_per_class=3).check_splits()


def test_unknown_split_name():
    with pytest.raises(TansError, match="Unknown split 'tets'"):
        make_dataset().split("tets")


def test_select_classes_relabels():
    ds = make_dataset(n_classes=4)
    part = ds.select_classes([3, 1])
    assert part.class_names == ("c3", "c1")
    assert part.num_classes == 2 and len(part) == 20
    assert np.array_equal(part.images[part.labels == 0], ds.images[ds.labels == 3])


def test_balanced_indices():
    labels = np.array([0] * 50 + [1] * 3 + [2] * 10)
    idx = balanced_indices(labels, per_class=5, seed=0)
    assert np.bincount(labels[idx]).tolist() == [5, 3, 5]
    assert np.array_equal(idx, balanced_indices(labels, per_class=5, seed=0))
    with pytest.raises(TansError, match="at least 1"):
        balanced_indices(labels, per_class=0)


def test_resize_changes_size_and_channels():
    images = np.zeros((2, 8, 8, 1), np.uint8)
    images[:, 2:6, 2:6] = 255
    rgb = resize_images(images, 32, 3)
    assert rgb.shape == (2, 32, 32, 3) and rgb.max() == 255
    assert np.array_equal(rgb[..., 0], rgb[..., 2])
    grey = resize_images(rgb, 16, 1)
    assert grey.shape == (2, 16, 16, 1)


def test_working_format_is_validated():
    with pytest.raises(TansError, match="channels must be 1 or 3"):
        WorkingFormat(channels=2)


def test_to_working_uses_cache(tmp_path):
    ds = make_dataset()
    first = to_working(ds, WorkingFormat(16, 3), cache=tmp_path)
    files = list(tmp_path.glob("*.npy"))
    assert len(files) == 1 and first.image_shape == (16, 16, 3)
    assert first.labels is ds.labels or np.array_equal(first.labels, ds.labels)
    # A second conversion reads the cache: corrupt-free and identical.
    second = to_working(ds, WorkingFormat(16, 3), cache=tmp_path)
    assert np.array_equal(first.images, second.images)
    # A corrupt cache file is rebuilt rather than trusted.
    files[0].write_bytes(b"garbage")
    third = to_working(ds, WorkingFormat(16, 3), cache=tmp_path)
    assert np.array_equal(first.images, third.images)


def _fill_cache(path):
    to_working(make_dataset(n_per_class=200), WorkingFormat(32, 3), cache=path)


def test_cache_is_safe_with_two_writers(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_fill_cache, args=(tmp_path,)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npy"  # no temp file left behind
    cached = np.load(files[0])
    assert cached.shape == (600, 32, 32, 3)


def test_did_you_mean():
    assert "'glyphs-greek'" in did_you_mean("glyph-greek", ["glyphs-greek", "emoji-apple"])
    assert did_you_mean("zzz", ["glyphs-greek"]) == ""
