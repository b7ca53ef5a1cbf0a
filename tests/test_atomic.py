"""Atomic replacement of files and folders: old or new, never a mix; the user's umask; nothing left behind."""

import os
import stat

import pytest
import torch

from tans import _atomic
from tans._errors import TansError
from tans.searcher import artifact
from tans.searcher.artifact import load_artifact, save_artifact


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_files_and_folders_follow_the_umask(tmp_path, umask_022):
    _atomic.write_bytes(tmp_path / "a.bin", b"x")
    with _atomic.new_folder(tmp_path / "dir", replaces=()) as tmp:
        (tmp / "b.bin").write_bytes(b"y")
    assert _mode(tmp_path / "a.bin") == 0o644  # mkstemp would leave 0600
    assert _mode(tmp_path / "dir") == 0o755 and _mode(tmp_path / "dir" / "b.bin") == 0o644


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "rename-aside"])
def test_new_folder_replaces_the_old_one_whole(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(_atomic, "_exchange", lambda a, b: False)
    target = tmp_path / "out"
    with _atomic.new_folder(target, replaces=("old", "new")) as tmp:
        (tmp / "old").write_text("1")
    with _atomic.new_folder(target, replaces=("old", "new")) as tmp:
        (tmp / "new").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left


def test_new_folder_through_a_symbolic_link_replaces_its_target(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_text("old")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with _atomic.new_folder(tmp_path / "link", replaces=("f",)) as tmp:
        (tmp / "f").write_text("new")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "f").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_a_failed_write_leaves_the_old_folder_and_no_temporary(tmp_path):
    target = tmp_path / "out"
    with _atomic.new_folder(target, replaces=("f",)) as tmp:
        (tmp / "f").write_text("old")
    with pytest.raises(RuntimeError), _atomic.new_folder(target, replaces=("f",)) as tmp:
        (tmp / "f").write_text("new")
        raise RuntimeError("killed")
    assert (target / "f").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out"]
    with pytest.raises(RuntimeError), _atomic.new_file(tmp_path / "g") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_new_folder_never_replaces_what_tans_did_not_write(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(TansError, match="holds 'notes.txt', which tans did not write"):
        _atomic.check_folder(tmp_path / "mine", replaces=("model.json",))
    (tmp_path / "file").write_text("")
    with pytest.raises(TansError, match="got a file"):
        _atomic.check_folder(tmp_path / "file", replaces=())
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_replacing_a_searcher_artifact_keeps_the_old_pair_until_the_new_one_is_complete(tmp_path, monkeypatch):
    path = tmp_path / "searcher"
    save_artifact(path, {"which": "old"}, {"w": torch.zeros(3)})

    def crash(*args, **kwargs):
        raise RuntimeError("killed between the weights and the config")

    monkeypatch.setattr(artifact, "dumps", crash)  # the new weights are written, the config is not
    with pytest.raises(RuntimeError):
        save_artifact(path, {"which": "new"}, {"w": torch.ones(3)})
    config, tensors = load_artifact(path)  # before: the new weights next to the old checksum
    assert config["which"] == "old" and torch.equal(tensors["w"], torch.zeros(3))
    assert [p.name for p in tmp_path.iterdir()] == ["searcher"]
    monkeypatch.undo()
    save_artifact(path, {"which": "new"}, {"w": torch.ones(3)})
    assert load_artifact(path)[0]["which"] == "new"
