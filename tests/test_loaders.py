"""Loaders, safe image decoding and dataset writers: good data, every bad input, round trips."""

from __future__ import annotations

import os
import struct
import warnings
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from tans._errors import TansError, TansWarning
from tans.data import images as images_module
from tans.data.dataset import Dataset
from tans.data.images import SkipReason, UnreadableImageError, read_image
from tans.data.loaders import (
    extract_zip,
    load_idx,
    load_imagefolder,
    load_npz,
    load_path,
    load_zip,
)
from tans.data.writers import class_folder_name, write_dataset


@pytest.fixture(autouse=True, params=["eager", "lazy"])
def folder_mode(request, monkeypatch):
    """Every test twice: folders decoded whole, and read lazily (every image decoded when indexed)."""
    if request.param == "lazy":
        monkeypatch.setattr("tans.data.loaders.folder.LAZY_BYTES", -1)
    return request.param


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels but holds no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------------ bad inputs
def _nonexistent(tmp_path, image_folder, png):
    return tmp_path / "no-such-folder"


def _empty(tmp_path, image_folder, png):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def _files_only(tmp_path, image_folder, png):
    png(tmp_path / "flat" / "a.png")
    return tmp_path / "flat"


def _single_class(tmp_path, image_folder, png):
    return image_folder({"cat": 3})


def _empty_class(tmp_path, image_folder, png):
    root = image_folder({"cat": 2, "dog": 2})
    (root / "bird").mkdir()
    return root


def _only_unreadable(tmp_path, image_folder, png):
    root = image_folder({"cat": 2, "dog": 2})
    (root / "bird").mkdir()
    (root / "bird" / "a.png").write_bytes(b"")
    return root


def _symlink_loop(tmp_path, image_folder, png):
    root = image_folder({"cat": 2, "dog": 2})
    os.symlink(root / "cat", root / "cat" / "again")
    return root


def _single_image(tmp_path, image_folder, png):
    return png(tmp_path / "one.png")


def _unknown_file(tmp_path, image_folder, png):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    return path


