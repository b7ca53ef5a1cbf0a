"""The benchmark protocol: zoo -> searchers -> every method picks -> candidate pool fine-tuned -> metrics.

:func:`run_bench` does, in order (each step resumes from what is on disk):

1. build the zoo of the config (:func:`tans.zoo.build.build_zoo`, which skips stored units) and
   check that no test dataset's family is in it;
2. fill the zoo's transfer records (:func:`tans.zoo.transfer.run_transfers`, which skips stored
   records); the test datasets and their families are never targets;
3. meta-train the main searcher and its ablations on the records, ignoring any record of a test
   family (saved under ``<out>/searchers``; reloaded when the zoo, records and settings are
   unchanged);
4. for each test dataset and budget, every method ranks the zoo entries within the budget
   (timed: that is its search time);
5. the candidate pool of each test dataset: the union of every method's top ``pool_top_k`` at every
   budget plus ``pool_random`` random entries; each member is fine-tuned at 1 epoch and at
   ``epochs`` epochs for every seed, the searcher's top-1 architecture is also trained from scratch
   (1, ``epochs`` and ``scratch_epochs`` epochs), all cached (:mod:`tans.bench.finetunes`);
6. metrics per (dataset, budget, epoch budget), and their means (:mod:`tans.bench.metrics`).

The oracle of a (dataset, budget) is the pool member within the budget with the best mean test
accuracy; a method's accuracy is its pick's mean test accuracy over the seeds.
"""

from __future__ import annotations

import math
import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tans._errors import TansError
from tans.bench.config import BenchConfig, resolve_budget
from tans.bench.finetunes import FinetuneCache, FinetuneJob, run_jobs
from tans.bench.methods import SEARCHER_VARIANTS, MethodContext, Ranking, get_method
from tans.bench.metrics import (
    TAU_CEILINGS,
    TAU_CONVENTIONS,
    epochs_to_reach,
    mean_or_none,
    paired_bootstrap,
    regret_points,
    rel_at_k,
    speed_ratio,
    tau_ceilings,
    weighted_tau,
)
from tans.progress import Progress, ProgressEvent, emit

__all__ = ["BenchRun", "run_bench"]

BASELINES = ("random", "largest", "params", "static-prior", "logme", "scratch")  # non-searcher, non-oracle


@dataclass
class BenchRun:
    """What :func:`run_bench` produced: the JSON-able results and the embeddings for the map."""

    results: dict[str, Any]
    embeddings: dict[str, Any] = field(default_factory=dict)  # points, families, kinds, names
    out_dir: Path | None = None
    files: dict[str, str] = field(default_factory=dict)  # written by tans.bench.report


def _as_stage(progress: Progress | None, stage: str) -> Progress | None:
    """``progress`` receiving a zoo build's or transfer run's events as ``stage``; its plan starts the count at 0."""
    if progress is None:
        return None

    def forward(event: ProgressEvent) -> None:
        done = 0 if event.stage == "plan" else event.done
        progress(ProgressEvent(stage, done, event.total, event.message, event.extra))

    return forward


# ------------------------------------------------------------------------------ steps 1 and 2
def _build_zoo(config: BenchConfig, out_dir: Path, progress: Progress | None):
    from tans.zoo import Zoo
    from tans.zoo.build import build_zoo

    path = config.zoo_path(out_dir)
    report = build_zoo(path, config.zoo, workers=config.workers, progress=_as_stage(progress, "zoo"))
    zoo = Zoo.open(path)
    if len(zoo) == 0:
        raise TansError(f"The bench zoo at {path} is empty after the build ({len(report.failed)} units failed).")
    return zoo, report


def _check_held_out(config: BenchConfig, zoo) -> dict[str, Any]:
    from tans.data import load_dataset

    zoo_families = {e.task_family for e in zoo.entries()}
    datasets = {}
    for name in config.test_datasets:
        dataset = load_dataset(name)
        if dataset.family in zoo_families:
            raise TansError(
                f"Test dataset '{name}' is of family '{dataset.family}', which the zoo was trained on; "
                "hold out whole families (remove its tasks from the zoo config or pick another test dataset)."
            )
        datasets[name] = dataset
    return datasets


