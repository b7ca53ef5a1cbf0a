"""Searcher quality by leave-one-family-out validation on the zoo's transfer records.

For each family of the records' targets, a searcher is fitted on the records of every *other*
family (its checkpoint and stage-2 combiner are chosen on those families too), then ranks the
held-out family's targets as it would a new dataset: each target's candidates are the recorded
models whose source task is of another family (a dataset of an unseen family has no model of its
own family in the zoo), and the truth is the recorded test accuracy after the records' recipe.
Nothing of the held-out family chose anything.

Rankers, each scoring every candidate of a target:

- ``stage 1``: the searcher's expected accuracy from embeddings alone (no forward pass);
- ``stage 1+2``: the search as it runs: stage 1's top ``probe_k`` re-ordered by the fused
  expected accuracy (stage 1 + LogME + nearest-class-mean of one forward pass each), then the
  rest in stage-1 order;
- ``arch prior``: the mean accuracy lift over chance of the candidate's architecture on the
  training families' records (the zoo-wide mean for an architecture without records);
- ``static prior``: the mean source validation accuracy of the candidate's architecture;
- ``params``: larger first;
- ``LogME``, ``LogME (reference)``, ``NCM``: training-free scores of every candidate's features
  on a class-balanced sample of the target's training split (20 per class);
- ``random``: the expected values of a random order (tau 0; regret: best minus mean).

Metrics per target, then averaged per held-out family and over all targets: weighted tau
(``scipy.stats.weightedtau(true_acc, score, rank=None)``, weights by the true rank), top-1 regret
in points (best candidate minus the top-ranked one), and for the two searcher rows the mean
absolute error of ``predicted_acc``. They are computed over every candidate and again within
each parameter budget of ``--budgets`` (the bench's p35 and p70 of the zoo's parameter counts by
default): ``tans bench`` ranks within a budget, where the architectures left differ less.

``--no-probes`` skips stage 2 and the probe baselines (every candidate's forward pass, most of
the time): a quick check of stage 1 against the static rankers.

Rerun (after `tans zoo build` and `tans zoo transfer` of the benchmark zoo; 34 min on 2 cores with
``--workers 2``, probes included, on 2026-12-03)::

    .venv/bin/python benchmarks/searcher_quality.py --zoo zoo-bench [--no-probes]

Writes ``benchmarks/results/searcher_quality.{json,md}`` (``--out DIR`` to write elsewhere).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from tans._errors import TansError
from tans._json import dumps, json_safe
from tans._parallel import map_unordered
from tans.bench.config import resolve_budget
from tans.searcher import Searcher, transfer_table
from tans.searcher.meta_train import ranking_metrics
from tans.searcher.probe import probe_scores
from tans.zoo import Zoo

TEST_FAMILIES = ("icons", "glyphs-indic", "glyphs-southeast-asian", "glyphs-african")  # the bench's; never fitted on
RANKERS = ("stage 1", "stage 1+2", "arch prior", "static prior", "params", "LogME", "LogME (reference)", "NCM", "random")
BENCH_BUDGETS = ("p35", "p70")


def _mean(values) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else None


def evaluate_family(zoo: Zoo, family: str, params: dict, per_class: int, *, keep_scores: bool = False,
                    probes: bool = True, limits: dict[str, int | None] | None = None) -> list[dict]:
    """Fit without ``family``, then score each of its targets; one dict of metrics per target.

    ``limits`` maps a scope name to a parameter limit (None: every candidate); each target's
    metrics are computed in every scope, ``row[scope][ranker]``.
    """
    limits = limits or {"all": None}
    print(f"holding out {family}", file=sys.stderr, flush=True)
    tic = time.perf_counter()
    searcher = Searcher(**params).fit(zoo, exclude_families=(family, *TEST_FAMILIES))
    fit_seconds = time.perf_counter() - tic
    table = transfer_table(zoo)
    train = [t for t, f in enumerate(table.families) if f != family and f not in TEST_FAMILIES]
    entries = table.entries
    lifts = (table.accuracy[train] - table.chance[train, None]) / (1 - table.chance[train, None])
    by_arch: dict[str, list[float]] = {}
    for j, e in enumerate(entries):
        by_arch.setdefault(e.arch, []).extend(lifts[:, j][np.isfinite(lifts[:, j])].tolist())
    overall = float(np.nanmean(lifts))
    arch_prior = {a: float(np.mean(v)) if v else overall for a, v in by_arch.items()}
    source_acc: dict[str, list[float]] = {}
    for e in entries:
        source_acc.setdefault(e.arch, []).append(e.val_acc)
    if keep_scores:  # the fold's query embeddings of its record targets, to study target weights offline
        record_embeddings = {table.names[t]: searcher.embed_dataset(zoo.load_task(table.targets[t])) for t in train}
    rows = []
    for t in (t for t, f in enumerate(table.families) if f == family):
        cands = table.candidates(t)
        if len(cands) < 2:
            continue
        dataset = zoo.load_task(table.targets[t])
        chosen = [entries[j] for j in cands]
        acc = table.accuracy[t, cands].astype(np.float64)
        stage1, stage1_order = searcher.predict_entries(dataset, chosen, zoo=zoo, probe=False)
        scores = {
            "stage 1": stage1_order,
            "arch prior": np.array([arch_prior[e.arch] for e in chosen]),
            "static prior": np.array([np.mean(source_acc[e.arch]) for e in chosen]),
            "params": np.array([e.params for e in chosen], dtype=np.float64),
        }
        predicted = {"stage 1": stage1}
        found = None
        if probes:
            found = probe_scores(zoo, [e.id for e in chosen], dataset, per_class=per_class,
                                 scores=("logme", "logme-reference", "ncm", *(("knn",) if keep_scores else ())))
            scores |= {"LogME": found.scores["logme"], "LogME (reference)": found.scores["logme-reference"],
                       "NCM": found.scores["ncm"]}
        row = {"target": table.names[t], "family": family, "candidates": len(cands), "fit_seconds": fit_seconds}
        for scope, limit in limits.items():
            inside = np.array([limit is None or e.params <= limit for e in chosen])
            if inside.sum() < 2:
                continue
            at = np.flatnonzero(inside)
            here = {name: score[at] for name, score in scores.items()}
            guess = {name: p[at] for name, p in predicted.items()}
            if probes:  # stage 1+2 as the search runs it within this scope's budget
                here["stage 1+2"], guess["stage 1+2"] = _two_stage(searcher, dataset, [chosen[i] for i in at],
                                                                   here["stage 1"], guess["stage 1"], zoo)
            metrics = {}
            for name, score in here.items():
                m = ranking_metrics(acc[at], np.nan_to_num(score, nan=-np.inf))
                metrics[name] = {"tau": m["tau"], "regret": m["regret"]}
            for name, p in guess.items():
                metrics[name]["mae"] = ranking_metrics(acc[at], p)["mae"]
            metrics["random"] = {"tau": 0.0, "regret": float(100 * (acc[at].max() - acc[at].mean()))}
            row[scope] = metrics | {"candidates": int(inside.sum())}
        if keep_scores:  # every candidate's scores, to study other fusions offline
            row["scores"] = {"ids": [e.id for e in chosen], "acc": acc.tolist(), "stage1": stage1.tolist(),
                             "stage1_order": stage1_order.tolist(),
                             "params": [e.params for e in chosen], "chance": float(table.chance[t])}
            query = searcher.embed_dataset(dataset)  # unit vectors: the dot product is the cosine
            row["scores"]["similarity"] = {name: float(query @ e) for name, e in record_embeddings.items()}
            if found is not None:
                row["scores"] |= {name: np.asarray(v, dtype=np.float64).tolist() for name, v in found.scores.items()}
                row["scores"]["probe_chance"] = float(found.chance)
        rows.append(row)
        first = next(iter(limits))
        name = "stage 1+2" if probes else "stage 1"
        print(f"  {family} / {table.names[t]}: {name} regret {row[first][name]['regret']:.2f}, "
              f"tau {row[first][name]['tau']:.3f} ({first})", file=sys.stderr, flush=True)
    return rows


def _family_job(family: str, zoo_path: str, params: dict, per_class: int, options: dict) -> tuple[str, list | str]:
    """One held-out family in a worker process: its rows, or the error that stopped it (named by the driver)."""
    try:
        return family, evaluate_family(Zoo.open(zoo_path), family, params, per_class, **options)
    except Exception as exc:  # noqa: BLE001 - a worker must not raise; the driver reports it
        return family, f"{type(exc).__name__}: {exc}"


def _two_stage(searcher: Searcher, dataset, chosen: list, stage1_order: np.ndarray, stage1: np.ndarray,
               zoo: Zoo) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1+2's order score and predicted accuracy: the top ``probe_k`` by stage 1 re-ordered by
    the fused expected accuracy, then the rest in stage-1 order."""
    k = min(searcher.probe_k, len(chosen))
    top = np.argsort(-stage1_order, kind="stable")[:k]
    fused, order = searcher.predict_entries(dataset, [chosen[i] for i in top], zoo=zoo, probe=True)
    predicted = stage1.copy()
    predicted[top] = fused
    two_stage = stage1_order - 100.0  # below every probed model, in stage-1 order
    two_stage[top] = order
    return two_stage, predicted