BAD_INPUTS = {
    "nonexistent path": (_nonexistent, r"No such file or directory: .*no-such-folder.*Check the path"),
    "empty folder": (_empty, r"is empty; expected one sub-folder per class"),
    "files but no class folders": (_files_only, r"holds 1 files but no class sub-folders"),
    "single class": (_single_class, r"single class folder \('cat'\).*need at least 2 classes"),
    "class folder with no images": (_empty_class, r"Class folder 'bird' .* has no images; add images"),
    "class folder with only unreadable files": (
        _only_unreadable,
        r"'bird' .* no readable images \(1 zero-byte\)",
    ),
    "symlink loop": (_symlink_loop, r"Symbolic link loop: .*again.* points back to"),
    "single image file": (_single_image, r"is an image file, not a dataset; expected an ImageFolder"),
    "unknown format": (_unknown_file, r"file of unknown format, not a dataset; expected .*\.npz"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_one_line_error(case, tmp_path, image_folder, png):
    make, match = BAD_INPUTS[case]
    path = make(tmp_path, image_folder, png)
    with pytest.raises(TansError, match=match) as excinfo:
        load_path(path)
    one_line(excinfo)


def test_imagefolder_rejects_a_file(tmp_path, png):
    with pytest.raises(TansError, match=r"Expected a folder of class sub-folders, got the file") as excinfo:
        load_imagefolder(png(tmp_path / "a.png"))
    one_line(excinfo)


def test_unreadable_files_are_skipped_and_counted_in_one_warning(image_folder, png):
    root = image_folder({"cat": 3, "dog": 3})
    (root / "cat" / "zero.png").write_bytes(b"")
    good = png(root / "dog" / "big.png", size=(64, 64)).read_bytes()
    (root / "dog" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "dog" / "notes.txt").write_text("not an image")
    with pytest.warns(TansWarning, match=r"Skipped 3 unreadable files") as record:
        ds = load_imagefolder(root)
    messages = [str(w.message) for w in record if issubclass(w.category, TansWarning)]
    assert len(messages) == 1
    for part in ("1 zero-byte", "1 truncated", "1 not an image"):
        assert part in messages[0]
    assert "\n" not in messages[0]
    assert ds.class_counts().tolist() == [3, 4]  # big.png is readable


def test_hidden_entries_and_os_clutter_are_ignored(image_folder, png):
    root = image_folder({"cat": 2, "dog": 2})
    png(root / ".hidden" / "a.png")
    png(root / "__MACOSX" / "a.png")
    (root / "cat" / ".DS_Store").write_bytes(b"junk")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing skipped, so nothing to warn about
        ds = load_imagefolder(root)
    assert ds.class_names == ("cat", "dog") and len(ds) == 4


# ------------------------------------------------------------------------------ modes
def _mode_images() -> dict[str, tuple[Image.Image, list[int]]]:
    """One 2x2 image per mode and the RGB value expected at its first pixel."""
    palette = Image.new("P", (2, 2), 1)
    palette.putpalette([0, 0, 0, 200, 30, 10])
    transparent = Image.new("P", (2, 2), 0)
    transparent.putpalette([0, 0, 0, 200, 30, 10])
    sixteen = Image.fromarray(np.array([[1000, 3000], [2000, 5000]], dtype=np.uint16))
    return {
        "1": (Image.new("1", (2, 2), 1), [255, 255, 255]),
        "L": (Image.new("L", (2, 2), 77), [77, 77, 77]),
        "LA": (Image.new("LA", (2, 2), (0, 0)), [255, 255, 255]),  # fully transparent -> white
        "P": (palette, [200, 30, 10]),
        "P-transparency": (transparent, [255, 255, 255]),
        "RGB": (Image.new("RGB", (2, 2), (1, 2, 3)), [1, 2, 3]),
        "RGBA": (Image.new("RGBA", (2, 2), (0, 0, 0, 128)), [127, 127, 127]),  # half black on white
        "I;16": (sixteen, [0, 0, 0]),  # the minimum of its own range
    }


@pytest.mark.parametrize("mode", list(_mode_images()))
def test_read_image_converts_every_mode(mode, tmp_path):
    img, expected = _mode_images()[mode]
    path = tmp_path / "img.png"
    img.save(path, transparency=0) if mode == "P-transparency" else img.save(path)
    array = read_image(path)
    assert array.dtype == np.uint8 and array.shape[:2] == (2, 2) and array.shape[2] in (1, 3)
    first = array[0, 0].tolist()
    assert (first * 3 if len(first) == 1 else first) == expected


def test_sixteen_bit_scaled_by_its_own_range(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[1000, 3000], [2000, 5000]], dtype=np.uint16)).save(path)
    assert read_image(path)[..., 0].tolist() == [[0, 128], [64, 255]]


def test_mixed_modes_load_into_one_rgb_dataset(tmp_path):
    root = tmp_path / "modes"
    expected = []
    for i, (mode, (img, value)) in enumerate(_mode_images().items()):
        (root / "a").mkdir(parents=True, exist_ok=True)
        path = root / "a" / f"{i}.png"
        img.save(path, transparency=0) if mode == "P-transparency" else img.save(path)
        expected.append(value)
    Image.new("L", (2, 2), 9).save(root / "a" / "extra.png")
    Image.new("L", (2, 2), 9).save(root / "b.png")  # a stray root file is ignored
    (root / "b").mkdir()
    Image.new("L", (2, 2), 5).save(root / "b" / "0.png")
    ds = load_imagefolder(root)
    assert ds.image_shape == (2, 2, 3)  # one palette image is in colour, so all become RGB
    assert [ds.images[i, 0, 0].tolist() for i in range(len(expected))] == expected
    assert ds.images[-1, 0, 0].tolist() == [5, 5, 5]


# ------------------------------------------------------------------------------ decompression bombs
@pytest.mark.parametrize("side", [9_000, 10_000, 100_000])  # ours, Pillow's warning, Pillow's error
def test_enormous_image_is_refused_from_its_header(side, tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(side, side))
    with pytest.raises(UnreadableImageError, match=r"too large") as excinfo:
        read_image(path)
    assert excinfo.value.reason is SkipReason.TOO_LARGE
    one_line(excinfo)