def _fill_records(config: BenchConfig, zoo, datasets: dict, progress: Progress | None):
    from dataclasses import replace

    from tans.zoo.transfer import run_transfers

    held_out = tuple(datasets) + tuple(sorted({d.family for d in datasets.values()}))
    transfer = replace(config.transfer, exclude=tuple(dict.fromkeys(config.transfer.exclude + held_out)))
    return run_transfers(zoo, transfer, workers=config.workers, progress=_as_stage(progress, "records"))


def _as_tuple(value):
    return tuple(value) if isinstance(value, list) else value


def _fit_searchers(config: BenchConfig, zoo, out_dir: Path, variants: list[str], test_families: list[str],
                   progress: Progress | None):
    from tans.searcher import Searcher
    from tans.searcher.track_record import TrackRecordBlend

    searchers, seconds = {}, {}
    for i, variant in enumerate(variants):
        params = {**config.searcher, **SEARCHER_VARIANTS[variant]}
        path = out_dir / "searchers" / variant
        emit(progress, "searchers", i, len(variants), variant)
        tic = time.perf_counter()
        searcher = None
        if (path / "config.json").exists() or path.is_dir():
            try:
                loaded = Searcher.load(path)
                # every setting, defaults included: an artifact from before a default changed is refitted
                wanted, have = Searcher(**params).get_params(), loaded.get_params()
                same = all(_as_tuple(have.get(k)) == _as_tuple(v) for k, v in wanted.items() if k != "device")
                blend, fixed = loaded.stage1_blend_, TrackRecordBlend()  # and the blend's fixed settings
                same = same and (blend is None or (blend.weight, blend.temperature) == (fixed.weight, fixed.temperature))
                same_data = (loaded.zoo_info_.get("entries") == len(zoo)
                             and loaded.records_.get("excluded_families") == sorted(test_families)
                             and loaded.records_.get("records") == sum(r.target_family not in test_families
                                                                       for r in zoo.transfers()))
                if same and same_data:
                    searcher = loaded
            except TansError:
                searcher = None  # a damaged artifact is refitted
        if searcher is None:
            searcher = Searcher(**params).fit(zoo, exclude_families=test_families)
            searcher.save(path)
            seconds[variant] = time.perf_counter() - tic
        else:
            seconds[variant] = float(searcher.result_.seconds)
        searchers[variant] = searcher
    emit(progress, "searchers", len(variants), len(variants), "done")
    return searchers, seconds


# ------------------------------------------------------------------------------ steps 3 and 4
def _rng(config: BenchConfig, *parts: object) -> np.random.Generator:
    return np.random.default_rng([config.seed, zlib.crc32("|".join(map(str, parts)).encode())])


