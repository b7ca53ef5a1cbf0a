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
from tans.bench.protocol import _fit_searchers
from tans.cli.main import main
from tans.data import load_dataset
from tans.data.catalogue import get_task
from tans.searcher.track_record import TARGET_TEMPERATURE
from tans.zoo import Zoo
from tans.zoo.transfer import TransferConfig

TEST_DATASET = "icons-contexts-tango"  # family "icons": neither the zoo's nor its records'
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread, as the bench's workers use (the tans home is the run's, see conftest)."""
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
        finetune_budget=1.0,  # stage 3 runs a fine-tune or two: enough to check its plumbing
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
    # means of the same seed accuracies in another order tie, though their floats differ
    a, b = np.mean([0.1, 0.2, 0.3]), np.mean([0.3, 0.2, 0.1])
    assert a != b
    assert weighted_tau([1, 2, 3, 4], [0.1, a, b, 0.4]) == weighted_tau([1, 2, 3, 4], [0.1, 0.2, 0.2, 0.4])
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
@pytest.mark.slow
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
            assert ranking.seconds < 60, name  # the tiny zoo ranks in well under a minute
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
@pytest.mark.slow
def test_tiny_end_to_end_run_writes_the_report_and_resumes(zoo_dir, configs, tmp_path):
    config = tiny_config(zoo_dir, configs)
    records_before = Zoo.open(zoo_dir).transfer_count()
    stages = []
    def progress(event):
        stages.append((event.stage, event.message))

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
    tau_goal = results["goals"]["stage1_tau_at_least_0.60"]
    assert tau_goal["value"] == results["summary"]["searcher-stage1"]["tau"]["1"]["symmetric"]
    assert tau_goal["met"] == (tau_goal["value"] is not None and tau_goal["value"] >= 0.60)
    speed = results["goals"]["searcher_20x_faster_than_logme"]  # the median over cells of each cell's own ratio
    ratios = [c["methods"]["logme"]["search_seconds"] / c["methods"]["searcher"]["search_seconds"] for c in results["cells"]]
    assert speed["median_cell_ratio"] == pytest.approx(float(np.median(ratios)), rel=1e-3)  # seconds are rounded in JSON
    assert speed["met"] == (speed["median_cell_ratio"] >= 20)
    for g in results["goals"]["searcher_regret_below_logme"].values():
        assert g["met"] == (g["searcher"] is not None and g["logme"] is not None and g["searcher"] < g["logme"])
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

    # An artifact fitted with another default (here: before ranking within budgets) is refitted, even
    # though the config never names that setting.
    meta = out / "searchers" / "main" / "searcher.json"
    stored = json.loads(meta.read_text())
    del stored["params"]["rank_within_budgets"]  # what an artifact from before the option holds
    meta.write_text(json.dumps(stored))
    searchers, _ = _fit_searchers(config, Zoo.open(zoo_dir), out, ["main"], ["icons"], None)
    assert searchers["main"].rank_within_budgets is True
    assert json.loads(meta.read_text())["params"]["rank_within_budgets"] is True
    # So is one whose stage-1 blend has other fixed settings (here: from before target weights).
    stored = json.loads(meta.read_text())
    stored["track_record"]["blend"]["temperature"] = None
    meta.write_text(json.dumps(stored))
    searchers, _ = _fit_searchers(config, Zoo.open(zoo_dir), out, ["main"], ["icons"], None)
    assert searchers["main"].stage1_blend_.temperature == TARGET_TEMPERATURE
    assert json.loads(meta.read_text())["track_record"]["blend"]["temperature"] == TARGET_TEMPERATURE


def test_a_test_dataset_of_a_zoo_family_is_refused(zoo_dir, configs, tmp_path):
    with pytest.raises(TansError, match="family 'handwritten-digits'.*hold out whole families"):
        run_bench(tiny_config(zoo_dir, configs, test_datasets=("digits",)), tmp_path / "out")


def test_cli_rejects_quick_with_config(tmp_path, capsys):
    assert main(["bench", "--quick", "--config", str(tmp_path / "x.json")]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["bench", "--config", str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------- what the benchmark promises
def _fake_results(accs: dict[str, tuple[float, float]], seeds=(0, 1, 2)):
    """A _Results over dataset "d" whose model i has (val, test) accuracy accs[i] at every epoch and seed."""
    from tans.bench.finetunes import FinetuneJob
    from tans.bench.protocol import _Results

    records = {}
    for model, (val, test) in accs.items():
        for e in (1, 2):
            for s in seeds:
                records[FinetuneJob("d", model, e, s)] = {"val_acc": val, "test_acc": test + 0.001 * s,
                                                          "curve": [val] * e, "wall_seconds": 1.0}
    return _Results(records, "d", tuple(seeds))


def test_the_oracle_excludes_an_over_budget_best():
    from types import SimpleNamespace

    from tans.bench.protocol import _evaluate

    entries = [SimpleNamespace(id=i, params=p, arch="a", task="t", task_family="f")
               for i, p in (("small", 100), ("mid", 200), ("big", 900))]
    ctx = SimpleNamespace(entries=entries)
    res = _fake_results({"small": (0.3, 0.3), "mid": (0.5, 0.5), "big": (0.9, 0.9)})
    config = replace(quick_config(), epochs=2, scratch_epochs=2, seeds=(0, 1, 2))
    pool = {"small": ["random-pool"], "mid": ["random-pool"], "big": ["random-pool"]}
    cell = _evaluate(config, ctx, [], {}, pool, res, 250, "small")
    assert cell["oracle"]["2"]["id"] == "mid" and cell["pool_size"] == 2  # "big" is over the budget
    assert _evaluate(config, ctx, [], {}, pool, res, None, "small")["oracle"]["2"]["id"] == "big"


def test_tau_ceilings_group_the_pool_by_what_the_oracle_knows():
    from tans.bench.metrics import tau_ceilings

    pool = [{"arch": a, "source_family": f, "acc@1": acc}
            for a, f, acc in (("x", "f", 0.9), ("x", "g", 0.1), ("y", "f", 0.6), ("y", "g", 0.4), ("z", "f", None))]
    found = tau_ceilings(pool, 1)
    # by architecture: x and y both average 0.5, so the oracle ties everything and orders nothing
    assert math.isnan(found["architecture"]["symmetric"])
    # by architecture and source family: every known member is its own group, the exact order
    assert found["architecture + source family"]["symmetric"] == pytest.approx(1.0)


def test_best_of_three_picks_by_validation_never_by_test():
    from types import SimpleNamespace

    from tans.bench.protocol import _pick

    # "a" has the best validation accuracy and the worst test accuracy: it must be the pick
    res = _fake_results({"a": (0.9, 0.1), "b": (0.5, 0.8), "c": (0.4, 0.9), "d": (0.95, 0.95)})
    picked, acc = _pick(SimpleNamespace(pick="best-val-of-3"), ["a", "b", "c", "d"], res, 2)
    assert picked == ["a"] and acc == pytest.approx(0.101)  # "d" is 4th: not among the three fine-tuned


def test_the_noise_floor_is_the_seed_oracles_regret():
    from tans.bench.protocol import _seed_oracle_regret

    res = _fake_results({"a": (0.5, 0.5), "b": (0.5, 0.5)})
    # make seed 0 prefer "a" while seeds 1 and 2 prefer "b" by 10 points
    for s, (a, b) in zip((0, 1, 2), ((0.6, 0.5), (0.4, 0.5), (0.4, 0.5))):
        for model, acc in (("a", a), ("b", b)):
            res.records[next(j for j in res.records if j.model_id == model and j.epochs == 2 and j.seed == s)]["test_acc"] = acc
    assert _seed_oracle_regret(["a", "b"], res, 2) == pytest.approx(10.0)
    assert math.isnan(_seed_oracle_regret(["a", "b"], _fake_results({"a": (0.5, 0.5)}, seeds=(0,)), 2))


def test_paired_bootstrap_resolves_a_clear_difference_and_calls_noise_a_tie():
    from tans.bench.metrics import paired_bootstrap

    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, (16, 3))
    clear = paired_bootstrap((base + 0.05).tolist(), base.tolist())
    assert clear["resolved"] and clear["low"] > 0 and clear["mean"] == pytest.approx(0.05)
    noise = paired_bootstrap((base + rng.normal(0, 0.05, base.shape)).tolist(), base.tolist())
    assert noise["low"] < 0 < noise["high"] and not noise["resolved"]
    missing = paired_bootstrap([[None, 0.5]], [[0.4, 0.4]])  # a failed seed drops that pair only
    assert missing["mean"] == pytest.approx(0.1)


def test_the_query_sample_comes_from_the_training_split_only():
    from tans.data import Dataset
    from tans.searcher import query_sample

    n = 60
    images = np.arange(n, dtype=np.uint8)[:, None, None, None].repeat(8, 1).repeat(8, 2).repeat(3, 3)
    labels = np.arange(n) % 3
    split = {"train": np.arange(0, 30), "val": np.arange(30, 45), "test": np.arange(45, 60)}
    ds = Dataset(images, labels, ["a", "b", "c"], name="split", split_indices=split)
    drawn = query_sample(ds, per_class=100, seed=0).images[:, 0, 0, 0]
    assert set(drawn.tolist()) == set(range(30))  # every training image, no val or test image


@pytest.mark.slow
def test_a_failed_fine_tune_is_counted_named_and_left_out_only_with_its_count(zoo_dir, configs, tmp_path, monkeypatch):
    import tans.finetune

    real = tans.finetune.finetune
    doomed = {}

    def flaky(dataset, **kwargs):
        if not kwargs.get("from_scratch") and kwargs["recipe"].epochs == 1 and not doomed:
            doomed["model"] = kwargs["model_id"]
        if kwargs.get("model_id") == doomed.get("model") and kwargs["recipe"].epochs == 1:
            raise TansError("simulated failure")
        return real(dataset, **kwargs)

    monkeypatch.setattr(tans.finetune, "finetune", flaky)  # workers=1: jobs run in this process
    config = tiny_config(zoo_dir, configs, methods=("searcher-stage1", "largest", "params"))
    results = run_bench(config, tmp_path / "out").results
    failed = results["finetunes"]["failed"]
    assert failed and all(f["model_id"] == doomed["model"] and f["epochs"] == 1 for f in failed)
    assert all(f["reason"] == "simulated failure" for f in failed)
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"Failed fine-tunes: {len(failed)} of {results['finetunes']['jobs']}." in report
    assert f"{doomed['model']} / 1 epoch(s) / seed 0 (fine-tune): simulated failure" in report
    hit = [(name, e) for name, row in results["summary"].items() if name not in ("oracle", "scratch")
           for e in ("1", "2") if row[e]["missing"]]
    for name, e in hit:  # a method whose pick lost its fine-tune says so next to its mean
        assert f"{get_method(name).label} at {e} epoch(s): mean over" in report


_KILLED_RUN = """
import sys
from tans.bench.finetunes import FinetuneCache, FinetuneJob, run_jobs

