"""Transfer records and task references in the zoo (schema version 2): store, migrate, archive, CLI."""

from __future__ import annotations

import io
import json
import math
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import threading
from dataclasses import replace

import numpy as np
import pytest

from tans._errors import TansError
from tans.cli.main import main
from tans.zoo import Zoo, ZooEntry, export_zoo, import_zoo, unit_key
from tans.zoo.records import TaskRef, TransferRecord, record_key, task_source
from tans.zoo.store import SCHEMA_VERSION

RECIPE = {"epochs": 2, "lr": 0.05}
FT_RECIPE = {"epochs": 3, "lr": 0.004, "max_train_images": 48, "seed": 0}


def make_entry(i: int, *, task: str = "digits", fingerprint: str | None = None, arch: str | None = None,
               num_classes: int = 10) -> ZooEntry:
    arch = arch or f"mbv3_t{i}"
    fp = fingerprint or f"fp-{task}"
    return ZooEntry(
        id=unit_key(arch, fp, RECIPE, 0), arch=arch, task=task, task_fingerprint=fp, task_family="mnist",
        num_classes=num_classes, recipe=RECIPE, seed=0, val_acc=0.6, test_acc=0.55, chance_acc=0.1,
        params=1000, flops=20_000, latency_ms=0.5, latency_threads=1, machine="test-cpu",
        embedding=np.arange(8, dtype=np.float32) + i,
    )  # fmt: skip


def make_weights(i: int) -> dict[str, np.ndarray]:
    return {"w": np.full((4, 3), float(i), np.float32)}


def make_record(model_id: str, *, target: str = "glyphs", seed: int = 0, **kw) -> TransferRecord:
    values = dict(
        model_id=model_id, target=target, target_fingerprint=f"fp-{target}", target_family="fonts",
        num_classes=4, recipe=FT_RECIPE, seed=seed, val_acc=0.7, test_acc=0.65, chance_acc=0.25,
        curve=(0.4, 0.6, 0.7), train_images=48, seconds=1.5,
    )  # fmt: skip
    values.update(kw)
    return TransferRecord(**values)


@pytest.fixture()
def zoo(tmp_path):
    z = Zoo.create(tmp_path / "zoo")
    for i in range(2):
        z.add(make_entry(i), make_weights(i))
    return z


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# -- the dataclasses -----------------------------------------------------------------------------


def test_record_round_trips_and_derives_its_id():
    record = make_record("abc")
    assert record.id == record_key("abc", "fp-glyphs", FT_RECIPE, 0) and len(record.id) == 16
    assert record_key("abc", "fp-glyphs", dict(reversed(FT_RECIPE.items())), 0) == record.id
    assert record.epochs == 3 and record.recipe_dict == FT_RECIPE and record.curve == (0.4, 0.6, 0.7)
    data = json.loads(json.dumps(record.to_dict(), allow_nan=False))
    assert data["curve"] == [0.4, 0.6, 0.7] and TransferRecord.from_dict(data) == record
    assert make_record("abc", recipe={"lr": 0.1}).epochs == 3  # no epochs in the recipe: the curve's length
    assert make_record("abc", seed=1).id != record.id
    with pytest.raises(TansError, match=r"unknown \['colour'\] and missing \['seconds'\]"):
        TransferRecord.from_dict({**{k: v for k, v in data.items() if k != "seconds"}, "colour": 1})
    ref = TaskRef("digits", "fp", "mnist", "digits", 10)
    assert TaskRef.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"val_acc": math.nan}, r"val_acc as a finite fraction"),
        ({"test_acc": math.inf}, r"test_acc as a finite fraction"),
        ({"chance_acc": 25.0}, r"divide percentages by 100"),
        ({"curve": (0.5, math.nan)}, r"curve\[1\] as a finite fraction"),
        ({"curve": (0.5, 1.5)}, r"curve\[1\] as a finite fraction"),
        ({"seconds": -1.0}, r"seconds as a finite number >= 0"),
        ({"seconds": math.inf}, r"seconds as a finite number >= 0"),
        ({"num_classes": 1}, r"num_classes of at least 2"),
        ({"origin": "guess"}, r"expected origin 'transfer' or 'finetune'"),
        ({"recipe": {"lr": math.nan}}, r"NaN or Infinity"),
        ({"model_id": "../x"}, r"zoo entry id"),
    ],
    ids=["nan-acc", "inf-acc", "percent", "nan-curve", "curve-above-1", "negative-seconds", "inf-seconds",
         "one-class", "origin", "nan-recipe", "bad-model-id"],  # fmt: skip
)
def test_record_refuses_bad_fields(change, match):
    with pytest.raises(TansError, match=match):
        make_record(**{"model_id": "abc", **change})


