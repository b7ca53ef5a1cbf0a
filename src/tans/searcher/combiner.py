"""Stage 2's fusion: the learned prior and the probe scores of a shortlist -> expected accuracy.

For each shortlisted model of a dataset (see :mod:`tans.searcher.probe`), :func:`fusion_features`
builds a few numbers, all on scales that do not depend on the dataset:

- ``stage1``: stage 1's predicted accuracy as a *lift* over chance, ``(p - c) / (1 - c)``;
- for each accuracy-like probe (``ncm``, ``knn``): its lift over the probe sample's chance, and
  that lift times ``stage1`` (a model the prior likes *and* whose features separate the classes);
- for every probe, and for ``stage1``: its z-score within the shortlist (LogME's scale varies from
  dataset to dataset; its order within one dataset is what carries information).

:class:`ProbeCombiner` regresses the recorded accuracy lift on these (a level per shortlist from
the lifts, an order within it from a fixed blend of the z-scores), fitted on transfer records of
targets that stage 1 did not train on, plus
*null* copies of those targets whose labels were shuffled (their accuracy is chance by
construction): so when a probe finds no relation between images and labels, e.g. random-noise
images, the predicted accuracy falls to chance whatever the prior says. The ridge penalties are
chosen by leave-one-target-out error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tans._errors import TansError

__all__ = ["ACCURACY_SCORES", "ProbeCombiner", "feature_names", "fusion_features", "lift"]

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
    """A *level* and an *order* regression from fusion features to the accuracy lift.

    The prediction for a shortlist is a level plus an order. The level (how well these models
    will do on this dataset) is a ridge regression from the shortlist's mean lifts (the columns
    not ending in ``_z``), one row per shortlist, fitted on real and null shortlists alike. The
    order (which of them is better, the part that decides the pick) is a fixed blend of the
    within-shortlist z-scores, ``stage1_weight`` for stage 1's and 1 for each probe score's,
    times one non-negative scale fitted (ridge) onto the accuracy's deviation from its shortlist
    mean, on real shortlists only: a null shortlist's accuracies are all chance and say nothing
    about order. The blend is fixed rather than fitted because the records' validation targets
    are a few dozen shortlists: free per-score weights fitted on them under-weighted
    nearest-class-mean, and leave-one-family-out over every target ranked the fixed blend better
    (benchmarks/stage2_blend.py on the scores of benchmarks/searcher_quality.py --keep-scores).

    Parameters
    ----------
    scores : sequence of str
        Probe scores it reads, in order.
    alphas : sequence of float
        Candidate ridge penalties (the level's features are standardised first).
    stage1_weight : float
        Weight of stage 1's z-score in the order, relative to each probe score's (stage 1 already
        chose the shortlist).
    """

    def __init__(self, *, scores: Sequence[str] = ("logme", "ncm"), alphas: Sequence[float] = (0.1, 1.0, 10.0, 100.0),
                 stage1_weight: float = 0.5) -> None:
        if not (isinstance(stage1_weight, (int, float)) and 0.0 <= stage1_weight < float("inf")):
            raise TansError(f"stage1_weight must be a number >= 0, got {stage1_weight!r}.")
        self.scores = tuple(scores)
        self.alphas = tuple(alphas)
        self.stage1_weight = float(stage1_weight)

    @property
    def _blend(self) -> np.ndarray:
        """Relative weights of the order's z-score columns (stage 1's first, then each probe's)."""
        return np.array([self.stage1_weight] + [1.0] * len(self.scores))

    @property
    def _order_columns(self) -> np.ndarray:
        """Which fusion columns the order reads (the within-shortlist z-scores)."""
        return np.array([name.endswith("_z") for name in feature_names(self.scores)])

    def _ridge(self, alpha: float, part: str):
        from sklearn.linear_model import Ridge

        return Ridge(alpha=alpha) if part == "level" else Ridge(alpha=alpha, positive=True, fit_intercept=False)

    def _cv(self, part: str, Z: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
        """The penalty with the lowest leave-one-group-out mean absolute error, and that error."""
        errors = {}
        for alpha in self.alphas:
            err = [np.abs(self._ridge(alpha, part).fit(Z[groups != g], y[groups != g]).predict(Z[groups == g]) - y[groups == g])
                   for g in np.unique(groups)]
            errors[alpha] = float(np.mean(np.concatenate(err)))
        best = min(errors, key=errors.get)
        return best, errors[best]

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray, *, null: np.ndarray | None = None) -> ProbeCombiner:
        """Fit on rows ``X`` (n, F) with targets ``y`` (n,) (accuracy lifts); ``groups`` (n,) names each row's shortlist.

        ``null`` (n,) marks the rows of null shortlists (shuffled labels, accuracy at chance): they
        teach the level only.

        Returns
        -------
        ProbeCombiner
            ``self``, with ``mean_``, ``scale_`` (the level's standardisation) and, for ``level``
            and ``order``, ``coef_``, ``intercept_``, ``alpha_`` and ``cv_mae_`` (dicts keyed by part).

        Raises
        ------
        TansError
            With fewer than three shortlists (two real), or non-finite values.
        """
        X, y, groups = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64), np.asarray(groups)
        null = np.zeros(len(y), dtype=bool) if null is None else np.asarray(null, dtype=bool)
        if X.ndim != 2 or X.shape[1] != len(feature_names(self.scores)) or len(X) != len(y) or len(null) != len(y):
            raise TansError(f"expected fusion features of shape (n, {len(feature_names(self.scores))}), got {X.shape}.")
        if not (np.isfinite(X).all() and np.isfinite(y).all()):
            raise TansError("the combiner's training rows hold NaN or infinite values; check the probe scores.")
        if len(np.unique(groups)) < 3 or len(np.unique(groups[~null])) < 2:
            raise TansError(f"the stage-2 combiner needs at least 3 shortlists, 2 of them real, to fit; got "
                            f"{len(np.unique(groups))}, {len(np.unique(groups[~null]))} real.")
        order = self._order_columns
        unique, index = np.unique(groups, return_inverse=True)
        means = np.stack([X[index == g][:, ~order].mean(axis=0) for g in range(len(unique))])  # (G, level features)
        y_means = np.array([y[index == g].mean() for g in range(len(unique))])
        self.mean_ = means.mean(axis=0)
        self.scale_ = np.where(means.std(axis=0) > 1e-12, means.std(axis=0), 1.0)
        parts = {
            "level": ((means - self.mean_) / self.scale_, y_means, np.arange(len(unique))),
            "order": ((X[~null][:, order] @ self._blend)[:, None], (y - y_means[index])[~null], index[~null]),
        }
        self.coef_, self.intercept_, self.alpha_, self.cv_mae_ = {}, {}, {}, {}
        for part, (Zp, yp, gp) in parts.items():
            self.alpha_[part], self.cv_mae_[part] = self._cv(part, Zp, yp, gp)
            model = self._ridge(self.alpha_[part], part).fit(Zp, yp)
            self.coef_[part], self.intercept_[part] = model.coef_.astype(np.float64), float(model.intercept_)
        self.coef_["order"] = self.coef_["order"][0] * self._blend  # one weight per z-score column
        self.rows_ = len(y)
        return self

    def decision(self, X: np.ndarray) -> np.ndarray:
        """Raw output for the rows of *one* shortlist: its level plus each row's order (unclipped: no ties at the bounds)."""
        if not hasattr(self, "coef_"):
            raise TansError("This ProbeCombiner is not fitted yet; call fit first.")
        X = np.asarray(X, dtype=np.float64)
        order = self._order_columns
        level = ((X[:, ~order].mean(axis=0) - self.mean_) / self.scale_) @ self.coef_["level"] + self.intercept_["level"]
        return level + X[:, order] @ self.coef_["order"] + self.intercept_["order"]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted accuracy lift of each row of one shortlist, clipped to [0, 1]."""
        return np.clip(self.decision(X), 0.0, 1.0)

    def to_dict(self) -> dict:
        """JSON-able fitted state."""
        order = self._order_columns
        names = np.array(feature_names(self.scores))
        return {
            "scores": list(self.scores),
            "alphas": list(self.alphas),
            "stage1_weight": self.stage1_weight,
            "features": {"level": names[~order].tolist(), "order": names[order].tolist()},
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "coef": {k: v.tolist() for k, v in self.coef_.items()},
            "intercept": self.intercept_,
            "alpha": self.alpha_,
            "cv_mae": self.cv_mae_,
            "rows": self.rows_,
        }

    @classmethod
    def from_dict(cls, values: dict) -> ProbeCombiner:
        """The combiner :meth:`to_dict` wrote."""
        out = cls(scores=values["scores"], alphas=values["alphas"], stage1_weight=values["stage1_weight"])
        order = out._order_columns
        width = {"level": int((~order).sum()), "order": int(order.sum())}
        coef = {k: np.asarray(v) for k, v in values["coef"].items()}
        if set(coef) != set(width) or any(len(coef[k]) != width[k] for k in width) or len(values["mean"]) != width["level"]:
            raise TansError("the stored stage-2 combiner does not match its probe scores; re-run `tans meta-train`.")
        out.mean_, out.scale_ = np.asarray(values["mean"]), np.asarray(values["scale"])
        out.coef_ = coef
        out.intercept_ = {k: float(v) for k, v in values["intercept"].items()}
        out.alpha_ = {k: float(v) for k, v in values["alpha"].items()}
        out.cv_mae_ = {k: float(v) for k, v in values["cv_mae"].items()}
        out.rows_ = int(values["rows"])
        return out
