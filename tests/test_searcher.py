"""The searcher end to end on the tiny records zoo: fit on transfer records, save/load, two-stage search."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from tans._errors import TansError
from tans.data import load_dataset
from tans.data.catalogue import get_task
from tans.data.dataset import Dataset
from tans.zoo.constraints import Constraints
from tans.searcher import Searcher, list_set_encoders, make_extractor, query_sample
from tans.searcher.artifact import CONFIG_NAME, WEIGHTS_NAME
from tans.searcher.track_record import TARGET_TEMPERATURE, Standings, TrackRecordBlend, track_record
from tans.zoo import Zoo
from tans.zoo.records import TaskRef

torch.set_num_threads(1)

NOISE_CLASSES = 4


@pytest.fixture(scope="module")
def zoo(records_zoo):
    return Zoo.open(records_zoo)


@pytest.fixture(scope="module")
def searcher(fitted_searcher):
    return fitted_searcher


@pytest.fixture(scope="module")
def query():
    """A task of a zoo family that is neither a source task nor a record target."""
    return load_dataset("mnist-even")


@pytest.fixture(scope="module")
def noise():
    """Uniform random images with random (balanced) labels: nothing about them predicts the label."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40 * NOISE_CLASSES, 32, 32, 3), dtype=np.uint8)
    labels = rng.permutation(np.repeat(np.arange(NOISE_CLASSES), 40))
    return Dataset(images, labels, tuple("abcd"), name="noise", family="noise")


def tiny(records_configs, **changes) -> Searcher:
    return Searcher(**{**records_configs.searcher, **changes})


def lifts(searcher: Searcher, dataset: Dataset, zoo: Zoo) -> np.ndarray:
    chance = 1 / dataset.num_classes
    return (searcher.predict_entries(dataset, zoo.entries(), zoo=zoo)[0] - chance) / (1 - chance)


# ---------------------------------------------------------------------------------------- fit
def test_fit_learns_from_the_records_with_whole_families_held_out(searcher, zoo):
    assert searcher.records_ == {"records": 16, "targets": 4, "models": 4, "recipe": searcher.records_["recipe"],
                                 "excluded_families": []}
    assert json.loads(searcher.records_["recipe"])["max_train_images"] == 32  # the records' recipe
    result = searcher.result_
    train = {get_task(n).family for n in result.train_targets}
    val = {get_task(n).family for n in result.val_targets}
    assert len(result.train_targets) == len(result.val_targets) == 2 and len(train) == len(val) == 1 and train != val
    assert len(result.history) == 2 and 1 <= result.best_epoch <= 2
    assert searcher.combiner_ is not None and searcher.combiner_.scores == ("logme", "ncm")
    assert set(searcher.source_embeddings_) == {e.task_fingerprint for e in zoo.entries()}


def test_fit_without_records_says_to_run_tans_zoo_transfer(zoo_copy, records_configs):
    bare = zoo_copy(records=False)
    with pytest.raises(TansError, match="no transfer records.*tans zoo transfer") as info:
        tiny(records_configs).fit(bare)
    assert "\n" not in str(info.value)


def test_exclude_families_drops_their_records(records_zoo, records_configs, zoo):
    searcher = tiny(records_configs, epochs=1).fit(records_zoo, exclude_families=["glyphs-european"])
    digits = [r for r in zoo.transfers() if r.target_family == "handwritten-digits"]
    assert searcher.records_["excluded_families"] == ["glyphs-european"]
    assert searcher.records_["records"] == len(digits) == 8 and searcher.records_["targets"] == 2
    seen = searcher.result_.train_targets + searcher.result_.val_targets
    assert sorted(seen) == ["mnist-0-4", "mnist-5-9"]
    # one family left: nothing to validate on, so no stage-2 combiner and a stage-1-only search
    assert searcher.result_.val_targets == [] and searcher.combiner_ is None
    assert searcher.search("mnist-even", zoo=zoo, top_k=2).probed == 0
    with pytest.raises(TansError, match="no transfer records outside the excluded families"):
        tiny(records_configs).fit(records_zoo, exclude_families=["glyphs-european", "handwritten-digits"])