def test_pixel_limit_is_configurable(tmp_path, png, image_folder, monkeypatch):
    path = png(tmp_path / "small.png", size=(8, 6))
    with pytest.raises(UnreadableImageError, match=r"8x6 pixels, limit 40 pixels"):
        read_image(path, max_pixels=40)
    root = image_folder({"cat": 2, "dog": 2})
    (root / "dog" / "bomb.png").write_bytes(png_header(100_000, 100_000))
    monkeypatch.setattr(images_module, "MAX_PIXELS", 10**9)  # Pillow's own guard still holds
    with pytest.warns(TansWarning, match=r"Skipped 1 unreadable file in .*: 1 too large"):
        ds = load_path(root)
    assert len(ds) == 4


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", SkipReason.ZERO_BYTE),
        (b"hello, world", SkipReason.NOT_AN_IMAGE),
        (b"\x89PNG\r\n\x1a\n", SkipReason.TRUNCATED),  # a PNG signature and nothing else
    ],
)
def test_read_image_reasons(content, reason, tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(UnreadableImageError) as excinfo:
        read_image(path)
    assert excinfo.value.reason is reason
    one_line(excinfo)


# ------------------------------------------------------------------------------ folders
def test_odd_class_names_are_kept_exactly(image_folder):
    ds = load_imagefolder(image_folder({"snow leopard": 2, "café": 2, "日本": 2}))
    assert ds.class_names == tuple(sorted(["snow leopard", "café", "日本"]))
    assert ds.family == "user" and ds.licence == "unknown (user data)" and ds.name == "data"
    assert os.path.isabs(ds.source)


def test_natural_order_and_nested_files(image_folder, png):
    root = image_folder({"cat": 0, "dog": 2})
    for name in ("img10.png", "img2.png", "sub/img1.png"):
        png(root / "cat" / name, seed=len(name))
    ds = load_imagefolder(root)
    expected = [read_image(root / "cat" / n) for n in ("img2.png", "img10.png", "sub/img1.png")]
    assert all(np.array_equal(ds.images[i], e) for i, e in enumerate(expected))


def test_split_folders_fix_the_split(tmp_path, image_folder):
    root = tmp_path / "split"
    image_folder({"cat": 3, "dog": 3}, root=root / "train")
    image_folder({"cat": 1, "dog": 1}, root=root / "val")
    image_folder({"cat": 1, "dog": 1, "emu": 1}, root=root / "test")
    ds = load_imagefolder(root)
    assert ds.class_names == ("cat", "dog", "emu")
    sizes = {s: len(idx) for s, idx in ds.splits().items()}
    assert sizes == {"train": 6, "val": 2, "test": 3}
    assert ds.labels[ds.splits()["test"]].tolist() == [0, 1, 2]


def test_missing_val_is_carved_from_train(tmp_path, image_folder):
    root = tmp_path / "split"
    image_folder({"cat": 10, "dog": 10}, root=root / "train")
    image_folder({"cat": 2, "dog": 2}, root=root / "test")
    splits = load_imagefolder(root).splits()
    assert len(splits["val"]) > 0 and len(splits["test"]) == 4
    assert len(np.unique(np.concatenate(list(splits.values())))) == 24


def test_sizes_and_channels(tmp_path, image_folder, png):
    root = image_folder({"cat": 2, "dog": 2}, mode="L")
    same = load_imagefolder(root)
    assert same.image_shape == (6, 8, 1)  # grey only, one size: kept
    png(root / "dog" / "wide.png", size=(20, 5), mode="L", seed=99)
    assert load_imagefolder(root).image_shape == (64, 64, 1)  # mixed sizes: 64x64
    assert load_imagefolder(root, image_size=16, channels=3).image_shape == (16, 16, 3)
    grey, rgb = load_imagefolder(root, image_size=8), load_imagefolder(root, image_size=8, channels=3)
    assert np.array_equal(rgb.images, np.repeat(grey.images, 3, axis=-1))
    with pytest.raises(TansError, match=r"channels must be 1 \(grey\) or 3 \(RGB\), got 4"):
        load_imagefolder(root, channels=4)


# ------------------------------------------------------------------------------ zip
def test_zip_with_single_top_folder(tmp_path, tans_home, image_folder):
    root = image_folder({"cat": 2, "dog": 3})
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(root.rglob("*.png")):
            zf.write(path, f"pets/{path.relative_to(root)}")
        zf.writestr("__MACOSX/pets/._cat", b"resource fork")
    ds = load_zip(archive)
    again = load_path(archive)  # reuses the cached extraction
    assert ds.class_names == ("cat", "dog") and len(ds) == 5 and ds.name == "pets"
    assert ds.source == str(archive.absolute()) and again.fingerprint == ds.fingerprint
    assert ds.fingerprint == load_imagefolder(root).fingerprint


@pytest.mark.parametrize(
    "entry, what",
    [
        ("../../evil.txt", "a '..' that leaves"),
        ("/tmp/evil.txt", "an absolute path"),
        ("link", "a symbolic link"),
    ],
)
def test_unsafe_zip_entry_is_refused_and_nothing_written(entry, what, tmp_path, tans_home, png):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(png(tmp_path / "a.png"), "data/cat/a.png")
        info = zipfile.ZipInfo(entry)
        if entry == "link":
            info.external_attr = (0o120777 << 16)  # a symlink entry
        zf.writestr(info, "/etc/passwd" if entry == "link" else "evil")
    outside_before = os.path.exists("/tmp/evil.txt")
    with pytest.raises(TansError, match=rf"Refusing zip .*bad\.zip.* is {what}") as excinfo:
        load_path(archive)
    one_line(excinfo)
    assert not list(tmp_path.rglob("evil*")) and not list(tmp_path.rglob("link"))
    assert not any((tans_home / "cache" / "zips").iterdir())  # not even a partial extraction
    assert os.path.exists("/tmp/evil.txt") == outside_before


def test_zip_entries_that_clash_are_one_line(tmp_path, tans_home, png, capsys):
    from tans.cli.main import main

    archive = tmp_path / "clash.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data/cat/a", b"a file named like a folder")
        zf.write(png(tmp_path / "a.png"), "data/cat/a/0.png")
        zf.write(png(tmp_path / "b.png"), "data/dog/0.png")
    with pytest.raises(TansError, match=r"entry 'data/cat/a/0.png' needs 'data/cat/a' to be a folder") as excinfo:
        load_path(archive)
    one_line(excinfo)
    assert main(["data", "inspect", str(archive)]) == 2  # before: "internal error: FileExistsError"
    err = capsys.readouterr().err
    assert err.startswith("error: Refusing zip") and err.count("\n") == 1


