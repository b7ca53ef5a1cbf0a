"""Stage 2's fusion: the learned prior and the probe scores of a shortlist -> expected accuracy.

For each shortlisted model of a dataset (see :mod:`tans.searcher.probe`), :func:`fusion_features`
builds a few numbers, all on scales that do not depend on the dataset:

- ``stage1``: stage 1's predicted accuracy as a *lift* over chance, ``(p - c) / (1 - c)``;
- for each accuracy-like probe (``ncm``, ``knn``): its lift over the probe sample's chance, and
  that lift times ``stage1`` (a model the prior likes *and* whose features separate the classes);
- for every probe, and for ``stage1``: its z-score within the shortlist (LogME's scale varies from
  dataset to dataset; its order within one dataset is what carries information).

:class:`ProbeCombiner` is a ridge regression from these to the recorded accuracy lift, fitted on
transfer records of targets that stage 1 did not train on, plus *null* copies of those targets
whose labels were shuffled (their accuracy is chance by construction): so when a probe finds no
relation between images and labels, e.g. random-noise images, the predicted accuracy falls to
chance whatever the prior says. The ridge penalty is chosen by leave-one-target-out error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from tans._errors import TansError

__all__ = ["ACCURACY_SCORES", "ProbeCombiner", "fusion_features", "feature_names", "lift"]

#: Probe scores that are accuracies (a lift over chance means something on its own).
ACCURACY_SCORES = ("ncm", "knn")


def lift(accuracy: np.ndarray | float, chance: float) -> np.ndarray:
    """``(accuracy - chance) / (1 - chance)``: 0 at chance, 1 when perfect."""
    return (np.asarray(accuracy, dtype=np.float64) - chance) / max(1.0 - chance, 1e-6)


def _zscore(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    std = values.std()
    return (values - values.mean()) / std if len(values) > 1 and std > 1e-12 else np.zeros_like(values)


def feature_names(scores: Sequence[str]) -> list[str]:
    """Names of the columns :func:`fusion_features` returns for probe ``scores``."""
    names = ["stage1", "stage1_z"]
    for s in scores:
        if s in ACCURACY_SCORES:
            names += [s, f"{s}_x_stage1"]
        names.append(f"{s}_z")
    return names


def fusion_features(
    stage1: np.ndarray, chance: float, probes: Mapping[str, np.ndarray], probe_chance: float
) -> np.ndarray:
    """``(k, F)`` fusion features of a shortlist of ``k`` models.

    Parameters
    ----------
    stage1 : np.ndarray
        ``(k,)`` stage 1's predicted accuracies.
    chance : float
        The dataset's chance level.
    probes : mapping of str to np.ndarray
        ``(k,)`` values of each probe score, in a fixed order of names.
    probe_chance : float
        Chance level of the probe sample (majority-class fraction).
    """
    s1 = lift(stage1, chance)
    columns = [s1, _zscore(s1)]
    for name, values in probes.items():
        values = np.asarray(values, dtype=np.float64)
        if name in ACCURACY_SCORES:
            acc = lift(values, probe_chance)
            columns += [acc, acc * s1]
        columns.append(_zscore(values))
    return np.stack(columns, axis=1)


class ProbeCombiner:
    """Ridge regression from fusion features to the accuracy lift, with the penalty chosen by CV.

    Parameters
    ----------
    scores : sequence of str
        Probe scores it reads, in order.
    alphas : sequence of float
        Candidate ridge penalties (features are standardised first).
    """

    def __init__(self, *, scores: Sequence[str] = ("logme", "ncm"), alphas: Sequence[float] = (0.1, 1.0, 10.0, 100.0)) -> None:
        self.scores = tuple(scores)
        self.alphas = tuple(alphas)

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> ProbeCombiner:
        """Fit on rows ``X`` (n, F) with targets ``y`` (n,) (accuracy lifts); ``groups`` (n,) names each row's target.

        Returns
        -------
        ProbeCombiner
            ``self``, with ``mean_``, ``scale_``, ``coef_``, ``intercept_``, ``alpha_``, ``cv_mae_``.

        Raises
        ------
        TansError
            With fewer than two groups or non-finite values.
        """
        from sklearn.linear_model import Ridge

        X, y, groups = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64), np.asarray(groups)
        if X.ndim != 2 or X.shape[1] != len(feature_names(self.scores)) or len(X) != len(y):
            raise TansError(f"expected fusion features of shape (n, {len(feature_names(self.scores))}), got {X.shape}.")
        if not (np.isfinite(X).all() and np.isfinite(y).all()):
            raise TansError("the combiner's training rows hold NaN or infinite values; check the probe scores.")
        unique = np.unique(groups)
        if len(unique) < 2:
            raise TansError(f"the stage-2 combiner needs records of at least 2 validation targets, got {len(unique)}.")
        self.mean_ = X.mean(axis=0)
        self.scale_ = np.where(X.std(axis=0) > 1e-12, X.std(axis=0), 1.0)
        Z = (X - self.mean_) / self.scale_
        errors = {}
        for alpha in self.alphas:
            err = []
            for g in unique:  # leave one target out
                held = groups == g
                model = Ridge(alpha=alpha).fit(Z[~held], y[~held])
                err.append(np.abs(model.predict(Z[held]) - y[held]))
            errors[alpha] = float(np.mean(np.concatenate(err)))
        self.alpha_ = min(errors, key=errors.get)
        self.cv_mae_ = errors[self.alpha_]
        model = Ridge(alpha=self.alpha_).fit(Z, y)
        self.coef_, self.intercept_ = model.coef_.astype(np.float64), float(model.intercept_)
        self.rows_ = int(len(y))
        return self

    def decision(self, X: np.ndarray) -> np.ndarray:
        """The regression's raw output per row: the order to rank by (unclipped, so no ties at the bounds)."""
        if not hasattr(self, "coef_"):
            raise TansError("This ProbeCombiner is not fitted yet; call fit first.")
        Z = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_
        return Z @ self.coef_ + self.intercept_

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted accuracy lift of each row, clipped to [0, 1]."""
        return np.clip(self.decision(X), 0.0, 1.0)

    def to_dict(self) -> dict:
        """JSON-able fitted state."""
        return {
            "scores": list(self.scores),
            "alphas": list(self.alphas),
            "features": feature_names(self.scores),
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_,
            "alpha": self.alpha_,
            "cv_mae": self.cv_mae_,
            "rows": self.rows_,
        }

    @classmethod
    def from_dict(cls, values: dict) -> ProbeCombiner:
        """The combiner :meth:`to_dict` wrote."""
        out = cls(scores=values["scores"], alphas=values["alphas"])
        out.mean_, out.scale_ = np.asarray(values["mean"]), np.asarray(values["scale"])
        out.coef_, out.intercept_ = np.asarray(values["coef"]), float(values["intercept"])
        out.alpha_, out.cv_mae_, out.rows_ = float(values["alpha"]), float(values["cv_mae"]), int(values["rows"])
        if len(out.coef_) != len(feature_names(out.scores)) or not math.isfinite(out.intercept_):
            raise TansError("the stored stage-2 combiner does not match its probe scores; re-run `tans meta-train`.")
        return out
