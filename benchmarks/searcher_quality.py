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
absolute error of ``predicted_acc``.

Rerun (after `tans zoo build` and `tans zoo transfer` of the benchmark zoo; ~20-30 min on 2 cores)::

    .venv/bin/python benchmarks/searcher_quality.py --zoo zoo-bench

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

from tans._json import dumps, json_safe
from tans.searcher import Searcher, transfer_table
from tans.searcher.meta_train import ranking_metrics
from tans.searcher.probe import probe_scores
from tans.zoo import Zoo

TEST_FAMILIES = ("icons", "glyphs-indic", "glyphs-southeast-asian", "glyphs-african")  # the bench's; never fitted on
RANKERS = ("stage 1", "stage 1+2", "arch prior", "static prior", "params", "LogME", "LogME (reference)", "NCM", "random")


def _mean(values) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else None


def evaluate_family(zoo: Zoo, family: str, params: dict, per_class: int, keep_scores: bool = False) -> list[dict]:
    """Fit without ``family``, then score each of its targets; one dict of metrics per target."""
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
    rows = []
    for t in (t for t, f in enumerate(table.families) if f == family):
        cands = table.candidates(t)
        if len(cands) < 2:
            continue
        dataset = zoo.load_task(table.targets[t])
        chosen = [entries[j] for j in cands]
        acc = table.accuracy[t, cands].astype(np.float64)
        stage1, _ = searcher.predict_entries(dataset, chosen, zoo=zoo, probe=False)
        # stage 1+2 as the search runs it: the top probe_k by stage 1, re-ordered by the fused score
        k = min(searcher.probe_k, len(cands))
        top = np.argsort(-stage1, kind="stable")[:k]
        fused, order = searcher.predict_entries(dataset, [chosen[i] for i in top], zoo=zoo, probe=True)
        predicted = stage1.copy()
        predicted[top] = fused
        two_stage = stage1 - 100.0  # below every probed model, in stage-1 order
        two_stage[top] = order
        probes = probe_scores(zoo, [e.id for e in chosen], dataset, per_class=per_class,
                              scores=("logme", "logme-reference", "ncm", *(("knn",) if keep_scores else ())))
        scores = {
            "stage 1": stage1,
            "stage 1+2": two_stage,
            "arch prior": np.array([arch_prior[e.arch] for e in chosen]),
            "static prior": np.array([np.mean(source_acc[e.arch]) for e in chosen]),
            "params": np.array([e.params for e in chosen], dtype=np.float64),
            "LogME": probes.scores["logme"],
            "LogME (reference)": probes.scores["logme-reference"],
            "NCM": probes.scores["ncm"],
        }
        row = {"target": table.names[t], "family": family, "candidates": len(cands), "fit_seconds": fit_seconds}
        if keep_scores:  # every candidate's scores, to study other fusions offline
            row["scores"] = {"ids": [e.id for e in chosen], "acc": acc.tolist(), "stage1": stage1.tolist(),
                             **{name: np.asarray(probes.scores[name], dtype=np.float64).tolist() for name in probes.scores},
                             "chance": float(table.chance[t]), "probe_chance": float(probes.chance)}
        for name, score in scores.items():
            metrics = ranking_metrics(acc, np.nan_to_num(score, nan=-np.inf))
            row[name] = {"tau": metrics["tau"], "regret": metrics["regret"]}
        row["stage 1"]["mae"] = ranking_metrics(acc, stage1)["mae"]
        row["stage 1+2"]["mae"] = ranking_metrics(acc, predicted)["mae"]
        row["random"] = {"tau": 0.0, "regret": float(100 * (acc.max() - acc.mean()))}
        rows.append(row)
        print(f"  {family} / {table.names[t]}: stage1+2 regret {row['stage 1+2']['regret']:.2f}, "
              f"tau {row['stage 1+2']['tau']:.3f}", file=sys.stderr, flush=True)
    return rows


def summarise(rows: list[dict]) -> dict:
    out = {}
    for name in RANKERS:
        out[name] = {m: _mean(r[name].get(m) for r in rows) for m in ("tau", "regret", "mae")}
    return out


def write(results: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "searcher_quality.json").write_text(dumps(results, indent=2) + "\n")
    overall = results["overall"]
    lines = [
        "# Searcher quality: leave-one-family-out on the transfer records",
        "",
        f"Zoo: {results['zoo']} ({results['entries']} models; {results['records']} transfer records of "
        f"{results['record_models']} models on {results['targets']} targets from {len(results['record_families'])} families; "
        f"recipe: {results['recipe']}). For each family, a searcher fitted on the other families ranks that family's "
        "targets; candidates are the recorded models of other source families. tau = "
        "`scipy.stats.weightedtau(true_acc, score, rank=None)`; regret = best candidate minus the top-ranked one, "
        "test-accuracy points; MAE of `predicted_acc`. Probe baselines see 20 images per class.",
        "",
        "| ranker | weighted tau | top-1 regret (points) | MAE of predicted_acc |",
        "|---|---|---|---|",
    ]
    fmt = lambda v, f: "-" if v is None else f.format(v)  # noqa: E731
    for name in RANKERS:
        m = overall[name]
        lines.append(f"| {name} | {fmt(m['tau'], '{:.3f}')} | {fmt(m['regret'], '{:.2f}')} | {fmt(m['mae'], '{:.3f}')} |")
    lines += ["", "Per held-out family (stage 1+2 / stage 1 / arch prior / LogME):", "",
              "| family | targets | tau | regret (points) |", "|---|---|---|---|"]
    for family, fam in results["families"].items():
        tau = " / ".join(fmt(fam[n]["tau"], "{:.2f}") for n in ("stage 1+2", "stage 1", "arch prior", "LogME"))
        reg = " / ".join(fmt(fam[n]["regret"], "{:.2f}") for n in ("stage 1+2", "stage 1", "arch prior", "LogME"))
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
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--keep-scores", action="store_true",
                        help="also write every candidate's scores per target to searcher_quality.json")
    args = parser.parse_args()
    start = time.perf_counter()
    zoo = Zoo.open(args.zoo)
    params = json.loads(args.searcher_json)
    table = transfer_table(zoo, exclude_families=TEST_FAMILIES)
    families = args.families or sorted(set(table.families))
    per_family, rows = {}, []
    for family in families:
        print(f"holding out {family}", file=sys.stderr, flush=True)
        found = evaluate_family(zoo, family, params, args.per_class, args.keep_scores)
        rows += found
        per_family[family] = {"targets": len(found), **summarise(found)}
    results = {
        "zoo": str(args.zoo),
        "entries": len(table.entries),
        "records": table.records,
        "record_models": int(table.observed.any(axis=0).sum()),
        "targets": len(table.targets),
        "record_families": sorted(set(table.families)),
        "recipe": table.recipe,
        "searcher": params,
        "families": per_family,
        "overall": summarise(rows),
        "targets_detail": rows,
        "minutes": (time.perf_counter() - start) / 60,
        "command": "python " + " ".join(sys.argv),
    }
    write(json_safe(results), args.out)
    print((args.out / "searcher_quality.md").read_text())


if __name__ == "__main__":
    main()
