"""Meta-training of the searcher on transfer records, with validation on held-out target families.

Inputs are already features: every task (each record target, and each zoo entry's source task)
arrives as a pool of frozen image features (a class-balanced sample, extracted once); every zoo
entry as its static model-encoder inputs and the index of its source task. A step draws a batch
of training targets and a fresh class-balanced query set from each target's pool and from every
source pool; the source query embeddings feed the model encoder (so a model's embedding knows
what it was trained on), and the loss over each target's recorded models is

- a multi-positive InfoNCE on cosine similarity, whose positives are the models that transferred
  best *to that target* (``positives`` of them, by recorded test accuracy), and
- the predictor's loss: MSE on the recorded accuracy plus a ListNet term on the target's ranking
  (:func:`tans.searcher.losses.predictor_loss`).

After each epoch the validation targets are scored as a new dataset would be: each target's
candidates are the recorded models whose *source family differs* from the target's (a dataset of
an unseen family has no model of its own family in the zoo), ranked by predicted accuracy:

- ``tau``: weighted Kendall tau, ``scipy.stats.weightedtau(true_acc, predicted, rank=None)``
  (hyperbolic weights by the rank of the true accuracy), mean over targets;
- ``regret``: best recorded accuracy minus the top-ranked model's, in points, mean over targets;
- ``mae``: mean absolute error of ``predicted_acc``.

The checkpoint with the best validation tau is kept; training stops after ``patience`` epochs
without a better one. The learning rate follows a cosine over epochs, constant within an epoch.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from tans._errors import TansError
from tans.data.sampling import balanced_indices
from tans.progress import Progress, emit
from tans.searcher.encoders import SearcherNet
from tans.searcher.experience import TransferTable
from tans.searcher.losses import positives_from_accuracy, predictor_loss
from tans.training.recipe import cosine_lr

__all__ = [
    "MetaTrainConfig",
    "MetaPool",
    "EpochLog",
    "MetaTrainResult",
    "MetaInputs",
    "meta_train",
    "split_by_family",
    "evaluate_targets",
    "query_batch",
    "ranking_metrics",
]


@dataclass(frozen=True)
class MetaTrainConfig:
    """Settings of :func:`meta_train`.

    Parameters
    ----------
    epochs, steps_per_epoch : int
        Length of training; every step samples new query sets.
    batch_targets : int
        Record targets per step.
    lr, weight_decay, min_lr_ratio : float
        AdamW peak learning rate, weight decay, and the cosine's floor as a fraction of ``lr``.
    per_class : int
        Query images per class in each sampled set of a target.
    source_per_class : int
        Images per class in each step's sampled set of a source task (every source is embedded at
        every step, so these sets are smaller).
    positives : int
        Each target's best recorded models used as contrastive positives.
    temperature : float
        InfoNCE temperature.
    contrastive_weight, predictor_weight : float
        Weights of the two loss terms.
    rank_scale : float
        ListNet scale: an accuracy gap of ``1 / rank_scale`` counts as one logit.
    rank_within_budgets : bool
        Rank as a search does, under a parameter budget: at each step, half the targets' ListNet
        terms compare only the models under a random cap (a quantile of the zoo's sizes drawn from
        [0.2, 1]), and validation tau is the mean over every candidate and under the 35th and 70th
        percentiles. Over every candidate, size alone orders much of a target's models; under a
        budget the sizes left differ less, and the order among them is what a search gets wrong.
        On by default: in leave-one-family-out it raised stage 1's tau under the bench's smaller
        budget from 0.15 to 0.26 and under the larger from 0.55 to 0.58 (both resolved), with
        every candidate and top-1 regret unchanged (ties).
    patience : int
        Stop after this many epochs without a better validation tau (0: never stop early).
    seed : int
        Seeds the batches and query sets.
    """

    # length
    epochs: int = 30
    steps_per_epoch: int = 40
    batch_targets: int = 16
    # optimisation (a few thousand records: decay and stop early)
    lr: float = 1e-3
    weight_decay: float = 0.05
    min_lr_ratio: float = 0.02
    # data
    per_class: int = 20
    source_per_class: int = 8
    positives: int = 3
    # loss
    temperature: float = 0.1
    contrastive_weight: float = 1.0
    predictor_weight: float = 1.0
    rank_scale: float = 20.0
    rank_within_budgets: bool = True  # chosen by leave-one-family-out (benchmarks/results/rank_within_budgets/)
    # validation
    patience: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            ("epochs", self.epochs >= 1, "at least 1"),
            ("steps_per_epoch", self.steps_per_epoch >= 1, "at least 1"),
            ("batch_targets", self.batch_targets >= 1, "at least 1"),
            ("lr", self.lr > 0, "positive"),
            ("per_class", self.per_class >= 1, "at least 1"),
            ("source_per_class", self.source_per_class >= 1, "at least 1"),
            ("positives", self.positives >= 1, "at least 1"),
            ("temperature", self.temperature > 0, "positive"),
            ("contrastive_weight", self.contrastive_weight >= 0, "0 or more"),
            ("predictor_weight", self.predictor_weight >= 0, "0 or more"),
            ("patience", self.patience >= 0, "0 or more"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise TansError(f"meta-training {name} must be {expected}, got {getattr(self, name)!r}.")

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch ``epoch`` (0-based): a half cosine from ``lr`` towards the floor (:func:`cosine_lr`)."""
        return cosine_lr(self.lr, epoch, self.epochs, min_lr_ratio=self.min_lr_ratio)