def test_task_source_prefers_the_builtin_name_then_the_path(tans_home, image_folder):
    from tans.data import load_dataset

    assert task_source(load_dataset("digits-0-4")) == "digits-0-4"
    root = image_folder({"a": 3, "b": 3})
    folder = load_dataset(str(root))
    assert task_source(folder) == str(root.resolve())
    # named like a built-in task, but other data: the path, not the name
    assert task_source(replace(folder, name="digits-0-4")) == str(root.resolve())
    assert task_source(replace(folder, source="")) == folder.name  # nothing better known
    ref = TaskRef.from_dataset(folder)
    assert (ref.fingerprint, ref.num_classes, ref.source) == (folder.fingerprint, 2, str(root.resolve()))


# -- the store ----------------------------------------------------------------------------------


def test_add_transfer_dedupes_filters_and_refuses_unknown_models(zoo):
    a, b = zoo.ids()
    first = make_record(a)
    assert zoo.add_transfer(first) is True
    assert zoo.add_transfer(first) is False  # append-only: the stored record stays
    assert zoo.add_transfer(replace(first, test_acc=0.1)) is False and zoo.transfers()[0].test_acc == 0.65
    stored = zoo.transfers()[0]
    assert stored.created and replace(stored, created="") == first
    assert zoo.add_transfers([make_record(a, target="icons"), make_record(b), first]) == 2
    assert zoo.transfer_count() == 3 and len(zoo.transfer_ids()) == 3
    assert [r.target for r in zoo.transfers(model_id=a)] == ["glyphs", "icons"]
    assert [r.model_id for r in zoo.transfers(target="glyphs")] == [a, b]
    assert len(zoo.transfers(family="fonts")) == 3 and zoo.transfers(family="other") == []

    with pytest.raises(TansError, match=r"model 'nope': no such entry in the zoo"):
        zoo.add_transfer(make_record("nope"))
    with pytest.raises(TansError, match="no such entry"):  # one unknown model refuses the whole batch
        zoo.add_transfers([make_record(a, target="emoji"), make_record("nope")])
    with pytest.raises(TansError, match="already stored for another fine-tune"):  # after one insert: rolled back
        zoo.add_transfers([make_record(a, target="emoji"), make_record(b, target="emoji", id=first.id)])
    with pytest.raises(TansError, match="expected TransferRecord"):
        zoo.add_transfer(first.to_dict())
    assert zoo.transfer_count() == 3
    assert json.loads(json.dumps([r.to_dict() for r in zoo.transfers()], allow_nan=False))


def test_register_task_keeps_the_first_reference(zoo):
    ref = TaskRef("digits", "fp-digits", "mnist", "/data/digits", 10)
    zoo.register_task(ref)
    zoo.register_task(replace(ref, source="/elsewhere"))
    assert zoo.tasks() == {"fp-digits": ref}


def _make_v1(path):
    """A zoo as tans wrote it with schema version 1: no transfers or tasks table."""
    z = Zoo.create(path)
    z.add(make_entry(0), make_weights(0))
    z.close()
    conn = sqlite3.connect(path / "zoo.sqlite")
    conn.executescript(
        "DROP TABLE transfers; DROP TABLE tasks;"
        "UPDATE zoo_meta SET value = '1' WHERE key = 'schema_version';"
    )
    conn.close()


