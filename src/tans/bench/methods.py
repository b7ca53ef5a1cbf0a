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

import numpy as np

from tans._errors import TansError, did_you_mean
from tans.data.dataset import Dataset
from tans.index import Constraints
from tans.zoo.entry import ZooEntry
from tans.zoo.store import Zoo

__all__ = [
    "SEARCHER_VARIANTS",
    "Method",
    "MethodContext",
    "Ranking",
    "get_method",
    "list_methods",
    "logme_scores",
    "register_method",
]

#: Searchers the methods need: name -> the :class:`~tans.searcher.Searcher` settings it changes.
SEARCHER_VARIANTS: dict[str, dict] = {
    "main": {},
    "no-functional": {"use_functional": False},
    "no-predictor": {"use_predictor": False},
    "margin-loss": {"loss": "margin"},
    "mean-pooling": {"set_encoder": "mean"},
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
        Images per class for LogME (and the searcher's LogME verification).
    """

    dataset: Dataset
    zoo: Zoo
    searchers: dict = field(default_factory=dict)
    seed: int = 0
    random_draws: int = 5
    logme_per_class: int = 20
    # filled lazily
    _entries: list[ZooEntry] | None = field(default=None, repr=False)
    _logme: tuple[np.ndarray, np.ndarray, float] | None = field(default=None, repr=False)
    _queries: dict = field(default_factory=dict, repr=False)

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

    def query(self, variant: str) -> np.ndarray:
        """The dataset's query embedding under a searcher variant (cached)."""
        if variant not in self._queries:
            self._queries[variant] = self.searcher(variant).embed_dataset(self.dataset)
        return self._queries[variant]

    def logme(self) -> tuple[np.ndarray, np.ndarray, float]:
        """LogME of every zoo entry on this dataset: (scores, seconds per entry, shared seconds)."""
        if self._logme is None:
            self._logme = logme_scores(
                self.dataset, self.zoo, self.entries, per_class=self.logme_per_class, seed=self.seed
            )
        return self._logme


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
        raise TansError(f"Unknown pick rule '{method.pick}'; expected top1, best-val-of-3 or mean.")
    _REGISTRY[method.name] = method
    return method


def list_methods() -> list[str]:
    """Registered method names, in the order of the report's tables."""
    return list(_REGISTRY)


def get_method(name: str) -> Method:
    """The method of a name.

    Raises
    ------
    TansError
        For an unknown name (close names suggested).
    """
    if name not in _REGISTRY:
        raise TansError(f"Unknown method '{name}'; expected one of {', '.join(_REGISTRY)}.{did_you_mean(name, _REGISTRY)}")
    return _REGISTRY[name]


# ---------------------------------------------------------------------------------- searchers
def _constraints(limit: int | None) -> Constraints:
    return Constraints(max_params=limit) if limit is not None else Constraints()


def _searcher_rank(variant: str, *, verify: bool = False):
    def rank(ctx: MethodContext, limit: int | None, top_k: int) -> Ranking:
        result = ctx.searcher(variant).search(
            ctx.dataset,
            zoo=ctx.zoo,
            constraints=_constraints(limit),
            top_k=top_k,
            verify=verify,
            verify_per_class=ctx.logme_per_class,
        )
        return Ranking(ids=result.ids, seconds=result.seconds["total"])

    return rank


def _searcher_score(variant: str):
    def score(ctx: MethodContext, positions: np.ndarray) -> np.ndarray:
        searcher = ctx.searcher(variant)
        q = ctx.query(variant)
        emb = searcher.embed_entries([ctx.entries[p] for p in positions])
        # Without a predictor the searcher ranks by similarity alone.
        return searcher.predict(q, emb) if searcher.use_predictor else emb @ q

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
        if score_fn is _logme_score:
            # LogME's cost is its forward passes: count the shared sample once and each candidate's own pass.
            _, per_entry, shared = ctx.logme()
            seconds = shared + float(per_entry[allowed].sum())
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


def _logme_score(ctx: MethodContext, positions: np.ndarray) -> np.ndarray:
    scores, _, _ = ctx.logme()
    return scores[positions]


def _random_rank(ctx: MethodContext, limit: int | None, top_k: int) -> Ranking:
    start = time.perf_counter()
    allowed = ctx.allowed(limit)
    # Seeded by dataset and budget: the same draws on a rerun, different draws per budget.
    rng = np.random.default_rng([ctx.seed, zlib.crc32(f"{ctx.dataset.name}|{limit}".encode())])
    draws = rng.permutation(allowed)[: ctx.random_draws]
    return Ranking(ids=[ctx.entries[p].id for p in draws], seconds=time.perf_counter() - start)


_LOGME_VARIANTS = ("logme", "logme-reference")  # probe scores logme_scores may compute


def logme_scores(
    dataset: Dataset,
    zoo: Zoo,
    entries: Sequence[ZooEntry],
    *,
    per_class: int = 20,
    seed: int = 0,
    variant: str = "logme",
) -> tuple[np.ndarray, np.ndarray, float]:
    """LogME of each entry's pre-logit features on a class-balanced sample of ``dataset``.

    The sample is drawn from the training split and resized to the zoo's working format
    (:func:`tans.searcher.probe.probe_scores`).

    Parameters
    ----------
    dataset : Dataset
        The target dataset (its training split is sampled).
    zoo : Zoo
        Holds the entries' weights and their working format.
    entries : sequence of ZooEntry
        Models to score.
    per_class : int
        Images per class.
    seed : int
        Seed of the sample.
    variant : {"logme", "logme-reference"}
        The exact evidence, or the value of the authors' reference code.

    Returns
    -------
    (np.ndarray, np.ndarray, float)
        ``(n,)`` scores (higher is better; a non-finite value becomes ``-inf``), ``(n,)`` seconds
        each entry took (loading, forward pass and score), and the seconds of the shared sampling
        and resizing.

    Raises
    ------
    TansError
        For another ``variant``.
    """
    from tans.searcher.probe import probe_scores

    if variant not in _LOGME_VARIANTS:
        raise TansError(
            f"Unknown LogME variant '{variant}'; expected one of {', '.join(_LOGME_VARIANTS)}."
            f"{did_you_mean(str(variant), _LOGME_VARIANTS)}"
        )
    result = probe_scores(zoo, [e.id for e in entries], dataset, per_class=per_class, seed=seed, scores=(variant,))
    scores = result.scores[variant]
    scores = np.where(np.isfinite(scores), scores, -np.inf)
    return scores, result.seconds_per_entry, result.shared_seconds


# ------------------------------------------------------------------------------- the registry
for _variant, _label in (
    ("main", "searcher (TANS)"),
    ("no-functional", "ablation: no functional embedding"),
    ("no-predictor", "ablation: no predictor re-rank"),
    ("margin-loss", "ablation: margin loss (paper)"),
    ("mean-pooling", "ablation: mean pooling"),
):
    register_method(
        Method(
            name="searcher" if _variant == "main" else _variant,
            label=_label,
            rank=_searcher_rank(_variant),
            score=_searcher_score(_variant),
            searcher=_variant,
        )
    )
    if _variant == "main":
        register_method(
            Method(
                name="searcher-top3",
                label="searcher, best of top 3 (by val acc)",
                rank=_searcher_rank("main"),
                score=_searcher_score("main"),
                pick="best-val-of-3",
                searcher="main",
            )
        )
        register_method(
            Method(
                name="searcher-verify",
                label="searcher shortlist re-ranked by LogME (--verify)",
                rank=_searcher_rank("main", verify=True),
                score=None,
                searcher="main",
            )
        )
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
        label="static prior (best mean acc of the arch)",
        rank=_rank_by(_static_prior_score),
        score=_static_prior_score,
    )
)
register_method(Method(name="logme", label="LogME over every candidate", rank=_rank_by(_logme_score), score=_logme_score))