def test_zip_cache_keeps_the_most_recently_used_within_its_limit(tmp_path, tans_home, image_folder, monkeypatch):
    zips = {}
    for name in ("a", "b"):
        root = image_folder({"cat": 3, "dog": 3}, root=tmp_path / name)
        zips[name] = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(zips[name], "w") as zf:
            for path in root.rglob("*.png"):
                zf.write(path, f"{name}/{path.relative_to(root)}")
    cache = tans_home / "cache" / "zips"
    first = load_zip(zips["a"])
    one = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
    monkeypatch.setenv("TANS_ZIP_CACHE_BYTES", str(one))  # room for one extracted zip
    load_zip(zips["b"])
    assert [p.name for p in cache.iterdir()] == [extract_zip(zips["b"]).parent.name]  # 'a' evicted, nothing hidden left
    again = load_zip(zips["a"])  # extracted again
    assert np.array_equal(again.images, first.images) and len(list(cache.iterdir())) == 1
    monkeypatch.setenv("TANS_ZIP_CACHE_BYTES", "8 GB")
    with pytest.raises(TansError, match="TANS_ZIP_CACHE_BYTES must be a whole number"):
        load_zip(zips["a"])


def test_zip_keeps_empty_class_folders(tmp_path, tans_home, png):
    archive = tmp_path / "d.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("cat/a.png", "dog/a.png"):
            zf.write(png(tmp_path / "a.png"), name)
        zf.writestr("bird/", b"")
    with pytest.raises(TansError, match=r"Class folder 'bird' in .* has no images"):
        load_zip(archive)


