"""tans bench: metrics by hand, configs, the method registry's contract, a tiny end-to-end run on the
shared records zoo."""

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tans._errors import TansError
from tans.bench import (
    FULL_CONFIG,
    BenchConfig,
    MethodContext,
    epochs_to_reach,
    get_method,
    list_methods,
    quick_config,
    regret_points,
    rel_at_k,
    resolve_budget,
    run_bench,
    weighted_tau,
)
from tans.bench.methods import SEARCHER_VARIANTS
from tans.cli.main import main
from tans.data import load_dataset
from tans.data.catalogue import get_task
from tans.paths import sources_dir
from tans.zoo import Zoo
from tans.zoo.transfer import TransferConfig

TEST_DATASET = "icons-contexts-tango"  # family "icons": neither the zoo's nor its records'
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _home(tmp_path_factory):
    """An isolated tans home (caches), reading the real offline sources; one torch thread."""
    sources = str(sources_dir())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TANS_HOME", str(tmp_path_factory.mktemp("home")))
        mp.setenv("TANS_SOURCES", sources)
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def configs(records_configs):
    return records_configs


@pytest.fixture(scope="module")
def zoo_dir(records_zoo, tmp_path_factory):
    """A private copy of the records zoo: the bench's build and records steps find every unit done."""
    return shutil.copytree(records_zoo, tmp_path_factory.mktemp("bench") / "zoo")


def tiny_config(zoo_dir, configs, **changes) -> BenchConfig:
    config = BenchConfig(
        name="tiny",
        zoo=configs.build,
        transfer=configs.transfer,
        zoo_dir=str(zoo_dir),
        test_datasets=(TEST_DATASET,),
        budgets=("p50", None),
        seeds=(0,),
        epochs=2,
        scratch_epochs=2,
        max_train_images=32,
        max_eval_images=24,
        pool_top_k=3,
        pool_random=1,
        random_draws=2,
        logme_per_class=4,
        searcher={**configs.searcher, "epochs": 1},
        workers=1,
    )
    return replace(config, **changes)


# ---------------------------------------------------------------------------------- metrics
def test_regret_and_rel_at_k_by_hand():
    assert regret_points(0.8, 0.9) == pytest.approx(10.0)
    assert regret_points(0.95, 0.9) == pytest.approx(-5.0)
    assert rel_at_k([0.5, 0.9, 0.6, 1.0], 1.0, 3) == pytest.approx(0.9)  # the 4th pick does not count
    assert rel_at_k([0.45], 0.9, 3) == pytest.approx(0.5)
    assert math.isnan(rel_at_k([], 0.9))
    with pytest.raises(TansError, match="k >= 1"):
        rel_at_k([0.5], 0.9, 0)


def test_weighted_tau_both_conventions_by_hand():
    acc = [0.9, 0.8, 0.7]
    score = [1.0, 3.0, 2.0]
    tau = weighted_tau(score, acc)
    # Hyperbolic weights 1/(r+1), additive per pair. True order (ranks by acc): pair weights 3/2, 4/3, 5/6
    # with signs -, -, + -> -2 / (11/3) = -6/11. By score's order: -2/3 / (22/6) = -2/11; symmetric is the
    # mean of the two orders: -4/11.
    assert tau["true_order"] == pytest.approx(-6 / 11)
    assert tau["symmetric"] == pytest.approx(-4 / 11)
    assert weighted_tau([1, 2, 3], [0.1, 0.2, 0.3]) == pytest.approx({"symmetric": 1.0, "true_order": 1.0})
    assert weighted_tau([3, 2, 1], [0.1, 0.2, 0.3]) == pytest.approx({"symmetric": -1.0, "true_order": -1.0})
    assert all(math.isnan(v) for v in weighted_tau([1, 2], [0.5, 0.5]).values())
    with pytest.raises(TansError, match="as many scores as accuracies"):
        weighted_tau([1, 2], [0.5])


def test_epochs_to_reach():
    assert epochs_to_reach([0.5, 0.7, 0.9], 0.7) == 2
    assert epochs_to_reach([0.5, 0.7, 0.9], 0.4) == 1
    assert epochs_to_reach([0.5, 0.6], 0.7) is None


# ----------------------------------------------------------------------------------- config
def test_budgets_resolve_against_the_zoo():
    params = np.array([40, 10, 30, 20])
    assert resolve_budget("p50", params) == 20
    assert resolve_budget("p100", params) == 40
    assert resolve_budget("p1", params) == 10
    assert resolve_budget(None, params) is None
    assert resolve_budget(25, params) == 25
    with pytest.raises(TansError, match="percentile such as"):
        resolve_budget("half", params)