@dataclass
class MetaPool:
    """One task's frozen features: ``features`` (pool, feature_dim) and ``labels`` (pool,)."""

    name: str
    features: torch.Tensor
    labels: np.ndarray


@dataclass
class MetaInputs:
    """Everything meta-training reads, already featurised.

    Attributes
    ----------
    table : TransferTable
        Records: ``(T, M)`` accuracy of zoo models on targets.
    targets : list of MetaPool
        One pool per table row.
    sources : list of MetaPool
        One pool per source task of the zoo.
    source_of : np.ndarray
        ``(M,)`` index into ``sources`` of each entry's source task.
    static, functional : np.ndarray
        ``(M, STATIC_FEATURES)`` and ``(M, EMBEDDING_SIZE)`` model inputs
        (:func:`tans.searcher.encoders.model_inputs`).
    """

    table: TransferTable
    targets: list[MetaPool]
    sources: list[MetaPool]
    source_of: np.ndarray
    static: np.ndarray
    functional: np.ndarray


@dataclass(frozen=True)
class EpochLog:
    """What one epoch did (validation numbers are NaN without validation targets)."""

    epoch: int  # 1-based
    lr: float
    loss: float  # mean total loss over the epoch's steps
    contrastive: float
    mse: float
    rank: float
    tau: float  # mean weighted tau, weightedtau(acc, predicted, rank=None)
    regret: float  # mean top-1 regret, points
    mae: float  # mean absolute error of predicted_acc
    seconds: float
    best: bool = False  # the checkpoint kept so far

    def to_dict(self) -> dict:
        """JSON-able values; NaN becomes None."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


@dataclass
class MetaTrainResult:
    """History of :func:`meta_train` and which epoch was kept."""

    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    train_targets: list[str] = field(default_factory=list)
    val_targets: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False

    @property
    def best(self) -> EpochLog | None:
        """The log of the kept epoch."""
        return next((h for h in self.history if h.epoch == self.best_epoch), None)

    def to_dict(self) -> dict:
        return {
            "history": [h.to_dict() for h in self.history],
            "best_epoch": self.best_epoch,
            "train_targets": list(self.train_targets),
            "val_targets": list(self.val_targets),
            "seconds": round(self.seconds, 2),
            "stopped_early": self.stopped_early,
        }


def split_by_family(families: Sequence[str], val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of targets into training and validation rows, whole families at a time.

    Families are drawn in a seeded order into validation until it holds at least ``val_fraction``
    of the targets; at least one family stays for training.

    Returns
    -------
    (np.ndarray, np.ndarray)
        Row indices of the training and validation targets.

    Raises
    ------
    TansError
        If the fraction is outside [0, 1).
    """
    if not 0 <= val_fraction < 1:
        raise TansError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    families = np.asarray(families)
    names = sorted(set(families.tolist()))
    val: set[str] = set()
    if val_fraction > 0 and len(names) >= 2:
        for i in np.random.default_rng(seed).permutation(len(names)):
            if np.isin(families, list(val)).mean() >= val_fraction or len(val) == len(names) - 1:
                break
            val.add(names[i])
    is_val = np.isin(families, list(val))
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def query_batch(pools: Sequence[MetaPool], per_class: int, rng: np.random.Generator, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded query sets ``(D, S, d)`` and their mask ``(D, S)``."""
    picks = [balanced_indices(p.labels, per_class, rng) for p in pools]
    size = max(len(p) for p in picks)
    dim = pools[0].features.shape[1]
    x = torch.zeros(len(pools), size, dim, device=device)
    mask = torch.zeros(len(pools), size, dtype=torch.bool, device=device)
    for i, (pool, p) in enumerate(zip(pools, picks)):
        x[i, : len(p)] = pool.features[torch.as_tensor(p, device=pool.features.device)].to(device)
        mask[i, : len(p)] = True
    return x, mask


VALIDATION_BUDGETS = (0.35, 0.7)  # quantiles of the zoo's sizes validated under with rank_within_budgets


def ranking_metrics(accuracy: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Weighted tau (true-order convention), top-1 regret in points and MAE of one target's candidates."""
    # imported here, not at the top: a search never ranks records, and SciPy takes ~2 s to import
    from scipy.stats import weightedtau

    out = {"tau": math.nan, "regret": math.nan, "mae": math.nan}
    if len(accuracy) == 0:
        return out
    out["regret"] = float(100 * (accuracy.max() - accuracy[int(np.argmax(predicted))]))
    out["mae"] = float(np.mean(np.abs(predicted - accuracy)))
    if len(accuracy) >= 2 and np.ptp(accuracy) > 0 and np.ptp(predicted) > 0:
        out["tau"] = float(weightedtau(accuracy, predicted, rank=None).statistic)
    return out


@torch.no_grad()
def evaluate_targets(
    net: SearcherNet, inputs: MetaInputs, rows: Sequence[int], *, per_class: int, seed: int = 0, device="cpu",
    budgets: Sequence[float] = (),
) -> tuple[dict[str, float], np.ndarray]:
    """Stage-1 quality on targets ``rows``, each ranking its other-family recorded models.

    ``budgets``: quantiles of the zoo's parameter counts; each target is also ranked among the
    candidates under each, and ``tau`` is then the mean over every candidate and those budgets.

    Returns
    -------
    (dict, np.ndarray)
        Mean ``tau``, ``regret`` (points) and ``mae`` over the rows, and the ``(len(rows), M)``
        predicted accuracies of every model on each row's target.
    """
    rows = list(rows)
    if not rows:
        return {"tau": math.nan, "regret": math.nan, "mae": math.nan}, np.zeros((0, len(inputs.table.entries)))
    was_training = net.training
    net.eval()
    rng = np.random.default_rng(seed)
    q = net.query(*query_batch([inputs.targets[r] for r in rows], per_class, rng, device))
    sources = net.query(*query_batch(inputs.sources, per_class, rng, device))
    m = _encode_models(net, inputs, sources, device)
    chance = torch.as_tensor(inputs.table.chance[rows], device=device)
    predicted = net.predict(q, m, chance).cpu().numpy()
    net.train(was_training)
    per_row = []
    params = np.array([e.params for e in inputs.table.entries])
    caps = [np.quantile(params, b) for b in budgets]
    for i, r in enumerate(rows):
        cands = inputs.table.candidates(r)
        metrics = ranking_metrics(inputs.table.accuracy[r, cands], predicted[i, cands])
        within = [c for c in (cands[params[cands] <= cap] for cap in caps) if len(c) >= 2]
        taus = [metrics["tau"]] + [ranking_metrics(inputs.table.accuracy[r, c], predicted[i, c])["tau"] for c in within]
        metrics["tau"] = float(np.nanmean(taus)) if np.isfinite(taus).any() else math.nan
        per_row.append(metrics)
    means = {k: float(np.nanmean([p[k] for p in per_row])) if any(np.isfinite(p[k]) for p in per_row) else math.nan
             for k in ("tau", "regret", "mae")}
    return means, predicted


def _encode_models(net: SearcherNet, inputs: MetaInputs, sources: torch.Tensor, device) -> torch.Tensor:
    static = torch.as_tensor(inputs.static, device=device)
    functional = torch.as_tensor(inputs.functional, device=device)
    source = sources[torch.as_tensor(inputs.source_of, device=device)]
    return net.encode_models(static, functional, source)


def meta_train(
    net: SearcherNet,
    inputs: MetaInputs,
    train_rows: Sequence[int],
    val_rows: Sequence[int],
    config: MetaTrainConfig = MetaTrainConfig(),
    *,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> MetaTrainResult:
    """Train ``net`` in place on the records; it ends holding the best checkpoint.

    Parameters
    ----------
    net : SearcherNet
        Query encoder, model encoder and predictor.
    inputs : MetaInputs
        Records, pools and model inputs.
    train_rows, val_rows : sequence of int
        Table rows (targets) to train on and to validate on (``val_rows`` may be empty: the last
        epoch is kept).
    config : MetaTrainConfig
        Settings.
    device : torch.device or str
        Where to train.
    progress : Progress, optional
        Receives a :class:`~tans.progress.ProgressEvent` of stage ``"meta-train"`` after each epoch
        (``done`` epochs of ``config.epochs``), its :class:`EpochLog` in ``extra["log"]``.

    Returns
    -------
    MetaTrainResult

    Raises
    ------
    TansError
        If there is no training target with at least two recorded models.
    """
    table = inputs.table
    train_rows = [r for r in train_rows if table.observed[r].sum() >= 2]
    if not train_rows:
        raise TansError(
            "meta-training needs at least one target with records of two or more models; run 'tans zoo transfer' "
            "with more models."
        )
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    net.to(device).train()
    accuracy_all = torch.as_tensor(np.nan_to_num(table.accuracy, nan=0.0), device=device)
    observed_all = torch.as_tensor(table.observed, device=device)
    chance_all = torch.as_tensor(table.chance, device=device)
    params_all = torch.as_tensor(np.array([e.params for e in table.entries], dtype=np.float64), device=device)
    val_budgets = VALIDATION_BUDGETS if config.rank_within_budgets else ()
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    val_rows = list(val_rows)
    result = MetaTrainResult(train_targets=[table.names[r] for r in train_rows], val_targets=[table.names[r] for r in val_rows])
    best_key, best_state = None, None
    batch = min(config.batch_targets, len(train_rows))
    for epoch in range(config.epochs):
        epoch_start = time.perf_counter()
        lr = config.lr_at(epoch)
        for group in optimizer.param_groups:  # per epoch, not per batch
            group["lr"] = lr
        sums = np.zeros(4)
        for _ in range(config.steps_per_epoch):
            rows = rng.choice(train_rows, batch, replace=False)
            q = net.query(*query_batch([inputs.targets[r] for r in rows], config.per_class, rng, device))  # (B, e)
            sources = net.query(*query_batch(inputs.sources, config.source_per_class, rng, device))  # (S, e)
            idx = torch.as_tensor(rows, device=device)
            observed = observed_all[idx]  # (B, M)
            cols = torch.nonzero(observed.any(dim=0)).squeeze(1)  # models recorded on any target of the batch
            observed, accuracy = observed[:, cols], accuracy_all[idx][:, cols]
            m = _encode_models(net, inputs, sources, device)[cols]  # (M', e)
            logits = (q @ m.T / config.temperature).masked_fill(~observed, torch.finfo(q.dtype).min)
            positives = positives_from_accuracy(accuracy, observed, top_k=config.positives)
            contrastive = -(F.log_softmax(logits, dim=1) * positives).sum(1).div(positives.sum(1).clamp(min=1)).mean()
            predicted = net.predict(q, m, chance_all[idx])
            within = None
            if config.rank_within_budgets:  # half the rows rank under a random cap, half every model
                quantile = torch.as_tensor(rng.uniform(0.2, 1.0, len(rows)), device=device, dtype=params_all.dtype)
                quantile[torch.as_tensor(rng.random(len(rows)) < 0.5, device=device)] = 1.0
                caps = torch.quantile(params_all, quantile)  # (B,)
                within = params_all[cols][None, :] <= caps[:, None]
            pred_total, mse, rank = predictor_loss(
                predicted, accuracy, observed, ranking="listnet", rank_scale=config.rank_scale, rank_observed=within
            )
            total = config.contrastive_weight * contrastive + config.predictor_weight * pred_total
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            sums += (float(total.detach()), float(contrastive.detach()), float(mse.detach()), float(rank.detach()))
        metrics, _ = evaluate_targets(net, inputs, val_rows, per_class=config.per_class, seed=config.seed, device=device,
                                      budgets=val_budgets)
        if len(val_rows) == 0:
            key = float(epoch)  # no validation: keep the last epoch
        else:
            key = -math.inf if math.isnan(metrics["tau"]) else metrics["tau"]
        is_best = best_key is None or key > best_key
        if is_best:
            best_key, best_state = key, copy.deepcopy(net.state_dict())
            result.best_epoch = epoch + 1
        means = sums / config.steps_per_epoch
        log = EpochLog(
            epoch=epoch + 1,
            lr=lr,
            loss=float(means[0]),
            contrastive=float(means[1]),
            mse=float(means[2]),
            rank=float(means[3]),
            tau=metrics["tau"],
            regret=metrics["regret"],
            mae=metrics["mae"],
            seconds=time.perf_counter() - epoch_start,
            best=is_best,
        )
        result.history.append(log)
        emit(progress, "meta-train", log.epoch, config.epochs, log=log)
        if len(val_rows) and config.patience and epoch + 1 - result.best_epoch >= config.patience:
            result.stopped_early = True
            break
    net.load_state_dict(best_state)
    net.eval()
    result.seconds = time.perf_counter() - start
    return result