def test_zip_size_guard(tmp_path, tans_home, image_folder):
    root = image_folder({"cat": 2, "dog": 2})
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in root.rglob("*.png"):
            zf.write(path, str(path.relative_to(root)))
    with pytest.raises(TansError, match=r"expands to more than 100 bytes"):
        load_zip(archive, max_bytes=100)


def test_damaged_zip(tmp_path, tans_home):
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(TansError, match=r"Cannot read .*broken\.zip.* as a zip archive") as excinfo:
        load_path(archive)
    one_line(excinfo)


# ------------------------------------------------------------------------------ npz
def test_npz_float_images_and_string_labels(tmp_path):
    x = np.random.default_rng(0).random((6, 5, 5)).astype(np.float32)  # floats in [0, 1]
    np.savez(tmp_path / "d.npz", x=x, y=np.array(["b", "a", "b", "a", "b", "a"]))
    ds = load_npz(tmp_path / "d.npz")
    assert ds.class_names == ("a", "b") and ds.labels.tolist() == [1, 0, 1, 0, 1, 0]
    assert ds.image_shape == (5, 5, 1) and ds.images[0, 0, 0, 0] == np.rint(x[0, 0, 0] * 255)
    assert ds.name == "d" and ds.family == "user"


def test_npz_integer_labels_with_gaps_and_class_names(tmp_path):
    x = np.zeros((4, 3, 3, 3), dtype=np.uint8)
    np.savez(tmp_path / "gaps.npz", x=x, y=np.array([3, 7, 3, 7]))
    assert load_path(tmp_path / "gaps.npz").class_names == ("3", "7")
    np.savez(tmp_path / "named.npz", x=x, y=np.array([0, 1, 1, 0]), class_names=np.array(["cat", "dog"]))
    assert load_path(tmp_path / "named.npz").class_names == ("cat", "dog")


@pytest.mark.parametrize(
    "arrays, match",
    [
        (
            {"x": np.zeros((2, 3, 3), np.uint8), "labels": np.array([0, 1])},
            r"lacks key 'y'; found keys \['x', 'labels'\]",
        ),
        ({"images": np.zeros((2, 3, 3), np.uint8)}, r"lacks keys 'x', 'y'; found keys \['images'\]"),
        (
            {"x": np.zeros((2, 3), np.uint8), "y": np.array([0, 1])},
            r"'x' must be images of shape .* got shape \(2, 3\)",
        ),
        ({"x": np.zeros((2, 3, 3), np.uint8), "y": np.array([0, 1, 1])}, r"'y' must hold 2 labels"),
        (
            {"x": np.full((2, 3, 3), 300, np.int32), "y": np.array([0, 1])},
            r"values in \[300, 300\]; expected 0\.\.255",
        ),
        ({"x": np.zeros((2, 3, 3), object), "y": np.array([0, 1])}, r"would need unpickling"),
    ],
)
def test_npz_bad_contents(arrays, match, tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, allow_pickle=True, **arrays)
    with pytest.raises(TansError, match=match) as excinfo:
        load_path(path)
    one_line(excinfo)


def test_npz_that_is_not_an_archive(tmp_path):
    (tmp_path / "fake.npz").write_text("nope")
    with pytest.raises(TansError, match=r"is not a \.npz archive"):
        load_path(tmp_path / "fake.npz")


# ------------------------------------------------------------------------------ IDX
@pytest.mark.parametrize("suffix", [".gz", ""])
def test_idx_gz_and_raw_with_labels_found_automatically(suffix, tmp_path, idx):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    y = np.arange(20, dtype=np.uint8) % 10
    images = idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", x)
    idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", y)
    ds = load_path(images)
    assert ds.class_names == tuple(str(d) for d in range(10)) and ds.name == "t10k-images-idx3-ubyte"
    assert np.array_equal(ds.images[..., 0], x) and np.array_equal(ds.labels, y)


