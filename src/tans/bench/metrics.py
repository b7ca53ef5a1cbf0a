"""Benchmark metrics: regret and rel@k against the oracle, weighted Kendall tau, epochs to a target.

Accuracies are fractions in [0, 1]; regret is reported in percentage points (``100 * (oracle -
picked)``) because that is how the goals are stated.

Differences between methods come with :func:`paired_bootstrap`: a 95% interval over test cells and
seeds; a difference whose interval holds 0 is a tie.

Weighted Kendall tau has two conventions in this field that give different numbers, so both are
returned, labelled:

- ``"symmetric"``: ``scipy.stats.weightedtau(score, acc)`` (``rank=True``: the hyperbolic weights
  follow the decreasing order of each variable in turn and the two values are averaged);
- ``"true_order"``: ``scipy.stats.weightedtau(acc, score, rank=None)`` (weights follow the order of
  the true accuracy only: getting the best models right matters most).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy.stats import weightedtau

from tans._errors import TansError

__all__ = [
    "TAU_CONVENTIONS",
    "regret_points",
    "rel_at_k",
    "weighted_tau",
    "TAU_CEILINGS",
    "tau_ceilings",
    "epochs_to_reach",
    "speed_ratio",
    "mean_or_none",
    "paired_bootstrap",
]

TAU_CONVENTIONS = {
    "symmetric": "scipy.stats.weightedtau(score, acc)",
    "true_order": "scipy.stats.weightedtau(acc, score, rank=None)",
}


def regret_points(picked: float, oracle: float) -> float:
    """Oracle accuracy minus the picked model's, in percentage points.

    Parameters
    ----------
    picked, oracle : float
        Accuracies in [0, 1].

    Returns
    -------
    float
        ``100 * (oracle - picked)``; negative when the pick beats the pool's best (possible when
        the pick is not in the pool, e.g. a mean over random draws is never above it).
    """
    return 100.0 * (float(oracle) - float(picked))


def rel_at_k(accuracies: Sequence[float], oracle: float, k: int = 3) -> float:
    """Best accuracy among the first ``k`` picks divided by the oracle accuracy.

    Parameters
    ----------
    accuracies : sequence of float
        Accuracies of a method's ranked picks, best-ranked first.
    oracle : float
        Accuracy of the best model of the pool.
    k : int
        How many picks count.

    Returns
    -------
    float
        NaN when there are no picks or the oracle is 0.

    Raises
    ------
    TansError
        If ``k`` is below 1.
    """
    if k < 1:
        raise TansError(f"rel@k needs k >= 1, got {k}.")
    top = [float(a) for a in list(accuracies)[:k]]
    if not top or oracle <= 0:
        return math.nan
    return max(top) / float(oracle)


def weighted_tau(score: Sequence[float], acc: Sequence[float]) -> dict[str, float]:
    """Weighted Kendall tau between a method's scores and true accuracies, both conventions.

    Parameters
    ----------
    score : sequence of float
        The method's score for each candidate (higher: predicted better).
    acc : sequence of float
        True fine-tuned accuracy of each candidate.

    Returns
    -------
    dict
        ``{"symmetric": float, "true_order": float}`` (see :data:`TAU_CONVENTIONS`); NaN when
        there are fewer than two candidates or either input is constant.

    Raises
    ------
    TansError
        If the lengths differ.
    """
    score = np.asarray(score, dtype=np.float64)
    # accuracies are means over seeds: equal ones summed in another order differ in the last bit,
    # which would rank a tie
    acc = np.round(np.asarray(acc, dtype=np.float64), 12)
    if score.shape != acc.shape:
        raise TansError(f"weighted_tau needs as many scores as accuracies, got {score.size} and {acc.size}.")
    if score.size < 2 or np.ptp(score) == 0 or np.ptp(acc) == 0:
        return {"symmetric": math.nan, "true_order": math.nan}
    return {
        "symmetric": float(weightedtau(score, acc).statistic),
        "true_order": float(weightedtau(acc, score, rank=None).statistic),
    }


#: Ceiling name -> the pool-member fields its oracle groups by.
TAU_CEILINGS = {
    "architecture": ("arch",),
    "architecture + source family": ("arch", "source_family"),
}


def tau_ceilings(pool: Sequence[dict], epochs: int) -> dict[str, dict[str, float]]:
    """Weighted tau of oracles that know part of the answer, as a scale for the methods' tau.

    Each oracle scores a pool member by the mean true accuracy, in this same pool, of the members
    that share its architecture (``"architecture"``), or its architecture and source family. No
    method can know these numbers (they are the test results); they bound what a ranker reading
    only that information about a model could reach on this dataset.

    Parameters
    ----------
    pool : sequence of dict
        Pool members as ``results.json`` lists them: ``arch``, ``source_family`` and
        ``acc@{epochs}`` (NaN or None: not fine-tuned; left out).
    epochs : int
        Which fine-tune's accuracy.

    Returns
    -------
    dict
        Ceiling name (:data:`TAU_CEILINGS`) -> :func:`weighted_tau`'s dict.
    """
    key = f"acc@{epochs}"
    known = [m for m in pool if m.get(key) is not None and not math.isnan(m[key])]
    acc = np.array([m[key] for m in known], dtype=np.float64)
    out = {}
    for name, fields in TAU_CEILINGS.items():
        groups = [tuple(m[f] for f in fields) for m in known]
        means = {g: float(acc[[i for i, h in enumerate(groups) if h == g]].mean()) for g in set(groups)}
        out[name] = weighted_tau([means[g] for g in groups], acc)
    return out


def epochs_to_reach(curve: Sequence[float], target: float) -> int | None:
    """First epoch (1-based) whose accuracy reaches ``target``; ``None`` if the curve never does.

    Parameters
    ----------
    curve : sequence of float
        Accuracy after each epoch.
    target : float
        Accuracy to reach (e.g. the from-scratch model's final one).
    """
    for epoch, value in enumerate(curve, start=1):
        if value >= target:
            return epoch
    return None


def speed_ratio(seconds: float, reference_seconds: float) -> float:
    """How many times slower ``seconds`` is than ``reference_seconds`` (NaN if the reference is 0)."""
    return float(seconds) / float(reference_seconds) if reference_seconds > 0 else math.nan


def mean_or_none(values: Sequence[float | None]) -> float | None:
    """Mean of the values that are not None or NaN; ``None`` when none is left."""
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(kept)) if kept else None


def paired_bootstrap(
    a: Sequence[Sequence[float | None]],
    b: Sequence[Sequence[float | None]],
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float | bool | None]:
    """Mean paired difference ``a - b`` with a two-level bootstrap interval over cells and seeds.

    Parameters
    ----------
    a, b : sequence of sequence of float or None
        Per cell (test dataset x budget), the per-seed values of two methods (same seeds in the
        same order); None where a fine-tune failed (that seed's pair is left out).
    n_boot : int
        Bootstrap draws: cells are resampled with replacement, then within each drawn cell the
        seeds (the same seeds for both methods, so the pairing holds).
    level : float
        Coverage of the percentile interval.
    seed : int
        Seed of the draws.

    Returns
    -------
    dict
        ``mean``, ``low``, ``high`` (None without a single complete pair) and ``resolved``: the
        interval excludes 0, so the difference is not a tie.
    """
    diffs = []
    for row_a, row_b in zip(a, b):
        d = np.array([np.nan if x is None or y is None else float(x) - float(y) for x, y in zip(row_a, row_b)])
        diffs.append(d)
    if not diffs or all(np.isnan(d).all() for d in diffs):
        return {"mean": None, "low": None, "high": None, "resolved": False}
    width = max(len(d) for d in diffs)
    matrix = np.full((len(diffs), width), np.nan)
    for i, d in enumerate(diffs):
        matrix[i, : len(d)] = d
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, len(diffs), size=(n_boot, len(diffs)))
    seeds = rng.integers(0, width, size=(n_boot, len(diffs), width))
    draws = matrix[cells[:, :, None], seeds]  # (n_boot, cells, seeds)
    with warnings.catch_warnings():  # a draw of only failed seeds has no mean: it is dropped below
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(draws.reshape(n_boot, -1), axis=1)
    means = means[np.isfinite(means)]
    low, high = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return {"mean": float(np.nanmean(matrix)), "low": float(low), "high": float(high),
            "resolved": bool(low > 0 or high < 0)}
