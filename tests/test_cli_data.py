"""`tans data` end to end through the command-line entry point (one-line errors, exit codes)."""

import json

import numpy as np
import pytest
from PIL import Image

from tans.cli.main import main


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_json_has_the_catalogue(capsys):
    code, out, _ = run(capsys, "data", "list", "--json")
    rows = json.loads(out)
    assert code == 0
    assert len(rows) >= 60
    assert len({r["family"] for r in rows}) >= 5
    assert all(r["licence"] and 2 <= r["classes"] <= 50 for r in rows)


def test_prepare_then_inspect_roundtrip(capsys, tmp_path):
    code, out, _ = run(capsys, "data", "prepare", "digits-0-4", "--out", str(tmp_path), "--json")
    assert code == 0
    [row] = json.loads(out)
    assert row["classes"] == 5
    code, out, _ = run(capsys, "data", "inspect", str(tmp_path / "digits-0-4"), "--json")
    report = json.loads(out)
    assert code == 0 and report["images"] == row["images"] and len(report["classes"]) == 5


def test_inspect_reports_unreadable_files(capsys, tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / c / f"{i}.png")
    (tmp_path / "a" / "broken.png").write_bytes(b"")
    code, out, _ = run(capsys, "data", "inspect", str(tmp_path))
    assert code == 0 and "problem" in out


def test_inspect_summarises_sizes_and_states_the_working_resolution(capsys, tmp_path):
    sizes = {"a": [(8, 6), (12, 9), (20, 10)], "b": [(30, 40), (16, 12), (8, 6)]}  # width, height
    for c, shapes in sizes.items():
        (tmp_path / c).mkdir()
        for i, (w, h) in enumerate(shapes):
            Image.fromarray(np.full((h, w), 40 * i, np.uint8)).save(tmp_path / c / f"{i}.png")
    code, out, _ = run(capsys, "data", "inspect", str(tmp_path))
    text = " ".join(out.split())  # as one line, whatever the terminal width
    assert code == 0
    assert ("sizes (min / median / max): width 8 / 14 / 30, height 6 / 9.5 / 40 px, 5 distinct; "
            "images are resized to 32x32 RGB") in text


@pytest.mark.parametrize("classes", [{}, {"a": 3}, {"a": 0, "b": 0}, {"a": 3, "b": 1}],
                         ids=["empty", "one class", "no images", "too small to split"])
def test_inspect_exits_2_on_a_dataset_that_finetune_refuses(capsys, tmp_path, classes):
    for c, n in classes.items():
        (tmp_path / c).mkdir()
        for i in range(n):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / c / f"{i}.png")
    code, out, _ = run(capsys, "data", "inspect", str(tmp_path))
    assert code == 2 and "error" in out and "search and finetune refuse this dataset" in out
    code, out, _ = run(capsys, "data", "inspect", str(tmp_path), "--json")
    assert code == 2 and json.loads(out)["usable"] is False


@pytest.mark.parametrize(
    "args, message",
    [
        (("data", "prepare", "glyps-greek"), "Did you mean"),
        (("data", "prepare"), "at least one built-in task"),
        (("data", "prepare", "digits", "--format", "tiff"), "Unknown format 'tiff'"),
        (("data", "inspect", "/no/such/place"), "No such file or directory"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(capsys, tmp_path, args, message):
    code, out, err = run(capsys, *args, *(["--out", str(tmp_path)] if args[1] == "prepare" else []))
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_load_dataset_resolves_names_and_paths(tmp_path):
    from tans._errors import TansError
    from tans.data import load_dataset

    ds = load_dataset("digits-5-9")
    assert ds.num_classes == 5 and ds.family == "handwritten-digits"
    with pytest.raises(TansError, match="Did you mean 'digits-5-9'"):
        load_dataset("digit-5-9")
    with pytest.raises(TansError, match="No such file"):
        load_dataset(str(tmp_path / "missing.npz"))


def test_a_command_writes_its_cache_under_the_temporary_home_not_the_real_one(capsys, tmp_path):
    import time
    from pathlib import Path

    from tans.data.catalogue import get_task
    from tans.paths import cache_dir, tans_home

    real = Path.home() / ".cache" / "tans"
    assert not tans_home().resolve().is_relative_to(real.resolve())  # conftest's suite-wide home
    key = get_task("digits-5-9").cache_key()
    for old in cache_dir("builtin").glob(f"{key}.*"):
        old.unlink()  # so this run writes it again
    start = time.time()
    code, _, err = run(capsys, "data", "prepare", "digits-5-9", "--format", "npz", "--out", str(tmp_path))
    assert code == 0, err
    [written] = cache_dir("builtin").glob(f"{key}.*")
    twin = real / written.relative_to(tans_home())
    assert not twin.exists() or twin.stat().st_mtime < start