def _pool(config: BenchConfig, ctx: MethodContext, rankings: dict, limits: list) -> dict[str, list[str]]:
    """Pool members of one dataset -> why they are in it (method names, or "random")."""
    pool: dict[str, list[str]] = {}
    for limit in limits:
        for name, ranking in rankings[limit].items():
            for entry_id in ranking.ids:  # at most pool_top_k, or the random draws
                pool.setdefault(entry_id, []).append(name)
    shares = [config.pool_random // len(limits)] * len(limits)
    shares[0] += config.pool_random - sum(shares)
    for limit, share in zip(limits, shares):
        left = [p for p in ctx.allowed(limit) if ctx.entries[p].id not in pool]
        for p in _rng(config, ctx.dataset.name, "pool", limit).permutation(np.array(left, dtype=np.int64))[:share]:
            pool.setdefault(ctx.entries[p].id, []).append("random-pool")
    return pool


# ------------------------------------------------------------------------------------- step 5
class _Results:
    """Mean over seeds of the fine-tunes of one dataset."""

    def __init__(self, records: dict[FinetuneJob, dict], dataset: str, seeds: tuple[int, ...]) -> None:
        self.records, self.dataset, self.seeds = records, dataset, seeds

    def _runs(self, model_id: str, epochs: int, scratch: bool) -> list[dict]:
        runs = [self.records.get(FinetuneJob(self.dataset, model_id, epochs, s, scratch)) for s in self.seeds]
        return [r for r in runs if r is not None]

    def acc(self, model_id: str, epochs: int, split: str = "test", scratch: bool = False) -> float:
        runs = self._runs(model_id, epochs, scratch)
        return float(np.mean([r[f"{split}_acc"] for r in runs])) if runs else math.nan

    def per_seed(self, model_id: str, epochs: int) -> list[float | None]:
        """Test accuracy of each seed's fine-tune (None where the job failed or is missing)."""
        runs = [self.records.get(FinetuneJob(self.dataset, model_id, epochs, s, False)) for s in self.seeds]
        return [None if r is None else r["test_acc"] for r in runs]

    def seconds(self, model_id: str, epochs: int) -> float:
        runs = self._runs(model_id, epochs, False)
        return float(np.mean([r["wall_seconds"] for r in runs])) if runs else math.nan

    def curve(self, model_id: str, epochs: int, scratch: bool = False) -> list[float]:
        runs = self._runs(model_id, epochs, scratch)
        return np.mean([r["curve"] for r in runs], axis=0).tolist() if runs else []


def _seed_oracle_regret(members: list[str], res: _Results, epochs: int) -> float:
    """The noise floor: regret, on the other seeds, of the pool's best model by seed 0 alone.

    A method's regret below this is within the noise of picking by one fine-tune.
    """
    if len(res.seeds) < 2 or not members:
        return math.nan
    first = {i: res.per_seed(i, epochs)[0] for i in members}
    rest = {i: [a for a in res.per_seed(i, epochs)[1:] if a is not None] for i in members}
    usable = [i for i in members if first[i] is not None and rest[i]]
    if not usable:
        return math.nan
    pick = max(usable, key=first.get)
    best = max(float(np.mean(rest[i])) for i in usable)
    return regret_points(float(np.mean(rest[pick])), best)


def _pick(method, ids: list[str], res: _Results, epochs: int) -> tuple[list[str], float]:
    """The model(s) a method ends with at an epoch budget, and their test accuracy."""
    if method.pick == "mean":
        accs = [res.acc(i, epochs) for i in ids]
        return ids, float(np.nanmean(accs)) if accs else math.nan
    if method.pick == "best-val-of-3":
        top = ids[:3]
        vals = np.array([res.acc(i, epochs, "val") for i in top])
        best = top[int(np.nanargmax(vals))] if np.isfinite(vals).any() else top[0]
        return [best], res.acc(best, epochs)
    return ids[:1], res.acc(ids[0], epochs)


def _evaluate(
    config: BenchConfig,
    ctx: MethodContext,
    methods: list,
    rankings: dict[str, Ranking],
    pool: dict[str, list[str]],
    res: _Results,
    limit: int | None,
    scratch_id: str,
) -> dict[str, Any]:
    """Every metric of one (dataset, budget)."""
    entries = {e.id: e for e in ctx.entries}
    members = [i for i in pool if limit is None or entries[i].params <= limit]
    budgets = sorted({1, config.epochs})
    E = config.epochs
    scratch_curve = res.curve(scratch_id, config.scratch_epochs, scratch=True)
    target = scratch_curve[-1] if scratch_curve else math.nan
    out: dict[str, Any] = {"pool_size": len(members), "oracle": {}, "methods": {}, "tau": {}}
    for e in budgets:
        accs = {i: res.acc(i, e) for i in members}
        best = max((i for i in accs if not math.isnan(accs[i])), key=accs.get, default=None)
        out["oracle"][str(e)] = {"id": best, "acc": accs.get(best, math.nan) if best else math.nan}
    oracle_E = out["oracle"][str(E)]["id"]
    out["oracle"]["curve"] = res.curve(oracle_E, E) if oracle_E else []
    out["noise_floor"] = {str(e): _seed_oracle_regret(members, res, e) for e in budgets}
    searcher_seconds = rankings["searcher"].seconds if "searcher" in rankings else math.nan
    for method in methods:
        ranking = rankings[method.name]
        seconds = ranking.seconds
        if method.pick == "best-val-of-3":  # picking fine-tunes its top 3 (1 epoch each): charged to the search
            seconds += float(np.nansum([res.seconds(i, 1) for i in ranking.ids[:3]]))
        row: dict[str, Any] = {"ranked": ranking.ids[: config.pool_top_k], "search_seconds": seconds,
                               "speed_ratio": speed_ratio(seconds, searcher_seconds)}
        for e in budgets:
            picked, acc = _pick(method, ranking.ids, res, e)
            oracle = out["oracle"][str(e)]["acc"]
            seeds = np.array([[np.nan if a is None else a for a in res.per_seed(i, e)] for i in picked])  # (picks, seeds)
            row[str(e)] = {
                "picked": picked,
                "acc": acc,
                "regret": regret_points(acc, oracle),
                "rel@3": rel_at_k([res.acc(i, e) for i in ranking.ids[:3]], oracle, 3),
                "per_seed": [None if np.isnan(seeds[:, k]).all() else float(np.nanmean(seeds[:, k]))
                             for k in range(seeds.shape[1])],
                "missing": int(np.isnan(seeds).sum()),  # fine-tunes of its pick(s) that failed or are missing
            }
        picked_E = row[str(E)]["picked"]
        curve = np.mean([res.curve(i, E) for i in picked_E], axis=0).tolist() if picked_E else []
        row["curve"] = curve
        row["epochs_to_scratch"] = epochs_to_reach(curve, target) if curve else None
        row["params"] = int(np.mean([entries[i].params for i in picked_E]))
        out["methods"][method.name] = row
        if method.score is not None and len(members) >= 2:
            scores = method.score(ctx, ctx.positions(members))
            row["scores"] = {i: float(v) for i, v in zip(members, scores)}  # every candidate's score, for audits
            out["tau"][method.name] = {str(e): weighted_tau(scores, [res.acc(i, e) for i in members]) for e in budgets}
    scratch = {"model_id": scratch_id, "arch": entries[scratch_id].arch, "params": entries[scratch_id].params,
               "curve": scratch_curve, "target": target}
    for e in sorted({1, E, config.scratch_epochs}):
        scratch[str(e)] = {"acc": res.acc(scratch_id, e, scratch=True)}
        if str(e) in out["oracle"]:
            scratch[str(e)]["regret"] = regret_points(scratch[str(e)]["acc"], out["oracle"][str(e)]["acc"])
    out["scratch"] = scratch
    out["pool"] = [
        {"id": i, "arch": entries[i].arch, "params": entries[i].params, "source": entries[i].task,
         "source_family": entries[i].task_family, "why": pool[i], **{f"acc@{e}": res.acc(i, e) for e in budgets},
         **{f"seeds@{e}": res.per_seed(i, e) for e in budgets}}
        for i in members
    ]
    out["tau_ceilings"] = {str(e): tau_ceilings(out["pool"], e) for e in budgets}
    return out


def _versus(cells: list[dict], name: str, reference: str, e: str) -> dict[str, Any]:
    """Paired difference of a method and the reference in accuracy and regret (points), with 95% bootstrap intervals."""

    def per_seed(method: str, cell: dict, regret: bool) -> list[float | None]:
        oracle = cell["oracle"][e]["acc"]
        values = cell["methods"][method][e]["per_seed"]
        if regret:
            return [None if v is None or oracle is None or math.isnan(oracle) else 100 * (oracle - v) for v in values]
        return [None if v is None else 100 * v for v in values]

    return {
        kind: paired_bootstrap([per_seed(name, c, kind == "regret") for c in cells],
                               [per_seed(reference, c, kind == "regret") for c in cells])
        for kind in ("acc", "regret")
    }


def _summarise(config: BenchConfig, cells: list[dict], method_names: list[str]) -> dict[str, Any]:
    """Means over every (dataset, budget) cell, and each method's paired difference to the searcher.

    A mean is over the cells where the method has a result; ``cells`` and ``missing`` (failed or
    missing fine-tunes of its picks) say how many.
    """
    budgets = [str(e) for e in sorted({1, config.epochs})]
    rows = {}
    for name in method_names:
        row: dict[str, Any] = {}
        for e in budgets:
            row[e] = {k: mean_or_none([c["methods"][name][e][k] for c in cells]) for k in ("acc", "regret", "rel@3")}
            row[e]["cells"] = sum(c["methods"][name][e]["acc"] is not None and not math.isnan(c["methods"][name][e]["acc"])
                                  for c in cells)  # cells with a result (the mean is over these)
            row[e]["missing"] = sum(c["methods"][name][e]["missing"] for c in cells)
        if name != "searcher" and "searcher" in method_names:
            row["ci"] = {e: _versus(cells, name, "searcher", e) for e in budgets}
        row["search_seconds"] = mean_or_none([c["methods"][name]["search_seconds"] for c in cells])
        row["speed_ratio"] = mean_or_none([c["methods"][name]["speed_ratio"] for c in cells])
        reached = [c["methods"][name]["epochs_to_scratch"] for c in cells]
        row["epochs_to_scratch"] = mean_or_none([r for r in reached if r is not None])
        row["reached_scratch"] = f"{sum(r is not None for r in reached)}/{len(reached)}"
        row["params"] = mean_or_none([c["methods"][name]["params"] for c in cells])
        taus = [c["tau"][name] for c in cells if name in c["tau"]]
        if taus:
            row["tau"] = {e: {conv: mean_or_none([t[e][conv] for t in taus]) for conv in TAU_CONVENTIONS} for e in budgets}
        rows[name] = row
    rows["oracle"] = {e: {"acc": mean_or_none([c["oracle"][e]["acc"] for c in cells]), "regret": 0.0, "rel@3": 1.0}
                      for e in budgets}
    rows["oracle"]["tau_ceilings"] = {
        name: {e: {conv: mean_or_none([c["tau_ceilings"][e][name][conv] for c in cells]) for conv in TAU_CONVENTIONS}
               for e in budgets}
        for name in TAU_CEILINGS
    }
    rows["scratch"] = {
        e: {"acc": mean_or_none([c["scratch"][e]["acc"] for c in cells]),
            "regret": mean_or_none([c["scratch"][e].get("regret") for c in cells]), "rel@3": None}
        for e in budgets
    }
    rows["scratch"]["final"] = mean_or_none([c["scratch"][str(config.scratch_epochs)]["acc"] for c in cells])
    return rows


def _goals(config: BenchConfig, summary: dict, cells: list[dict]) -> dict[str, Any]:
    """The searcher's goals, measured (a goal whose methods were not run is left out).

    Default search (stage 1 + 2): higher mean accuracy than LogME over every candidate and than
    every static baseline at every epoch budget, lower regret than LogME, at least 20x faster than
    LogME over every candidate. Stage 1 alone: at least 100x faster than LogME over every
    candidate, weighted tau >= 0.60 (symmetric convention, 1 epoch), at least the static prior's
    accuracy.

    A speed goal reads the ratio of LogME's seconds to the method's *in each cell* (the two were
    measured on the same dataset, minutes apart, under the same load) and is met when the median
    over cells reaches the factor: a load spike during a few cells moves a ratio of mean seconds
    (also reported) far more than it moves the median.
    """
    goals: dict[str, Any] = {}
    budgets = [str(e) for e in sorted({1, config.epochs})]
    # LogME over every candidate within the budget, as its ranking was timed (the whole zoo costs more)
    logme_s = summary["logme"]["search_seconds"] if "logme" in summary else None
    static = [b for b in ("largest", "params", "static-prior") if b in summary]

    def acc(method: str, e: str) -> float | None:
        return summary[method][e]["acc"] if method in summary else None

    def faster(method: str, factor: float) -> dict[str, Any]:
        seconds = summary[method]["search_seconds"]
        per_cell = [speed_ratio(c["methods"]["logme"]["search_seconds"], c["methods"][method]["search_seconds"])
                    for c in cells if c["methods"][method]["search_seconds"] > 0]
        median = float(np.median(per_cell)) if per_cell else None
        return {"seconds": seconds, "logme_every_candidate_seconds": logme_s,
                "median_cell_ratio": median, "mean_cell_ratio": mean_or_none(per_cell),
                "ratio_of_means": speed_ratio(logme_s, seconds) if logme_s is not None and seconds else None,
                "met": median is not None and median >= factor}

    if "searcher" in summary:
        rivals = [b for b in ("logme", *static) if b in summary]
        goals["searcher_beats_logme_and_static_baselines"] = {
            e: {"searcher": acc("searcher", e), **{b: acc(b, e) for b in rivals},
                "met": all(acc("searcher", e) is not None and acc(b, e) is not None and acc("searcher", e) > acc(b, e)
                           for b in rivals)}
            for e in budgets
        }
        if "logme" in summary:
            goals["searcher_regret_below_logme"] = {
                e: {"searcher": summary["searcher"][e]["regret"], "logme": summary["logme"][e]["regret"],
                    "met": summary["searcher"][e]["regret"] is not None and summary["logme"][e]["regret"] is not None
                    and summary["searcher"][e]["regret"] < summary["logme"][e]["regret"]}
                for e in budgets
            }
            goals["searcher_20x_faster_than_logme"] = faster("searcher", 20)
    if "searcher-stage1" in summary:
        s1 = summary["searcher-stage1"]
        tau = (s1.get("tau") or {}).get("1", {}).get("symmetric")
        goals["stage1_tau_at_least_0.60"] = {"value": tau, "met": tau is not None and tau >= 0.60}
        if "static-prior" in summary:
            goals["stage1_at_least_static_prior"] = {
                e: {"stage1": acc("searcher-stage1", e), "static-prior": acc("static-prior", e),
                    "met": acc("searcher-stage1", e) is not None and acc("static-prior", e) is not None
                    and acc("searcher-stage1", e) >= acc("static-prior", e)}
                for e in budgets
            }
        if "logme" in summary:
            goals["stage1_100x_faster_than_logme"] = faster("searcher-stage1", 100)
    return goals


# ------------------------------------------------------------------------------------ driver
def _embeddings(searcher, zoo, datasets: dict) -> dict[str, Any]:
    """Model and dataset embeddings of the main searcher, for the 2-D map."""
    entries = zoo.entries()
    points = [searcher.embed_entries(entries, zoo)]
    names = [e.id for e in entries]
    families = [e.task_family for e in entries]
    kinds = ["model"] * len(entries)
    tasks = {e.task: e.task_family for e in entries}
    queries = []
    for name, family in sorted(tasks.items()):
        queries.append((name, family, "zoo task", zoo.load_task(name)))
    queries += [(name, ds.family, "test dataset", ds) for name, ds in datasets.items()]
    for name, family, kind, ds in queries:
        points.append(searcher.embed_dataset(ds)[None])
        names.append(name)
        families.append(family)
        kinds.append(kind)
    return {"points": np.concatenate(points), "names": names, "families": families, "kinds": kinds}


def run_bench(
    config: BenchConfig,
    out_dir: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
) -> BenchRun:
    """Run the whole benchmark protocol and write ``report.md``, ``results.json`` and the plots.

    Parameters
    ----------
    config : BenchConfig
        What to run (:meth:`BenchConfig.from_file`, :func:`tans.bench.quick_config`).
    out_dir : path
        Output directory: the zoo (unless ``config.zoo_dir``), searchers, fine-tune cache and
        report. Running again resumes and reuses everything stored there.
    progress : Progress, optional
        Receives events (:class:`~tans.progress.ProgressEvent`) of stages ``"zoo"`` (units built,
        the plan first with ``done`` 0), ``"records"`` (transfer fine-tunes, likewise),
        ``"searchers"``, ``"rank"`` (test datasets), ``"finetune"`` (jobs) and ``"report"``; the
        ``message`` says what is being done, ``total`` is None while unknown.

    Returns
    -------
    BenchRun

    Raises
    ------
    TansError
        If a test dataset's family is in the zoo, a budget excludes every model, or a setting is
        invalid.
    """
    from tans.bench.report import write_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    zoo, build = _build_zoo(config, out_dir, progress)
    timings["zoo_build"] = time.perf_counter() - start
    datasets = _check_held_out(config, zoo)
    test_families = sorted({d.family for d in datasets.values()})
    tic = time.perf_counter()
    transfer_report = _fill_records(config, zoo, datasets, progress)
    timings["transfer_records"] = time.perf_counter() - tic

    methods = [get_method(m) for m in config.method_names()]
    variants = [v for v in SEARCHER_VARIANTS if v == "main" or any(m.searcher == v for m in methods)]
    tic = time.perf_counter()
    searchers, fit_seconds = _fit_searchers(config, zoo, out_dir, variants, test_families, progress)
    timings["meta_train"] = time.perf_counter() - tic

    tic = time.perf_counter()
    params = np.array([e.params for e in zoo.entries()])
    limits = [resolve_budget(b, params) for b in config.budgets]
    first = next(iter(datasets.values()))
    for searcher in searchers.values():
        searcher.search(first, zoo=zoo, top_k=1)  # warm-up: builds the zoo's index once, as in real use
    contexts, rankings, pools, logme_zoo = {}, {}, {}, []
    for d, (name, dataset) in enumerate(datasets.items()):
        emit(progress, "rank", d, len(datasets), name)
        ctx = MethodContext(dataset=dataset, zoo=zoo, searchers=searchers, seed=config.seed,
                            random_draws=config.random_draws, logme_per_class=config.logme_per_class,
                            finetune_budget=config.finetune_budget)
        rankings[name] = {limit: {m.name: m.rank(ctx, limit, config.pool_top_k) for m in methods} for limit in limits}
        if any(m.name == "logme" for m in methods):
            logme_zoo.append(ctx.probe_seconds("logme", np.arange(len(ctx.entries))))
        pools[name] = _pool(config, ctx, rankings[name], limits)
        contexts[name] = ctx
    emit(progress, "rank", len(datasets), len(datasets), "done")
    timings["rank"] = time.perf_counter() - tic

    # The from-scratch comparison trains the searcher's top-1 architecture (or the first method's).
    lead = "searcher" if any(m.name == "searcher" for m in methods) else methods[0].name
    scratch_ids = {(n, limit): rankings[n][limit][lead].ids[0] for n in datasets for limit in limits}
    jobs = []
    for name in datasets:
        for entry_id in pools[name]:
            jobs += [FinetuneJob(name, entry_id, e, s) for e in sorted({1, config.epochs}) for s in config.seeds]
    for (name, _), entry_id in scratch_ids.items():
        jobs += [FinetuneJob(name, entry_id, e, s, scratch=True)
                 for e in sorted({1, config.epochs, config.scratch_epochs}) for s in config.seeds]
    cache = FinetuneCache(out_dir / "cache" / "finetune", max_train_images=config.max_train_images,
                          max_eval_images=config.max_eval_images)
    tic = time.perf_counter()
    records, failures = run_jobs(
        jobs, zoo_path=zoo.path, cache=cache, workers=config.workers,
        progress=progress,
    )
    timings["finetune"] = time.perf_counter() - tic

    cells = []
    for name, dataset in datasets.items():
        res = _Results(records, name, config.seeds)
        for budget, limit in zip(config.budgets, limits):
            cell = _evaluate(config, contexts[name], methods, rankings[name][limit], pools[name], res, limit,
                             scratch_ids[(name, limit)])
            cells.append({"dataset": name, "family": dataset.family, "budget": budget, "max_params": limit, **cell})
    summary = _summarise(config, cells, [m.name for m in methods])
    results: dict[str, Any] = {
        "config": config.to_dict(),
        "methods": {m.name: {"label": m.label, "pick": m.pick} for m in methods},
        "tau_conventions": TAU_CONVENTIONS,
        "zoo": {"path": str(zoo.path), "entries": len(zoo), "tasks": len({e.task for e in zoo.entries()}),
                "families": sorted({e.task_family for e in zoo.entries()}), "build": build.to_dict()},
        "transfer_records": {"records": zoo.transfer_count(), "run": transfer_report.to_dict()},
        "searchers": {v: {"fit_seconds": round(fit_seconds[v], 2), "records": s.records_,
                          "train_targets": s.result_.train_targets, "val_targets": s.result_.val_targets}
                      for v, s in searchers.items()},
        "test_datasets": {n: {"family": d.family, "classes": d.num_classes, "images": len(d)} for n, d in datasets.items()},
        "budgets": [{"spec": b, "max_params": limit} for b, limit in zip(config.budgets, limits)],
        "finetunes": {"jobs": len(set(jobs)), "done": len(records),
                      "failed": [{"dataset": j.dataset, "model_id": j.model_id, "epochs": j.epochs, "seed": j.seed,
                                  "scratch": j.scratch, "reason": r} for j, r in sorted(failures.items())],
                      "epochs_trained": int(sum(j.epochs for j in set(jobs)))},
        "noise_floor": {e: mean_or_none([c["noise_floor"][e] for c in cells]) for e in (str(b) for b in sorted({1, config.epochs}))},
        "logme_whole_zoo_seconds": logme_zoo,
        "cells": cells,
        "summary": summary,
    }
    results["goals"] = _goals(config, summary, cells)
    tic = time.perf_counter()
    emit(progress, "report", 0, 1, "embeddings")
    embeddings = _embeddings(searchers["main"], zoo, datasets)
    timings["embeddings"] = time.perf_counter() - tic
    timings["total"] = time.perf_counter() - start
    results["timings"] = {k: round(v, 2) for k, v in timings.items()}
    run = BenchRun(results=results, embeddings=embeddings, out_dir=out_dir)
    run.files = write_report(run, out_dir)
    emit(progress, "report", 1, 1, "done")
    return run