def test_version_1_zoo_is_upgraded_in_place_even_by_concurrent_openers(tmp_path):
    path = tmp_path / "zoo"
    _make_v1(path)
    tables = {r[0] for r in sqlite3.connect(path / "zoo.sqlite").execute("SELECT name FROM sqlite_master")}
    assert "transfers" not in tables and "tasks" not in tables

    opened, errors, barrier = [], [], threading.Barrier(4)

    def open_zoo():
        barrier.wait()
        try:
            opened.append(Zoo.open(path))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_zoo) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(opened) == 4
    zoo = Zoo.open(path)
    version = dict(zoo._connect().execute("SELECT key, value FROM zoo_meta").fetchall())["schema_version"]
    assert version == str(SCHEMA_VERSION) == "2"
    assert len(zoo) == 1 and zoo.transfer_count() == 0 and zoo.tasks() == {}
    assert zoo.add_transfer(make_record(zoo.ids()[0])) and zoo.verify().ok


def test_listing_records_does_not_import_torch(zoo):
    zoo.add_transfer(make_record(zoo.ids()[0]))
    code = (
        "import sys; from tans.zoo import Zoo; z = Zoo.open(sys.argv[1]); "
        "assert len(z.transfers()) == 1 and z.tasks() == {}; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(zoo.path)], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_load_model_builds_the_architecture_with_the_stored_weights(tmp_path):
    import torch

    from tans.space.registry import create_model

    zoo = Zoo.create(tmp_path / "zoo")
    torch.manual_seed(3)
    model = create_model("mbv3_min", num_classes=5)
    entry = zoo.add(make_entry(0, arch="mbv3_min", num_classes=5), model.state_dict())
    loaded = zoo.load_model(entry.id)
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name].reshape(tensor.shape)), name
    assert zoo.load_model(entry.id, num_classes=3).get_classifier().out_features == 3
    bad = zoo.add(make_entry(1, arch="mbv3_min", num_classes=5, task="other"), make_weights(1))
    with pytest.raises(TansError, match=r"do not fit its architecture mbv3_min"):
        zoo.load_model(bad.id)
    with pytest.raises(TansError, match="no zoo entry with id"):
        zoo.load_model("nope")


# -- loading tasks -------------------------------------------------------------------------------


def test_load_task_checks_the_fingerprint_and_says_how_to_fix_a_moved_folder(tmp_path, tans_home, image_folder):
    from tans.data import load_dataset

    root = image_folder({"a": 3, "b": 3})
    data = load_dataset(str(root))
    zoo = Zoo.create(tmp_path / "zoo")
    zoo.register_task(TaskRef.from_dataset(data))
    for key in (data.fingerprint, data.fingerprint[:12], data.name):
        assert zoo.load_task(key).fingerprint == data.fingerprint

    shutil.copy(root / "a" / "0.png", root / "b" / "extra.png")  # the data changed
    with pytest.raises(TansError, match=r"task 'data' loaded from .* has changed since the zoo recorded it"):
        zoo.load_task(data.fingerprint)
    shutil.move(root, tmp_path / "moved")
    with pytest.raises(TansError, match=r"recorded at .*data, which no longer exists; put the dataset back"):
        zoo.load_task(data.name)
    with pytest.raises(TansError, match=r"knows no task 'dta'.*Did you mean 'data'"):
        zoo.load_task("dta")


def test_load_task_without_a_reference_uses_the_entry_task_name(tmp_path, tans_home):
    from tans.data import load_dataset

    fingerprint = load_dataset("digits-0-4").fingerprint
    zoo = Zoo.create(tmp_path / "zoo")
    zoo.add(make_entry(0, task="digits-0-4", fingerprint=fingerprint), make_weights(0))
    zoo.add(make_entry(1, task="digits-5-9", fingerprint="stale"), make_weights(1))
    assert zoo.load_task("digits-0-4").fingerprint == fingerprint
    assert zoo.load_task(fingerprint).name == "digits-0-4"
    with pytest.raises(TansError, match=r"task 'digits-5-9' loaded from 'digits-5-9' has changed"):
        zoo.load_task("digits-5-9")


