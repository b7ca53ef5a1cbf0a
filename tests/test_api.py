"""The package-root API: the README's Python example runs, ``import tans`` stays light, errors are TansError."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tans
from tans.zoo import Zoo

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def default_home(records_zoo, fitted_searcher, tmp_path, monkeypatch) -> Path:
    """A tans home whose default zoo (a copy of the records zoo) and searcher are the tiny fixtures."""
    home = tmp_path / "home"
    shutil.copytree(records_zoo, home / "zoo")
    fitted_searcher.save(home / "searcher")
    monkeypatch.setenv("TANS_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    return home


def readme_example() -> str:
    """The Python block that follows ``<!-- test:python-api -->`` in the README."""
    found = re.search(r"<!-- test:python-api -->\n```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert found, "the README lost its marked Python example"
    return found.group(1)


def test_readme_example_runs_on_the_default_zoo_and_searcher(default_home, records_zoo, capsys):
    code = readme_example()
    budget = max(e.params for e in Zoo.open(records_zoo).entries())  # every tiny model fits
    # Only what makes it quick changes: a small built-in task, one epoch, a budget the tiny zoo meets.
    for old, new in (('"glyphs-tamil-p1"', '"digits-5-9"'), ("epochs=3", "epochs=1"), ("100_000", str(budget))):
        assert old in code
        code = code.replace(old, new)
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)  # noqa: S102 - running the README is the point

    found, net, tuned = scope["found"], scope["net"], scope["tuned"]
    assert 1 <= len(found.rows) <= 5 and found.best.params <= budget
    assert isinstance(net, torch.nn.Module) and not net.training
    entry = Zoo.open(records_zoo).get(found.best.id)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, entry.num_classes)  # its source task's head
    assert tuned.meta.model_id == found.best.id and tuned.meta.class_names == ("5", "6", "7", "8", "9")
    assert tuned.predict(scope["images"]).shape == (8,)
    assert Path("model.onnx").is_file() and (tuned.path / "model.json").is_file()
    assert tuned.path.parent == Path("finetuned")
    printed = capsys.readouterr().out
    assert printed.count("'") >= 16 and str(tuned.meta.results["test_acc"]) in printed
    # the fine-tune became a transfer record of the default zoo
    records = Zoo.open(default_home / "zoo").transfers(model_id=found.best.id)
    assert any(r.origin == "finetune" and r.target == "digits-5-9" for r in records)


def test_import_tans_is_light_and_exposes_the_public_surface():
    probe = "import sys, tans; print(sorted(m for m in ('torch', 'scipy', 'sklearn', 'faiss') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    for name in ("search", "finetune", "load_model", "Zoo", "Searcher", "load_dataset", "Constraints", "TansError"):
        assert name in tans.__all__ and callable(getattr(tans, name)), name
    assert tans.Constraints(max_params=10).max_params == 10
    importlib.import_module("tans.finetune.export")  # the sub-package of the same name stays callable
    assert callable(tans.finetune)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tans.nope  # noqa: B018


def test_api_errors_say_how_to_fix(default_home, tmp_path):
    with pytest.raises(tans.TansError, match="No searcher at .*'tans meta-train"):
        tans.search("digits-5-9", searcher=tmp_path / "none")
    with pytest.raises(tans.TansError, match="Did you mean"):
        tans.load_model(Zoo.open(default_home / "zoo").ids()[0][:-1] + "x")
    with pytest.raises(tans.TansError, match="at least 1 epoch"):
        tans.finetune("digits-5-9", model="abc", epochs=0)
    with pytest.raises(TypeError):
        tans.search("digits-5-9", 1000)  # the budget is keyword-only


def test_search_options_name_every_keyword_of_searcher_search():
    """tans.search passes ``**options`` on to Searcher.search: the TypedDict must list exactly its keywords."""
    import inspect

    from tans.searcher.searcher import SearchOptions

    keywords = set(inspect.signature(tans.Searcher.search).parameters) - {"self", "dataset", "zoo"}
    assert set(SearchOptions.__annotations__) == keywords


def test_a_fine_tune_at_chance_warns(records_zoo, tmp_path, capsys):
    """Identical images in two balanced classes: every prediction is the same class, so accuracy is chance."""
    import warnings
    from dataclasses import replace

    import numpy as np

    from tans._api import warn_if_at_chance
    from tans.cli.main import main
    from tans.finetune import finetune

    torch.set_num_threads(1)
    data = tmp_path / "constant.npz"
    np.savez(data, x=np.full((40, 8, 8), 128, np.uint8), y=np.tile([0, 1], 20))
    entry_id = Zoo.open(records_zoo).ids()[0]
    result = finetune(str(data), zoo=records_zoo, model_id=entry_id, epochs=1)
    assert result.test_acc <= result.chance
    with pytest.warns(tans.TansWarning, match=r"test accuracy 50.0% is at or below chance \(50.0% for 2 classes\)"):
        warn_if_at_chance(result)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_at_chance(replace(result, test_acc=result.chance + 0.01))

    code = main(["finetune", str(data), "--model", entry_id, "--zoo", str(records_zoo), "--epochs", "1",
                 "--out", str(tmp_path / "ft"), "--no-record", "--json"])
    err = capsys.readouterr().err
    assert code == 0 and err.count("warning: the fine-tuned model's test accuracy") == 1


def test_a_search_imports_neither_scipy_nor_sklearn(default_home, image_folder):
    """Meta-training, plotting and fitting load SciPy and scikit-learn (seconds); a search never needs them,
    nor the glyph renderer's drawing modules (PIL.ImageFont, PIL.ImageDraw)."""
    import os

    data = image_folder({"a": 6, "b": 6}, size=(32, 32))
    probe = (f"import sys, tans; found = tans.search({str(data)!r}, top_k=2); "
             "print(len(found.rows), sorted(m for m in ('scipy', 'sklearn', 'matplotlib', 'PIL.ImageFont', 'PIL.ImageDraw') "
             "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "2 []"