def test_meta_training_stops_early_without_a_better_score(records_zoo, records_configs):
    searcher = tiny(records_configs, epochs=6, patience=1, steps_per_epoch=2, lr=1e-9, probe_k=0).fit(records_zoo)
    result = searcher.result_
    # at lr 1e-9 the validation tau cannot improve: the first epoch stays best and the second ends training
    assert result.stopped_early and len(result.history) == 2 and result.best_epoch == 1
    assert searcher.combiner_ is None  # probe_k=0: no stage 2


@pytest.mark.parametrize(
    "change",
    [{"set_encoder": name} for name in list_set_encoders()]
    + [{"use_functional": True}, {"use_source": False}, {"rank_within_budgets": False}, {"use_track_record": False}],
    ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()),
)
def test_every_encoder_setting_fits_and_searches(records_zoo, records_configs, zoo, query, change):
    searcher = tiny(records_configs, epochs=1, steps_per_epoch=1, probe_k=0, **change).fit(records_zoo)
    assert (searcher.net_.model.functional_map is not None) == searcher.use_functional
    assert (searcher.net_.model.source_map is not None) == searcher.use_source
    assert (searcher.stage1_blend_ is not None) == (searcher.track_record_ is not None) == searcher.use_track_record
    result = searcher.search(query, zoo=zoo, top_k=3)
    assert len(result.rows) == 3 and result.probed == 0
    assert all(0.2 <= r.predicted_acc <= 1 for r in result.rows)


def test_unfitted_searcher_refuses(zoo, query):
    with pytest.raises(TansError, match="not fitted"):
        Searcher().search(query, zoo=zoo)


# ----------------------------------------------------------------------------- persistence
def test_save_load_round_trip_gives_identical_searches(searcher, zoo, query, tmp_path):
    loaded = Searcher.load(searcher.save(tmp_path / "s"))
    assert loaded.get_params() == searcher.get_params()
    assert loaded.records_ == searcher.records_ and loaded.result_.best_epoch == searcher.result_.best_epoch
    assert loaded.combiner_.to_dict() == searcher.combiner_.to_dict()
    assert loaded.stage1_blend_.to_dict() == searcher.stage1_blend_.to_dict()
    assert loaded.track_record_.model_ids == searcher.track_record_.model_ids
    np.testing.assert_array_equal(loaded.track_record_.z, searcher.track_record_.z)
    np.testing.assert_allclose(loaded.embed_dataset(query), searcher.embed_dataset(query), atol=1e-6)
    for fast in (False, True):
        a = searcher.search(query, zoo=zoo, top_k=5, fast=fast)
        b = loaded.search(query, zoo=zoo, top_k=5, fast=fast)
        assert a.ids == b.ids and a.probed == b.probed
        np.testing.assert_allclose([r.predicted_acc for r in b.rows], [r.predicted_acc for r in a.rows], atol=1e-6)
        assert [r.logme for r in b.rows] == pytest.approx([r.logme for r in a.rows])


def test_an_artifact_from_before_rank_within_budgets_says_it_ranked_every_candidate(searcher, tmp_path):
    path = searcher.save(tmp_path / "old")
    config_file = path / "searcher.json"
    config = json.loads(config_file.read_text())
    del config["params"]["rank_within_budgets"]
    config_file.write_text(json.dumps(config))
    assert searcher.rank_within_budgets and not Searcher.load(path).rank_within_budgets


def test_an_artifact_from_before_track_records_ranks_by_the_predictor_alone(searcher, zoo, query, tmp_path):
    path = searcher.save(tmp_path / "old")
    config_file = path / "searcher.json"
    config = json.loads(config_file.read_text())
    del config["params"]["use_track_record"], config["track_record"]
    config_file.write_text(json.dumps(config))
    old = Searcher.load(path)
    assert not old.use_track_record and old.stage1_blend_ is None and old.track_record_ is None
    entries = zoo.entries()
    alone = old.predict(old.embed_dataset(query), old.embed_entries(entries, zoo), chance=1 / query.num_classes)
    np.testing.assert_allclose(old.predict_entries(query, entries, zoo=zoo)[0], alone, atol=1e-6)


