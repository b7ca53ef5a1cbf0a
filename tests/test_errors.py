"""The error hierarchy of :mod:`tans.errors`: where each kind is raised, and the command line's exit codes."""

from __future__ import annotations

import pytest

import tans
import tans._errors
import tans.errors
from tans.cli.main import main
from tans.errors import ConfigError, DatasetError, SearchError, TansError, ZooError

KINDS = (DatasetError, ZooError, SearchError, ConfigError)


def test_every_kind_is_a_tans_error_exported_at_the_root():
    for kind in KINDS:
        assert issubclass(kind, TansError) and kind is not TansError
        assert getattr(tans, kind.__name__) is kind and getattr(tans._errors, kind.__name__) is kind
    assert tans.TansError is tans._errors.TansError is TansError
    assert set(tans.errors.__all__) <= set(tans.__all__)


def _missing_path(tmp_path):
    tans.load_dataset(str(tmp_path / "missing.npz"))


def _unknown_task(tmp_path):
    from tans.data.catalogue import get_task

    get_task("digits-0-44")


def _bad_entry(tmp_path):
    from tans.zoo.entry import ZooEntry

    ZooEntry.from_dict(["not", "an", "object"])


def _missing_archive(tmp_path):
    from tans.zoo.archive import import_zoo

    import_zoo(tmp_path / "zoo", tmp_path / "missing.tar")


def _negative_bound(tmp_path):
    tans.Constraints(max_params=-1)


def _missing_searcher(tmp_path):
    from tans.searcher.artifact import load_artifact

    load_artifact(tmp_path)


def _missing_config(tmp_path):
    from tans._config import read_config_file

    read_config_file(tmp_path / "missing.json", what="bench config", example="benchmarks/quick.json")


def _unknown_recipe_key(tmp_path):
    from tans.training.recipe import Recipe

    Recipe.from_dict({"epochz": 3})


@pytest.mark.parametrize(("call", "kind", "match"), [
    (_missing_path, DatasetError, "No such file or directory"),
    (_unknown_task, DatasetError, "Did you mean 'digits-0-4'"),
    (_bad_entry, ZooError, "expected an entry as a JSON object"),
    (_missing_archive, ZooError, "does not exist"),
    (_negative_bound, SearchError, "must be a positive number"),
    (_missing_searcher, SearchError, "meta-train"),
    (_missing_config, ConfigError, "does not exist"),
    (_unknown_recipe_key, ConfigError, "epochz"),
])
def test_each_kind_is_raised_where_expected(call, kind, match, tmp_path):
    with pytest.raises(kind, match=match) as info:
        call(tmp_path)
    assert isinstance(info.value, TansError)
    others = [k for k in KINDS if k is not kind]
    assert not isinstance(info.value, tuple(others))


def test_a_bad_environment_setting_is_a_config_error(monkeypatch):
    from tans.data.loaders.archive import zip_cache_bytes

    monkeypatch.setenv("TANS_ZIP_CACHE_BYTES", "8GiB")
    with pytest.raises(ConfigError, match="TANS_ZIP_CACHE_BYTES"):
        zip_cache_bytes()


def test_bad_input_exits_2_with_one_error_line(tmp_path, capsys):
    assert main(["data", "inspect", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_internal_error_exits_1_with_a_debug_hint_and_debug_shows_it(monkeypatch, capsys):
    import tans.data.catalogue

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(tans.data.catalogue, "list_tasks", broken)
    monkeypatch.delenv("TANS_DEBUG", raising=False)
    assert main(["data", "list"]) == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: boom" in err and "--debug" in err
    with pytest.raises(RuntimeError, match="boom"):
        main(["--debug", "data", "list"])
    assert main(["data", "list"]) == 1  # --debug lasts one run
