"""Stage 1 of two searcher artifacts on the same `tans bench` run's candidate pools, cell by cell.

A change of the searcher or of its records changes which models enter the bench's pool, so two
bench runs' taus are not paired. This scores the pool members of every cell (test dataset x
budget) of one run's results.json with stage 1 of searcher A and of searcher B (each artifact
reads its own stored track records), and reports each one's weighted tau against the pool's
fine-tuned accuracy in both conventions of :mod:`tans.bench.metrics`, B minus A with a 95%
bootstrap interval over cells (an interval that holds 0 is a tie), by test family too, and a
95% bootstrap interval of B's mean (for the goal of 0.60). B's scores are checked against those the
run stored for its own searcher when B is that searcher. Diagnostic only: the test datasets choose
nothing here.

Rerun (minutes; the zoo and the two searcher folders of runs with the same zoo entries)::

    .venv/bin/python benchmarks/bench_stage1_paired.py RUN/results.json --zoo RUN/zoo \
        --a OLD_RUN/searchers/main --b RUN/searchers/main --label-a "6 targets" --label-b "24 targets"
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np

from tans.bench.metrics import TAU_CONVENTIONS, weighted_tau
from tans.data import load_dataset
from tans.errors import TansError
from tans.searcher import Searcher
from tans.zoo import Zoo

BOOTSTRAPS = 4000


def _interval(values: np.ndarray, sign: str = "+", seed: int = 0) -> str:
    """Mean and 95% bootstrap interval over cells (``sign`` "+": signed, for a difference)."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (BOOTSTRAPS, len(values)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return f"{values.mean():{sign}.3f} [{lo:{sign}.3f}, {hi:{sign}.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="results.json of a tans bench run")
    parser.add_argument("--zoo", required=True, help="the run's zoo")
    parser.add_argument("--a", required=True, help="searcher folder A")
    parser.add_argument("--b", required=True, help="searcher folder B")
    parser.add_argument("--label-a", default="A")
    parser.add_argument("--label-b", default="B")
    args = parser.parse_args()
    with open(args.results) as fh:
        run = json.load(fh)
    try:
        zoo = Zoo.open(args.zoo)
        searchers = {"a": Searcher.load(args.a), "b": Searcher.load(args.b)}
    except TansError as exc:
        raise SystemExit(str(exc)) from None
    entries = {e.id: e for e in zoo.entries()}
    epochs = sorted({int(e) for cell in run["cells"] for e in next(iter(cell["tau"].values()))})
    taus: dict[tuple[str, str, int], list[float]] = defaultdict(list)  # (searcher, convention, epochs) -> per cell
    families, worst = [], 0.0
    datasets = {}
    for cell in run["cells"]:
        stored = cell["methods"].get("searcher-stage1", {}).get("scores")
        if not stored:
            continue
        members = list(stored)
        if missing := [m for m in members if m not in entries]:
            raise SystemExit(f"{args.zoo} lacks pool member {missing[0]} of {cell['dataset']}; pass the zoo of that bench run.")
        dataset = datasets.setdefault(cell["dataset"], load_dataset(cell["dataset"]))
        acc = {m["id"]: m for m in cell["pool"]}
        families.append(cell["family"])
        for key, searcher in searchers.items():
            _, scores = searcher.predict_entries(dataset, [entries[m] for m in members], zoo=zoo, probe=False)
            if key == "b":
                worst = max(worst, float(np.max(np.abs(np.asarray(scores) - [stored[m] for m in members]))))
            for e in epochs:
                tau = weighted_tau(scores, [acc[m][f"acc@{e}"] for m in members])
                for convention in TAU_CONVENTIONS:
                    taus[key, convention, e].append(tau[convention])
    if not families:
        raise SystemExit(f"{args.results} stores no stage-1 scores of pool members; rerun it with a tans bench that keeps them.")
    print(f"# Stage 1 of two searchers on the pools of {args.results}\n")
    print(f"{len(families)} cells; A: {args.label_a} (`{args.a}`), B: {args.label_b} (`{args.b}`). Weighted tau "
          "against the pool's fine-tuned accuracy (mean over seeds) of the members within the cell's budget, "
          "mean over cells; B - A: paired difference, 95% bootstrap interval over cells. "
          f"B's scores differ from those the run stored for its stage 1 by at most {worst:.1e}. The accuracies are "
          "read as results.json stores them (6 decimals), so members of equal mean accuracy tie; a run's own "
          "taus from before the bench tied them too (2026-12-04) read unrounded means, where float rounding "
          "can order them, and so differ slightly.\n")
    print("| convention | epochs | A | B | B - A | B's mean, 95% interval |\n|---|---|---|---|---|---|")
    for convention in TAU_CONVENTIONS:
        for e in epochs:
            a, b = np.array(taus["a", convention, e]), np.array(taus["b", convention, e])
            print(f"| {convention} | {e} | {a.mean():.3f} | {b.mean():.3f} | {_interval(b - a)} | {_interval(b, sign='')} |")
    print("\nBy test family (symmetric convention, 1 epoch):\n\n| family | cells | A | B | B - A |\n|---|---|---|---|---|")
    a, b = np.array(taus["a", "symmetric", epochs[0]]), np.array(taus["b", "symmetric", epochs[0]])
    for family in sorted(set(families)):
        at = np.array([f == family for f in families])
        print(f"| {family} | {at.sum()} | {a[at].mean():.3f} | {b[at].mean():.3f} | {_interval(b[at] - a[at])} |")


if __name__ == "__main__":
    main()
