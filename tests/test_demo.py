"""`tans demo` end to end on a shrunken configuration: build, records, fit, search, compare, then reuse."""

import json
from pathlib import Path

import pytest

import tans.demo as demo
from tans.cli.main import main
from tans.training.recipe import Recipe
from tans.zoo import Zoo
from tans.zoo.build import BuildConfig
from tans.zoo.transfer import TransferConfig


@pytest.fixture
def tiny_demo(monkeypatch, tmp_path):
    monkeypatch.setenv("TANS_HOME", str(tmp_path / "home"))  # the demo's default zoo and searcher go here
    monkeypatch.setattr(demo, "DEMO_ZOO", BuildConfig(
        tasks=("digits-0-4", "glyphs-latin-upper-p1"), num_archs=2, archs_per_task=2, latency_repeats=2,
        recipe=Recipe(epochs=2, warmup_epochs=0, max_train_images=128, max_eval_images=48)))
    monkeypatch.setattr(demo, "DEMO_TRANSFER", TransferConfig(
        targets=("mnist-0-4", "glyphs-latin-lower-p1"), models=2, max_train_images=32, max_eval_images=32))
    monkeypatch.setattr(demo, "DEMO_SEARCHER", {"epochs": 2, "steps_per_epoch": 2, "extractor_epochs": 1,
                                                "per_class": 4, "pool_per_class": 6, "val_fraction": 0.0})
    monkeypatch.setattr(demo, "DEMO_TARGET", "digits-5-9")
    monkeypatch.setattr(demo, "DEMO_EPOCHS", 1)
    monkeypatch.setattr(demo, "DEMO_TRAIN_IMAGES", 48)
    monkeypatch.setattr(demo, "DEMO_SEEDS", 2)
    monkeypatch.setattr(demo, "DEMO_MAX_PARAMS", 10_000_000)
    return tmp_path


@pytest.mark.slow
def test_demo_builds_once_then_reuses(tiny_demo, capsys):
    out = tiny_demo / "out"
    assert main(["demo", "--out", str(out), "--workers", "1", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["zoo_build"]["built"] == 4 and first["searcher_fitted"]
    records = first["transfer_records"]
    assert records["added"] == records["planned"] == 4 and records["failed"] == {}  # 2 networks x 2 targets
    assert Zoo.open(first["zoo"]).transfer_count() == 4
    pretrained, scratch = first["comparison"]["pretrained"], first["comparison"]["scratch"]
    assert pretrained["model_id"] == first["search"]["rows"][0]["id"]  # the demo fine-tunes the best find
    assert first["comparison"]["gain"] == pytest.approx(pretrained["test_acc"] - scratch["test_acc"])
    assert len(first["gains_by_seed"]) == 2 and first["gains_by_seed"][0] == first["comparison"]["gain"]
    assert json.loads((out / "model.json").read_text())["results"]["test_acc"] == pretrained["test_acc"]
    assert (out / "curves.png").exists() and (out / "model.safetensors").exists() and (out / "demo.json").exists()

    # The second run reuses the zoo, the records and the searcher, and prints for people.
    assert main(["demo", "--out", str(out), "--workers", "1"]) == 0
    captured = capsys.readouterr()
    text = captured.out
    assert "from scratch" in text and "gain over 2 seeds" in text and "Next: tans search" in text
    assert "> searching for digits-5-9" in captured.err  # each step, announced by its progress event
    second = json.loads((out / "demo.json").read_text())
    assert second["zoo_build"] is None and second["transfer_records"] is None and not second["searcher_fitted"]
    assert second["search"]["rows"][0]["id"] == first["search"]["rows"][0]["id"]
    assert Zoo.open(second["zoo"]).transfer_count() == 4

    # Afterwards search and finetune work with no further setup (default zoo and searcher).
    assert main(["search", "digits-5-9", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"]

    # A cached searcher an older tans wrote is fitted again, not an error.
    config_path = Path(first["searcher"]) / "searcher.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "format_version": 1}))
    events = []
    assert demo.run_demo(out_dir=out, workers=1, progress=events.append).fitted
    steps = [e.message for e in events if e.stage == "step"]
    assert any("cached searcher is not usable" in s for s in steps)
    assert [e.done for e in events if e.stage == "step"] == list(range(1, 8))  # zoo, records, load, refit, fit, search, compare
    stages = {e.stage for e in events}
    assert {"zoo/plan", "records/plan", "searcher/meta-train", "compare/fine-tuned/epoch",
            "compare/from scratch/epoch"} <= stages and "zoo/build" not in stages  # nothing left to build
    assert [(e.done, e.total) for e in events if e.stage == "zoo/plan"] == [(4, 0)]  # 4 built before, 0 to build
