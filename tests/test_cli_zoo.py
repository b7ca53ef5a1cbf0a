"""``tans zoo export-onnx`` and the screen-sized ``tans zoo list`` on the records zoo."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tans.cli.main import main
from tans.zoo import Zoo


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_onnx_of_a_zoo_entry_matches_torch(records_zoo, tmp_path, capsys):
    onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx package")
    zoo = Zoo.open(records_zoo)
    entry = zoo.entries()[0]
    out = tmp_path / "onnx" / "entry.onnx"
    code, stdout, err = run(capsys, "zoo", "export-onnx", entry.id, "--out", out, "--zoo", records_zoo, "--json")
    assert code == 0, err
    assert json.loads(stdout) == {"id": entry.id, "onnx": str(out), "input_size": 32, "mean": 0.5, "std": 0.25}
    graph = onnx.load(str(out))
    onnx.checker.check_model(graph)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = zoo.load_model(entry.id).eval()(x).numpy()
    from onnx.reference import ReferenceEvaluator

    got = ReferenceEvaluator(graph).run(["logits"], {"input": x.numpy()})[0]
    assert got.shape == (3, entry.num_classes)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_export_onnx_unknown_id_is_one_line(records_zoo, tmp_path, capsys):
    some_id = Zoo.open(records_zoo).ids()[0]
    code, _, err = run(capsys, "zoo", "export-onnx", some_id[:-1] + "x", "--out", tmp_path / "x.onnx",
                       "--zoo", records_zoo)
    assert code == 2 and f"Did you mean '{some_id}'" in err and err.count("\n") == 1
    assert not (tmp_path / "x.onnx").exists()
