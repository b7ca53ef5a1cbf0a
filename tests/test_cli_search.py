"""``tans meta-train`` and ``tans search`` on the tiny records zoo, through the real entry point."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from tans.cli.main import main
from tans.searcher import Searcher
from tans.zoo import Zoo

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def fitted(fitted_searcher, tmp_path_factory):
    """The shared fitted searcher, saved as an artifact."""
    return fitted_searcher.save(tmp_path_factory.mktemp("cli") / "fitted")


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str, pattern: str) -> None:
    err = err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and pattern in err, err


@pytest.mark.slow
def test_meta_train_json_reports_validation_records_and_the_combiner(records_zoo, capsys, tmp_path):
    out = tmp_path / "searcher"
    code, stdout, err = run(capsys, "meta-train", "--zoo", records_zoo, "--out", out, "--epochs", 1, "--patience", 0,
                            "--val-fraction", 0.5, "--exclude-family", "no-such-family", "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["searcher"] == str(out) and (out / "searcher.json").is_file()
    assert len(report["history"]) == 1 and report["best_epoch"] == 1
    assert {"tau", "regret", "mae", "loss"} <= set(report["history"][0])
    assert len(report["train_targets"]) == len(report["val_targets"]) == 2
    assert report["records"]["records"] == 16 and report["records"]["excluded_families"] == ["no-such-family"]
    assert report["combiner"] is not None and report["combiner"]["features"]["level"][0] == "stage1"
    blend = report["track_record_blend"]
    assert blend["weight"] == 2.0 and blend["temperature"] == 0.3 and blend["scale"] >= 0


@pytest.mark.slow
def test_meta_train_table_names_the_track_record_blend_and_no_track_record_drops_it(records_zoo, capsys, tmp_path):
    args = ("meta-train", "--zoo", records_zoo, "--epochs", 1, "--patience", 0, "--val-fraction", 0.5)
    code, stdout, err = run(capsys, *args, "--out", tmp_path / "with")
    assert code == 0, err
    assert "Stage 1 track records: " in stdout and "(track-record weight 2, target temperature 0.3)" in stdout
    code, stdout, err = run(capsys, *args, "--out", tmp_path / "without", "--no-track-record", "--json")
    assert code == 0, err
    assert json.loads(stdout)["track_record_blend"] is None


def test_search_json_and_table(records_zoo, fitted, capsys):
    zoo = Zoo.open(records_zoo)
    code, stdout, err = run(capsys, "search", "mnist-even", "--zoo", records_zoo, "--searcher", fitted, "--top-k", 2,
                            "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert len(result["rows"]) == 2 and result["zoo_size"] == len(zoo) and result["probed"] > 0
    row = result["rows"][0]
    assert {"id", "arch", "task", "similarity", "predicted_acc", "stage1_acc", "logme", "ncm", "params", "flops",
            "latency_ms"} <= set(row)
    assert row["logme"] is not None and 0.2 <= row["predicted_acc"] <= 1

    code, stdout, _ = run(capsys, "search", "mnist-even", "--zoo", records_zoo, "--searcher", fitted, "--fast",
                          "--json")
    fast = json.loads(stdout)
    assert code == 0 and fast["probed"] == 0 and all(r["logme"] is None for r in fast["rows"])
    default_top_k = inspect.signature(Searcher.search).parameters["top_k"].default  # no --top-k: the searcher's
    assert len(zoo) > default_top_k and len(fast["rows"]) == default_top_k

    code, stdout, _ = run(capsys, "search", "mnist-even", "--zoo", records_zoo, "--searcher", fitted, "--probe-k", 1,
                          "--json")
    assert code == 0 and json.loads(stdout)["probed"] == 1

    bound = min(e.params for e in zoo.entries())
    code, stdout, _ = run(capsys, "search", "mnist-even", "--zoo", records_zoo, "--searcher", fitted,
                          "--max-params", bound, "--json")
    rows = json.loads(stdout)["rows"]
    assert code == 0 and rows and all(r["params"] <= bound for r in rows)

    code, stdout, _ = run(capsys, "search", "mnist-even", "--zoo", records_zoo, "--searcher", fitted)
    assert code == 0 and "Best zoo models for mnist-even" in stdout and "probed by stage 2" in stdout
    assert "logme" in stdout
    code, stdout, _ = run(capsys, "search", "mnist-even", "--zoo", records_zoo, "--searcher", fitted, "--fast")
    assert code == 0 and "(stage 1 only)" in stdout and "logme" not in stdout


def test_search_with_a_finetune_budget_shows_stage_3(records_zoo, fitted, capsys):
    code, stdout, err = run(capsys, "search", "mnist-even", "--zoo", records_zoo, "--searcher", fitted, "--probe-k", 2,
                            "--finetune-budget", 600)
    assert code == 0, err
    assert "ft_val" in stdout and "2 short fine-tunes by stage 3" in stdout  # two models: one rung decides
    code, stdout, _ = run(capsys, "search", "mnist-even", "--zoo", records_zoo, "--searcher", fitted, "--probe-k", 2,
                          "--finetune-budget", 600, "--json")
    result = json.loads(stdout)
    assert result["finetunes"] == 2 and [r["finetune_val_acc"] is not None for r in result["rows"][:3]] == [True, True, False]


def test_search_errors_are_one_line(records_zoo, fitted, capsys, tmp_path, monkeypatch):
    code, _, err = run(capsys, "search", "mnist-even", "--zoo", records_zoo, "--searcher", tmp_path / "none")
    assert code == 2
    _one_line_error(err, "tans meta-train")
    monkeypatch.setenv("TANS_HOME", str(tmp_path / "home"))
    code, _, err = run(capsys, "search", "mnist-even")  # default zoo missing
    assert code == 2
    _one_line_error(err, "tans zoo build")
    for args, message in [
        (["--max-params", "10"], "Raise --max-params"),
        (["--top-k", "0"], "top_k must be a positive integer"),
        (["--probe-k", "0"], "probe_k must be a positive integer"),
        (["--finetune-budget", "0"], "fine-tuning budget must be a positive number of seconds"),
    ]:
        code, _, err = run(capsys, "search", "mnist-even", "--zoo", records_zoo, "--searcher", fitted, *args)
        assert code == 2, args
        _one_line_error(err, message)
    code, _, err = run(capsys, "search", "no-such-task", "--zoo", records_zoo, "--searcher", fitted)
    assert code == 2
    _one_line_error(err, "neither an existing path nor a built-in task")


def test_meta_train_errors_are_one_line(zoo_copy, capsys, tmp_path):
    bare = zoo_copy(records=False)
    code, out, err = run(capsys, "meta-train", "--zoo", bare.path, "--out", tmp_path / "s")
    assert code == 2 and out == ""
    _one_line_error(err, "tans zoo transfer")
    code, _, err = run(capsys, "meta-train", "--zoo", tmp_path / "none")
    assert code == 2
    _one_line_error(err, "tans zoo build")