def summarise(rows: list[dict], scope: str) -> dict:
    out = {}
    rows = [r[scope] for r in rows if scope in r]
    for name in RANKERS:
        if any(name in r for r in rows):
            out[name] = {m: _mean(r[name].get(m) for r in rows if name in r) for m in ("tau", "regret", "mae")}
    return out


def _scope_title(scope: str, limit: int | None) -> str:
    return "every candidate" if limit is None else f"within the {scope} budget (<= {limit:,} parameters)"


def write(results: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "searcher_quality.json").write_text(dumps(results, indent=2) + "\n")
    lines = [
        "# Searcher quality: leave-one-family-out on the transfer records",
        "",
        f"Zoo: {results['zoo']} ({results['entries']} models; {results['records']} transfer records of "
        f"{results['record_models']} models on {results['targets']} targets from {len(results['record_families'])} families; "
        f"recipe: {results['recipe']}). For each family, a searcher fitted on the other families ranks that family's "
        "targets; candidates are the recorded models of other source families. tau = "
        "`scipy.stats.weightedtau(true_acc, score, rank=None)`; regret = best candidate minus the top-ranked one, "
        "test-accuracy points; MAE of `predicted_acc`. Probe baselines see 20 images per class. Metrics are computed "
        "over every candidate and again within each budget of the bench (a percentile of the zoo's parameter counts), "
        "where the search ranks.",
    ]
    fmt = lambda v, f: "-" if v is None else f.format(v)  # noqa: E731
    for scope, limit in results["scopes"].items():
        overall = results["overall"][scope]
        lines += ["", f"## {_scope_title(scope, limit).capitalize()}", "",
                  "| ranker | weighted tau | top-1 regret (points) | MAE of predicted_acc |", "|---|---|---|---|"]
        for name, m in overall.items():
            lines.append(f"| {name} | {fmt(m['tau'], '{:.3f}')} | {fmt(m['regret'], '{:.2f}')} | {fmt(m['mae'], '{:.3f}')} |")
        shown = [n for n in ("stage 1+2", "stage 1", "arch prior", "LogME") if n in overall]
        lines += ["", f"Per held-out family ({' / '.join(shown)}):", "",
                  "| family | targets | tau | regret (points) |", "|---|---|---|---|"]
        for family, fam in results["families"].items():
            got = fam["scopes"].get(scope, {})
            tau = " / ".join(fmt(got.get(n, {}).get("tau"), "{:.2f}") for n in shown)
            reg = " / ".join(fmt(got.get(n, {}).get("regret"), "{:.2f}") for n in shown)
            lines.append(f"| {family} | {fam['targets']} | {tau} | {reg} |")
    lines += ["", f"Searcher settings: `{json.dumps(results['searcher'])}`; {results['minutes']:.1f} minutes in all.",
              "", f"Command: `{results['command']}`"]
    (out_dir / "searcher_quality.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=Path("zoo-bench"))
    parser.add_argument("--searcher-json", default="{}", help="Searcher keyword arguments, as JSON")
    parser.add_argument("--per-class", type=int, default=20, help="probe images per class of the baselines")
    parser.add_argument("--families", nargs="*", help="only these held-out families")
    parser.add_argument("--budgets", nargs="*", default=list(BENCH_BUDGETS),
                        help="parameter budgets (pNN or a count) to rank within, besides every candidate")
    parser.add_argument("--no-probes", action="store_true",
                        help="skip stage 2 and the probe baselines (no forward pass): stage 1 and the static rankers")
    parser.add_argument("--workers", type=int, default=1,
                        help="held-out families fitted at once, each in a one-thread process")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--keep-scores", action="store_true",
                        help="also write every candidate's scores per target, and the query embedding's cosine "
                             "similarity to each record target's, to searcher_quality.json")
    args = parser.parse_args()
    start = time.perf_counter()
    zoo = Zoo.open(args.zoo)
    params = json.loads(args.searcher_json)
    table = transfer_table(zoo, exclude_families=TEST_FAMILIES)
    zoo_params = np.array([e.params for e in zoo.entries()])
    try:
        limits = {"all": None} | {str(b): resolve_budget(int(b) if b.isdigit() else b, zoo_params) for b in args.budgets}
    except TansError as exc:
        raise SystemExit(f"--budgets: {exc}") from None
    families = args.families or sorted(set(table.families))
    options = {"keep_scores": args.keep_scores, "probes": not args.no_probes, "limits": limits}
    done: dict[str, list] = {}
    failed: dict[str, str] = {}
    jobs = (map_unordered(_family_job, families, str(args.zoo), params, args.per_class, options, workers=args.workers)
            if args.workers > 1 else (_family_job(f, str(args.zoo), params, args.per_class, options) for f in families))
    for family, found in jobs:
        if isinstance(found, str):
            failed[family] = found
            print(f"{family} failed: {found}", file=sys.stderr, flush=True)
        else:
            done[family] = found
            print(f"{family} done ({len(found)} targets)", file=sys.stderr, flush=True)
    if failed:
        raise SystemExit(f"{len(failed)} of {len(families)} held-out families failed: "
                         + "; ".join(f"{f}: {e}" for f, e in failed.items()))
    per_family, rows = {}, []
    for family in families:  # in a fixed order, whatever order the workers finished in
        rows += done[family]
        per_family[family] = {"targets": len(done[family]),
                              "scopes": {scope: summarise(done[family], scope) for scope in limits}}
    results = {
        "zoo": str(args.zoo),
        "entries": len(table.entries),
        "records": table.records,
        "record_models": int(table.observed.any(axis=0).sum()),
        "targets": len(table.targets),
        "record_families": sorted(set(table.families)),
        "recipe": table.recipe,
        "searcher": params,
        "workers": args.workers,
        "probes": not args.no_probes,
        "scopes": limits,
        "families": per_family,
        "overall": {scope: summarise(rows, scope) for scope in limits},
        "targets_detail": rows,
        "minutes": (time.perf_counter() - start) / 60,
        "command": "python " + " ".join(sys.argv),
    }
    write(json_safe(results), args.out)
    print((args.out / "searcher_quality.md").read_text())


if __name__ == "__main__":
    main()
