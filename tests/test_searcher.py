"""The searcher end to end on a tiny zoo: fit, save/load, search under constraints, verify."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from tans._errors import TansError
from tans.data import load_dataset
from tans.index import Constraints
from tans.searcher import Searcher, make_extractor, query_sample, split_tasks
from tans.searcher.artifact import CONFIG_NAME
from tans.searcher.encoders import ARCH_FEATURES, model_inputs
from tans.training import Recipe
from tans.zoo import Zoo
from tans.zoo.build import BuildConfig, build_zoo

TASKS = ("digits-0-4", "digits-5-9", "glyphs-greek-upper", "glyphs-latin-upper")


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("zoo")
    recipe = Recipe(epochs=1, warmup_epochs=0, max_train_images=64, max_eval_images=64)
    config = BuildConfig(tasks=TASKS, num_archs=3, archs_per_task=2, recipe=recipe, latency_repeats=2)
    report = build_zoo(path, config, workers=1)
    assert not report.failed
    return path


@pytest.fixture(scope="module")
def fitted(zoo_dir):
    searcher = Searcher(epochs=2, steps_per_epoch=4, extractor_epochs=1, per_class=5, pool_per_class=10, val_fraction=0.25)
    return searcher.fit(zoo_dir)


@pytest.fixture(scope="module")
def query():
    return load_dataset("digits-5-9")


def test_fit_learns_state_and_history(fitted):
    assert fitted.net_ is not None and len(fitted.result_.history) == 2
    assert len(fitted.val_tasks_) == 1 and len(fitted.train_tasks_) == 3
    assert set(fitted.val_tasks_).isdisjoint(fitted.train_tasks_)
    log = fitted.result_.history[0]
    assert set(log.recall) == {1, 5, 10} and all(0 <= v <= 1 for v in log.recall.values())
    assert 1 <= fitted.result_.best_epoch <= 2


def test_meta_training_stops_early_without_a_better_score(zoo_dir):
    searcher = Searcher(
        epochs=6, patience=1, steps_per_epoch=2, lr=1e-9, extractor_epochs=1, per_class=5, pool_per_class=10, val_fraction=0.25
    ).fit(zoo_dir)
    result = searcher.result_
    # at lr 1e-9 the score cannot improve, so the first epoch stays best and the second ends training
    assert result.stopped_early and len(result.history) == 2 and result.best_epoch == 1


def test_unfitted_searcher_refuses(zoo_dir, query):
    with pytest.raises(TansError, match="not fitted"):
        Searcher().search(query, zoo=zoo_dir)


def test_fit_needs_two_tasks(tmp_path, zoo_dir):
    small = Zoo.create(tmp_path / "one")
    source = Zoo.open(zoo_dir)
    entry = source.entries(task="digits-0-4")[0]
    small.add(entry, source.load_state_dict(entry.id))
    with pytest.raises(TansError, match="at least 2 tasks"):
        Searcher(epochs=1).fit(small)


def test_split_tasks_is_seeded_and_disjoint():
    names = [f"t{i}" for i in range(10)]
    train, val = split_tasks(names, 0.2, seed=3)
    assert len(val) == 2 and set(train) | set(val) == set(names) and not set(train) & set(val)
    assert split_tasks(names, 0.2, seed=3) == (train, val)
    with pytest.raises(TansError, match="leaves none"):
        split_tasks(["a"], 0.5)


def test_save_load_round_trip(fitted, zoo_dir, query, tmp_path):
    path = fitted.save(tmp_path / "s")
    loaded = Searcher.load(path)
    assert loaded.get_params() == fitted.get_params()
    np.testing.assert_allclose(loaded.embed_dataset(query), fitted.embed_dataset(query), atol=1e-6)
    a = fitted.search(query, zoo=zoo_dir, top_k=3)
    b = loaded.search(query, zoo=zoo_dir, top_k=3)
    assert a.ids == b.ids
    assert loaded.result_.best_epoch == fitted.result_.best_epoch


def test_load_refuses_other_version_and_tampered_weights(fitted, tmp_path):
    path = fitted.save(tmp_path / "s")
    config = json.loads((path / CONFIG_NAME).read_text())
    config["format_version"] = 999
    (path / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(TansError, match="format version 999"):
        Searcher.load(path)
    path = fitted.save(tmp_path / "t")
    weights = path / "searcher.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(TansError, match="were modified"):
        Searcher.load(path)
    with pytest.raises(TansError, match="No searcher at"):
        Searcher.load(tmp_path / "missing")


def test_query_embedding_is_order_invariant(fitted, query):
    sample = query_sample(query, per_class=5, seed=0)
    feats = torch.from_numpy(fitted.extractor_(sample.images))
    perm = torch.randperm(len(feats), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = fitted.net_.query(feats[None])
        b = fitted.net_.query(feats[perm][None])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert torch.linalg.norm(a).item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("set_encoder", ["attention", "mean"])
def test_set_encoders_fit(zoo_dir, set_encoder):
    searcher = Searcher(
        set_encoder=set_encoder, epochs=1, steps_per_epoch=1, extractor_epochs=1, per_class=2, pool_per_class=4,
        loss="margin", use_functional=False, val_fraction=0.25,
    ).fit(zoo_dir)
    assert searcher.net_.model.functional_map is None


def test_model_inputs_mask_timm_flag(zoo_dir):
    entry = Zoo.open(zoo_dir).entries()[0]
    timm_entry = replace(entry, arch="timm/resnet18")
    arch, functional = model_inputs([entry, timm_entry])
    assert arch.shape == (2, ARCH_FEATURES) and functional.shape == (2, 2048)
    assert arch[0, -1] == 0 and arch[1, -1] == 1 and arch[1, :-1].sum() == 0
    np.testing.assert_allclose(np.linalg.norm(functional[0].reshape(16, 128), axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "field,bound_of",
    [("max_params", lambda v: int(np.median(v))), ("max_flops", lambda v: int(np.median(v))),
     ("max_latency_ms", lambda v: float(np.median(v)))],
)
def test_search_respects_each_constraint(fitted, zoo_dir, query, field, bound_of):
    column = {"max_params": "params", "max_flops": "flops", "max_latency_ms": "latency_ms"}[field]
    values = [getattr(e, column) for e in Zoo.open(zoo_dir).entries()]
    bound = bound_of(values)
    result = fitted.search(query, zoo=zoo_dir, constraints=Constraints(**{field: bound}), top_k=10)
    assert result.rows, "some model fits the median budget"
    assert all(getattr(r, column) <= bound for r in result.rows)
    assert len(result.rows) == sum(v <= bound for v in values)  # every allowed model, none other


def test_impossible_budget_names_smallest(fitted, zoo_dir, query):
    smallest = min(e.params for e in Zoo.open(zoo_dir).entries())
    with pytest.raises(TansError, match=f"the smallest has {smallest:,}"):
        fitted.search(query, zoo=zoo_dir, constraints=Constraints(max_params=10))


def test_rows_are_ranked_by_predicted_accuracy(fitted, zoo_dir, query):
    result = fitted.search(query, zoo=zoo_dir, top_k=8)
    predicted = [r.predicted_acc for r in result.rows]
    assert predicted == sorted(predicted, reverse=True)
    assert [r.rank for r in result.rows] == list(range(1, len(result.rows) + 1))
    assert result.zoo_size == 8 and result.seconds["total"] > 0
    with pytest.raises(TansError, match="top_k must be a positive integer"):
        fitted.search(query, zoo=zoo_dir, top_k=0)


def test_entries_added_after_fit_are_searchable(fitted, zoo_dir, query, tmp_path):
    path = shutil.copytree(zoo_dir, tmp_path / "zoo")
    zoo = Zoo.open(path)
    before = fitted.search(query, zoo=zoo, top_k=20)
    template = zoo.entries()[0]
    new = replace(template, id="added-after-fit", params=1, weights_file="", sha256="", created="")
    zoo.add(new, zoo.load_state_dict(template.id))
    after = fitted.search(query, zoo=zoo, top_k=20)
    assert "added-after-fit" not in before.ids and "added-after-fit" in after.ids
    only = fitted.search(query, zoo=zoo, constraints=Constraints(max_params=1))
    assert only.ids == ["added-after-fit"]


def test_verify_adds_logme(fitted, zoo_dir, query):
    result = fitted.search(query, zoo=zoo_dir, top_k=3, shortlist=4, verify=True, verify_per_class=5)
    assert result.verified and result.shortlist == 4 and len(result.rows) == 3
    assert all(r.logme is not None and np.isfinite(r.logme) for r in result.rows)
    assert "verify" in result.seconds
    plain = fitted.search(query, zoo=zoo_dir, top_k=3)
    assert all(r.logme is None for r in plain.rows)


def test_extractor_errors():
    with pytest.raises(TansError, match="Unknown feature extractor 'resnet'"):
        make_extractor("resnet")
    with pytest.raises(TansError, match="Unknown timm model"):
        make_extractor("timm/not_a_model_xyz")


def test_timm_extractor_without_local_weights_says_so(monkeypatch):
    # Simulate what create_model raises when the weights are neither cached nor downloadable
    # (asking the real hub here would wait on network timeouts).
    import tans.space.registry as registry

    def no_weights(name, **kwargs):
        raise TansError(f"Could not load pretrained weights for '{name}' (LocalEntryNotFoundError)")

    monkeypatch.setattr(registry, "create_model", no_weights)
    with pytest.raises(TansError, match="needs timm's pretrained weights.*'tans-default'"):
        make_extractor("timm/resnet18")
