"""`tans demo` end to end on a shrunken configuration: build, fit, search, compare, then reuse."""

import json

import pytest

import tans.demo as demo
from tans.cli.main import main
from tans.training.recipe import Recipe
from tans.zoo.build import BuildConfig


@pytest.fixture
def tiny_demo(monkeypatch, tmp_path):
    monkeypatch.setenv("TANS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TANS_SOURCES", str(__import__("tans.paths").paths.sources_dir()))
    monkeypatch.setattr(demo, "DEMO_ZOO", BuildConfig(
        tasks=("digits-0-4", "glyphs-greek-upper"), num_archs=2, archs_per_task=2, latency_repeats=2,
        recipe=Recipe(epochs=1, warmup_epochs=0, max_train_images=48, max_eval_images=32)))
    monkeypatch.setattr(demo, "DEMO_SEARCHER", {"epochs": 2, "steps_per_epoch": 2, "extractor_epochs": 1,
                                                "per_class": 4, "pool_per_class": 6, "val_fraction": 0.0})
    monkeypatch.setattr(demo, "DEMO_TARGET", "digits-5-9")
    monkeypatch.setattr(demo, "DEMO_EPOCHS", 1)
    monkeypatch.setattr(demo, "DEMO_TRAIN_IMAGES", 48)
    monkeypatch.setattr(demo, "DEMO_MAX_PARAMS", 10_000_000)
    return tmp_path


def test_demo_builds_once_then_reuses(tiny_demo, capsys):
    out = tiny_demo / "out"
    assert main(["demo", "--out", str(out), "--workers", "1", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["zoo_build"]["built"] == 4 and first["searcher_fitted"]
    assert first["search"]["rows"] and first["comparison"]["pretrained"]["test_acc"] >= 0
    assert (out / "curves.png").exists() and (out / "model.safetensors").exists() and (out / "demo.json").exists()

    # The second run reuses the zoo and the searcher, and prints for people.
    assert main(["demo", "--out", str(out), "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "from scratch" in text and "gain" in text and "Next: tans search" in text
    second = json.loads((out / "demo.json").read_text())
    assert second["zoo_build"] is None and not second["searcher_fitted"]
    assert second["search"]["rows"][0]["id"] == first["search"]["rows"][0]["id"]

    # Afterwards search and finetune work with no further setup (default zoo and searcher).
    assert main(["search", "digits-5-9", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"]
