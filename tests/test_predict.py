"""``tans predict`` and :func:`tans.finetune.predict.predict_files` on a model fine-tuned from the records zoo."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from tans._errors import TansError, TansWarning
from tans.cli.main import main
from tans.data.images import read_image
from tans.finetune import finetune, finetune_recipe, load_finetuned
from tans.finetune.predict import predict_files
from tans.zoo import Zoo


@pytest.fixture(scope="module")
def model_dir(records_zoo, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("predict") / "model"
    recipe = replace(finetune_recipe(1), max_train_images=48, max_eval_images=32)
    finetune("digits-5-9", zoo=records_zoo, model_id=Zoo.open(records_zoo).ids()[0], recipe=recipe, out_dir=out)
    return out


@pytest.fixture
def images(tmp_path, png):
    """A folder of 3 readable images (sizes and modes differ, one in a sub-folder), one bad file, and one loose image."""
    root = tmp_path / "imgs"
    png(root / "a.png", size=(8, 6), seed=1)
    png(root / "b.png", size=(40, 40), mode="L", seed=2)
    png(root / "sub" / "c.png", size=(32, 32), mode="RGBA", seed=3)
    (root / "broken.png").write_bytes(b"")
    loose = png(tmp_path / "loose.png", size=(16, 16), seed=4)
    return root, loose


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_files_matches_the_model_and_skips_bad_files(model_dir, images):
    root, loose = images
    model = load_finetuned(model_dir)
    seen = []
    with pytest.warns(TansWarning, match="Skipped 1 unreadable file .* 1 zero-byte"):
        found = predict_files(model, [root, loose], batch_size=2, progress=lambda event: seen.append((event.stage, event.done, event.total)))
    assert [p.path for p in found] == [str(root / "a.png"), str(root / "b.png"), str(root / "sub" / "c.png"), str(loose)]
    assert seen == [("predict", 2, 5), ("predict", 4, 5), ("predict", 5, 5)]
    for p in found:
        logits = model.logits(read_image(p.path)[None])[0]
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert p.index == int(logits.argmax()) and p.label == model.meta.class_names[p.index]
        assert p.probability == pytest.approx(float(probs.max()), abs=1e-5)


def test_predict_errors(model_dir, tmp_path, png):
    with pytest.raises(TansError, match="No such file or directory"):
        predict_files(model_dir, [tmp_path / "none.png"])
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(TansError, match="none of the 1 file.* is a readable image"), pytest.warns(TansWarning):
        predict_files(model_dir, [tmp_path / "notes.txt"])
    with pytest.raises(TansError, match="batch_size must be a positive integer"):
        predict_files(model_dir, [tmp_path], batch_size=0)


def test_cli_json_csv_and_table(model_dir, images, capsys, tmp_path):
    root, loose = images
    code, out, err = run(capsys, "predict", model_dir, root, loose, "--json")
    assert code == 0 and err.count("warning: Skipped 1 unreadable file") == 1
    rows = json.loads(out)
    classes = set(load_finetuned(model_dir).meta.class_names)
    assert len(rows) == 4 and all(r["label"] in classes and 0 < r["probability"] <= 1 for r in rows)

    path = tmp_path / "out.csv"
    code, out, _ = run(capsys, "predict", model_dir, root, "--csv", path)
    assert code == 0 and "wrote 3 predictions" in out
    with open(path, newline="") as f:
        read = list(csv.DictReader(f))
    assert [r["path"] for r in read] == [r["path"] for r in rows[:3]]
    assert [float(r["probability"]) for r in read] == pytest.approx([r["probability"] for r in rows[:3]])

    code, out, _ = run(capsys, "predict", model_dir, loose)
    assert code == 0 and "loose.png" in out and rows[-1]["label"] in out


@pytest.mark.parametrize("args, message", [
    (["--json", "--csv", "x.csv"], "--json or --csv"),
    (["--batch-size", "0"], "batch_size must be a positive integer"),
])
def test_cli_bad_options_one_line(model_dir, images, capsys, args, message):
    code, out, err = run(capsys, "predict", model_dir, images[1], *args)
    assert code == 2 and out == "" and err.startswith("error: ") and message in err and err.count("\n") == 1


def test_cli_not_a_model_dir(images, capsys, tmp_path):
    code, _, err = run(capsys, "predict", tmp_path, images[1])
    assert code == 2 and "expected a fine-tuned model directory" in err and err.count("\n") == 1
