"""Stage 2's order blend and probe count, compared on leave-one-family-out scores.

Reads the JSON that ``benchmarks/searcher_quality.py --keep-scores`` writes (every candidate's
stage-1 score of the fold's searcher, its probe scores and its recorded accuracy, per target) and
replays stage 2 with other choices: the top ``k`` by stage 1, re-ordered by a weighted sum of the
shortlist's z-scores. Prints the mean top-1 regret and weighted tau of each choice, and for a few
the paired difference to the searcher's own stage 1+2 with a 95% bootstrap interval over targets
and the difference per family. This is how ``probe_stage1_weight`` (0.5) and ``probe_k`` (6) were
chosen; the numbers are validation numbers, and the choice made on them makes the chosen one's
optimistic.

``--scope`` replays within one budget of the run only (default: every scope it has; a budget ranks
only the candidates under it, as a search does).

Rerun (a few seconds, after the ~35-minute leave-one-family-out run)::

    .venv/bin/python benchmarks/searcher_quality.py --zoo zoo-bench --keep-scores --out lofo
    .venv/bin/python benchmarks/stage2_blend.py lofo/searcher_quality.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy.stats import weightedtau

WEIGHTINGS = [
    {"stage1": 1, "logme": 1, "ncm": 1}, {"stage1": 1, "logme": 1, "ncm": 1, "knn": 1}, {"stage1": 1, "ncm": 1},
    {"stage1": 1, "logme": 1}, {"ncm": 1}, {"logme": 1}, {"stage1": 2, "logme": 2, "ncm": 1},
    {"stage1": 1, "logme": 2, "ncm": 2}, {"stage1": 0.5, "logme": 1, "ncm": 1},
]
PROBE_COUNTS = (4, 6, 8, 10, 12, 16)


def _z(values: np.ndarray) -> np.ndarray:
    std = values.std()
    return (values - values.mean()) / std if std > 1e-12 else np.zeros_like(values)


def replay(rows: list[dict], k: int, weights: dict[str, float],
           max_params: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-target top-1 regret (points) and weighted tau of stage 2 with ``k`` probes and ``weights``.

    ``max_params`` ranks only the candidates within that budget, as a search does.
    """
    regrets, taus = [], []
    for row in rows:
        s = row["scores"]
        keep = np.ones(len(s["acc"]), bool) if max_params is None else np.asarray(s["params"]) <= max_params
        acc = np.asarray(s["acc"])[keep]
        stage1 = np.asarray(s.get("stage1_order", s["stage1"]))[keep]  # runs before track records had one score
        top = np.argsort(-stage1, kind="stable")[: min(k, len(stage1))]
        blend = sum(w * _z(np.asarray(s[name], dtype=np.float64)[keep][top]) for name, w in weights.items())
        score = stage1 - 100.0  # the unprobed, below every probed model, in stage-1 order
        score[top] = 100.0 + blend + 1e-6 * _z(stage1[top])  # ties: stage 1
        regrets.append(100 * (acc.max() - acc[np.argmax(score)]))
        taus.append(weightedtau(acc, score, rank=None)[0])
    return np.array(regrets), np.array(taus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scores", help="searcher_quality.json written with --keep-scores")
    parser.add_argument("--scope", help="only this scope of the run ('all', 'p35', ...); default: each")
    args = parser.parse_args()
    with open(args.scores) as fh:
        data = json.load(fh)
    rows = [r for r in data["targets_detail"] if "scores" in r]
    scopes = data.get("scopes", {"all": None})  # runs from before budgets ranked every candidate only
    if args.scope is not None and args.scope not in scopes:
        raise SystemExit(f"--scope {args.scope!r}: the run has scopes {sorted(scopes)}; pass one of them.")
    if not rows:
        raise SystemExit(f"{args.scores} holds no per-candidate scores; rerun searcher_quality.py with --keep-scores.")
    if args.scope is not None:
        scopes = {args.scope: scopes[args.scope]}
    for scope, max_params in scopes.items():
        print(f"\n== {scope}" + ("" if max_params is None else f" (<= {max_params:,} parameters)"))
        _report(rows, scope, max_params)


def _report(rows: list[dict], scope: str, max_params: int | None) -> None:
    # a target with fewer than two candidates in a budget has no metrics there; runs from before
    # budgets keep their (every-candidate) metrics on the row itself
    rows = [r for r in rows if scope in r or (scope == "all" and "stage 1+2" in r)]
    own = np.array([r.get(scope, r)["stage 1+2"]["regret"] for r in rows])
    families = np.array([r["family"] for r in rows])
    print(f"{len(rows)} targets; the searcher's own stage 1+2: regret {own.mean():.2f}")
    for k in PROBE_COUNTS:
        for weights in WEIGHTINGS:
            regrets, taus = replay(rows, k, weights, max_params)
            print(f"k={k:2d} {weights}: regret {regrets.mean():.2f}, tau {taus.mean():.3f}")
    rng = np.random.default_rng(0)
    print("paired difference to the searcher's own stage 1+2 (negative: lower regret), 95% bootstrap over targets:")
    for k, weights in [(6, WEIGHTINGS[-1]), (6, WEIGHTINGS[0]), (8, WEIGHTINGS[-1]), (8, WEIGHTINGS[0]), (10, WEIGHTINGS[-1])]:
        diff = replay(rows, k, weights, max_params)[0] - own
        boots = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(4000)]
        per_family = {str(f): round(float(diff[families == f].mean()), 2) for f in np.unique(families)}
        print(f"k={k} {weights}: {diff.mean():+.2f} [{np.percentile(boots, 2.5):+.2f}, {np.percentile(boots, 97.5):+.2f}]"
              f" per family {per_family}")


if __name__ == "__main__":
    main()
