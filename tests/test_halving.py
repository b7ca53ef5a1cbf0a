"""Stage 3: successive halving with short fine-tunes, within a time budget, picked by validation accuracy."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import tans.finetune
from tans._errors import TansError
from tans.searcher import halving
from tans.searcher.halving import successive_halving

VAL = {"a": 0.30, "b": 0.50, "c": 0.40, "d": 0.20, "e": 0.45}


@pytest.fixture
def fake_finetunes(monkeypatch):
    """Fine-tunes that take ``seconds_per_epoch`` of a fake clock; a model's val accuracy grows with epochs."""
    clock = SimpleNamespace(now=0.0, seconds_per_epoch=10.0, calls=[])

    def finetune(dataset, *, zoo, model_id, recipe, seed):
        clock.calls.append((model_id, recipe.epochs, recipe.max_train_images))
        clock.now += clock.seconds_per_epoch * recipe.epochs
        return SimpleNamespace(val_acc=VAL[model_id] + 0.01 * recipe.epochs, test_acc=0.99,
                               wall_seconds=clock.seconds_per_epoch * recipe.epochs)

    monkeypatch.setattr(tans.finetune, "finetune", finetune)
    monkeypatch.setattr(halving.time, "perf_counter", lambda: clock.now)
    return clock


def test_halving_keeps_the_better_half_with_twice_the_epochs(fake_finetunes):
    order, trials = successive_halving(None, list("abcde"), zoo=None, budget_seconds=1e9)
    # rung 0: five models, 1 epoch; rung 1: the best 3, 2 epochs; rung 2: the best 2, 4 epochs
    assert [(t.id, t.epochs) for t in trials] == [
        ("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1), ("b", 2), ("e", 2), ("c", 2), ("b", 4), ("e", 4)]
    assert order == ["b", "e", "c", "a", "d"]  # by the last rung reached, then validation accuracy
    assert {cap for _, _, cap in fake_finetunes.calls} == {192}  # the records' recipe: same image caps


def test_halving_stops_starting_fine_tunes_that_would_end_past_the_budget(fake_finetunes):
    order, trials = successive_halving(None, list("abcde"), zoo=None, budget_seconds=35)
    assert [t.id for t in trials] == ["a", "b", "c"]  # a fourth would end at 40 s
    assert order == ["b", "c", "a", "d", "e"]  # the models never fine-tuned keep their order, after the rest
    # the first fine-tune always runs, even when it alone takes longer than the budget
    _, trials = successive_halving(None, list("ab"), zoo=None, budget_seconds=1)
    assert [t.id for t in trials] == ["a"]


def test_halving_refuses_a_budget_that_is_not_a_positive_number():
    for bad in (0, -5, float("nan"), "60", True):
        with pytest.raises(TansError, match="must be a positive number of seconds"):
            successive_halving(None, ["a"], zoo=None, budget_seconds=bad)


def test_search_with_a_finetune_budget_picks_by_validation_accuracy(fitted_searcher, records_zoo):
    found = fitted_searcher.search("mnist-0-4", zoo=records_zoo, top_k=4, probe_k=3, finetune_budget=600)
    assert found.finetunes == 3 + 2  # rung 0: 3 models; rung 1: the best 2, twice the epochs
    tuned = [r.finetune_val_acc for r in found.rows[:3]]
    assert all(v is not None for v in tuned) and found.rows[3].finetune_val_acc is None
    assert tuned[0] >= tuned[1]  # the two of the last rung, best first
    assert found.seconds["finetune"] <= found.seconds["total"]
    with pytest.raises(TansError, match="must be a positive number of seconds, got -1"):
        fitted_searcher.search("mnist-0-4", zoo=records_zoo, finetune_budget=-1)


def test_search_reports_progress_of_stage_2_and_stage_3(fitted_searcher, records_zoo):
    calls = []
    found = fitted_searcher.search("mnist-0-4", zoo=records_zoo, probe_k=3, finetune_budget=600,
                                   progress=lambda event: calls.append((event.stage, event.done, event.total)))
    assert [c for c in calls if c[0] == "probe"] == [("probe", 1, 3), ("probe", 2, 3), ("probe", 3, 3)]
    assert [c for c in calls if c[0] == "finetune"] == [("finetune", i, None) for i in range(1, found.finetunes + 1)]