# -- archives -----------------------------------------------------------------------------------


def _fill(zoo):
    a, b = zoo.ids()
    zoo.register_task(TaskRef("digits", "fp-digits", "mnist", "digits", 10))
    zoo.register_task(TaskRef("glyphs", "fp-glyphs", "fonts", "/data/glyphs", 4))
    zoo.register_task(TaskRef("icons", "fp-icons", "fonts", "/data/icons", 4))
    zoo.add_transfers([make_record(a), make_record(a, target="icons"), make_record(b, origin="finetune")])
    return a, b


def test_export_import_round_trip_of_records_and_tasks(zoo, tmp_path):
    a, b = _fill(zoo)
    archive = export_zoo(zoo, tmp_path / "all.tar")
    dst = Zoo.create(tmp_path / "dst")
    report = import_zoo(dst, archive)
    assert report.records_added == 3 and len(report.added) == 2
    assert report.to_dict()["records_added"] == 3 and "3 transfer records" in report.summary()
    assert dst.transfers() == zoo.transfers() and dst.tasks() == zoo.tasks()  # creation times kept
    again = import_zoo(dst, archive)
    assert again.records_added == 0 and dst.transfer_count() == 3

    subset = export_zoo(zoo, tmp_path / "sub.tar", ids=[b])
    other = Zoo.create(tmp_path / "other")
    assert import_zoo(other, subset).records_added == 1
    assert [r.model_id for r in other.transfers()] == [b]
    assert set(other.tasks()) == {"fp-digits", "fp-glyphs"}  # its entry's task and its record's target


def _rewrite_manifest(archive, out, edit):
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(out, "w") as tar:
        for info, data in members:
            if info.name == "manifest.json":
                manifest = json.loads(data)
                edit(manifest)
                data = json.dumps(manifest).encode()  # NaN is written as NaN, as a careless writer would
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def test_import_reads_version_1_archives(zoo, tmp_path):
    _fill(zoo)

    def to_v1(m):
        m["version"] = 1
        del m["transfers"], m["tasks"]

    v1 = _rewrite_manifest(export_zoo(zoo, tmp_path / "all.tar"), tmp_path / "v1.tar", to_v1)
    dst = Zoo.create(tmp_path / "dst")
    report = import_zoo(dst, v1)
    assert len(report.added) == 2 and report.records_added == 0 and dst.transfer_count() == 0


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m["transfers"][0].update(model_id="elsewhere"), r"model 'elsewhere', which is neither in the archive nor"),
        (lambda m: m["transfers"][0].update(test_acc=math.nan), r"test_acc as a finite fraction"),
        (lambda m: m["transfers"][0].update(curve=[0.5, math.inf]), r"curve\[1\] as a finite fraction"),
        (lambda m: m["transfers"].append(m["transfers"][0]), r"appears twice"),
        (lambda m: m.update(transfers={"a": 1}), r"expected 'transfers' in manifest.json as a list"),
        (lambda m: m["tasks"][0].update(num_classes=1), r"num_classes of at least 2"),
        (lambda m: m.update(version=3), r"expected archive version 1 or 2"),
    ],
    ids=["unknown-model", "nan", "inf-curve", "duplicate", "not-a-list", "bad-task", "future-version"],
)
def test_import_refuses_bad_records_and_adds_nothing(zoo, tmp_path, edit, match):
    _fill(zoo)
    bad = _rewrite_manifest(export_zoo(zoo, tmp_path / "all.tar"), tmp_path / "bad.tar", edit)
    dst = Zoo.create(tmp_path / "dst")
    with pytest.raises(TansError, match=match):
        import_zoo(dst, bad)
    assert len(dst) == 0 and dst.transfer_count() == 0 and dst.tasks() == {}


