"""Benchmark metrics: regret and rel@k against the oracle, weighted Kendall tau, epochs to a target.

Accuracies are fractions in [0, 1]; regret is reported in percentage points (``100 * (oracle -
picked)``) because that is how the goals are stated.

Weighted Kendall tau has two conventions in this field that give different numbers, so both are
returned, labelled:

- ``"symmetric"``: ``scipy.stats.weightedtau(score, acc)`` (``rank=True``: the hyperbolic weights
  follow the decreasing order of each variable in turn and the two values are averaged);
- ``"true_order"``: ``scipy.stats.weightedtau(acc, score, rank=None)`` (weights follow the order of
  the true accuracy only: getting the best models right matters most).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import weightedtau

from tans._errors import TansError

__all__ = [
    "TAU_CONVENTIONS",
    "regret_points",
    "rel_at_k",
    "weighted_tau",
    "epochs_to_reach",
    "speed_ratio",
    "mean_or_none",
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
    acc = np.asarray(acc, dtype=np.float64)
    if score.shape != acc.shape:
        raise TansError(f"weighted_tau needs as many scores as accuracies, got {score.size} and {acc.size}.")
    if score.size < 2 or np.ptp(score) == 0 or np.ptp(acc) == 0:
        return {"symmetric": math.nan, "true_order": math.nan}
    return {
        "symmetric": float(weightedtau(score, acc).statistic),
        "true_order": float(weightedtau(acc, score, rank=None).statistic),
    }


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
