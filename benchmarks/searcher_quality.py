"""Searcher quality on the zoo's held-out validation tasks, next to two static rankers.

Rerun (from the repository root; seconds to a minute)::

    .venv/bin/python benchmarks/searcher_quality.py --zoo ZOO_DIR --searcher SEARCHER_DIR --label "<which zoo>"

Writes ``benchmarks/results/searcher_quality.{json,md}`` (``--out DIR`` to write elsewhere).

For each validation task the searcher held out at meta-training (``Searcher.val_tasks_``; never
trained on), three rankers score every zoo entry:

- ``searcher``: retrieval by cosine similarity of the task's query embedding and the model
  embeddings; the predictor's predicted accuracy for tau;
- ``params``: larger models first (parameter count);
- ``arch mean acc``: the mean validation accuracy of the entry's architecture on the *other* tasks
  of the zoo (entries of the validation task itself excluded; the zoo-wide mean when an
  architecture was seen on no other task).

Metrics, averaged over validation tasks:

- ``recall@10``: whether the task's best model (highest ``val_acc`` among the models trained on
  it) is among the ranker's top 10 of *all* zoo entries;
- ``tau``: weighted Kendall tau between the true accuracies of the task's own models and the
  ranker's scores for them, in the "true order" convention
  ``scipy.stats.weightedtau(true_acc, score, rank=None)`` (hyperbolic weights by the true rank),
  over tasks with at least two models of different accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import weightedtau


def _recall(scores: np.ndarray, best: int, k: int) -> float:
    top = np.argsort(-scores, kind="stable")[:k]
    return float(best in top)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zoo", type=Path, required=True)
    parser.add_argument("--searcher", type=Path, required=True)
    parser.add_argument("--label", default="", help="Which zoo this is, written into the results.")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(2)
    from tans.data import load_dataset
    from tans.searcher import Searcher
    from tans.zoo import Zoo

    zoo = Zoo.open(args.zoo)
    searcher = Searcher.load(args.searcher)
    entries = zoo.entries()
    if not searcher.val_tasks_:
        print("error: the searcher was meta-trained without validation tasks (--val-fraction 0).", file=sys.stderr)
        return 2
    acc = np.array([e.val_acc for e in entries])
    tasks = np.array([e.task for e in entries])
    archs = np.array([e.arch for e in entries])
    params = np.array([e.params for e in entries], dtype=np.float64)
    model_emb = searcher.embed_entries(entries)

    rankers = ("searcher", "params", "arch mean acc")
    per_task = []
    for task in searcher.val_tasks_:
        own = np.flatnonzero(tasks == task)
        if own.size == 0:
            continue
        best = int(own[np.argmax(acc[own])])
        q = searcher.embed_dataset(load_dataset(task))
        similarity = model_emb @ q
        predicted = searcher.predict(q, model_emb)
        others = tasks != task
        arch_mean = np.array(
            [acc[others & (archs == a)].mean() if (others & (archs == a)).any() else acc[others].mean() for a in archs]
        )
        retrieval = {"searcher": similarity, "params": params, "arch mean acc": arch_mean}
        ranking = {"searcher": predicted, "params": params, "arch mean acc": arch_mean}
        row = {"task": task, "models": int(own.size)}
        for name in rankers:
            row[f"{name} recall@{args.k}"] = _recall(retrieval[name], best, args.k)
            tau = np.nan
            if own.size >= 2 and np.ptp(acc[own]) > 0:
                tau = float(weightedtau(acc[own], ranking[name][own], rank=None).statistic)
            row[f"{name} tau"] = tau
        per_task.append(row)

    summary = {}
    for name in rankers:
        taus = [r[f"{name} tau"] for r in per_task if not np.isnan(r[f"{name} tau"])]
        summary[name] = {
            f"recall@{args.k}": float(np.mean([r[f"{name} recall@{args.k}"] for r in per_task])),
            "tau": float(np.mean(taus)) if taus else None,
            "tau_tasks": len(taus),
        }
    report = {
        "zoo": args.label or str(args.zoo),
        "zoo_entries": len(entries),
        "val_tasks": len(per_task),
        "tau_convention": "scipy.stats.weightedtau(true_acc, score, rank=None)",
        "summary": summary,
        "per_task": [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in per_task],
        "command": "python benchmarks/searcher_quality.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "searcher_quality.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Searcher quality on held-out validation tasks",
        "",
        f"Zoo: {report['zoo']} ({len(entries)} entries); {len(per_task)} validation tasks. "
        f"tau = `{report['tau_convention']}` over each task's own models.",
        "",
        f"| ranker | recall@{args.k} of the best model | weighted tau | tasks with tau |",
        "|---|---|---|---|",
        *[f"| {name} | {s[f'recall@{args.k}']:.3f} | {_fmt(s['tau'])} | {s['tau_tasks']} |" for name, s in summary.items()],
        "",
        f"Command: `{report['command']}`",
        "",
    ]
    (args.out / "searcher_quality.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
