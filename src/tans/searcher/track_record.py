"""Stage 1's memory: what each zoo model achieved when it was fine-tuned on other targets.

The encoders predict transfer from what a model *is* (architecture, cost, source task). The
transfer records also say how each model *did*: its :func:`standings` on each record target (a
within-target z-score of test accuracy among the models fine-tuned on it). A model's
:func:`track_record` on a dataset is the mean of its standings over the record targets, each
target weighted by how much its standings look like what the predictor expects on that dataset
(:func:`target_weights`), shrunk toward 0 by :data:`PRIOR_RECORDS` pseudo-records of an average
model, in standard deviations over the zoo's models; a model with no record stands at 0.
:class:`TrackRecordBlend` adds it to the predictor's expected accuracy lift on the dataset:

    lift = level + scale * ((predicted - level) + weight * spread * track_record)

where lift is accuracy above chance as a fraction of what is above chance, ``predicted`` the
predictor's lift of a model, ``level`` and ``spread`` the mean and standard deviation of the
predictor's lifts over the zoo's models on that dataset. ``weight`` and ``temperature`` are fixed,
``scale`` is fitted on validation targets (families stage 1 did not train on), as stage 2's
combiner fixes its blend and fits its scale: a free weight per input, fitted on a few validation
families, is noisy.

Why weight the targets: what transfers differs between kinds of data. Replayed on the
leave-one-family-out stage-1 scores (benchmarks/results/searcher_quality.json as of commit
c0d1670; benchmarks/track_record_replay.py), stage 1 ranks the held-out glyph targets with a
weighted tau of 0.777 over every candidate when it reads the records of glyph targets alone, 0.565
with those of the other targets (emoji, digits) alone, 0.767 with all of them.
Weighting every target by a softmax over the correlation between its standings and the
predictor's lifts of the same models on the query (temperature 0.3) reads the records of data
like the query's without naming kinds of data: it raised that replay's tau from 0.643 to 0.650
over every candidate, 0.409 to 0.427 under the p35 budget and 0.620 to 0.623 under p70
(temperatures 0.2 to 1 within 0.007 of it; 0.1 and below lower).

The blend itself was chosen on the same scores (code of 7295eea): ``weight`` 2 with uniform
target weights raised stage 1's tau from 0.605 to 0.640 over every candidate, from 0.259 to
0.413 under p35 and from 0.581 to 0.620 under p70 (weights 1 to 4 within 0.005 of it
everywhere; 0.5 lower under p35), while the mean absolute error of ``predicted_acc`` rose from
0.064 to 0.068 (0.065 in the rerun with that code).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tans._errors import TansError
from tans.searcher.experience import TransferTable

__all__ = ["PRIOR_RECORDS", "TRACK_RECORD_WEIGHT", "TARGET_TEMPERATURE", "Standings", "standing_rows", "standings",
           "target_weights", "track_record", "TrackRecordBlend"]

PRIOR_RECORDS = 1.0  # pseudo-records at 0 (an average model): one record counts half
TRACK_RECORD_WEIGHT = 2.0  # chosen by leave-one-family-out (module docstring)
TARGET_TEMPERATURE = 0.3  # softmax temperature of target weights, chosen by leave-one-family-out


def standing_rows(table: TransferTable, rows: Sequence[int] | None = None) -> list[int]:
    """The target rows of ``rows`` (default: every target) with a standing to read: two recorded
    models or more, not all equal. :func:`standings` returns one row per row here, in this order."""
    rows = range(len(table.targets)) if rows is None else rows
    observed = table.observed
    return [r for r in rows if observed[r].sum() >= 2 and table.accuracy[r, observed[r]].astype(np.float64).std() >= 1e-12]


def standings(table: TransferTable, rows: Sequence[int] | None = None) -> np.ndarray:
    """Each record target's within-target z-scores of test accuracy of its recorded models.

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
        ``(K, M)`` float64 in the table's column order, NaN where a model has no record; one row
        per target of :func:`standing_rows` (``rows`` with a standing to read).
    """
    out = []
    for r in standing_rows(table, rows):
        seen = np.flatnonzero(table.observed[r])
        acc = table.accuracy[r, seen].astype(np.float64)
        z = np.full(len(table.entries), np.nan)
        z[seen] = (acc - acc.mean()) / acc.std()
        out.append(z)
    return np.stack(out) if out else np.zeros((0, len(table.entries)))


def target_weights(profile: np.ndarray, standings: np.ndarray, temperature: float = TARGET_TEMPERATURE) -> np.ndarray:
    """Weights of record targets for a dataset: a softmax over the correlation between each
    target's standings and ``profile`` (the predictor's lifts of the same models on the
    dataset), of mean 1; equal at an infinite temperature.

    Parameters
    ----------
    profile : np.ndarray
        ``(M,)`` the predictor's lift of each model (columns of ``standings``).
    standings : np.ndarray
        ``(K, M)`` from :func:`standings`.
    temperature : float
        Softmax temperature (> 0).

    Returns
    -------
    np.ndarray
        ``(K,)``; a target with fewer than 3 recorded models in the profile counts as uncorrelated.
    """
    seen = ~np.isnan(standings)
    n = seen.sum(axis=1)
    if len(standings) == 0 or math.isinf(temperature):
        return np.ones(len(standings))
    p = np.where(seen, np.asarray(profile, dtype=np.float64)[None, :], 0.0)
    z = np.where(seen, standings, 0.0)
    p = np.where(seen, p - p.sum(axis=1, keepdims=True) / np.maximum(n, 1)[:, None], 0.0)
    z = np.where(seen, z - z.sum(axis=1, keepdims=True) / np.maximum(n, 1)[:, None], 0.0)
    norm = np.sqrt((p * p).sum(axis=1) * (z * z).sum(axis=1))
    corr = np.divide((p * z).sum(axis=1), norm, out=np.zeros(len(norm)), where=(norm > 1e-12) & (n >= 3))
    w = np.exp((corr - corr.max()) / temperature)
    return w / w.mean()


def track_record(standings: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Each model's shrunk weighted mean standing, in standard deviations over the models.

    Parameters
    ----------
    standings : np.ndarray
        ``(K, M)`` from :func:`standings` (columns: the models to read, e.g. a zoo's).
    weights : np.ndarray, optional
        ``(K,)`` target weights of mean 1 (:func:`target_weights`; default: equal).

    Returns
    -------
    np.ndarray
        ``(M,)`` float64; 0 for a model without records.
    """
    seen = ~np.isnan(standings)
    weights = np.ones(len(standings)) if weights is None else np.asarray(weights, dtype=np.float64)
    standing = (weights @ np.where(seen, standings, 0.0)) / (weights @ seen + PRIOR_RECORDS)
    spread = standing.std() if standing.size else 0.0
    return standing / spread if spread > 1e-12 else standing


