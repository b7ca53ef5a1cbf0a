"""Stage 1's memory: what each zoo model achieved when it was fine-tuned on other targets.

The encoders predict transfer from what a model *is* (architecture, cost, source task). The
transfer records also say how each model *did*: :func:`track_record` is a model's mean standing
among the models fine-tuned on the same target (a within-target z-score of test accuracy, averaged
over its targets and shrunk toward 0 by :data:`PRIOR_RECORDS` pseudo-records of an average model),
so a model with no record stands at 0. :class:`TrackRecordBlend` adds it to the encoders'
prediction with two weights fitted on validation targets (families stage 1 did not train on):

    lift = level + (1 + spread) * (predicted - level) + weight * track_record

where ``lift`` is accuracy above chance as a fraction of what is above chance, ``predicted`` the
encoders' lift and ``level`` their mean lift over the zoo's models on the same target.

Chosen by leave-one-family-out: replayed on benchmarks/results/searcher_quality's held-out stage-1
scores, the blend raised stage 1's weighted tau from 0.605 to 0.639 over every candidate, 0.259
to 0.410 under the p35 budget and 0.581 to 0.619 under p70 (the weights fitted on the other
families); the encoders' prediction alone over-spreads on unseen families (``spread`` about -0.75).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import lsq_linear

from tans._errors import TansError
from tans.searcher.experience import TransferTable

__all__ = ["PRIOR_RECORDS", "track_record", "TrackRecordBlend"]

PRIOR_RECORDS = 1.0  # pseudo-records at 0 (an average model): one record counts half


def track_record(table: TransferTable, rows: Sequence[int] | None = None) -> np.ndarray:
    """Each model's shrunk mean within-target z-score of test accuracy over targets ``rows``.

    Parameters
    ----------
    table : TransferTable
        The records (:func:`~tans.searcher.experience.transfer_table`).
    rows : sequence of int, optional
        Target rows to read (default: every target). Validation reads only the training rows,
        as a new dataset's search reads records of other targets only.

    Returns
    -------
    np.ndarray
        ``(M,)`` float64 in the table's column order; 0 for a model without records there.
    """
    rows = range(len(table.targets)) if rows is None else rows
    total = np.zeros(len(table.entries))
    count = np.zeros(len(table.entries))
    for r in rows:
        seen = np.flatnonzero(table.observed[r])
        acc = table.accuracy[r, seen].astype(np.float64)
        if len(seen) < 2 or acc.std() < 1e-12:
            continue  # one model, or all equal: no standing to read
        total[seen] += (acc - acc.mean()) / acc.std()
        count[seen] += 1
    return total / (count + PRIOR_RECORDS)


class TrackRecordBlend:
    """Stage 1's lift from the encoders' prediction and the models' track records (module docstring).

    Attributes
    ----------
    spread : float
        ``>= -1``: the encoders' deviations from their level are scaled by ``1 + spread``.
    weight : float
        ``>= 0``: lift added per unit of track record.
    rows : int
        (target, model) pairs the weights were fitted on.
    """

    def __init__(self, spread: float = 0.0, weight: float = 0.0, rows: int = 0) -> None:
        self.spread = float(spread)
        self.weight = float(weight)
        self.rows = int(rows)

    def fit(self, predicted: Sequence[np.ndarray], actual: Sequence[np.ndarray], records: Sequence[np.ndarray]) -> TrackRecordBlend:
        """Least squares on within-target deviations, one array per target (its candidates).

        Parameters
        ----------
        predicted, actual : sequence of np.ndarray
            The encoders' lift and the records' lift of each target's candidates.
        records : sequence of np.ndarray
            The candidates' track records, read without the target's own family.

        Returns
        -------
        TrackRecordBlend
            ``self``.

        Raises
        ------
        TansError
            If fewer than two targets have two candidates or more.
        """
        X, y = [], []
        for p, a, m in zip(predicted, actual, records):
            p, a, m = (np.asarray(v, dtype=np.float64) for v in (p, a, m))
            if len(p) < 2:
                continue
            X.append(np.c_[p - p.mean(), m - m.mean()])
            y.append((a - p) - (a - p).mean())  # what the encoders missed, without the target's offset
        if len(X) < 2:
            raise TansError(f"TrackRecordBlend needs two targets with two candidates or more, got {len(X)}.")
        X, y = np.concatenate(X), np.concatenate(y)
        fit = lsq_linear(X, y, bounds=([-1.0, 0.0], [np.inf, np.inf]))
        self.spread, self.weight = (float(v) for v in fit.x)
        self.rows = len(y)
        return self

    def apply(self, predicted: np.ndarray, records: np.ndarray, level: float) -> np.ndarray:
        """Blended lift (unclipped) of models with the encoders' lift ``predicted`` on one target."""
        predicted = np.asarray(predicted, dtype=np.float64)
        return level + (1.0 + self.spread) * (predicted - level) + self.weight * np.asarray(records, dtype=np.float64)

    def to_dict(self) -> dict:
        """JSON-able fitted state."""
        return {"spread": self.spread, "weight": self.weight, "rows": self.rows}

    @classmethod
    def from_dict(cls, values: dict) -> TrackRecordBlend:
        """Inverse of :meth:`to_dict`."""
        return cls(values["spread"], values["weight"], values.get("rows", 0))

    def __repr__(self) -> str:
        return f"TrackRecordBlend(spread={self.spread:.3f}, weight={self.weight:.3f}, rows={self.rows})"