def test_save_load_through_a_url(searcher, query, memory_url, tmp_path):
    from tans.searcher.artifact import is_artifact

    url = f"{memory_url}/searcher"
    assert not is_artifact(url) and searcher.save(url) == url and is_artifact(url)
    loaded = Searcher.load(url)
    np.testing.assert_allclose(loaded.embed_dataset(query), searcher.embed_dataset(query), atol=1e-6)
    assert Searcher.load(f"file://{searcher.save(tmp_path / 's')}").get_params() == searcher.get_params()
    with pytest.raises(TansError, match="No searcher at 'memory://"):
        Searcher.load(f"{memory_url}/missing")


def test_load_refuses_other_version_and_tampered_weights(searcher, tmp_path):
    path = searcher.save(tmp_path / "s")
    config = json.loads((path / CONFIG_NAME).read_text())
    config["format_version"] = 999
    (path / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(TansError, match="format version 999"):
        Searcher.load(path)
    path = searcher.save(tmp_path / "t")
    weights = path / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(TansError, match="were modified"):
        Searcher.load(path)
    with pytest.raises(TansError, match="No searcher at"):
        Searcher.load(tmp_path / "missing")


# ---------------------------------------------------------------------------------- stage 1
def test_query_embedding_is_order_invariant(searcher, query):
    sample = query_sample(query, per_class=5, seed=0)
    feats = torch.from_numpy(searcher.extractor_(sample.images))
    perm = torch.randperm(len(feats), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = searcher.net_.query(feats[None])
        b = searcher.net_.query(feats[perm][None])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert torch.linalg.norm(a).item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("set_encoder", list_set_encoders())
def test_stage_one_reads_the_query(records_zoo, records_configs, zoo, query, noise, set_encoder):
    # Accuracy lifts over chance (so the class counts do not matter) of the same models differ
    # between datasets: a searcher that ignored its query would predict the same for every dataset.
    # 50 steps on both families. Measured: cosines of the query embeddings 0.81-0.88 (attention) and
    # 0.62-0.78 (mean pooling); before the features were standardised, attention gave 1.0000.
    searcher = tiny(records_configs, set_encoder=set_encoder, epochs=5, steps_per_epoch=10, val_fraction=0.0,
                    probe_k=0).fit(records_zoo)
    glyphs = load_dataset("glyphs-greek-lower-p2")
    mine = lifts(searcher, query, zoo)
    for other in (glyphs, noise):
        gap = np.abs(mine - lifts(searcher, other, zoo)).max()
        cosine = float(searcher.embed_dataset(query) @ searcher.embed_dataset(other))
        assert gap > 2e-4, f"{other.name}: stage-1 lifts differ by at most {gap:.2g}"
        assert cosine < 0.95, f"{other.name}: query embeddings nearly equal (cosine {cosine:.4f})"


@pytest.mark.parametrize(
    "field,column",
    [("max_params", "params"), ("max_flops", "flops"), ("max_latency_ms", "latency_ms")],
)
def test_search_respects_each_constraint(searcher, zoo, query, field, column):
    values = [getattr(e, column) for e in zoo.entries()]
    bound = type(values[0])(np.median(values))
    result = searcher.search(query, zoo=zoo, constraints=Constraints(**{field: bound}), top_k=10)
    assert result.rows, "some model fits the median budget"
    assert all(getattr(r, column) <= bound for r in result.rows)
    assert len(result.rows) == result.candidates == sum(v <= bound for v in values)  # every allowed model, none other
    same = searcher.search(query, zoo=zoo, top_k=10, **{field: bound})  # the budget as keywords
    assert same.ids == result.ids
    with pytest.raises(TansError, match="not both"):
        searcher.search(query, zoo=zoo, constraints=Constraints(**{field: bound}), **{field: bound})


def test_impossible_budget_names_smallest(searcher, zoo, query):
    smallest = min(e.params for e in zoo.entries())
    with pytest.raises(TansError, match=f"the smallest has {smallest:,}"):
        searcher.search(query, zoo=zoo, max_params=10)


def test_entries_added_after_fit_are_searchable(searcher, zoo_copy, query, tmp_path):
    zoo = zoo_copy()
    fresh = Searcher.load(searcher.save(tmp_path / "s"))  # a private searcher: this test grows its sources
    before = fresh.search(query, zoo=zoo, top_k=20, fast=True)
    template = zoo.entries(family="handwritten-digits")[0]
    # the same network under a new id and a tiny parameter count
    small = replace(template, id="added-after-fit", params=1, weights_file="", sha256="", created="")
    zoo.add(small, zoo.load_state_dict(template.id))
    # the same network again, as if trained on a task no zoo model was trained on
    task = load_dataset("mnist-odd")
    assert task.num_classes == template.num_classes and task.fingerprint not in fresh.source_embeddings_
    zoo.register_task(TaskRef.from_dataset(task))
    moved = replace(template, id="new-source", task=task.name, task_fingerprint=task.fingerprint,
                    task_family=task.family, weights_file="", sha256="", created="")
    zoo.add(moved, zoo.load_state_dict(template.id))

    after = fresh.search(query, zoo=zoo, top_k=20, fast=True)
    assert {"added-after-fit", "new-source"}.isdisjoint(before.ids)
    assert {"added-after-fit", "new-source"} <= set(after.ids) and after.zoo_size == before.zoo_size + 2
    assert fresh.search(query, zoo=zoo, max_params=1).ids == ["added-after-fit"]  # default search, stage 2 too
    # The new source task was loaded through the zoo and embedded: the network's embedding reads it.
    assert task.fingerprint in fresh.source_embeddings_
    a, b = fresh.embed_entries([template, moved], zoo)
    assert np.abs(a - b).max() > 1e-6
    other = Searcher.load(searcher.save(tmp_path / "t"))
    with pytest.raises(TansError, match="'mnist-odd' is new to this searcher; pass its zoo"):
        other.embed_entries([moved])


# ---------------------------------------------------------------------------------- stage 2
def test_stage_two_runs_by_default_and_fast_skips_it(searcher, zoo, query):
    full = searcher.search(query, zoo=zoo, top_k=8)
    assert full.probed == min(searcher.probe_k, len(zoo)) > 0 and "probe" in full.seconds
    for row in full.rows[: full.probed]:
        assert row.logme is not None and np.isfinite(row.logme) and 0 <= row.ncm <= 1
    fast = searcher.search(query, zoo=zoo, top_k=8, fast=True)
    assert fast.probed == 0 and "probe" not in fast.seconds
    assert all(r.logme is None and r.ncm is None and r.predicted_acc == r.stage1_acc for r in fast.rows)
    # stage 2 re-scores stage 1's candidates; stage 1 itself is the same
    assert {r.id: r.stage1_acc for r in full.rows} == pytest.approx({r.id: r.stage1_acc for r in fast.rows})


def test_rows_are_ranked_by_predicted_accuracy_within_each_block(searcher, zoo, query):
    result = searcher.search(query, zoo=zoo, top_k=8, probe_k=3)
    assert result.probed == 3 and [r.rank for r in result.rows] == list(range(1, 9))
    probed, rest = result.rows[:3], result.rows[3:]
    assert all(r.logme is not None for r in probed) and all(r.logme is None for r in rest)
    predicted = [r.predicted_acc for r in probed]
    assert predicted == sorted(predicted, reverse=True)
    # the models stage 2 did not probe follow in stage-1 order, with stage 1's prediction
    assert all(r.predicted_acc == r.stage1_acc for r in rest)
    assert [r.stage1_acc for r in rest] == sorted((r.stage1_acc for r in rest), reverse=True)
    assert min(r.stage1_acc for r in probed) >= max(r.stage1_acc for r in rest)  # stage 2 probed stage 1's best
    fast = [r.predicted_acc for r in searcher.search(query, zoo=zoo, top_k=8, fast=True).rows]
    assert fast == sorted(fast, reverse=True)
    for name in ("top_k", "probe_k", "shortlist"):
        with pytest.raises(TansError, match=f"{name} must be a positive integer"):
            searcher.search(query, zoo=zoo, **{name: 0})


def test_fit_reads_the_track_records_of_the_recorded_models(searcher, zoo):
    recorded = {r.model_id for r in zoo.transfers()}
    assert searcher.stage1_blend_ is not None and searcher.stage1_blend_.rows > 0
    assert searcher.stage1_blend_.temperature == TARGET_TEMPERATURE
    assert searcher.track_record_.model_ids == [e.id for e in zoo.entries()]
    assert 0 < len(searcher.track_record_.z) <= len({r.target for r in zoo.transfers()})
    assert set(searcher.track_record_.recorded()) <= recorded


def test_an_artifact_from_before_target_weights_reads_one_standing_per_model(searcher, zoo, query, tmp_path):
    path = searcher.save(tmp_path / "old")
    config_file = path / "searcher.json"
    config = json.loads(config_file.read_text())
    uniform = track_record(searcher.track_record_.z)  # what such a searcher stored: every target counted once
    config["track_record"]["models"] = dict(zip(searcher.track_record_.model_ids, uniform.tolist()))
    del config["track_record"]["blend"]["temperature"]
    config_file.write_text(json.dumps(config))
    old = Searcher.load(path)  # its tensors still hold the standings; the JSON says which form to read
    assert math.isinf(old.stage1_blend_.temperature) and len(old.track_record_.z) == 1
    entries = zoo.entries()
    equal = copy.copy(searcher)
    equal._cache = {}
    equal.stage1_blend_ = TrackRecordBlend.from_dict({**searcher.stage1_blend_.to_dict(), "temperature": None})
    np.testing.assert_allclose(old.predict_entries(query, entries, zoo=zoo)[1], equal.predict_entries(query, entries, zoo=zoo)[1],
                               atol=1e-6)


def test_a_better_track_record_moves_a_model_up_stage_one(searcher, zoo, query):
    last = searcher.search(query, zoo=zoo, top_k=len(zoo), fast=True).rows[-1].id
    boosted = copy.copy(searcher)
    boosted._cache = {}
    boosted.stage1_blend_ = TrackRecordBlend(weight=1e4, scale=1.0)  # the record outweighs any prediction
    z = np.where(np.isnan(searcher.track_record_.z), np.nan, 0.0)
    z[:, searcher.track_record_.model_ids.index(last)] = 1.0  # above every other model on every target
    boosted.track_record_ = Standings(searcher.track_record_.model_ids, z)
    result = boosted.search(query, zoo=zoo, top_k=3, fast=True)
    assert result.best.id == last and result.best.stage1_acc == pytest.approx(1.0)  # clipped at a perfect score
    assert searcher.search(query, zoo=zoo, top_k=1, fast=True).best.id != last  # the shared searcher is untouched


@pytest.mark.parametrize("fast", [False, True], ids=["default", "fast"])
@pytest.mark.parametrize("dataset", ["query", "noise"])
def test_predicted_accuracy_lies_between_chance_and_one(searcher, zoo, request, dataset, fast):
    data = request.getfixturevalue(dataset)
    chance = 1 / data.num_classes
    for row in searcher.search(data, zoo=zoo, top_k=8, fast=fast).rows:
        assert chance <= row.predicted_acc <= 1 and chance <= row.stage1_acc <= 1


def test_noise_images_are_predicted_near_chance(searcher, zoo, noise):
    result = searcher.search(noise, zoo=zoo, top_k=3)
    assert result.probed > 0
    assert result.best.predicted_acc <= 1 / NOISE_CLASSES + 0.15, [vars(r) for r in result.rows]


def test_predict_entries_with_probes_matches_the_search(searcher, zoo, query):
    # Probing every entry, the search and predict_entries fuse the same scores of the same models.
    entries = zoo.entries()
    result = searcher.search(query, zoo=zoo, top_k=len(entries), probe_k=len(entries))
    fused = dict(zip([e.id for e in entries], searcher.predict_entries(query, entries, zoo=zoo, probe=True)[0]))
    assert result.probed == len(entries)
    assert {r.id: r.predicted_acc for r in result.rows} == pytest.approx(fused, abs=1e-6)
    stage1 = dict(zip([e.id for e in entries], searcher.predict_entries(query, entries, zoo=zoo)[0]))
    assert {r.id: r.stage1_acc for r in result.rows} == pytest.approx(stage1, abs=1e-6)


# ------------------------------------------------------------------------------- extractors
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