@dataclass
class Standings:
    """A searcher's memory of its records: every record target's standings of the models, by id."""

    model_ids: list[str]
    z: np.ndarray  # (K, M) float64 from standings(); NaN: no record

    def columns(self, ids: Sequence[str]) -> np.ndarray:
        """``(K, len(ids))`` standings of the models ``ids`` (NaN for one without records)."""
        at = {m: i for i, m in enumerate(self.model_ids)}
        out = np.full((len(self.z), len(ids)), np.nan)
        known = [(j, at[m]) for j, m in enumerate(ids) if m in at]
        if known:
            cols, rows = (list(v) for v in zip(*known))
            out[:, cols] = self.z[:, rows]
        return out

    def recorded(self) -> list[str]:
        """Ids of the models with a standing on some target."""
        return [m for m, seen in zip(self.model_ids, (~np.isnan(self.z)).any(axis=0)) if seen]


class TrackRecordBlend:
    """Stage 1's lift from the predictor's and the models' track records (module docstring).

    Parameters
    ----------
    weight : float
        Fixed: a track record's standard deviation counts this many times the predictor's.
    temperature : float
        Fixed: the softmax temperature of :func:`target_weights` (infinite: every record target
        counts the same, as in searchers fitted before target weights).
    scale : float
        ``>= 0``, fitted by :meth:`fit`.
    rows : int
        (target, model) pairs ``scale`` was fitted on.
    """

    def __init__(self, weight: float = TRACK_RECORD_WEIGHT, temperature: float = TARGET_TEMPERATURE,
                 scale: float = 1.0, rows: int = 0) -> None:
        self.weight = float(weight)
        self.temperature = float(temperature)
        self.scale = float(scale)
        self.rows = int(rows)

    def records(self, profile: np.ndarray, standings: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
        """Track records of the models of ``standings`` on a dataset where the predictor's lifts of
        the models in columns ``at`` (default: every column) are ``profile``
        (:func:`target_weights`, :func:`track_record`)."""
        weights = target_weights(profile, standings if at is None else standings[:, at], self.temperature)
        return track_record(standings, weights)

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
            ``(T, M)`` each target's track records of the models, read without the validation
            targets (:meth:`records`).

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
        for p, a, c, r in zip(np.asarray(predicted, dtype=np.float64), actual, candidates, records):
            if len(c) < 2:
                continue
            u = self._deviation(p[c], r[c], p.mean(), p.std())
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
        """JSON-able fitted state (an infinite temperature as None: JSON has no Infinity)."""
        return {"weight": self.weight, "temperature": None if math.isinf(self.temperature) else self.temperature,
                "scale": self.scale, "rows": self.rows}

    @classmethod
    def from_dict(cls, values: dict) -> TrackRecordBlend:
        """Inverse of :meth:`to_dict`; a blend saved before target weights weighs them equally."""
        temperature = values.get("temperature")
        return cls(values["weight"], math.inf if temperature is None else temperature, values["scale"], values.get("rows", 0))

    def __repr__(self) -> str:
        return (f"TrackRecordBlend(weight={self.weight:g}, temperature={self.temperature:g}, scale={self.scale:.3f}, "
                f"rows={self.rows})")