def test_import_accepts_records_of_models_already_in_the_zoo(zoo, tmp_path):
    a, _ = _fill(zoo)
    dst = Zoo.create(tmp_path / "dst")
    import_zoo(dst, export_zoo(zoo, tmp_path / "all.tar"))
    extra = make_record(a, target="emoji")
    zoo.add_transfer(extra)

    # a records-only archive: its model is already in dst
    with tarfile.open(export_zoo(zoo, tmp_path / "full.tar")) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
    manifest["entries"], manifest["transfers"] = [], [extra.to_dict()]
    blob = json.dumps(manifest).encode()
    info = tarfile.TarInfo("manifest.json")
    info.size = len(blob)
    with tarfile.open(tmp_path / "records.tar", "w") as tar:
        tar.addfile(info, io.BytesIO(blob))
    assert import_zoo(dst, tmp_path / "records.tar").records_added == 1 and dst.transfer_count() == 4


# -- the command line ----------------------------------------------------------------------------


def test_cli_show_lists_records_and_list_counts_them(zoo, tmp_path, capsys):
    a, b = _fill(zoo)
    code, out, _ = run(capsys, "zoo", "show", a, "--zoo", zoo.path, "--json")
    shown = json.loads(out)
    assert code == 0 and shown["id"] == a and [r["target"] for r in shown["transfers"]] == ["glyphs", "icons"]
    assert shown["transfers"][0]["curve"] == [0.4, 0.6, 0.7]
    code, out, _ = run(capsys, "zoo", "show", b, "--zoo", zoo.path)
    assert code == 0 and "1 transfer records" in out and "finetune" in out and "glyphs" in out

    code, out, _ = run(capsys, "zoo", "list", "--zoo", zoo.path)
    assert code == 0 and "3 transfer records on 2 targets" in out
    code, out, _ = run(capsys, "zoo", "list", "--zoo", zoo.path, "--json")
    assert code == 0 and isinstance(json.loads(out), list)  # unchanged shape

    archive = tmp_path / "zoo.tar"
    assert run(capsys, "zoo", "export", archive, "--zoo", zoo.path)[0] == 0
    code, out, _ = run(capsys, "zoo", "import", archive, "--zoo", tmp_path / "copy", "--json")
    assert code == 0 and json.loads(out)["records_added"] == 3


# -- the build -----------------------------------------------------------------------------------


def test_build_registers_the_task_of_every_entry(tmp_path, tans_home, monkeypatch):
    import tans.zoo.build as build
    from tans.training.recipe import Recipe

    def fake_train(unit, dataset, config):  # no training: an entry with made-up numbers
        entry = ZooEntry(
            id=unit.id, arch=unit.arch, task=unit.task, task_fingerprint=unit.task_fingerprint,
            task_family="handwritten-digits", num_classes=5, recipe={"seed": unit.seed}, seed=unit.seed,
            val_acc=0.5, test_acc=0.5, chance_acc=0.2, params=1, flops=1, latency_ms=1.0, latency_threads=1,
            machine="m", embedding=np.zeros(4, np.float32),
        )  # fmt: skip
        return entry, make_weights(0), 0

    monkeypatch.setattr(build, "train_unit", fake_train)
    config = build.BuildConfig(tasks=("digits-0-4",), archs=("mbv3_min",), archs_per_task=1,
                               recipe=Recipe(epochs=1, warmup_epochs=0))
    report = build.build_zoo(tmp_path / "zoo", config, workers=1)
    assert len(report.built) == 1
    zoo = Zoo.open(tmp_path / "zoo")
    (ref,) = zoo.tasks().values()
    assert (ref.name, ref.source, ref.family, ref.num_classes) == ("digits-0-4", "digits-0-4", "handwritten-digits", 5)
    assert ref.fingerprint == zoo.entries()[0].task_fingerprint
    assert zoo.load_task("digits-0-4").fingerprint == ref.fingerprint

    # a zoo built before task references existed gets them on the next (resumed) build
    zoo._connect().execute("DELETE FROM tasks")
    assert build.build_zoo(tmp_path / "zoo", config, workers=1).skipped == 1
    assert list(Zoo.open(tmp_path / "zoo").tasks()) == [ref.fingerprint]
