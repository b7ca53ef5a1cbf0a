"""``tans zoo export-onnx`` and the screen-sized ``tans zoo list`` on the records zoo."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tans.cli.main import main
from tans.zoo import Zoo


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_onnx_of_a_zoo_entry_matches_torch(records_zoo, tmp_path, capsys):
    import onnx  # a test dependency: a missing one fails, not skips
    zoo = Zoo.open(records_zoo)
    entry = zoo.entries()[0]
    out = tmp_path / "onnx" / "entry.onnx"
    code, stdout, err = run(capsys, "zoo", "export-onnx", entry.id, "--out", out, "--zoo", records_zoo, "--json")
    assert code == 0, err
    assert json.loads(stdout) == {"id": entry.id, "onnx": str(out), "input_size": 32, "mean": 0.5, "std": 0.25}
    graph = onnx.load(str(out))
    onnx.checker.check_model(graph)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = zoo.load_model(entry.id).eval()(x).numpy()
    from onnx.reference import ReferenceEvaluator

    got = ReferenceEvaluator(graph).run(["logits"], {"input": x.numpy()})[0]
    assert got.shape == (3, entry.num_classes)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_export_onnx_unknown_id_is_one_line(records_zoo, tmp_path, capsys):
    some_id = Zoo.open(records_zoo).ids()[0]
    code, _, err = run(capsys, "zoo", "export-onnx", some_id[:-1] + "x", "--out", tmp_path / "x.onnx",
                       "--zoo", records_zoo)
    assert code == 2 and f"Did you mean '{some_id}'" in err and err.count("\n") == 1
    assert not (tmp_path / "x.onnx").exists()


def test_zoo_export_import_through_a_url_or_a_path(records_zoo, memory_url, tmp_path, capsys):
    store = Zoo.open(records_zoo)
    ids, url = store.ids(), f"{memory_url}/shared/zoo.tar"
    code, out, err = run(capsys, "zoo", "export", url, "--zoo", records_zoo, "--json")
    assert code == 0, err
    assert json.loads(out) == {"archive": url, "entries": ids}
    code, out, err = run(capsys, "zoo", "import", url, "--zoo", tmp_path / "dst", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert sorted(report["added"]) == sorted(ids) and report["records_added"] == store.transfer_count()

    path = tmp_path / "one.tar"  # a plain path still works
    code, out, _ = run(capsys, "zoo", "export", path, "--zoo", records_zoo, "--ids", ids[0])
    assert code == 0 and out == f"wrote {path} (1 entry)\n"
    code, out, _ = run(capsys, "zoo", "import", path, "--zoo", tmp_path / "one", "--json")
    assert code == 0 and json.loads(out)["added"] == [ids[0]]

    for args in (("export", "nosuch://x/zoo.tar", "--zoo", records_zoo),
                 ("import", "nosuch://x/zoo.tar", "--zoo", tmp_path / "new")):
        code, out, err = run(capsys, "zoo", *args)
        assert code == 2 and out == "" and "cannot reach 'nosuch://x/zoo.tar'" in err and err.count("\n") == 1
    assert not (tmp_path / "new").exists()


@pytest.fixture
def screen(monkeypatch):
    """The command line's console as a 100-column terminal."""
    from tans.cli import _output

    monkeypatch.setattr(_output.console, "width", 100)


def _table_lines(out: str, ids) -> list[str]:
    rows = [line for line in out.splitlines() if any(i in line for i in ids) and not line.startswith("next:")]
    assert len(rows) == len(ids), out  # one line per row, every id whole
    assert all(len(row) <= 100 for row in rows), out
    return rows


def test_zoo_list_fits_100_columns_and_sorts(records_zoo, screen, capsys, monkeypatch):
    from tans.cli import _output
    from tans.cli._output import human_count
    from tans.space.arch import short_name

    entries = Zoo.open(records_zoo).entries()
    code, out, _ = run(capsys, "zoo", "list", "--zoo", records_zoo, "--sort", "params")
    assert code == 0
    rows = _table_lines(out, [e.id for e in entries])
    by_params = sorted(entries, key=lambda e: e.params)
    assert [row.split()[0] for row in rows] == [e.id for e in by_params]
    for row, entry in zip(rows, by_params, strict=True):
        assert short_name(entry.arch) in row and entry.arch not in row
        assert f" {human_count(entry.params)} " in row and f"{entry.val_acc:.1%}" in row

    code, out, _ = run(capsys, "zoo", "list", "--zoo", records_zoo, "--sort", "val_acc", "--json")
    listed = json.loads(out)
    assert [r["val_acc"] for r in listed] == sorted((e.val_acc for e in entries), reverse=True)
    assert {r["arch"] for r in listed} == {e.arch for e in entries}  # full names in JSON

    monkeypatch.setattr(_output.console, "width", 200)  # --wide rows wrap on narrow screens
    code, out, _ = run(capsys, "zoo", "list", "--zoo", records_zoo, "--wide")
    assert code == 0 and all(e.arch in out for e in entries) and "flagged" in out


def test_zoo_list_unknown_sort_key_is_one_line(records_zoo, capsys):
    code, out, err = run(capsys, "zoo", "list", "--zoo", records_zoo, "--sort", "parms")
    assert code == 2 and out == "" and "Unknown --sort 'parms'" in err and "Did you mean 'params'" in err
    assert err.count("\n") == 1


def test_search_table_fits_100_columns(records_zoo, fitted_searcher, screen, capsys, tmp_path, monkeypatch):
    from tans.cli import _output

    searcher = fitted_searcher.save(tmp_path / "searcher")
    args = ("search", "digits-5-9", "--zoo", records_zoo, "--searcher", searcher, "--top-k", 4)
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    found = json.loads(out)["rows"]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    rows = _table_lines(out, [r["id"] for r in found])
    assert all(f"{r['predicted_acc']:.1%}" in row for r, row in zip(found, rows, strict=True))
    assert "logme" in out and f"next: tans finetune digits-5-9 --model {found[0]['id']}" in out
    assert "; images are resized to 32x32 RGB." in " ".join(out.split())
    monkeypatch.setattr(_output.console, "width", 250)  # --wide rows wrap on narrow screens
    code, out, _ = run(capsys, *args, "--wide")
    assert code == 0 and found[0]["arch"] in out and "stage1_acc" in out


def test_version_is_defined_once():
    """pyproject.toml reads its version from tans.__version__; the installed metadata agrees."""
    from importlib.metadata import version
    from pathlib import Path

    from setuptools.config.pyprojecttoml import read_configuration

    import tans

    pyproject = read_configuration(Path(__file__).parents[1] / "pyproject.toml")
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["project"]["version"] == tans.__version__ == version("tans")


def test_version_and_completion(capsys, monkeypatch):
    from importlib.metadata import version

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out == f"tans {version('tans')}\n"
    monkeypatch.setenv("_TANS_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "tans zo")
    monkeypatch.setenv("COMP_CWORD", "1")
    code, out, _ = run(capsys)
    assert code == 0 and out.split() == ["zoo"]