def test_config_errors_name_the_key(configs, tmp_path):
    base = tiny_config("zoo", configs).to_dict()
    with pytest.raises(TansError, match="Unknown key 'epoch'.*Did you mean 'epochs'"):
        BenchConfig.from_dict({**base, "epoch": 3})
    with pytest.raises(TansError, match="missing 'budgets'"):
        BenchConfig.from_dict({k: v for k, v in base.items() if k != "budgets"})
    with pytest.raises(TansError, match="Unknown method 'logmee'"):
        BenchConfig.from_dict({**base, "methods": ["logmee"]})
    with pytest.raises(TansError, match="pool_top_k"):
        BenchConfig.from_dict({**base, "pool_top_k": 2})
    with pytest.raises(TansError, match="Unknown key 'model' in bench config 'transfer'.*Did you mean 'models'"):
        BenchConfig.from_dict({**base, "transfer": {**base["transfer"], "model": 3}})
    assert BenchConfig.from_dict(base) == tiny_config("zoo", configs)
    assert BenchConfig.from_dict({k: v for k, v in base.items() if k != "transfer"}).transfer == TransferConfig()
    # the zoo and transfer configs may be files next to the bench config
    (tmp_path / "transfer.json").write_text(json.dumps(base["transfer"]))
    (tmp_path / "zoo.json").write_text(json.dumps(base["zoo"]))
    (tmp_path / "bench.json").write_text(json.dumps({**base, "zoo": "zoo.json", "transfer": "transfer.json"}))
    assert BenchConfig.from_file(tmp_path / "bench.json") == tiny_config("zoo", configs)


def test_full_config_is_valid_and_holds_out_whole_families():
    config = BenchConfig.from_file(REPO / FULL_CONFIG)
    test_families = {get_task(n).family for n in config.test_datasets}
    zoo_families = {get_task(n).family for n in config.zoo.tasks}
    assert len(config.test_datasets) >= 8 and len(config.budgets) >= 2 and len(config.seeds) >= 3
    assert config.pool_random >= 16 and config.random_draws >= 5 and config.pool_top_k >= 3
    # it runs the committed transfer records config, whose targets are never of a test family
    assert config.transfer == TransferConfig.from_file(REPO / "benchmarks/zoo/bench-transfer.json")
    assert not test_families & zoo_families
    assert set(config.method_names()) == set(list_methods())
    assert not test_families & {get_task(n).family for n in config.transfer.targets}
    quick = quick_config()
    quick_families = {get_task(n).family for n in quick.test_datasets}
    assert quick_families.isdisjoint(get_task(n).family for n in quick.zoo.tasks)
    assert quick_families.isdisjoint(get_task(n).family for n in quick.transfer.targets)
    assert not {get_task(n).family for n in quick.transfer.targets} - {get_task(n).family for n in quick.zoo.tasks}
    assert not set(quick.transfer.targets) & set(quick.zoo.tasks)  # records are about other tasks
    assert len(quick.test_datasets) == 2 and len(quick.budgets) == 2


# --------------------------------------------------------------------------- method registry
def test_every_method_picks_within_the_budget(records_zoo, fitted_searcher):
    zoo, searcher = Zoo.open(records_zoo), fitted_searcher
    assert searcher.combiner_ is not None  # the searcher's stage 2 runs too
    # Contract only: every variant is served by one searcher (the ablations differ in training).
    ctx = MethodContext(dataset=load_dataset(TEST_DATASET), zoo=zoo, searchers=dict.fromkeys(SEARCHER_VARIANTS, searcher),
                        random_draws=2, logme_per_class=4)
    limit = resolve_budget("p50", ctx.params)
    params = {e.id: e.params for e in ctx.entries}
    for name in list_methods():
        method = get_method(name)
        for budget in (limit, None):
            ranking = method.rank(ctx, budget, 3)
            assert ranking.ids, name
            assert len(ranking.ids) == len(set(ranking.ids)) <= max(3, ctx.random_draws)
            assert budget is None or all(params[i] <= budget for i in ranking.ids), name
            assert ranking.seconds >= 0
        if method.score is not None:
            scores = method.score(ctx, ctx.allowed(None))
            assert scores.shape == (len(ctx.entries),) and np.isfinite(scores).all(), name
    assert {get_method(n).searcher for n in list_methods()} - {None} == set(SEARCHER_VARIANTS)
    # the default searcher probes; its stage-1 method and the ablations do not
    assert ctx.search("main", None, 3, fast=False).probed > 0 and ctx.search("main", None, 3, fast=True).probed == 0
    largest = get_method("largest").rank(ctx, limit, 3).ids[0]
    assert params[largest] == max(p for p in params.values() if p <= limit)
    with pytest.raises(TansError, match="Unknown method 'serch'.*Did you mean 'searcher'"):
        get_method("serch")