zoo, root, dataset, ids = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
jobs = [FinetuneJob(dataset, i, 1, s) for i in ids for s in (0, 1)]
records, failures = run_jobs(jobs, zoo_path=zoo, cache=FinetuneCache(root, max_train_images=32, max_eval_images=24),
                             workers=1)
print(len(records), len(failures))
"""


@pytest.mark.slow
def test_a_killed_benchmark_resumes_without_losing_or_duplicating_a_job(zoo_dir, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tans.bench.finetunes import FinetuneCache, FinetuneJob, run_jobs

    ids = [e.id for e in Zoo.open(zoo_dir).entries()][:3]
    script = tmp_path / "run.py"
    script.write_text(_KILLED_RUN)
    root = tmp_path / "cache"
    args = [sys.executable, str(script), str(zoo_dir), str(root), TEST_DATASET, ",".join(ids)]
    proc = subprocess.Popen(args, env=os.environ.copy())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(root.rglob("*.json")):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)  # mid-run: some jobs done, one maybe half-written
    proc.wait()
    done_before = {p.name for p in root.rglob("*.json")}
    assert 1 <= len(done_before) < 6
    jobs = [FinetuneJob(TEST_DATASET, i, 1, s) for i in ids for s in (0, 1)]
    progress = []
    records, failures = run_jobs(jobs, zoo_path=zoo_dir, cache=FinetuneCache(root, max_train_images=32, max_eval_images=24),
                                 workers=1, progress=lambda event: progress.append(event.extra["job"]))
    assert not failures and set(records) == set(jobs)
    assert len(progress) == 6 - len(done_before)  # only the missing jobs ran again
    assert {job.filename for job in progress}.isdisjoint(done_before)
    assert sorted(p.name for p in root.rglob("*.json")) == sorted(job.filename for job in jobs)  # one file per job
