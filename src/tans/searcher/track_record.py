"""Stage 1's memory: what each zoo model achieved when it was fine-tuned on other targets.

The encoders predict transfer from what a model *is* (architecture, cost, source task). The
transfer records also say how each model *did*: :func:`track_record` is a model's mean standing
among the models fine-tuned on the same target (a within-target z-score of test accuracy, averaged
over its targets and shrunk toward 0 by :data:`PRIOR_RECORDS` pseudo-records of an average model),
in standard deviations over the zoo's models; a model with no record stands at 0.
:class:`TrackRecordBlend` adds it to the predictor's expected accuracy lift on a dataset:

    lift = level + scale * ((predicted - level) + weight * spread * track_record)

where lift is accuracy above chance as a fraction of what is above chance, ``predicted`` the
predictor's lift of a model, ``level`` and ``spread`` the mean and standard deviation of the
predictor's lifts over the zoo's models on that dataset. ``weight`` is fixed (a track record's
standard deviation counts ``weight`` times the predictor's), ``scale`` is fitted on validation
targets (families stage 1 did not train on), as stage 2's combiner fixes its blend and fits its
scale: a free weight per input, fitted on a few validation families, is noisy.

Chosen by leave-one-family-out: replayed on the held-out stage-1 scores of
benchmarks/results/searcher_quality.json as of commit c0d1670 (code of 7295eea), the blend with
``weight`` 2 and the scale fitted on the other families raised stage 1's weighted tau from 0.605
to 0.640 over every candidate, from 0.259 to 0.413 under the p35 budget and from 0.581 to 0.620
under p70 (weights 1 to 4 within 0.005 of it everywhere; 0.5 lower under p35), while the mean
absolute error of ``predicted_acc`` rose from 0.064 to 0.068 (0.065 in the rerun with this code).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tans._errors import TansError
from tans.searcher.experience import TransferTable

__all__ = ["PRIOR_RECORDS", "TRACK_RECORD_WEIGHT", "track_record", "TrackRecordBlend"]

PRIOR_RECORDS = 1.0  # pseudo-records at 0 (an average model): one record counts half
TRACK_RECORD_WEIGHT = 2.0  # chosen by leave-one-family-out (module docstring)


def track_record(table: TransferTable, rows: Sequence[int] | None = None) -> np.ndarray:
    """Each model's shrunk mean within-target z-score of test accuracy over targets ``rows``,
    in standard deviations over the zoo's models.

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
    standing = total / (count + PRIOR_RECORDS)
    spread = standing.std()
    return standing / spread if spread > 1e-12 else standing


class TrackRecordBlend:
    """Stage 1's lift from the predictor's and the models' track records (module docstring).

    Parameters
    ----------
    weight : float
        Fixed: a track record's standard deviation counts this many times the predictor's.
    scale : float
        ``>= 0``, fitted by :meth:`fit`.
    rows : int
        (target, model) pairs ``scale`` was fitted on.
    """

    def __init__(self, weight: float = TRACK_RECORD_WEIGHT, scale: float = 1.0, rows: int = 0) -> None:
        self.weight = float(weight)
        self.scale = float(scale)
        self.rows = int(rows)

    def fit(self, predicted: np.ndarray, actual: Sequence[np.ndarray], candidates: Sequence[np.ndarray],
            records: np.ndarray) -> TrackRecordBlend:
        """Fit ``scale`` by least squares on within-target deviations of validation targets.

        Parameters
        ----------
        predicted : np.ndarray
            ``(T, M)`` the predictor's lift of every zoo model on each target (its level and
            spread are read over every model, as a search reads them).
        actual : sequence of np.ndarray
            Each target's recorded lift of its candidates.
        candidates : sequence of np.ndarray
            Each target's candidate columns.
        records : np.ndarray
            ``(M,)`` track records read without the validation targets (:func:`track_record`).

        Returns
        -------
        TrackRecordBlend
            ``self``.

        Raises
        ------
        TansError
            If no target has two candidates or more that the blend tells apart.
        """
        x, y = [], []
        for p, a, c in zip(np.asarray(predicted, dtype=np.float64), actual, candidates):
            if len(c) < 2:
                continue
            u = self._deviation(p[c], records[c], p.mean(), p.std())
            x.append(u - u.mean())
            y.append(np.asarray(a, dtype=np.float64) - np.mean(a))  # without the target's offset
        x = np.concatenate(x) if x else np.zeros(0)
        if not np.any(np.abs(x) > 1e-12):
            raise TansError(f"TrackRecordBlend needs a target with two candidates it tells apart, got {len(x)} rows.")
        self.scale = max(float(x @ np.concatenate(y) / (x @ x)), 0.0)
        self.rows = len(x)
        return self

    def _deviation(self, predicted: np.ndarray, records: np.ndarray, level: float, spread: float) -> np.ndarray:
        return (np.asarray(predicted, dtype=np.float64) - level) + self.weight * spread * np.asarray(records, dtype=np.float64)

    def apply(self, predicted: np.ndarray, records: np.ndarray, level: float, spread: float) -> np.ndarray:
        """Blended lift (unclipped) of models of predictor lift ``predicted`` and track records
        ``records`` on a dataset where the predictor's lifts over the zoo have mean ``level`` and
        standard deviation ``spread``."""
        return level + self.scale * self._deviation(predicted, records, level, spread)

    def to_dict(self) -> dict:
        """JSON-able fitted state."""
        return {"weight": self.weight, "scale": self.scale, "rows": self.rows}

    @classmethod
    def from_dict(cls, values: dict) -> TrackRecordBlend:
        """Inverse of :meth:`to_dict`."""
        return cls(values["weight"], values["scale"], values.get("rows", 0))

    def __repr__(self) -> str:
        return f"TrackRecordBlend(weight={self.weight:g}, scale={self.scale:.3f}, rows={self.rows})"
