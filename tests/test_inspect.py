"""``inspect_path``: facts about a dataset on disk and every problem found, without raising."""

from __future__ import annotations

import os
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from tans._errors import TansError
from tans.data.dataset import Dataset
from tans.data.inspect import inspect_path
from tans.data.writers import write_dataset


def problems(report: dict) -> dict[str, int]:
    return {p["kind"]: p["count"] for p in report["problems"]}


def test_good_folder(image_folder, png):
    root = image_folder({"cat": 3, "dog": 3})
    png(root / "dog" / "grey.png", size=(4, 4), mode="L", seed=50)
    report = inspect_path(root)
    assert report["format"] == "imagefolder" and report["layout"] == "flat"
    assert report["classes"] == ["cat", "dog"] and report["counts"] == {"cat": 3, "dog": 4}
    assert report["sizes"] == {"8x6": 6, "4x4": 1} and report["modes"] == {"RGB": 6, "L": 1}
    assert report["ok"] and report["problems"] == []


def test_every_problem_is_reported_not_raised(image_folder, png):
    root = image_folder({"cat": 20, "dog": 2})
    (root / "dog" / "zero.png").write_bytes(b"")
    (root / "dog" / "notes.txt").write_text("hello")
    good = png(root / "dog" / "big.png", size=(64, 64), seed=70).read_bytes()
    (root / "dog" / "cut.png").write_bytes(good[: len(good) // 2])
    (root / "bird").mkdir()
    shutil.copy(root / "cat" / "0.png", root / "dog" / "copy-of-cat.png")
    os.symlink(root / "cat", root / "cat" / "loop")
    report = inspect_path(root, imbalance_ratio=5)
    assert problems(report) == {
        "zero-byte": 1,
        "not an image": 1,
        "truncated": 1,
        "empty class folder": 1,
        "symlink loop": 1,
        "duplicate images": 1,
        "duplicates across classes": 1,
        "class imbalance": 1,
    }
    assert not report["ok"] and report["counts"] == {"bird": 0, "cat": 20, "dog": 4}
    assert all("\n" not in p["detail"] for p in report["problems"])
    assert report["problems"][0]["examples"]  # says where


def test_single_class_and_empty_folder_are_reported(image_folder, tmp_path):
    assert problems(inspect_path(image_folder({"cat": 2}))) == {"single class": 1}
    (tmp_path / "empty").mkdir()
    report = inspect_path(tmp_path / "empty")
    assert problems(report) == {"no class folders": 1} and report["classes"] == []


@pytest.mark.parametrize(
    "classes, kind",
    [
        ({}, "no class folders"),
        ({"cat": 4}, "single class"),
        ({"cat": 4, "dog": 0}, "empty class folder"),
        ({"cat": 4, "dog": 2}, "too few images"),
    ],
)
def test_problems_that_search_and_finetune_refuse_are_marked(image_folder, tmp_path, classes, kind):
    root = image_folder(classes)
    for name in classes:
        (root / name).mkdir(exist_ok=True)
    report = inspect_path(root)
    assert [p["kind"] for p in report["problems"] if p["refused"]] == [kind] and not report["usable"]


def test_warnings_leave_a_dataset_usable(image_folder):
    root = image_folder({"cat": 30, "dog": 3})
    (root / "dog" / "zero.png").write_bytes(b"")
    report = inspect_path(root)
    assert set(problems(report)) == {"zero-byte", "class imbalance"} and report["usable"] and not report["ok"]


def test_duplicates_across_splits(tmp_path, image_folder):
    root = tmp_path / "split"
    image_folder({"cat": 2, "dog": 2}, root=root / "train")
    image_folder({"cat": 1, "dog": 1}, root=root / "test")  # same seeds: same images as train
    report = inspect_path(root)
    assert report["layout"] == "splits"
    assert report["split_counts"]["test"] == {"cat": 1, "dog": 1}
    assert problems(report)["duplicates across splits"] == 2


def test_nonexistent_path_raises_one_line(tmp_path):
    with pytest.raises(TansError, match=r"No such file or directory: .*nothing-here") as excinfo:
        inspect_path(tmp_path / "nothing-here")
    assert "\n" not in str(excinfo.value)


def test_zip(tmp_path, tans_home, image_folder):
    root = image_folder({"cat": 3, "dog": 3})
    archive = tmp_path / "d.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in root.rglob("*.png"):
            zf.write(path, f"d/{path.relative_to(root)}")
    report = inspect_path(archive)
    assert report["format"] == "zip" and report["counts"] == {"cat": 3, "dog": 3} and report["ok"]


def zip_folder(root, archive, top="d"):
    """Zip every entry under ``root`` (folders too, so empty ones stay) below ``top/``."""
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(root.rglob("*")):
            zf.write(path, f"{top}/{path.relative_to(root)}")
    return archive


@pytest.mark.parametrize("layout", ["flat", "splits"])
def test_zip_is_read_in_place_and_reports_as_its_folder(tmp_path, tans_home, image_folder, png, layout):
    root = tmp_path / "data"
    if layout == "flat":
        image_folder({"cat": 20, "dog": 2}, root=root)
        (root / "dog" / "zero.png").write_bytes(b"")
        (root / "dog" / "notes.txt").write_text("hello")
        (root / "dog" / "Thumbs.db").write_text("clutter")
        good = png(root / "dog" / "sub" / "big.png", size=(64, 64), seed=70).read_bytes()
        (root / "dog" / "cut.png").write_bytes(good[: len(good) // 2])
        (root / "bird").mkdir()
        shutil.copy(root / "cat" / "0.png", root / "dog" / "copy-of-cat.png")
    else:
        image_folder({"cat": 4, "dog": 4}, root=root / "train")
        image_folder({"cat": 1, "dog": 1}, root=root / "test")
    folder = inspect_path(root, imbalance_ratio=5)
    in_zip = inspect_path(zip_folder(root, tmp_path / "d.zip"), imbalance_ratio=5)
    assert in_zip["format"] == "zip" and in_zip["problems"] and in_zip["layout"] == layout
    drop = ("path", "format")
    assert {k: v for k, v in in_zip.items() if k not in drop} == {k: v for k, v in folder.items() if k not in drop}
    assert not (tans_home / "cache" / "zips").exists()  # nothing extracted


def test_unsafe_or_too_large_zip_is_refused_as_when_extracting(tmp_path, tans_home, image_folder, capsys):
    from tans.cli.main import main
    from tans.data.loaders import load_zip, read_zip

    archive = zip_folder(image_folder({"cat": 2, "dog": 2}), tmp_path / "big.zip")
    with pytest.raises(TansError) as extracting:
        load_zip(archive, max_bytes=100)
    with pytest.raises(TansError) as in_place:
        with read_zip(archive, max_bytes=100):
            pass
    assert str(in_place.value) == str(extracting.value) and "expands to more than 100 bytes" in str(in_place.value)

    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("../../evil.png", b"evil")
    with pytest.raises(TansError, match=r"Refusing zip .*big\.zip.* is a '\.\.' that leaves"):
        inspect_path(archive)
    assert main(["data", "inspect", str(archive)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Refusing zip") and err.count("\n") == 1
    assert not list(tmp_path.rglob("evil*")) and not any((tans_home / "cache" / "zips").iterdir())


def test_npz_and_written_dataset(tmp_path):
    x = np.zeros((12, 4, 4), dtype=np.uint8)
    x[:, 0, 0] = np.arange(12)
    x[11] = x[10]  # one duplicate, labels 1 and 0: conflicting
    y = np.array([0] * 11 + [1])
    np.savez(tmp_path / "a.npz", x=x, y=y)
    report = inspect_path(tmp_path / "a.npz")
    assert report["format"] == "npz" and report["counts"] == {"0": 11, "1": 1}
    assert report["sizes"] == {"4x4": 12} and report["modes"] == {"L": 12}
    assert problems(report) == {"too few images": 1, "duplicate images": 1, "duplicates across classes": 1,
                                "class imbalance": 1}

    ds = Dataset(images=x[:10, ..., None], labels=np.arange(10) % 2, class_names=("a", "b"))
    out = write_dataset(ds, tmp_path / "written", format="npz")
    report = inspect_path(out)
    assert report["format"] == "npz" and report["ok"]
    assert sum(sum(c.values()) for c in report["split_counts"].values()) == 10


def test_idx(tmp_path, idx):
    x = np.arange(3 * 2 * 2, dtype=np.uint8).reshape(3, 2, 2)
    images = idx(tmp_path / "train-images-idx3-ubyte.gz", x)
    idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 1]))
    report = inspect_path(images)
    assert report["format"] == "idx" and report["counts"] == {"0": 1, "1": 2}
    assert report["sizes"] == {"2x2": 3}


def test_too_large_image_is_a_problem(image_folder, tmp_path):
    root = image_folder({"cat": 3, "dog": 3})
    Image.new("L", (30, 30)).save(root / "dog" / "large.png")
    assert problems(inspect_path(root, max_pixels=500)) == {"too large": 1}
