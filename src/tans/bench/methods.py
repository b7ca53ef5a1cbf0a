"""Every way of picking a zoo model for a new dataset that the benchmark compares, as a registry.

A :class:`Method` ranks the zoo entries that fit a parameter budget (:meth:`Method.rank`, timed:
that is its search time) and, when it has one, gives a score to any set of entries
(:meth:`Method.score`, for the weighted Kendall tau on the candidate pool). How its ranking becomes
*one* model is its ``pick`` rule:

- ``"top1"``: its first-ranked model;
- ``"best-val-of-3"``: its top 3 are fine-tuned and the one with the best *validation* accuracy is
  kept (the test split is never used to choose);
- ``"mean"``: the mean over its picks (random choice: the mean of several draws).

The oracle (best model of the candidate pool) and training the picked architecture from scratch
are not rankers; :mod:`tans.bench.protocol` computes them from the fine-tunes.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tans._errors import TansError, lookup, unknown_choice
from tans.data.dataset import Dataset
from tans.zoo.entry import ZooEntry
from tans.zoo.store import Zoo

__all__ = [
    "SEARCHER_VARIANTS",
    "Method",
    "MethodContext",
    "Ranking",
    "PROBE_BASELINES",
    "get_method",
    "list_methods",
    "register_method",
]

#: Searchers the methods need: name -> the :class:`~tans.searcher.Searcher` settings it changes.
SEARCHER_VARIANTS: dict[str, dict] = {
    "main": {},
    "mean-pooling": {"set_encoder": "mean"},
    "with-functional": {"use_functional": True},
    "no-source": {"use_source": False},
    "no-track-record": {"use_track_record": False},
}


@dataclass(frozen=True)
class Ranking:
    """What a method returned for one (dataset, budget)."""

    ids: list[str]  # zoo entry ids, best first (random: the draws)
    seconds: float  # search time: everything the method computes to rank


@dataclass
class MethodContext:
    """Everything a method may use for one test dataset; expensive parts are computed once.

    Parameters
    ----------
    dataset : Dataset
        The test dataset (methods see its training split only).
    zoo : Zoo
        The zoo to choose from.
    searchers : dict of str to Searcher
        Fitted searchers by :data:`SEARCHER_VARIANTS` name.
    seed : int
        Seeds the random draws.
    random_draws : int
        Draws of the random baseline.
    logme_per_class : int
        Images per class of the probe sample the over-every-candidate baselines (LogME, NCM) see.
    finetune_budget : float
        Seconds of the searcher's stage 3 (successive halving with short fine-tunes).
    """

    dataset: Dataset
    zoo: Zoo
    searchers: dict = field(default_factory=dict)
    seed: int = 0
    random_draws: int = 5
    logme_per_class: int = 20
    finetune_budget: float = 30.0
    # filled lazily
    _entries: list[ZooEntry] | None = field(default=None, repr=False)
    _probes: Any = field(default=None, repr=False)
    _searches: dict = field(default_factory=dict, repr=False)
    _scores: dict = field(default_factory=dict, repr=False)

    @property
    def entries(self) -> list[ZooEntry]:
        """Every zoo entry, in zoo order."""
        if self._entries is None:
            self._entries = self.zoo.entries()
        return self._entries

    @property
    def params(self) -> np.ndarray:
        return np.array([e.params for e in self.entries], dtype=np.int64)

    def positions(self, ids: Sequence[str]) -> np.ndarray:
        """Positions in :attr:`entries` of entry ids."""
        where = {e.id: i for i, e in enumerate(self.entries)}
        return np.array([where[i] for i in ids], dtype=np.int64)

    def allowed(self, limit: int | None) -> np.ndarray:
        """Positions of the entries within a parameter limit (``None``: all)."""
        return np.flatnonzero(self.params <= limit) if limit is not None else np.arange(len(self.entries))

    def searcher(self, variant: str):
        if variant not in self.searchers:
            raise TansError(f"This method needs the '{variant}' searcher, which was not fitted for this run.")
        return self.searchers[variant]

    def search(self, variant: str, limit: int | None, top_k: int, *, fast: bool, finetune: bool = False):
        """One search of a searcher variant (cached: methods sharing a ranking share its one timing)."""
        key = (variant, limit, top_k, fast, finetune)
        if key not in self._searches:
            self._searches[key] = self.searcher(variant).search(
                self.dataset, zoo=self.zoo, max_params=limit, top_k=top_k, fast=fast,
                finetune_budget=self.finetune_budget if finetune else None,
            )
        return self._searches[key]

    def searcher_scores(self, variant: str, positions: np.ndarray, *, probe: bool) -> np.ndarray:
        """A searcher variant's expected accuracy of entries (stage 1, or fused with probes of each)."""
        key = (variant, probe, tuple(positions.tolist()))
        if key not in self._scores:
            _, self._scores[key] = self.searcher(variant).predict_entries(
                self.dataset, [self.entries[p] for p in positions], zoo=self.zoo, probe=probe
            )
        return self._scores[key]

    def probes(self):
        """Probe scores of every zoo entry on this dataset (:class:`tans.searcher.probe.ProbeScores`).

        One forward pass per entry on a class-balanced sample of the training split, scored by
        every baseline that looks at all candidates (:data:`PROBE_BASELINES`).
        """
        if self._probes is None:
            from tans.searcher.probe import probe_scores

            self._probes = probe_scores(self.zoo, [e.id for e in self.entries], self.dataset,
                                        per_class=self.logme_per_class, seed=self.seed, scores=PROBE_BASELINES)
        return self._probes

    def probe_seconds(self, score: str, positions: np.ndarray) -> float:
        """What scoring ``positions`` with one probe score costs: the shared sample, their forward passes, that score."""
        found = self.probes()
        return float(found.shared_seconds + found.feature_seconds[positions].sum() + found.score_seconds[score][positions].sum())


