"""The catalogue of built-in tasks: registry invariants, loading, cache and missing sources."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tans._errors import DatasetError, TansError
from tans.data import catalogue
from tans.data.catalogue import families, get_task, list_tasks, load_builtin
from tans.paths import sources_dir

TASKS = list_tasks()


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("TANS_SOURCES", str(sources_dir()))
    monkeypatch.setenv("TANS_HOME", str(tmp_path / "home"))


def test_catalogue_size_and_families():
    assert len(TASKS) >= 60
    assert len({t.name for t in TASKS}) == len(TASKS)
    assert len(families()) >= 8
    assert {"handwritten-digits", "emoji", "icons", "glyphs-european", "glyphs-indic"} <= set(families())


def test_every_task_is_well_formed():
    bad = [t.name for t in TASKS if not (2 <= t.num_classes <= 50 and get_task(t.name) is t and t.family
                                         and t.licence and t.source and t.description and t.install_hint)]
    assert bad == []


# The cheapest arguments each loader takes: a task keeps its classes, its images shrink.
SMALL = {"load_glyphs": {"per_class": 1, "size": 8}, "load_emoji": {"size": 8}, "load_icons": {"size": 8}}


@pytest.mark.slow
@pytest.mark.parametrize("loader", sorted({t.loader.__name__ for t in TASKS}))
def test_every_task_loads_its_classes_with_a_stable_fingerprint(loader):
    small = SMALL.get(loader, {})
    fingerprints = {}
    for spec in (t for t in TASKS if t.loader.__name__ == loader):
        if not spec.installed():  # reported, not loaded
            assert loader != "load_digits", "scikit-learn digits must always be available"
            with pytest.raises(DatasetError, match="not installed on this machine"):
                load_builtin(spec.name, cache=False, **small)
            continue
        ds = load_builtin(spec.name, cache=False, **small)
        assert ds.num_classes == spec.num_classes and ds.class_counts().min() >= 1, spec.name
        assert (ds.name, ds.family) == (spec.name, spec.family) and ds.licence, spec.name
        fingerprints[spec.name] = ds.fingerprint
    assert len(set(fingerprints.values())) == len(fingerprints), "two tasks hold the same images"
    if fingerprints:  # a second load gives the same data
        name = next(iter(fingerprints))
        assert load_builtin(name, cache=False, **small).fingerprint == fingerprints[name]


def test_glyph_scripts_are_many_and_grouped():
    scripts = [t for t in TASKS if t.family.startswith("glyphs-") and t.kwargs["typeface"] is None]
    assert len(scripts) >= 12
    assert len({t.family for t in scripts}) >= 5


def test_glyph_parts_cover_each_script_once():
    assert catalogue.glyph_parts(32) == [(0, 16), (16, 32)]
    assert catalogue.glyph_parts(50) == [(0, 12), (12, 25), (25, 38), (38, 50)]
    assert catalogue.glyph_parts(16) == [(0, 16)]
    for script in ("bengali", "cherokee"):
        whole = get_task(f"glyphs-{script}")
        parts = list_tasks(f"glyphs-{script}-p*")
        assert sum(p.num_classes for p in parts) == whole.num_classes
        assert all(p.num_classes <= catalogue.GLYPH_PART_CLASSES and p.family == whole.family for p in parts)


def test_glyph_part_renders_its_own_characters():
    whole = load_builtin("glyphs-greek-upper", per_class=2)
    second = load_builtin("glyphs-greek-upper-p2", per_class=2)
    assert second.class_names == whole.class_names[12:] and second.num_classes == 12


def test_glyph_chars_out_of_range_is_a_tans_error():
    from tans.data.sources.glyphs import load_glyphs

    with pytest.raises(TansError, match=r"range \(start, stop\) within 0..24"):
        load_glyphs("greek-upper", per_class=1, chars=(20, 30))


def test_get_task_suggests_close_names():
    with pytest.raises(TansError, match="Did you mean 'mnist-even'"):
        get_task("mnist-evn")


def test_list_tasks_filters():
    names = [t.name for t in list_tasks("digits-*")]
    assert names == ["digits-0-4", "digits-5-9"]
    assert all(t.family == "icons" for t in list_tasks(family="icons")) and list_tasks(family="icons")


# one task per source module; per_class keeps the glyph render small
ONE_PER_SOURCE = [
    ("digits-0-4", {}, (8, 8, 1)),
    ("mnist-even", {}, (28, 28, 1)),
    ("glyphs-greek-lower", {"per_class": 4}, (32, 32, 1)),
    ("emoji-food-drink-google", {}, (32, 32, 3)),
    ("icons-devices", {}, (32, 32, 3)),
]


@pytest.mark.parametrize("name, overrides, shape", ONE_PER_SOURCE, ids=[p[0] for p in ONE_PER_SOURCE])
def test_load_one_task_per_source(name, overrides, shape):
    spec = get_task(name)
    if not spec.installed():
        assert not name.startswith("digits"), "scikit-learn digits must always be available"
        pytest.skip(f"{name}: {spec.install_hint}")
    ds = load_builtin(name, **overrides)
    assert ds.images.dtype == np.uint8 and ds.image_shape == shape
    assert ds.num_classes == spec.num_classes and ds.name == name and ds.family == spec.family
    assert ds.class_counts().min() >= (4 if overrides else 10)
    if not overrides:
        assert spec.num_images() == len(ds)


def test_cache_round_trip_and_num_images_from_cache(tmp_path):
    first = load_builtin("digits-5-9")
    files = list((tmp_path / "home" / "cache" / "builtin").glob("digits-5-9-*.npz"))
    assert len(files) == 1
    again = load_builtin("digits-5-9")
    assert again.fingerprint == first.fingerprint and again.class_names == first.class_names
    assert get_task("digits-5-9").num_images() == len(first)
    uncached = load_builtin("digits-0-4", cache=False)
    assert not list((tmp_path / "home" / "cache" / "builtin").glob("digits-0-4-*.npz"))
    assert len(uncached) == get_task("digits-0-4").num_images()


def test_missing_source_says_how_to_install(monkeypatch):
    spec = replace(get_task("digits"), name="digits-missing", check=lambda: False, install_hint="pip install x")
    monkeypatch.setitem(catalogue._REGISTRY, spec.name, spec)
    assert not spec.installed() and spec.num_images() is None
    with pytest.raises(TansError, match="not installed on this machine; pip install x"):
        load_builtin("digits-missing")


def test_npm_sources_moved_with_tans_home_name_tans_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("TANS_SOURCES", str(tmp_path / "empty"))  # as if only TANS_HOME had been set
    for name in ("emoji-activities", "mnist-0-4"):
        assert not get_task(name).installed()
        with pytest.raises(TansError, match=r"not installed on this machine; .*into \$TANS_SOURCES, default "
                                            r"\$TANS_HOME/sources\), or set TANS_SOURCES to the folder it filled"):
            load_builtin(name)


def test_bad_override_is_a_tans_error():
    with pytest.raises(TansError, match="bad loader argument"):
        load_builtin("digits", cache=False, per_class=3)


def test_register_rejects_duplicates_and_class_counts():
    with pytest.raises(TansError, match="already registered"):
        catalogue.register_task(get_task("digits"))
    with pytest.raises(TansError, match="2 to 50 classes"):
        catalogue.register_task(replace(get_task("digits"), name="digits-one", num_classes=1))
