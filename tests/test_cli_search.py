"""``tans meta-train`` and ``tans search`` on a tiny zoo, through the real entry point."""

from __future__ import annotations

import json

import pytest
import torch

from tans.cli.main import main
from tans.searcher import Searcher
from tans.training import Recipe
from tans.zoo import Zoo
from tans.zoo.build import BuildConfig, build_zoo


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cli")
    recipe = Recipe(epochs=1, warmup_epochs=0, max_train_images=64, max_eval_images=64)
    config = BuildConfig(tasks=("digits-0-4", "digits-5-9", "mnist-0-4"), num_archs=2, archs_per_task=2, recipe=recipe, latency_repeats=2)
    build_zoo(root / "zoo", config, workers=1)
    searcher = Searcher(epochs=1, steps_per_epoch=1, extractor_epochs=1, per_class=3, pool_per_class=6, val_fraction=0.34)
    searcher.fit(root / "zoo").save(root / "fitted")
    return root


def test_meta_train_then_search_json(trained, capsys):
    zoo, out = trained / "zoo", trained / "searcher"
    code = main(["meta-train", "--zoo", str(zoo), "--out", str(out), "--epochs", "2", "--steps-per-epoch", "2",
                 "--val-fraction", "0.34", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert len(report["history"]) == 2 and report["val_tasks"] and report["searcher"] == str(out)
    assert set(report["history"][0]["recall"]) == {"1", "5", "10"}

    code = main(["search", "digits-5-9", "--zoo", str(zoo), "--searcher", str(out), "--top-k", "2", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert len(result["rows"]) == 2 and result["zoo_size"] == len(Zoo.open(zoo))
    assert {"id", "arch", "task", "similarity", "predicted_acc", "params", "flops", "latency_ms"} <= set(result["rows"][0])

    bound = min(e.params for e in Zoo.open(zoo).entries())
    code = main(["search", "digits-5-9", "--zoo", str(zoo), "--searcher", str(out), "--max-params", str(bound), "--json"])
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert code == 0 and rows and all(r["params"] <= bound for r in rows)

    code = main(["search", "digits-5-9", "--zoo", str(zoo), "--searcher", str(out)])
    captured = capsys.readouterr()
    assert code == 0 and "Best zoo models for digits-5-9" in captured.out


def _one_line_error(capsys, pattern: str) -> None:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and pattern in err, err


def test_search_errors_are_one_line(trained, capsys, tmp_path, monkeypatch):
    zoo = trained / "zoo"
    assert main(["search", "digits-5-9", "--zoo", str(zoo), "--searcher", str(tmp_path / "none")]) == 2
    _one_line_error(capsys, "tans meta-train")
    monkeypatch.setenv("TANS_HOME", str(tmp_path / "home"))
    assert main(["search", "digits-5-9"]) == 2  # default zoo missing
    _one_line_error(capsys, "tans zoo build")
    fitted = str(trained / "fitted")
    assert main(["search", "digits-5-9", "--zoo", str(zoo), "--searcher", fitted, "--max-params", "10"]) == 2
    _one_line_error(capsys, "Raise --max-params")
    assert main(["search", "no-such-task", "--zoo", str(zoo), "--searcher", fitted]) == 2
    _one_line_error(capsys, "neither an existing path nor a built-in task")
    assert main(["search", "digits-5-9", "--zoo", str(zoo), "--searcher", fitted, "--top-k", "0"]) == 2
    _one_line_error(capsys, "top_k must be a positive integer")
