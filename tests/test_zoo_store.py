"""The zoo store: entries, crash safety, concurrent writers, tamper detection, archives."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import signal
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tans import _atomic
from tans._errors import TansError
from tans.zoo import ImportReport, Zoo, ZooEntry, export_zoo, import_zoo, unit_key

RECIPE = {"epochs": 2, "lr": 0.05, "label_smoothing": 0.1}


def make_entry(
    i: int, *, task: str = "digits", family: str = "mnist", val_acc: float = 0.6, **kw
) -> ZooEntry:
    arch = f"mbv3_t{i}"
    fp = f"fp-{task}"
    fields = dict(
        id=unit_key(arch, fp, RECIPE, 0),
        arch=arch,
        task=task,
        task_fingerprint=fp,
        task_family=family,
        num_classes=10,
        recipe=RECIPE,
        seed=0,
        val_acc=val_acc,
        test_acc=0.55,
        chance_acc=0.1,
        params=1000 * (i + 1),
        flops=20_000 * (i + 1),
        latency_ms=0.5 * (i + 1),
        latency_threads=1,
        machine="test-cpu",
        embedding=np.arange(8, dtype=np.float32) + i,
    )
    fields.update(kw)
    return ZooEntry(**fields)


def make_state(i: int) -> dict[str, torch.Tensor]:
    return {
        "conv.weight": torch.full((4, 3, 3, 3), float(i)),
        "fc.bias": torch.arange(5, dtype=torch.float32) + i,
    }


# A writer process, self-contained so it runs without pytest; numpy weights keep it torch-free
# (fast to start). `tag` goes into the weights so different writers of one id write other bytes.
WRITER = textwrap.dedent(
    """
    import sys, time, numpy as np
    from tans.zoo import Zoo, ZooEntry, unit_key
    path, start, stop, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    pause = float(sys.argv[5])
    recipe = {"epochs": 1}
    zoo = Zoo.create(path)
    for i in range(start, stop):
        arch = f"w{i}"
        entry = ZooEntry(
            id=unit_key(arch, "fp", recipe, 0), arch=arch, task="t", task_fingerprint="fp",
            task_family="f", num_classes=4, recipe=recipe, seed=0, val_acc=0.5, test_acc=0.5,
            chance_acc=0.25, params=i, flops=i, latency_ms=1.0, latency_threads=1, machine="m",
            embedding=np.full(4, i, np.float32),
        )
        weights = {"w": np.full((128, 256), i, np.float32), "tag": np.frombuffer(tag.encode(), np.uint8)}
        zoo.add(entry, weights)
        time.sleep(pause)
    """
)


def writer_ids(start: int, stop: int) -> set[str]:
    return {unit_key(f"w{i}", "fp", {"epochs": 1}, 0) for i in range(start, stop)}


def start_writer(
    tmp_path: Path, zoo_path: Path, start: int, stop: int, tag: str, *, pause: float = 0.0
) -> subprocess.Popen:
    script = tmp_path / "writer.py"
    if not script.exists():
        script.write_text(WRITER)
    args = [str(zoo_path), str(start), str(stop), tag, str(pause)]
    return subprocess.Popen([sys.executable, str(script), *args])


# -- entries ---------------------------------------------------------------------------------------


def test_entry_round_trips_through_json():
    entry = make_entry(3)
    again = ZooEntry.from_dict(json.loads(json.dumps(entry.to_dict())))
    assert again == entry
    assert again.embedding.dtype == np.float32 and again.recipe_dict == RECIPE


def test_unit_key_is_deterministic_and_ignores_recipe_key_order():
    a = unit_key("mbv3", "fp", {"lr": 0.1, "epochs": 2}, 1)
    assert a == unit_key("mbv3", "fp", '{"epochs": 2, "lr": 0.1}', 1)
    assert a != unit_key("mbv3", "fp", {"lr": 0.1, "epochs": 2}, 2)
    assert len(a) == 16 and make_entry(0).unit_key == make_entry(0).id


def test_entry_flags_near_chance_and_freezes_embedding():
    assert make_entry(0, val_acc=0.14).flagged and not make_entry(0, val_acc=0.16).flagged
    with pytest.raises(ValueError):
        make_entry(0).embedding[0] = 5.0


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"id": "../evil"}, "entry id"),
        ({"val_acc": 60.0}, "fraction in"),
        ({"recipe": "not json"}, "JSON object"),
        ({"embedding": np.zeros((2, 2))}, "1-D"),
        ({"params": 1.5}, "integer params"),
    ],
)
def test_entry_rejects_bad_fields(change, match):
    with pytest.raises(TansError, match=match):
        make_entry(0, **change)


def test_from_dict_names_missing_and_unknown_fields():
    data = make_entry(0).to_dict()
    del data["arch"]
    data["colour"] = "red"
    with pytest.raises(TansError, match=r"unknown \['colour'\] and missing \['arch'\]"):
        ZooEntry.from_dict(data)


# -- store -----------------------------------------------------------------------------------------


def test_add_get_filter_and_reopen(tmp_path):
    zoo = Zoo.create(tmp_path / "zoo")
    tasks = [("digits", "mnist")] * 3 + [("glyphs", "glyphs")] * 2
    stored = [zoo.add(make_entry(i, task=t, family=f), make_state(i)) for i, (t, f) in enumerate(tasks)]
    zoo.add(make_entry(9, val_acc=0.12), make_state(9))  # flagged

    first = stored[0]
    assert first.sha256 == hashlib.sha256(zoo.weights_path(first.id).read_bytes()).hexdigest()
    assert first.weights_file == f"weights/{first.id}.safetensors" and first.created.endswith("+00:00")
    assert len(zoo) == 6 and first.id in zoo and "nope" not in zoo
    assert zoo.get(first.id) == first

    assert [e.arch for e in zoo.entries(task="glyphs")] == ["mbv3_t3", "mbv3_t4"]
    assert {e.arch for e in zoo.entries(family="mnist")} == {"mbv3_t0", "mbv3_t1", "mbv3_t2", "mbv3_t9"}
    assert [e.params for e in zoo.entries(max_params=2000)] == [1000, 2000]
    assert [e.flops for e in zoo.entries(max_flops=60_000, task="digits")] == [20_000, 40_000, 60_000]
    assert [e.latency_ms for e in zoo.entries(max_latency_ms=1.0)] == [0.5, 1.0]
    assert len(zoo.entries(include_flagged=False)) == 5

    ids, matrix = zoo.embeddings(task="glyphs")
    assert ids == [stored[3].id, stored[4].id] and matrix.shape == (2, 8) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix[1], stored[4].embedding)

    state = zoo.load_state_dict(first.id)
    assert torch.equal(state["conv.weight"], make_state(0)["conv.weight"])
    zoo.close()

    reopened = Zoo.open(tmp_path / "zoo")
    assert reopened.ids() == zoo.ids() and reopened.get(stored[4].id) == stored[4]
    assert reopened.verify().ok


def test_get_unknown_id_suggests_close_ids(tmp_path):
    zoo = Zoo.create(tmp_path / "zoo")
    entry = zoo.add(make_entry(0), make_state(0))
    with pytest.raises(TansError, match=f"no zoo entry with id.*Did you mean '{entry.id}'"):
        zoo.get(entry.id[:-1] + "x")


def test_same_id_twice_is_a_no_op_and_a_different_unit_is_refused(tmp_path):
    zoo = Zoo.create(tmp_path / "zoo")
    first = zoo.add(make_entry(0), make_state(0))
    # a re-run re-measures accuracy and latency: the first result stays
    again = zoo.add(make_entry(0, val_acc=0.9, latency_ms=7.0), make_state(42))
    assert again == first and len(zoo) == 1
    assert torch.equal(zoo.load_state_dict(first.id)["fc.bias"], make_state(0)["fc.bias"])
    with pytest.raises(TansError, match="different build unit"):
        zoo.add(make_entry(1, id=first.id), make_state(1))


def test_add_refuses_non_tensor_weights(tmp_path):
    zoo = Zoo.create(tmp_path / "zoo")
    with pytest.raises(TansError, match="expected tensors"):
        zoo.add(make_entry(0), {"w": [1, 2, 3]})
    with pytest.raises(TansError, match="non-empty state dict"):
        zoo.add(make_entry(0), {})
    assert len(zoo) == 0


def test_tied_and_bfloat16_weights_round_trip(tmp_path):
    zoo = Zoo.create(tmp_path / "zoo")
    w = torch.randn(3, 4)
    entry = zoo.add(make_entry(0), {"a": w, "b": w, "h": torch.ones(2, dtype=torch.bfloat16)})
    state = zoo.load_state_dict(entry.id)
    assert torch.equal(state["a"], w) and torch.equal(state["b"], w) and state["h"].dtype == torch.bfloat16


def test_open_refuses_what_is_not_a_zoo(tmp_path):
    with pytest.raises(TansError, match="does not exist"):
        Zoo.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TansError, match="holds no zoo.sqlite"):
        Zoo.open(tmp_path / "empty")
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "zoo.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(TansError, match="unreadable file"):
        Zoo.open(tmp_path / "garbage")
    (tmp_path / "other").mkdir()
    sqlite3.connect(tmp_path / "other" / "zoo.sqlite").execute("CREATE TABLE x (a)").connection.close()
    with pytest.raises(TansError, match="without tans metadata"):
        Zoo.open(tmp_path / "other")
    Zoo.create(tmp_path / "zoo")
    with pytest.raises(TansError, match="already exists"):
        Zoo.create(tmp_path / "zoo", exist_ok=False)


def test_working_format_is_recorded_once_and_a_different_one_refused(tmp_path):
    from tans.data import WorkingFormat

    zoo = Zoo.create(tmp_path / "zoo")
    assert zoo.working_format == WorkingFormat()  # unrecorded: the 32x32 RGB default
    zoo.record_working_format(WorkingFormat(24, 1))
    zoo.record_working_format(WorkingFormat(24, 1))  # the same again is fine
    assert Zoo.open(tmp_path / "zoo").working_format == WorkingFormat(24, 1)
    with pytest.raises(TansError, match=r"holds networks of 24x24x1 images, not 32x32x3"):
        zoo.record_working_format(WorkingFormat(32, 3))
    with sqlite3.connect(tmp_path / "zoo" / "zoo.sqlite") as conn:
        conn.execute("UPDATE zoo_meta SET value = 'big' WHERE key = 'image_size'")
    with pytest.raises(TansError, match=r"unreadable working format in zoo_meta \(image_size='big'"):
        Zoo.open(tmp_path / "zoo").working_format


def test_open_refuses_another_schema_version(tmp_path):
    Zoo.create(tmp_path / "zoo").close()
    conn = sqlite3.connect(tmp_path / "zoo" / "zoo.sqlite")
    conn.execute("UPDATE zoo_meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(TansError, match="schema version 99, this tans reads version 2"):
        Zoo.open(tmp_path / "zoo")


def test_zoo_uses_wal_and_pickles_as_its_path(tmp_path):
    zoo = Zoo.create(tmp_path / "zoo")
    assert zoo._connect().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    entry = zoo.add(make_entry(0), make_state(0))
    clone = pickle.loads(pickle.dumps(zoo))
    assert clone.get(entry.id) == entry


def test_listing_and_verifying_do_not_import_torch(tmp_path):
    Zoo.create(tmp_path / "zoo").add(make_entry(0), make_state(0))
    code = (
        "import sys; from tans.zoo import Zoo; z = Zoo.open(sys.argv[1]); "
        "assert z.verify().ok and len(z.entries()) == 1; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "zoo")], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


# -- crash safety and concurrency ------------------------------------------------------------------


def test_crash_between_weights_and_row_leaves_no_entry(tmp_path, monkeypatch):
    zoo = Zoo.create(tmp_path / "zoo")

    def killed(_path):  # runs after the weights file is in place, before the row is inserted
        raise KeyboardInterrupt

    monkeypatch.setattr(_atomic, "_fsync_dir", killed)
    with pytest.raises(KeyboardInterrupt):
        zoo.add(make_entry(0), make_state(0))
    monkeypatch.undo()

    reopened = Zoo.open(tmp_path / "zoo")
    report = reopened.verify()
    entry_id = make_entry(0).id
    assert len(reopened) == 0 and report.ok and report.orphans == (f"{entry_id}.safetensors",)
    reopened.add(make_entry(0), make_state(0))  # the resumed build overwrites the orphan
    assert reopened.verify().orphans == () and len(reopened) == 1


def test_remove_orphans_keeps_fresh_temp_files(tmp_path):
    zoo = Zoo.create(tmp_path / "zoo")
    zoo.add(make_entry(0), make_state(0))
    stray = zoo.weights_dir / ".tmp-abc-123-deadbeef"
    stray.write_bytes(b"half a file")
    assert zoo.verify().orphans == (stray.name,)
    assert zoo.remove_orphans() == [] and stray.exists()  # could be a write in flight
    assert zoo.remove_orphans(min_age_s=0) == [stray.name] and not stray.exists()
    assert zoo.verify().ok and len(zoo) == 1


def test_concurrent_writers_lose_nothing(tmp_path):
    zoo_path = tmp_path / "zoo"
    # three disjoint writers plus one overlapping all of them (same ids, other bytes)
    ranges = [(0, 8), (8, 16), (16, 24), (4, 20)]
    procs = [start_writer(tmp_path, zoo_path, a, b, f"writer{k}") for k, (a, b) in enumerate(ranges)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    zoo = Zoo.open(zoo_path)
    assert set(zoo.ids()) == writer_ids(0, 24) and len(zoo) == 24
    report = zoo.verify()
    assert report.ok and report.orphans == (), report.summary()
    files = [p for p in zoo.weights_dir.iterdir()]
    assert len(files) == 24


def test_killed_build_resumes_without_duplicates_or_half_entries(tmp_path):
    zoo_path = tmp_path / "zoo"
    n = 60
    # the pause only keeps the loop from finishing before the kill on a fast machine
    proc = start_writer(tmp_path, zoo_path, 0, n, "first", pause=0.02)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (zoo_path / "zoo.sqlite").exists():
            try:
                if len(Zoo.open(zoo_path)) >= 5:
                    break
            except TansError:  # schema not committed yet
                pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    zoo = Zoo.open(zoo_path)
    done = len(zoo)
    assert 5 <= done < n, "the writer should have been killed mid-way"
    report = zoo.verify()
    assert report.ok and report.checked == done, report.summary()
    for entry_id in zoo.ids():  # every visible entry is complete
        assert zoo.load_state_dict(entry_id)["w"].shape == (128, 256)

    assert start_writer(tmp_path, zoo_path, 0, n, "second").wait(timeout=60) == 0
    zoo = Zoo.open(zoo_path)
    assert len(zoo) == n and set(zoo.ids()) == writer_ids(0, n)
    assert zoo.verify().ok
    zoo.remove_orphans(min_age_s=0)  # a temp file of the killed write, if the kill hit one
    assert sorted(p.name for p in zoo.weights_dir.iterdir()) == sorted(f"{i}.safetensors" for i in zoo.ids())


# -- tampering -------------------------------------------------------------------------------------


def test_tampered_and_missing_weights_are_reported_and_refused(tmp_path):
    zoo = Zoo.create(tmp_path / "zoo")
    a, b, c = (zoo.add(make_entry(i), make_state(i)) for i in range(3))
    path = zoo.weights_path(a.id)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    zoo.weights_path(b.id).unlink()

    report = zoo.verify()
    assert not report.ok and report.tampered == (a.id,) and report.missing == (b.id,)
    assert report.to_dict()["checked"] == 3 and "PROBLEMS" in report.summary()
    with pytest.raises(TansError, match=f"weights of entry {a.id} were modified"):
        zoo.load_state_dict(a.id)
    with pytest.raises(TansError, match=f"weights of entry {b.id} are missing"):
        zoo.load_state_dict(b.id)
    assert torch.equal(zoo.load_state_dict(c.id)["fc.bias"], make_state(2)["fc.bias"])
    with pytest.raises(TansError, match="were modified"):
        export_zoo(zoo, tmp_path / "out.tar")
    assert not (tmp_path / "out.tar").exists()


# -- archives --------------------------------------------------------------------------------------


def test_export_import_round_trip(tmp_path):
    src = Zoo.create(tmp_path / "src")
    entries = [src.add(make_entry(i), make_state(i)) for i in range(4)]
    archive = export_zoo(src, tmp_path / "all.tar")

    dst = Zoo.create(tmp_path / "dst")
    report = import_zoo(dst, archive)
    assert report == ImportReport(added=tuple(e.id for e in entries), skipped=())
    assert [dst.get(e.id) for e in entries] == entries  # sha256 and creation time preserved
    assert torch.equal(dst.load_state_dict(entries[2].id)["conv.weight"], make_state(2)["conv.weight"])
    assert dst.verify().ok

    again = import_zoo(dst, archive)
    assert again.added == () and len(again.skipped) == 4 and len(dst) == 4

    subset = export_zoo(src, tmp_path / "sub.tar", ids=[entries[1].id])
    other = Zoo.create(tmp_path / "other")
    assert import_zoo(other, subset).added == (entries[1].id,) and other.ids() == [entries[1].id]
    with pytest.raises(TansError, match="no zoo entry"):
        export_zoo(src, tmp_path / "bad.tar", ids=["nope"])


def test_export_import_round_trip_through_urls(tmp_path, memory_url, monkeypatch):
    import tempfile

    src = Zoo.create(tmp_path / "src")
    entries = [src.add(make_entry(i), make_state(i)) for i in range(2)]
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where a URL's local copies go
    (tmp_path / "tmp").mkdir()
    url = f"{memory_url}/shared/zoo.tar"
    assert export_zoo(src, url) == url
    report = import_zoo(tmp_path / "dst", url)
    assert report.added == tuple(e.id for e in entries) and Zoo.open(tmp_path / "dst").verify().ok
    local = export_zoo(src, f"file://{tmp_path}/by-url.tar")  # file:// is a local path: written atomically
    assert local == f"file://{tmp_path}/by-url.tar" and (tmp_path / "by-url.tar").is_file()
    assert import_zoo(tmp_path / "other", f"file://{tmp_path}/by-url.tar").added == report.added

    # a refused archive at a URL leaves no zoo and no local copy behind
    bad = _write_tar(tmp_path / "bad.tar", _flip_weights(_members(tmp_path / "by-url.tar")))
    import fsspec

    fsspec.filesystem("memory").put_file(str(bad), f"{memory_url}/bad.tar")
    with pytest.raises(TansError, match="have sha256"):
        import_zoo(tmp_path / "new-zoo", f"{memory_url}/bad.tar")
    assert not (tmp_path / "new-zoo").exists() and list((tmp_path / "tmp").iterdir()) == []

    with pytest.raises(TansError, match=r"cannot reach 'nosuch://x/zoo.tar': Protocol not known"):
        export_zoo(src, "nosuch://x/zoo.tar")
    with pytest.raises(TansError, match="which does not exist"):
        import_zoo(tmp_path / "dst", f"{memory_url}/missing.tar")


def test_import_carries_the_working_format_and_refuses_another(tmp_path):
    from tans.data import WorkingFormat

    src = Zoo.create(tmp_path / "src")
    src.record_working_format(WorkingFormat(24, 1))
    src.add(make_entry(0), make_state(0))
    archive = export_zoo(src, tmp_path / "all.tar")
    dst = Zoo.create(tmp_path / "dst")
    import_zoo(dst, archive)
    assert dst.working_format == WorkingFormat(24, 1)

    rgb = Zoo.create(tmp_path / "rgb")
    rgb.record_working_format(WorkingFormat(32, 3))
    with pytest.raises(TansError, match="holds networks of 32x32x3 images"):
        import_zoo(rgb, archive)
    assert len(rgb) == 0


def _members(tar_path: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(tar_path) as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]


def _write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def _with_manifest(members, edit):
    out = []
    for info, data in members:
        if info.name == "manifest.json":
            manifest = json.loads(data)
            edit(manifest)
            info, data = _file("manifest.json", json.dumps(manifest).encode())
        out.append((info, data))
    return out


@pytest.fixture()
def good_archive(tmp_path):
    src = Zoo.create(tmp_path / "src")
    for i in range(2):
        src.add(make_entry(i), make_state(i))
    return export_zoo(src, tmp_path / "good.tar")


def _flip_weights(members):
    out, flipped = [], False
    for info, data in members:
        if info.name.startswith("weights/") and not flipped:
            info, data = _file(info.name, data[:-1] + bytes([data[-1] ^ 1]))
            flipped = True
        out.append((info, data))
    return out


def _payload_with_matching_sha(members, payload_of):
    """Replace the first weights file by ``payload_of(data)`` and make the manifest agree."""
    name = next(i.name for i, _ in members if i.name.startswith("weights/"))
    entry_id = name.removeprefix("weights/").removesuffix(".safetensors")
    payload = payload_of(next(d for i, d in members if i.name == name))

    def edit(manifest):
        for e in manifest["entries"]:
            if e["id"] == entry_id:
                e["sha256"] = hashlib.sha256(payload).hexdigest()

    return [(i, d) if i.name != name else _file(name, payload) for i, d in _with_manifest(members, edit)]


def _pickle_as_safetensors(members):
    """A pickle under a .safetensors name whose sha256 the manifest agrees with."""
    return _payload_with_matching_sha(members, lambda _: pickle.dumps({"w": [1, 2, 3]}))


@pytest.mark.parametrize(
    ("tamper", "match"),
    [
        (lambda m: m + [_file("../evil", b"x")], r"points outside the archive"),
        (lambda m: m + [_file("weights/../../evil.safetensors", b"x")], r"points outside the archive"),
        (lambda m: m + [_file("/etc/evil", b"x")], r"absolute"),
        (lambda m: m + [_link("weights/abc.safetensors", "/etc/passwd", tarfile.SYMTYPE)], r"is a link"),
        (lambda m: m + [_link("weights/abc.safetensors", "manifest.json", tarfile.LNKTYPE)], r"is a link"),
        (lambda m: m + [_file("weights/model.pt", pickle.dumps({"a": 1}))], r"not an allowed file"),
        (lambda m: m + [_file("evil.pkl", pickle.dumps({"a": 1}))], r"not an allowed file"),
        (lambda m: m + [_link("weights/fifo", "", tarfile.FIFOTYPE)], r"not a regular file"),
        (lambda m: [x for x in m if x[0].name != "manifest.json"], r"has no manifest.json"),
        (lambda m: m + [_file("weights/extra.safetensors", b"x")], r"weights without entry \['extra'\]"),
        (_flip_weights, r"have sha256 .* the manifest says"),
        (_pickle_as_safetensors, r"expected a safetensors file"),
        (lambda m: _payload_with_matching_sha(m, lambda d: d[:-4]), r"does not parse"),
        (lambda m: _with_manifest(m, lambda d: d.update(format="zip")), r"with format 'tans-zoo-archive'"),
    ],
    ids=[
        "dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "pt", "pkl", "fifo",
        "no-manifest", "extra-weights", "checksum", "pickle-payload", "truncated", "bad-format",
    ],  # fmt: skip
)
def test_import_refuses_unsafe_archives(tmp_path, good_archive, tamper, match):
    bad = _write_tar(tmp_path / "bad.tar", tamper(_members(good_archive)))
    zoo = Zoo.create(tmp_path / "dst")
    with pytest.raises(TansError, match=match):
        import_zoo(zoo, bad)
    assert len(zoo) == 0 and list(zoo.weights_dir.iterdir()) == []  # nothing half-imported
    assert not (tmp_path / "evil").exists()


def test_a_refused_archive_creates_no_zoo(tmp_path, good_archive):
    bad = _write_tar(tmp_path / "bad.tar", _flip_weights(_members(good_archive)))
    with pytest.raises(TansError, match="have sha256"):
        import_zoo(tmp_path / "new-zoo", bad)
    assert not (tmp_path / "new-zoo").exists()
    report = import_zoo(tmp_path / "new-zoo", good_archive)  # a path is fine: the zoo is created for it
    assert len(report.added) == 2 and len(Zoo.open(tmp_path / "new-zoo")) == 2


def test_import_refuses_a_weights_bomb_before_reading_it(tmp_path, good_archive):
    import tracemalloc

    bomb = bytes(64 << 20)  # 64 MiB of zeros: a few hundred KiB gzipped; the entry declares 1,000 parameters
    members = _payload_with_matching_sha(_members(good_archive), lambda _: bomb)
    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    del bomb, members
    zoo = Zoo.create(tmp_path / "dst")
    tracemalloc.start()
    try:
        with pytest.raises(TansError, match=r"are 67,108,864 bytes, more than its 1,000 parameters can take"):
            import_zoo(zoo, path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak  # before: the whole member was read into memory
    assert len(zoo) == 0


def test_import_refuses_non_tar_and_conflicting_ids(tmp_path, good_archive):
    zoo = Zoo.create(tmp_path / "dst")
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x00not a tar" * 10)
    with pytest.raises(TansError, match="expected a tar archive"):
        import_zoo(zoo, junk)
    # same id already stored for another build unit: the whole archive is refused
    manifest = next(d for i, d in _members(good_archive) if i.name == "manifest.json")
    first_id = json.loads(manifest)["entries"][0]["id"]
    zoo.add(make_entry(7, id=first_id), make_state(7))
    with pytest.raises(TansError, match="different build unit"):
        import_zoo(zoo, good_archive)
    assert len(zoo) == 1


def test_claims_split_units_and_are_taken_over_when_their_builder_is_gone(tmp_path):
    import socket

    zoo = Zoo.create(tmp_path / "zoo")
    me, other_host = "here/1/aa", "elsewhere/1/bb"  # another machine: only the lease's expiry counts
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead = f"{socket.gethostname()}/{finished.pid}/cc"  # a builder of this host whose process is gone
    assert zoo.claim("u1", other_host, lease_s=60) == "claimed"
    assert zoo.claim("u1", me, lease_s=60) == "held"  # a live lease is respected
    assert zoo.claim("u1", other_host, lease_s=60) == "claimed"  # its owner may claim again
    assert zoo.claim("u2", other_host, lease_s=-1) == "claimed"
    assert zoo.claim("u2", me, lease_s=60) == "claimed"  # expired: taken over
    assert zoo.claim("u3", dead, lease_s=60) == "claimed"
    assert zoo.claim("u3", me, lease_s=60) == "claimed"  # its builder died: taken over at once
    assert zoo.claim("u4", other_host, lease_s=-1) == "claimed"
    assert zoo.renew_claims(other_host, lease_s=60) == 2  # u1 and u4
    assert zoo.claim("u4", me, lease_s=60) == "held"  # renewed
    zoo.release_claims(other_host)
    assert zoo.claim("u4", me, lease_s=60) == "claimed"
    entry = make_entry(0)
    assert zoo.claim(entry.id, other_host, lease_s=60) == "claimed"
    zoo.add(entry, make_state(0))
    assert zoo.claim(entry.id, me, lease_s=60) == "done"  # a stored unit is never claimed again


def test_embeddings_take_the_constraints_of_entries(tmp_path):
    zoo = Zoo.create(tmp_path / "zoo")
    for i in range(4):
        zoo.add(make_entry(i, val_acc=0.12 if i == 2 else 0.6), make_state(i))
    ids, matrix = zoo.embeddings(max_params=3000, include_flagged=False, family="mnist")
    assert ids == [e.id for e in zoo.entries(max_params=3000, include_flagged=False, family="mnist")]
    assert len(ids) == 2 and matrix.shape == (2, 8)
    with pytest.raises(TypeError, match="max_param"):
        zoo.embeddings(max_param=3000)
    zoo.close()


def test_entry_dict_may_leave_out_storage_fields_and_carry_flagged():
    entry = make_entry(0)
    data = {k: v for k, v in entry.to_dict().items() if k not in ("weights_file", "sha256", "created")}
    assert ZooEntry.from_dict({**data, "flagged": True}) == entry  # flagged is recomputed, not read
    with pytest.raises(TansError, match=r"unknown \[\] and missing \['arch'\]"):
        ZooEntry.from_dict({k: v for k, v in data.items() if k != "arch"})
    with pytest.raises(TansError, match="expected an entry as a JSON object, got list"):
        ZooEntry.from_dict([])
