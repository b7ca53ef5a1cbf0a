"""Transfer records: planning, resuming, refusals, failures, workers, `tans zoo transfer`, `tans finetune`
adding a record, and `tans meta-train` on a zoo without records."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch

from tans._errors import TansError
from tans.cli.main import main
from tans.zoo import Zoo, ZooEntry, unit_key
from tans.zoo.transfer import TransferConfig, default_targets, pick_models, plan_transfers, run_transfers

torch.set_num_threads(1)

TINY = {"max_train_images": 32, "max_eval_images": 32}


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, pattern: str) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1 and pattern in err, err


@pytest.fixture
def two_models(records_zoo, zoo_copy):
    """A zoo with no records and two networks: one trained on digits, one on glyphs."""
    source = Zoo.open(records_zoo)
    ids = [source.entries(family="handwritten-digits")[0].id, source.entries(family="glyphs-european")[-1].id]
    return zoo_copy(records=False, ids=ids)


# ------------------------------------------------------------------------------- planning
def fake_entry(i: int, *, arch: str, task: str, family: str, params: int, val_acc: float = 0.9) -> ZooEntry:
    fp = f"fp-{task}"
    return ZooEntry(
        id=unit_key(arch, fp, {"epochs": 1}, i), arch=arch, task=task, task_fingerprint=fp, task_family=family,
        num_classes=5, recipe={"epochs": 1}, seed=i, val_acc=val_acc, test_acc=val_acc, chance_acc=0.2,
        params=params, flops=1, latency_ms=1.0, latency_threads=1, machine="test", embedding=np.zeros(4, np.float32),
    )  # fmt: skip


@pytest.fixture
def fake_zoo(tmp_path):
    """Two source tasks x three architectures, plus one flagged network (placeholder weights)."""
    zoo = Zoo.create(tmp_path / "fake")
    i = 0
    for task, family in (("digits-0-4", "handwritten-digits"), ("glyphs-greek-upper-p1", "glyphs-european")):
        for arch, params in (("mbv3_a", 10), ("mbv3_b", 20), ("mbv3_c", 30)):
            zoo.add(fake_entry(i, arch=arch, task=task, family=family, params=params), {"w": np.zeros(1, np.float32)})
            i += 1
    zoo.add(fake_entry(i, arch="mbv3_d", task="digits-0-4", family="handwritten-digits", params=1, val_acc=0.1),
            {"w": np.zeros(1, np.float32)})  # below 1.5x chance: flagged
    return zoo


def test_pick_models_spreads_over_tasks_and_architectures(fake_zoo):
    entries = {e.id: e for e in fake_zoo.entries()}
    flagged = [e.id for e in entries.values() if e.flagged]
    assert len(flagged) == 1
    four = pick_models(fake_zoo, 4)
    assert len(four) == len(set(four)) == 4 and pick_models(fake_zoo, 4) == four  # deterministic
    assert Counter(entries[i].task for i in four) == {"digits-0-4": 2, "glyphs-greek-upper-p1": 2}
    assert len({entries[i].arch for i in four}) == 3  # every architecture before any twice
    for task in ("digits-0-4", "glyphs-greek-upper-p1"):  # never the same architecture twice on one task
        archs = [entries[i].arch for i in four if entries[i].task == task]
        assert len(set(archs)) == len(archs)
    two = pick_models(fake_zoo, 2)
    assert {entries[i].task for i in two} == {"digits-0-4", "glyphs-greek-upper-p1"}
    assert len({entries[i].arch for i in two}) == 2
    every = pick_models(fake_zoo, None)
    assert sorted(every) == sorted(set(entries) - set(flagged)) and pick_models(fake_zoo, 100) == every


def test_default_targets_are_other_tasks_of_the_zoo_families(fake_zoo):
    from tans.data.catalogue import get_task

    targets = default_targets(fake_zoo)
    assert targets == sorted(targets) and "mnist-0-4" in targets and "glyphs-latin-lower-p1" in targets
    assert not {"digits-0-4", "glyphs-greek-upper-p1"} & set(targets)  # never a source task
    assert {get_task(t).family for t in targets} == {"handwritten-digits", "glyphs-european"}
    digits = default_targets(fake_zoo, exclude=("glyphs-european", "mnist-0-4"))
    assert digits and {get_task(t).family for t in digits} == {"handwritten-digits"} and "mnist-0-4" not in digits
    small = default_targets(fake_zoo, max_classes=5)
    assert small and all(get_task(t).num_classes <= 5 for t in small) and set(small) < set(targets)


def test_plan_refuses_a_source_task_and_an_excluded_family(records_zoo):
    zoo = Zoo.open(records_zoo)
    with pytest.raises(TansError, match="Target 'digits-0-4' is a source task of the zoo"):
        plan_transfers(zoo, TransferConfig(targets=("digits-0-4",)))
    with pytest.raises(TansError, match="Target 'mnist-0-4' is excluded.*'handwritten-digits'"):
        plan_transfers(zoo, TransferConfig(targets=("mnist-0-4",), exclude=("handwritten-digits",)))
    with pytest.raises(TansError, match="Target 'mnist-0-4' is excluded"):
        plan_transfers(zoo, TransferConfig(targets=("mnist-0-4",), exclude=("mnist-0-4",)))
    with pytest.raises(TansError, match="No target task for transfer records"):
        plan_transfers(zoo, TransferConfig(exclude=("handwritten-digits", "glyphs-european")))


def test_plan_is_deterministic_and_keyed_by_the_run(records_zoo):
    zoo = Zoo.open(records_zoo)
    config = TransferConfig(targets=("mnist-0-4", "mnist-5-9"), models=2, seeds=(0, 1), **TINY)
    units, models, datasets = plan_transfers(zoo, config)
    assert len(units) == 2 * 2 * 2 and len({u.id for u in units}) == len(units) and len(models) == 2
    assert set(datasets) == {"mnist-0-4", "mnist-5-9"}
    assert [u.id for u in plan_transfers(zoo, config)[0]] == [u.id for u in units]
    # the records of records_zoo are the plan of its own config: a run of it has nothing to do
    own = TransferConfig(targets=("mnist-0-4",), models=4, **TINY)
    assert {u.id for u in plan_transfers(zoo, own)[0]} <= zoo.transfer_ids()


def test_plan_covers_the_other_models_with_a_few_targets_each(records_zoo):
    zoo = Zoo.open(records_zoo)
    targets = ("mnist-0-4", "mnist-5-9", "glyphs-greek-lower-p1")
    dense = TransferConfig(targets=targets, models=1, **TINY)
    config = replace(dense, targets_per_other_model=2)
    units, models, _ = plan_transfers(zoo, config)
    picked = plan_transfers(zoo, dense)[1]
    others = [e.id for e in zoo.entries() if e.id not in picked and not e.flagged]
    assert len(others) >= 3 and sorted(models) == sorted(picked + others)
    assert [u.id for u in units[: len(targets)]] == [u.id for u in plan_transfers(zoo, dense)[0]]  # the dense plan first
    per_model = {m: [u.target for u in units if u.model_id == m] for m in models}
    assert sorted(per_model[picked[0]]) == sorted(targets)
    assert all(len(per_model[m]) == len(set(per_model[m])) == 2 for m in others)
    counts = [sum(t in per_model[m] for m in others) for t in targets]
    assert max(counts) - min(counts) <= 1  # every target gets about as many of the others
    # a larger k extends each model's targets: the records of a smaller k stay in the plan
    fewer = {u.id for u in plan_transfers(zoo, replace(dense, targets_per_other_model=1))[0]}
    assert fewer < {u.id for u in units} and len(fewer) == len(targets) + len(others)
    with pytest.raises(TansError, match="'targets_per_other_model' must be 0 or more, got -1"):
        TransferConfig(targets_per_other_model=-1)


def test_config_checks_and_files(tmp_path):
    with pytest.raises(TansError, match="transfer setting 'models' must be None or at least 1, got 0"):
        TransferConfig(models=0)
    with pytest.raises(TansError, match="Unknown key 'epoch'.*Did you mean 'epochs'"):
        TransferConfig.from_dict({"epoch": 1})
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"comment": "tiny", "targets": ["mnist-0-4"], "models": 2, **TINY}))
    assert TransferConfig.from_file(path) == TransferConfig(targets=("mnist-0-4",), models=2, **TINY)
    assert TransferConfig.from_dict(TransferConfig(models=2).to_dict()) == TransferConfig(models=2)
    with pytest.raises(TansError, match="does not exist"):
        TransferConfig.from_file(tmp_path / "missing.json")


# ------------------------------------------------------------------------------- running
def test_a_run_resumes_without_duplicates(two_models):
    config = TransferConfig(targets=("mnist-0-4", "glyphs-greek-lower-p1"), **TINY)
    plans = []
    first = run_transfers(two_models, config, workers=1, max_units=3,
                          progress=lambda event: plans.append((event.stage, event.total, event.done)))
    assert first.planned == 4 and len(first.added) == 3 and first.skipped == 0 and not first.failed
    second = run_transfers(two_models, config, workers=1,
                           progress=lambda event: plans.append((event.stage, event.total, event.done)))
    assert second.planned == 4 and second.skipped == 3 and len(second.added) == 1 and not second.failed
    # the plan (units to run, units already recorded), then each fine-tune counting up to it
    assert plans == [("plan", 3, 0), ("transfer", 3, 1), ("transfer", 3, 2), ("transfer", 3, 3), ("plan", 1, 3),
                     ("transfer", 1, 1)]
    assert not set(first.added) & set(second.added)
    records = two_models.transfers()
    assert len(records) == 4 and len({r.id for r in records}) == 4
    assert {r.id for r in records} == set(first.added) | set(second.added)
    assert {(r.model_id, r.target) for r in records} == {(m, t) for m in two_models.ids() for t in config.targets}
    assert all(r.origin == "transfer" and r.recipe_dict["max_train_images"] == 32 for r in records)
    # every target was registered, so the searcher can load it again
    assert {ref.name for ref in two_models.tasks().values()} >= set(config.targets)
    third = run_transfers(two_models, config, workers=1)
    assert third.skipped == 4 and not third.added and two_models.transfer_count() == 4


def test_a_failed_unit_is_reported_and_the_run_goes_on(two_models, monkeypatch):
    import tans.finetune as finetune_module

    real = finetune_module.finetune

    def flaky(dataset, **kwargs):
        if dataset.name == "mnist-0-4":
            raise RuntimeError("out of memory\nlong traceback")
        return real(dataset, **kwargs)

    monkeypatch.setattr(finetune_module, "finetune", flaky)
    config = TransferConfig(targets=("mnist-0-4", "glyphs-greek-lower-p1"), **TINY)
    seen = []
    report = run_transfers(two_models, config, workers=1, progress=lambda event: seen.append(event))
    seen = [e for e in seen if e.stage == "transfer"]
    assert len(report.failed) == 2 and len(report.added) == 2 and len(seen) == 4
    assert sorted(e.message for e in seen if e.extra["failure"]) == ["mnist-0-4"] * 2
    assert [e.done for e in seen] == [1, 2, 3, 4] and seen[-1].extra["report"] is report
    for reason in report.failed.values():
        assert reason.startswith("mnist-0-4 / ") and reason.endswith(": RuntimeError: out of memory")  # first line
    assert {r.target for r in two_models.transfers()} == {"glyphs-greek-lower-p1"}
    assert report.to_dict()["failed"] == report.failed
    monkeypatch.setattr(finetune_module, "finetune", real)
    again = run_transfers(two_models, config, workers=1)  # the failed units are retried
    assert again.skipped == 2 and len(again.added) == 2 and not again.failed


@pytest.mark.slow
def test_two_workers_return_every_unit_once(two_models):
    config = TransferConfig(targets=("mnist-0-4", "mnist-5-9", "glyphs-greek-lower-p1"), **TINY)
    units, _, _ = plan_transfers(two_models, config)
    report = run_transfers(two_models, config, workers=2)
    assert report.workers == 2 and report.executor == "process pool" and not report.failed
    assert sorted(report.added) == sorted(u.id for u in units) and len(units) == 6
    assert sorted(r.id for r in two_models.transfers()) == sorted(u.id for u in units)


def test_a_unit_claimed_by_another_run_is_left_to_it(two_models):
    config = TransferConfig(targets=("mnist-0-4",), **TINY)
    first, second = (u.id for u in plan_transfers(two_models, config)[0])
    two_models.claim(first, "elsewhere/1/aa", lease_s=60)  # a live run on another machine holds it
    report = run_transfers(two_models, config, workers=1)
    assert report.held == 1 and report.added == [second] and report.to_dict()["held"] == 1
    assert [r.id for r in two_models.transfers()] == [second]


def test_a_run_that_fails_in_the_driver_drops_its_claims(two_models, monkeypatch):
    """A driver error mid-run (here: the zoo refuses a record) leaves no lease behind: a rerun does every unit."""
    import sqlite3

    config = TransferConfig(targets=("mnist-0-4",), **TINY)
    def refuse(record):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(two_models, "add_transfer", refuse)
    with pytest.raises(sqlite3.OperationalError):
        run_transfers(two_models, config, workers=1)
    monkeypatch.undo()
    report = run_transfers(two_models, config, workers=1)
    assert report.held == 0 and len(report.added) == report.planned == 2


# ------------------------------------------------------------------------------------- CLI
def test_cli_zoo_transfer_json(two_models, capsys, tmp_path):
    config = tmp_path / "transfer.json"
    config.write_text(json.dumps({"targets": ["glyphs-greek-lower-p1"], **TINY}))
    code, out, err = run(capsys, "zoo", "transfer", "--zoo", two_models.path, "--config", config, "--targets",
                         "mnist-0-4", "--models", 1, "--workers", 1, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["zoo"] == str(two_models.path) and report["records"] == 1 == report["added"]
    assert report["planned"] == 1 and report["models"] == 1 and report["targets"] == 1 and report["failed"] == {}
    (record,) = two_models.transfers()
    assert record.target == "mnist-0-4" and record.recipe_dict["max_train_images"] == 32  # --targets beats the file
    code, out, _ = run(capsys, "zoo", "transfer", "--zoo", two_models.path, "--config", config, "--targets",
                       "mnist-0-4", "--models", 1, "--workers", 1, "--json")
    assert code == 0 and json.loads(out)["skipped"] == 1 and json.loads(out)["added"] == 0
    code, out, err = run(capsys, "zoo", "transfer", "--zoo", two_models.path, "--targets", "digits-0-4", "--json")
    assert code == 2 and out == ""
    one_line_error(err, "is a source task of the zoo")


def test_cli_finetune_adds_a_record_unless_told_not_to(two_models, capsys, tmp_path, image_folder):
    data = image_folder({"cat": 12, "dog": 12, "fox": 12}, size=(16, 16))
    model = two_models.ids()[0]
    code, out, err = run(capsys, "finetune", data, "--model", model, "--zoo", two_models.path, "--epochs", 1,
                         "--out", tmp_path / "ft", "--no-record", "--json")
    assert code == 0, err
    assert json.loads(out)["transfer_record"] is None and two_models.transfer_count() == 0
    code, out, err = run(capsys, "finetune", data, "--model", model, "--zoo", two_models.path, "--epochs", 1,
                         "--out", tmp_path / "ft2", "--json")
    assert code == 0, err
    report = json.loads(out)
    (record,) = two_models.transfers()
    assert report["transfer_record"] == record.id and record.origin == "finetune" and record.model_id == model
    assert record.num_classes == 3 and record.test_acc == pytest.approx(report["test_acc"])
    # the target was registered by its path, so the zoo can load it again
    loaded = two_models.load_task(record.target_fingerprint)
    assert loaded.fingerprint == record.target_fingerprint and loaded.num_classes == 3


def test_cli_meta_train_without_records_says_to_run_tans_zoo_transfer(two_models, capsys, tmp_path):
    code, out, err = run(capsys, "meta-train", "--zoo", two_models.path, "--out", tmp_path / "s", "--json")
    assert code == 2 and out == ""
    one_line_error(err, "tans zoo transfer")
    assert not (tmp_path / "s").exists()
