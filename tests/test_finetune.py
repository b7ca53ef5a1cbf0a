"""Fine-tuning: zoo weights really used, a new head, from scratch, save/load, ONNX, curves, `tans finetune`."""

import json
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from tans._errors import TansError
from tans.cli.main import main
from tans.data import load_dataset
from tans.finetune import (
    export_onnx,
    finetune,
    finetune_and_scratch,
    finetune_recipe,
    load_finetuned,
)
from tans.finetune.finetune import DEFAULT_EPOCHS, head_parameter_names
from tans.training.loop import to_input
from tans.training.recipe import Recipe
from tans.zoo import Zoo
from tans.zoo.build import BuildConfig, build_zoo

TINY_BUILD = Recipe(epochs=1, warmup_epochs=0, max_train_images=64, max_eval_images=64)
TINY_FT = replace(finetune_recipe(1), max_train_images=48, max_eval_images=32)


@pytest.fixture(scope="module", autouse=True)
def _home(tmp_path_factory):
    """One isolated tans home for the module (conversion caches stay out of the user's home)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TANS_HOME", str(tmp_path_factory.mktemp("home")))
        torch.set_num_threads(1)
        yield


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    path = tmp_path_factory.mktemp("zoo") / "zoo"
    config = BuildConfig(tasks=("digits-0-4",), num_archs=2, archs_per_task=1, recipe=TINY_BUILD, latency_repeats=2)
    report = build_zoo(path, config, workers=1)
    assert not report.failed
    return Zoo.open(path)


@pytest.fixture(scope="module")
def entry(zoo):
    return zoo.entries()[0]


@pytest.fixture(scope="module")
def dataset():
    """Three classes of digits-5-9: a new task with a different number of classes than the zoo's (5)."""
    return load_dataset("digits-5-9").select_classes([0, 1, 2], name="digits-5-7")