@dataclass(frozen=True)
class Method:
    """A named way of choosing a model.

    Parameters
    ----------
    name, label : str
        Registry name and the text of tables and plots.
    rank : callable
        ``rank(ctx, limit, top_k) -> Ranking`` over the entries within ``limit`` parameters.
    score : callable or None
        ``score(ctx, positions) -> (n,) array``, higher is better; None for methods without a
        score (random choice).
    pick : str
        ``"top1"``, ``"best-val-of-3"`` or ``"mean"`` (see the module docstring).
    searcher : str or None
        The searcher variant it needs.
    """

    name: str
    label: str
    rank: Callable[[MethodContext, int | None, int], Ranking]
    score: Callable[[MethodContext, np.ndarray], np.ndarray] | None
    pick: str = "top1"
    searcher: str | None = None


_REGISTRY: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add a method to the registry (names are unique)."""
    if method.name in _REGISTRY:
        raise TansError(f"A method named '{method.name}' is already registered.")
    if method.pick not in ("top1", "best-val-of-3", "mean"):
        raise unknown_choice("pick rule", method.pick, ("top1", "best-val-of-3", "mean"))
    _REGISTRY[method.name] = method
    return method


def list_methods() -> list[str]:
    """Registered method names, in the order of the report's tables."""
    return list(_REGISTRY)


def get_method(name: str) -> Method:
    """The method of a name; an unknown name raises :class:`TansError` suggesting close names."""
    return lookup("method", name, _REGISTRY)


# ---------------------------------------------------------------------------------- searchers
def _searcher_rank(variant: str, *, fast: bool, finetune: bool = False):
    def rank(ctx: MethodContext, limit: int | None, top_k: int) -> Ranking:
        result = ctx.search(variant, limit, top_k, fast=fast, finetune=finetune)
        return Ranking(ids=result.ids, seconds=result.seconds["total"])

    return rank


def _searcher_score(variant: str, *, probe: bool):
    def score(ctx: MethodContext, positions: np.ndarray) -> np.ndarray:
        return ctx.searcher_scores(variant, positions, probe=probe)

    return score


# ------------------------------------------------------------------------- score-based rankers
def _rank_by(score_fn: Callable[[MethodContext, np.ndarray], np.ndarray]):
    """A ranker that scores every entry within the budget and sorts (ties: source accuracy)."""

    def rank(ctx: MethodContext, limit: int | None, top_k: int) -> Ranking:
        start = time.perf_counter()
        allowed = ctx.allowed(limit)
        if allowed.size == 0:
            raise TansError(f"No zoo model has at most {limit:,} parameters; raise the budget.")
        scores = score_fn(ctx, allowed)
        tie = np.array([ctx.entries[p].val_acc for p in allowed])
        order = np.lexsort((-tie, -scores))[:top_k]
        seconds = time.perf_counter() - start
        probe = getattr(score_fn, "probe", None)
        if probe is not None:
            # a probe's cost is the shared sample, each candidate's forward pass and its own score
            seconds = ctx.probe_seconds(probe, allowed)
        return Ranking(ids=[ctx.entries[allowed[j]].id for j in order], seconds=seconds)

    return rank