def test_idx_errors(tmp_path, idx):
    images = idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 2, 2)))
    match = r"No labels file found .*'train-labels-idx1-ubyte\[\.gz\]'"
    with pytest.raises(TansError, match=match) as excinfo:
        load_idx(images)
    one_line(excinfo)
    labels = idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 0]))
    with pytest.raises(TansError, match=r"'labels' must hold 4 labels"):
        load_idx(images)
    images.write_bytes(images.read_bytes()[:-3])
    with pytest.raises(TansError, match=r"is truncated: header declares \(4, 2, 2\)"):
        load_idx(images, labels)
    labels.write_bytes(b"\x12\x34 not idx")
    with pytest.raises(TansError, match=r"is not an IDX file \(magic bytes 1234206e\)"):
        load_idx(labels, labels)


# ------------------------------------------------------------------------------ writers
ODD_NAMES = ("snow leopard", "café", "a/b", ".", "..", ".hidden", "100%", "x\x00y", "tail\x00", "日本")


def _odd_dataset(channels: int) -> Dataset:
    rng = np.random.default_rng(1)
    n = 3 * len(ODD_NAMES)
    return Dataset(
        images=rng.integers(0, 256, (n, 5, 7, channels), dtype=np.uint8),
        labels=rng.permutation(np.arange(n) % len(ODD_NAMES)),
        class_names=ODD_NAMES[::-1],  # not sorted: the order must survive too
        name="odd",
        family="glyphs",
        licence="OFL-1.1",
        source="test",
        seed=3,
    )


@pytest.mark.parametrize("fmt", ["imagefolder", "npz"])
@pytest.mark.parametrize("channels", [1, 3])
def test_write_then_load_round_trip(fmt, channels, tmp_path):
    ds = _odd_dataset(channels)
    out = write_dataset(ds, tmp_path / "out", format=fmt)
    back = load_path(out)
    assert back.class_names == ds.class_names
    assert np.array_equal(back.images, ds.images) and np.array_equal(back.labels, ds.labels)
    assert back.fingerprint == ds.fingerprint
    assert all(np.array_equal(back.splits()[s], ds.splits()[s]) for s in ("train", "val", "test"))
    assert (back.name, back.family, back.licence) == ("odd", "glyphs", "OFL-1.1")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_folder_names_are_escaped_reversibly():
    assert class_folder_name("snow leopard") == "snow leopard"
    escaped = [class_folder_name(n) for n in ("a/b", ".", "..", "100%", "x\x00")]
    assert escaped == ["a%2Fb", "%2E", "%2E.", "100%25", "x%00"]
    with pytest.raises(TansError, match=r"empty name"):
        class_folder_name("")


def test_writer_refuses_a_different_non_empty_folder(tmp_path):
    ds = _odd_dataset(1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(TansError, match=r"is not empty and does not hold this dataset") as excinfo:
        write_dataset(ds, out)
    one_line(excinfo)
    assert (out / "precious.txt").read_text() == "keep me"
    other = write_dataset(ds, tmp_path / "other")
    mtime = (other / "dataset.json").stat().st_mtime_ns
    assert write_dataset(ds, other) == other and (other / "dataset.json").stat().st_mtime_ns == mtime
    with pytest.raises(TansError, match=r"Unknown dataset format 'npy'.*Did you mean 'npz'"):
        write_dataset(ds, tmp_path / "x", format="npy")


def test_writer_crash_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_save(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise OSError("disk full")
        return original(self, *args, **kwargs)

    original = Image.Image.save
    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write_dataset(_odd_dataset(3), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_option_types_name_the_loaders_keywords():
    """load_path, load_zip and load_idx take ``**options``: their TypedDicts must match the loaders that spell them out."""
    import inspect

    from tans.data.loaders import ArrayOptions, LoadOptions

    def keywords(fn):
        return {p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY}

    assert set(LoadOptions.__annotations__) == keywords(load_imagefolder)
    assert set(ArrayOptions.__annotations__) == keywords(load_npz)
