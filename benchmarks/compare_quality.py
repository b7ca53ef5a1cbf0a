"""Paired comparison of two leave-one-family-out runs of benchmarks/searcher_quality.py, target by target.

For each scope (every candidate, each budget) and each ranker both runs report: the mean of run B
minus run A over the targets both ranked, with a 95% bootstrap interval over targets, for weighted
tau and top-1 regret. An interval that holds 0 is a tie.

Rerun::

    .venv/bin/python benchmarks/compare_quality.py A/searcher_quality.json B/searcher_quality.json
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

BOOTSTRAPS = 4000


def _interval(diff: np.ndarray, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (BOOTSTRAPS, len(diff)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _rows(run: dict) -> dict[str, dict]:
    """Target -> its row by scope; a run from before budgets (no ``scopes``) ranked every candidate only."""
    if "scopes" in run:
        return {r["target"]: r for r in run["targets_detail"]}
    return {r["target"]: {"all": r} for r in run["targets_detail"]}


def compare(a: dict, b: dict, ranker: str, ranker_b: str | None = None) -> list[str]:
    """Markdown rows: B's ``ranker_b`` minus A's ``ranker`` per scope and metric."""
    ranker_b = ranker_b or ranker
    rows_a, rows_b = _rows(a), _rows(b)
    lines = []
    for scope in a.get("scopes", ["all"]):
        for metric in ("tau", "regret"):
            pairs = [(rows_a[t][scope][ranker][metric], rows_b[t][scope][ranker_b][metric])
                     for t in rows_a if t in rows_b and scope in rows_a[t] and scope in rows_b[t]
                     and ranker in rows_a[t][scope] and ranker_b in rows_b[t][scope]]
            pairs = [(x, y) for x, y in pairs if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
            if len(pairs) < 2:
                continue
            x, y = np.array(pairs).T
            lo, hi = _interval(y - x)
            verdict = "tie" if lo <= 0 <= hi else ("B higher" if lo > 0 else "B lower")
            lines.append(f"| {scope} | {metric} | {len(pairs)} | {x.mean():.3f} | {y.mean():.3f} | "
                         f"{(y - x).mean():+.3f} [{lo:+.3f}, {hi:+.3f}] | {verdict} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="run A's searcher_quality.json")
    parser.add_argument("b", help="run B's searcher_quality.json")
    parser.add_argument("--ranker", default="stage 1", help="the ranker to compare (A's)")
    parser.add_argument("--ranker-b", help="B's ranker, when it differs (e.g. 'arch prior' against 'stage 1')")
    args = parser.parse_args()
    with open(args.a) as fa, open(args.b) as fb:
        a, b = json.load(fa), json.load(fb)
    lines = compare(a, b, args.ranker, args.ranker_b)
    if not lines:
        known = sorted({name for r in _rows(b).values() for name, m in r.get("all", {}).items() if isinstance(m, dict)})
        raise SystemExit(f"No target has '{args.ranker}' in A and '{args.ranker_b or args.ranker}' in B; "
                         f"rankers in B: {', '.join(known)}.")
    print(f"A: `{a['command']}` (searcher {json.dumps(a['searcher'])})")
    print(f"B: `{b['command']}` (searcher {json.dumps(b['searcher'])})")
    print(f"\nB's {args.ranker_b or args.ranker} minus A's {args.ranker}, paired by target (95% bootstrap over targets):\n")
    print("| scope | metric | targets | A | B | B - A [95% CI] | verdict |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