def _params_score(ctx: MethodContext, positions: np.ndarray) -> np.ndarray:
    return ctx.params[positions].astype(np.float64)


def _static_prior_score(ctx: MethodContext, positions: np.ndarray) -> np.ndarray:
    # Mean validation accuracy of each architecture over the zoo's (training) tasks.
    by_arch: dict[str, list[float]] = {}
    for entry in ctx.entries:
        by_arch.setdefault(entry.arch, []).append(entry.val_acc)
    means = {arch: float(np.mean(v)) for arch, v in by_arch.items()}
    return np.array([means[ctx.entries[p].arch] for p in positions])


def _probe_score(name: str):
    def score(ctx: MethodContext, positions: np.ndarray) -> np.ndarray:
        values = ctx.probes().scores[name][positions]
        return np.where(np.isfinite(values), values, -np.inf)

    score.probe = name
    return score


def _random_rank(ctx: MethodContext, limit: int | None, top_k: int) -> Ranking:
    start = time.perf_counter()
    allowed = ctx.allowed(limit)
    # Seeded by dataset and budget: the same draws on a rerun, different draws per budget.
    rng = np.random.default_rng([ctx.seed, zlib.crc32(f"{ctx.dataset.name}|{limit}".encode())])
    draws = rng.permutation(allowed)[: ctx.random_draws]
    return Ranking(ids=[ctx.entries[p].id for p in draws], seconds=time.perf_counter() - start)


#: Probe scores the over-every-candidate baselines use (one forward pass per entry serves them all).
PROBE_BASELINES = ("logme", "logme-reference", "ncm")


# ------------------------------------------------------------------------------- the registry
register_method(Method(name="searcher", label="searcher (stage 1 + probe stage 2, default)",
                       rank=_searcher_rank("main", fast=False), score=_searcher_score("main", probe=True),
                       searcher="main"))
register_method(Method(name="searcher-stage1", label="searcher, stage 1 only (--fast)",
                       rank=_searcher_rank("main", fast=True), score=_searcher_score("main", probe=False),
                       searcher="main"))
register_method(Method(name="searcher-top3", label="searcher, best of top 3 (by val acc)",
                       rank=_searcher_rank("main", fast=False), score=None, pick="best-val-of-3", searcher="main"))
register_method(Method(name="searcher-stage3", label="searcher + stage 3 (successive halving, short fine-tunes)",
                       rank=_searcher_rank("main", fast=False, finetune=True), score=None, searcher="main"))
for _variant, _label in (
    ("mean-pooling", "ablation (stage 1): mean pooling"),
    ("with-functional", "ablation (stage 1): + functional embedding"),
    ("no-source", "ablation (stage 1): no source-task embedding"),
    ("no-track-record", "ablation (stage 1): no track records (the predictor alone)"),
):
    register_method(Method(name=_variant, label=_label, rank=_searcher_rank(_variant, fast=True),
                           score=_searcher_score(_variant, probe=False), searcher=_variant))
register_method(Method(name="random", label="random choice (mean of draws)", rank=_random_rank, score=None, pick="mean"))
register_method(Method(name="largest", label="largest under the budget", rank=_rank_by(_params_score), score=_params_score))
register_method(
    Method(
        name="params",
        label="ranking by parameter count, best of top 3",
        rank=_rank_by(_params_score),
        score=_params_score,
        pick="best-val-of-3",
    )
)
register_method(
    Method(
        name="static-prior",
        label="static prior (best mean source acc of the arch)",
        rank=_rank_by(_static_prior_score),
        score=_static_prior_score,
    )
)
for _name, _label in (
    ("logme", "LogME over every candidate (exact evidence)"),
    ("logme-reference", "LogME over every candidate (authors' reference code)"),
    ("ncm", "nearest-class-mean accuracy over every candidate"),
):
    register_method(Method(name=_name, label=_label, rank=_rank_by(_probe_score(_name)), score=_probe_score(_name)))