# ------------------------------------------------------------------------------- end to end
def test_tiny_end_to_end_run_writes_the_report_and_resumes(zoo_dir, configs, tmp_path):
    config = tiny_config(zoo_dir, configs)
    records_before = Zoo.open(zoo_dir).transfer_count()
    stages = []
    def progress(stage, done, total, status):
        stages.append((stage, status))

    run = run_bench(config, tmp_path / "out", progress=progress)
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    for key in ("config", "methods", "tau_conventions", "zoo", "transfer_records", "searchers", "test_datasets",
                "budgets", "finetunes", "cells", "summary", "goals", "timings", "files"):
        assert key in results, key
    assert TransferConfig.from_dict(results["config"]["transfer"]) == configs.transfer
    # the records were all there already: the run planned them, skipped them, added none
    records = results["transfer_records"]
    assert records["records"] == records_before == 16 and records["run"]["skipped"] == records["run"]["planned"] == 16
    assert records["run"]["added"] == 0 and ("records", "16 already recorded") in stages
    # every searcher variant learned from the records of every family but the test datasets'
    assert set(results["searchers"]) == set(SEARCHER_VARIANTS)
    for variant, info in results["searchers"].items():
        assert info["records"]["excluded_families"] == ["icons"] and info["records"]["records"] == 16, variant
        assert sorted(info["train_targets"] + info["val_targets"]) == sorted(configs.transfer.targets), variant
    assert not results["finetunes"]["failed"]
    assert len(results["cells"]) == 2  # 1 dataset x 2 budgets
    cell = results["cells"][0]
    assert set(cell["methods"]) == set(list_methods())
    for row in cell["methods"].values():
        for e in ("1", "2"):
            assert 0.0 <= row[e]["acc"] <= 1.0
            assert row[e]["regret"] >= -1e-9  # every pick is in the pool
        assert row["params"] <= cell["max_params"]
    assert cell["oracle"]["2"]["acc"] >= max(r["2"]["acc"] for n, r in cell["methods"].items() if n != "random") - 1e-9
    assert set(cell["tau"]["searcher"]["2"]) == {"symmetric", "true_order"}
    assert "searcher-top3" not in cell["tau"] and "random" not in cell["tau"]  # methods without a score
    assert set(results["goals"]) == {
        "searcher_beats_logme_and_static_baselines", "searcher_regret_below_logme", "searcher_20x_faster_than_logme",
        "stage1_tau_at_least_0.60", "stage1_at_least_static_prior", "stage1_100x_faster_than_logme",
    }  # fmt: skip
    assert all(isinstance(g.get("met", True), bool) for g in results["goals"].values())
    report = (out / "report.md").read_text()
    for heading in ("# tans bench: tiny", "## Weighted Kendall tau", "## Epochs to reach", "## Goals",
                    f"### {TEST_DATASET}", "## Plots", "weightedtau(acc, score, rank=None)"):
        assert heading in report, heading
    for name in list_methods():
        assert get_method(name).label in report, name
    for plot in ("accuracy_vs_epochs.png", "regret.png", "pareto.png", "speed_accuracy.png", "tsne.png"):
        assert (out / plot).stat().st_size > 1000, plot
    zoo = Zoo.open(zoo_dir)
    tasks = len({e.task for e in zoo.entries()})
    assert run.embeddings["points"].shape[0] == len(zoo) + tasks + 1  # models + zoo tasks + 1 test dataset
    assert zoo.transfer_count() == records_before  # the test dataset never became a record target

    # A rerun reuses the zoo, the records, the searchers and every fine-tune.
    searcher_files = {p: p.stat().st_mtime_ns for p in (out / "searchers").rglob("*.safetensors")}
    assert len(searcher_files) == len(SEARCHER_VARIANTS)
    stages.clear()
    again = run_bench(config, out, progress=progress)
    assert not any(stage == "finetune" for stage, _ in stages)  # nothing left to train
    assert {p: p.stat().st_mtime_ns for p in (out / "searchers").rglob("*.safetensors")} == searcher_files
    before = results["summary"]["searcher"]["2"]["acc"]
    assert again.results["summary"]["searcher"]["2"]["acc"] == pytest.approx(before, abs=1e-5)


def test_a_test_dataset_of_a_zoo_family_is_refused(zoo_dir, configs, tmp_path):
    with pytest.raises(TansError, match="family 'handwritten-digits'.*hold out whole families"):
        run_bench(tiny_config(zoo_dir, configs, test_datasets=("digits",)), tmp_path / "out")


def test_cli_rejects_quick_with_config(tmp_path, capsys):
    assert main(["bench", "--quick", "--config", str(tmp_path / "x.json")]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["bench", "--config", str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