@pytest.fixture(scope="module")
def compared(zoo, entry, dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return finetune_and_scratch(dataset, zoo=zoo, model_id=entry.id, recipe=TINY_FT, out_dir=out), out


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------ the API
def test_finetune_one_epoch_gives_a_full_result_and_a_new_head(zoo, entry, dataset):
    seen = []
    result = finetune(dataset, zoo=zoo, model_id=entry.id, recipe=TINY_FT, progress=seen.append)
    assert [(e.stage, e.done, e.total) for e in seen] == [("epoch", 1, 1)]
    assert result.epochs == tuple(e.extra["stats"] for e in seen)
    assert (result.model_id, result.arch, result.source_task) == (entry.id, entry.arch, "digits-0-4")
    assert not result.from_scratch and result.label == "fine-tuned"
    assert result.class_names == dataset.class_names and result.dataset == "digits-5-7"
    assert result.chance == pytest.approx(dataset.split("val").chance_accuracy)  # chance of what was evaluated
    assert result.wall_seconds >= result.train.wall_seconds > 0
    for acc, n in ((result.val_acc, result.train.val_images), (result.test_acc, result.train.test_images)):
        assert 0 < n <= 32 and acc * n == pytest.approx(round(acc * n))  # a share of the images evaluated
    assert result.paths == {} and result.train.train_images <= 48
    assert result.model.get_classifier().out_features == 3
    x = to_input(dataset.images[:2].repeat(4, 1).repeat(4, 2))  # 8x8 -> 32x32, enough for a shape check
    assert result.model(x).shape == (2, 3)
    row = result.to_dict()
    assert json.loads(json.dumps(row))["epochs"][0]["epoch"] == 0 and "model" not in row


def test_zoo_weights_are_loaded_and_only_the_head_is_new(zoo, entry):
    zoo_state = zoo.load_state_dict(entry.id)
    model = zoo.load_model(entry.id, num_classes=3)
    head = head_parameter_names(model)
    assert head == {"classifier.weight", "classifier.bias"}
    state = model.state_dict()
    for name, tensor in state.items():
        if name not in head:
            # reshape: the zoo stores 0-d tensors (num_batches_tracked) as shape (1,)
            assert torch.equal(tensor, zoo_state[name].reshape(tensor.shape)), name
    assert state["classifier.weight"].shape == (3, zoo_state["classifier.weight"].shape[1])


def test_training_starts_from_the_zoo_weights_and_from_scratch_does_not(zoo, entry, dataset):
    from tans.space.registry import create_model

    # a learning rate of 1e-9 moves no weight visibly: what comes out is what went in. Seed 1,
    # because the zoo entry was initialised with seed 0 and a 1-epoch zoo barely moved from there.
    frozen = replace(TINY_FT, lr=1e-9)
    zoo_params = zoo.load_state_dict(entry.id)
    tuned = finetune(dataset, zoo=zoo, model_id=entry.id, recipe=frozen, seed=1)
    scratch = finetune(dataset, zoo=zoo, model_id=entry.id, recipe=frozen, seed=1, from_scratch=True)
    assert scratch.from_scratch and scratch.arch == tuned.arch and scratch.label == "from scratch"
    tuned_params = dict(tuned.model.named_parameters())
    scratch_params = dict(scratch.model.named_parameters())
    body = [n for n in tuned_params if not n.startswith("classifier.")]
    for name in body:
        assert torch.allclose(tuned_params[name], zoo_params[name], atol=1e-6), name
    torch.manual_seed(1)
    fresh = dict(create_model(entry.arch, num_classes=entry.num_classes).named_parameters())
    convs = [n for n in body if tuned_params[n].ndim > 1]
    for name in convs:
        assert torch.allclose(scratch_params[name], fresh[name], atol=1e-6), name
        assert not torch.allclose(scratch_params[name], zoo_params[name], atol=1e-4), name
    # same seed, same new head: the comparison differs only in the body
    assert torch.allclose(tuned_params["classifier.weight"], scratch_params["classifier.weight"], atol=1e-6)


def test_model_argument_accepts_a_module_or_an_architecture_name(zoo, entry, dataset):
    from_name = finetune(dataset, model="mbv3_min", recipe=TINY_FT)
    assert from_name.from_scratch and from_name.arch == "mbv3_min" and from_name.model_id is None
    module = zoo.load_model(entry.id)
    from_module = finetune(dataset, model=module, recipe=TINY_FT)
    assert from_module.arch == entry.arch and not from_module.from_scratch
    assert from_module.model.get_classifier().out_features == 3


def test_comparison_writes_both_models_and_one_plot(compared, entry):
    comparison, out = compared
    assert not comparison.pretrained.from_scratch and comparison.scratch.from_scratch
    assert comparison.gain == pytest.approx(comparison.pretrained.test_acc - comparison.scratch.test_acc)
    assert comparison.epochs_to_match in (None, 1)
    assert (out / "model.safetensors").is_file() and (out / "scratch" / "model.safetensors").is_file()
    assert comparison.curves == str(out / "curves.png") == comparison.pretrained.paths["curves"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "scratch" / "curves.png").exists()
    meta = json.loads((out / "model.json").read_text())
    assert meta["arch"] == entry.arch and meta["model_id"] == entry.id and meta["class_names"] == ["5", "6", "7"]
    assert (meta["image_size"], meta["channels"], meta["mean"], meta["std"]) == (32, 3, 0.5, 0.25)
    assert meta["results"]["test_acc"] == comparison.pretrained.test_acc
    assert json.loads((out / "scratch" / "model.json").read_text())["from_scratch"] is True
    assert set(comparison.to_dict()) == {"pretrained", "scratch", "gain", "epochs_to_match", "curves"}


def test_save_load_round_trip_gives_identical_logits(compared, dataset):
    comparison, out = compared
    loaded = load_finetuned(out)
    assert loaded.meta.num_classes == 3 and loaded.meta.arch == comparison.pretrained.arch
    images = dataset.images[:6]  # 8x8 grey: predict() brings them to 32x32 RGB itself
    x = to_input(_resize(images))
    with torch.no_grad():
        expected = comparison.pretrained.model.eval()(x).numpy()
    np.testing.assert_array_equal(loaded.logits(images), expected)
    assert loaded.predict(images).shape == (6,)


def test_load_refuses_modified_or_missing_files(compared, tmp_path):
    _, out = compared
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("model.json", "model.safetensors"):
        (copy / name).write_bytes((out / name).read_bytes())
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(TansError, match="was modified"):
        load_finetuned(copy)
    (copy / "model.safetensors").unlink()
    with pytest.raises(TansError, match="weights .* are missing"):
        load_finetuned(copy)
    with pytest.raises(TansError, match="expected a fine-tuned model directory"):
        load_finetuned(tmp_path / "nothing")


def test_replacing_a_model_keeps_the_old_pair_until_the_new_one_is_complete(compared, tmp_path, monkeypatch):
    from tans.finetune import export

    comparison, _ = compared
    out = tmp_path / "ft"
    export.save_finetuned(comparison.pretrained, out)

    def crash(*args, **kwargs):
        raise RuntimeError("killed between the weights and model.json")

    monkeypatch.setattr(export, "dumps", crash)
    with pytest.raises(RuntimeError):
        export.save_finetuned(comparison.scratch, out)
    assert load_finetuned(out).meta.from_scratch is False  # before: new weights next to the old checksum
    assert [p.name for p in tmp_path.iterdir()] == ["ft"]


def test_onnx_export_matches_torch(compared, tmp_path):
    import onnx  # a test dependency: a missing one fails, not skips
    comparison, out = compared
    path = load_finetuned(out).export_onnx(tmp_path / "m.onnx")
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    model = comparison.pretrained.model.eval()
    x = torch.randn(3, 3, 32, 32)  # a batch size other than the one traced: the batch axis is dynamic
    with torch.no_grad():
        expected = model(x).numpy()
    try:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(["logits"], {"input": x.numpy()})[0]
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        got = ReferenceEvaluator(graph).run(["logits"], {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_bad_inputs_raise_one_line_errors(zoo, entry, dataset, tmp_path):
    with pytest.raises(TansError, match="at least 1 epoch, got 0"):
        finetune_recipe(0)
    assert finetune_recipe(None) == finetune_recipe() == finetune_recipe(DEFAULT_EPOCHS)  # the CLI passes None
    with pytest.raises(TansError, match="exactly one of model_id"):
        finetune(dataset, zoo=zoo, model_id=entry.id, model="mbv3_min")
    with pytest.raises(TansError, match="Did you mean"):
        finetune(dataset, zoo=zoo, model_id=entry.id[:-1] + "x", recipe=TINY_FT)
    with pytest.raises(TansError, match="expected a tans zoo"):
        finetune(dataset, zoo=tmp_path / "none", model_id="abc", recipe=TINY_FT)
    with pytest.raises(TansError, match="default zoo .* 'tans demo'"):
        finetune(dataset, model_id="abc", recipe=TINY_FT)  # $TANS_HOME is empty: no default zoo
    with pytest.raises(TansError, match="Unknown ONNX exporter 'tracing'"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx", exporter="tracing")


# ------------------------------------------------------------------------------- the command
def test_cli_json_writes_model_curves_and_onnx(capsys, zoo, entry, tmp_path):
    out = tmp_path / "cli"
    code, stdout, _ = run(capsys, "finetune", "digits-5-9", "--model", entry.id, "--zoo", zoo.path,
                          "--epochs", 1, "--out", out, "--onnx", "--json")
    assert code == 0
    report = json.loads(stdout)
    assert report["model_id"] == entry.id and report["source_task"] == "digits-0-4"
    assert len(report["epochs"]) == 1 and len(report["class_names"]) == 5
    assert report["chance"] == pytest.approx(0.2, abs=0.01)
    assert json.loads((out / "model.json").read_text())["results"]["test_acc"] == report["test_acc"]
    assert set(report["paths"]) == {"weights", "metadata", "curves", "onnx"}
    assert all((out / name).is_file() for name in ("model.safetensors", "model.json", "curves.png", "model.onnx"))


def test_cli_table_compares_with_scratch(capsys, zoo, entry, dataset, tmp_path):
    from tans.data.writers import write_dataset

    small = dataset.subset(np.arange(0, len(dataset), 6), name="small")  # ~90 images: seconds
    path = write_dataset(small, tmp_path / "small", format="npz") / "dataset.npz"
    out = tmp_path / "cmp"
    code, stdout, _ = run(capsys, "finetune", path, "--model", entry.id, "--zoo", zoo.path,
                          "--epochs", 2, "--out", out, "--scratch")
    assert code == 0
    assert "fine-tuned" in stdout and "from scratch" in stdout  # both runs' columns in the table
    assert "test accuracy" in stdout and f"vs chance {small.split('val').chance_accuracy:.1%}" in stdout and "gain from the pretrained start" in stdout
    assert str(out / "curves.png") in stdout.replace("\n", "")
    assert (out / "scratch" / "model.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--model", "nosuchid"), "no zoo entry with id 'nosuchid'"),
        (("--epochs", "0"), "at least 1 epoch, got 0"),
    ],
)
def test_cli_bad_inputs_exit_2_with_one_line(capsys, zoo, entry, args, message):
    argv = ["finetune", "digits-5-9", "--zoo", zoo.path, *args]
    if "--model" not in args:
        argv += ["--model", entry.id]
    code, stdout, err = run(capsys, *argv)
    assert code == 2 and stdout == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_onnx_export_without_the_onnx_package_names_the_extra(capsys, zoo, entry, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # as if tans were installed without tans[onnx]
    extra = "needs the 'onnx' package, which is not installed; run: pip install 'tans[onnx]'."
    with pytest.raises(TansError, match=re.escape(extra)):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx")
    out = tmp_path / "ft"
    for argv in (("finetune", "digits-5-9", "--model", entry.id, "--zoo", zoo.path, "--out", out, "--onnx"),
                 ("zoo", "export-onnx", entry.id, "--out", tmp_path / "x.onnx", "--zoo", zoo.path)):
        code, stdout, err = run(capsys, *argv)
        assert code == 2 and stdout == "" and extra in err and err.count("\n") == 1
    assert not out.exists() and not (tmp_path / "x.onnx").exists()  # refused before training or writing


def test_cli_refuses_classes_too_small_to_split_before_writing(capsys, zoo, entry, image_folder, tmp_path):
    data = image_folder({"cat": 2, "dog": 5})  # no validation or test image of 'cat': accuracy would be NaN
    out = tmp_path / "ft"
    code, stdout, err = run(capsys, "finetune", data, "--model", entry.id, "--zoo", zoo.path, "--epochs", 1,
                            "--out", out, "--json")
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert "class 'cat' has 2 images; every class needs at least 3" in err
    assert not out.exists()


@pytest.mark.parametrize("kind", ["file", "folder of other files"])
def test_cli_out_is_checked_before_training(capsys, zoo, entry, tmp_path, monkeypatch, kind):
    import sys

    module = sys.modules["tans.finetune.finetune"]  # the package's 'finetune' is the function

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking --out")

    monkeypatch.setattr(module, "train", no_training)
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("keep")
    else:
        out.mkdir()
        (out / "notes.txt").write_text("keep")
    code, stdout, err = run(capsys, "finetune", "digits-5-9", "--model", entry.id, "--zoo", zoo.path, "--out", out)
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert ("got a file" if kind == "file" else "holds 'notes.txt', which tans did not write") in err
    assert (out if kind == "file" else out / "notes.txt").read_text() == "keep"


def _no_constants(name):
    raise AssertionError(f"{name} is not JSON")


def test_nan_results_are_written_as_null(compared, tmp_path, capsys):
    from tans.cli._output import print_json
    from tans.finetune.export import save_finetuned

    result = replace(compared[0].pretrained, val_acc=float("nan"), test_acc=float("inf"))
    paths = save_finetuned(result, tmp_path / "nan")
    meta = json.loads((tmp_path / "nan" / "model.json").read_text(), parse_constant=_no_constants)
    assert paths["metadata"].endswith("model.json") and meta["results"]["val_acc"] is None
    print_json(result.to_dict())
    printed = json.loads(capsys.readouterr().out, parse_constant=_no_constants)
    assert printed["val_acc"] is None and printed["test_acc"] is None and printed["chance"] == result.chance


def test_cli_unknown_id_suggests_close_ids(capsys, zoo, entry):
    code, _, err = run(capsys, "finetune", "digits-5-9", "--zoo", zoo.path, "--model", entry.id[:-1] + "x")
    assert code == 2 and f"Did you mean '{entry.id}'" in err and err.count("\n") == 1


def test_cli_missing_zoo_says_how_to_create_one(capsys, tmp_path):
    code, _, err = run(capsys, "finetune", "digits-5-9", "--zoo", tmp_path / "none", "--model", "abc")
    assert code == 2 and "tans zoo build" in err and err.count("\n") == 1
    code, _, err = run(capsys, "finetune", "digits-5-9", "--model", "abc")  # default zoo, none there
    assert code == 2 and "tans demo" in err and err.count("\n") == 1


def _resize(images):
    from tans.data.transforms import resize_images

    return resize_images(images, 32, 3)
