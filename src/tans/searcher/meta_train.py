"""Meta-training of the searcher's encoders and predictor, with held-out validation tasks.

Inputs are already features: every task arrives as a pool of frozen image features (a
class-balanced sample, extracted once), every zoo entry as its model-encoder inputs. A step draws
a batch of training tasks, a fresh class-balanced query set from each pool, and every zoo entry
trained on those tasks; the loss is :class:`tans.searcher.MetaContrastiveLoss` with each task's
``positives`` best models (by validation accuracy, not random ones) as positives and the predictor
regressed on (and ranked by) the accuracies of the models trained on the task. The learning rate
follows a cosine over epochs, constant within an epoch (the published code stepped an
epoch-length cosine per batch).

After each epoch the validation tasks are scored:

- ``recall@k``: the fraction of validation tasks whose best model (highest ``val_acc`` among the
  models trained on it) is among the ``k`` zoo models most similar to the task's query embedding;
  retrieval is among *all* zoo entries;
- ``tau``: the predictor's weighted Kendall tau over each validation task's own models, in the
  "true order" convention ``scipy.stats.weightedtau(true_acc, predicted, rank=None)`` (hyperbolic
  weights by the rank of the true accuracy), averaged over tasks with at least two models of
  different accuracy.

The checkpoint with the best validation score, the mean of the logged recall@k values plus tau, is
kept (with a handful of validation tasks recall@10 alone moves in steps of 1/tasks and picks an
epoch by luck), and training stops after ``patience`` epochs without a better score.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from scipy.stats import weightedtau

from tans._errors import TansError
from tans.data.sampling import balanced_indices
from tans.searcher.encoders import SearcherNet
from tans.searcher.losses import MetaContrastiveLoss, positives_from_accuracy

__all__ = ["MetaTrainConfig", "MetaTask", "EpochLog", "MetaTrainResult", "meta_train", "split_tasks", "evaluate_tasks"]


@dataclass(frozen=True)
class MetaTrainConfig:
    """Settings of :func:`meta_train`.

    Parameters
    ----------
    epochs, steps_per_epoch : int
        Length of training; every step samples new query sets.
    batch_tasks : int
        Tasks per step (their models come along as the candidates).
    lr, weight_decay, min_lr_ratio : float
        AdamW peak learning rate, weight decay, and the cosine's floor as a fraction of ``lr``.
    per_class : int
        Query images per class in each sampled set.
    positives : int
        Each task's top models by validation accuracy used as positives.
    loss : str
        ``"infonce"`` (symmetric multi-positive InfoNCE) or ``"margin"`` (the paper's hinge).
    temperature, margin : float
        Of the two contrastive losses.
    predictor_weight : float
        Weight of the predictor loss.
    use_predictor : bool
        Train the predictor (off: contrastive only).
    recall_ks : tuple of int
        ``k`` of the logged recall@k.
    patience : int
        Stop after this many epochs without a better validation score (0: never stop early).
    seed : int
        Seeds the task batches and query sets.
    """

    # length
    epochs: int = 20
    steps_per_epoch: int = 50
    batch_tasks: int = 16
    # optimisation (with a few dozen tasks the encoders overfit within epochs: decay, stop early)
    lr: float = 1e-3
    weight_decay: float = 1e-2
    min_lr_ratio: float = 0.02
    # data
    per_class: int = 20
    positives: int = 3
    # loss
    loss: str = "infonce"
    temperature: float = 0.1
    margin: float = 0.2
    predictor_weight: float = 1.0
    use_predictor: bool = True
    # validation
    recall_ks: tuple[int, ...] = (1, 5, 10)
    patience: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            ("epochs", self.epochs >= 1, "at least 1"),
            ("steps_per_epoch", self.steps_per_epoch >= 1, "at least 1"),
            ("batch_tasks", self.batch_tasks >= 1, "at least 1"),
            ("lr", self.lr > 0, "positive"),
            ("per_class", self.per_class >= 1, "at least 1"),
            ("positives", self.positives >= 1, "at least 1"),
            ("patience", self.patience >= 0, "0 or more"),
            ("recall_ks", len(self.recall_ks) >= 1 and min(self.recall_ks) >= 1, "positive k values"),
            ("loss", self.loss in ("infonce", "margin"), "'infonce' or 'margin'"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise TansError(f"meta-training {name} must be {expected}, got {getattr(self, name)!r}.")

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch ``epoch`` (0-based): a half cosine from ``lr`` towards the floor."""
        floor = self.lr * self.min_lr_ratio
        return floor + (self.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))


@dataclass
class MetaTask:
    """One task as meta-training sees it.

    Attributes
    ----------
    name : str
        Task name (``ZooEntry.task``).
    features : torch.Tensor
        ``(pool, feature_dim)`` frozen features of a class-balanced pool of its training images.
    labels : np.ndarray
        ``(pool,)`` their class labels.
    models : np.ndarray
        ``(m,)`` int64 positions (in the zoo entry list) of the models trained on this task.
    accuracy : np.ndarray
        ``(m,)`` their validation accuracies.
    """

    name: str
    features: torch.Tensor
    labels: np.ndarray
    models: np.ndarray
    accuracy: np.ndarray


@dataclass(frozen=True)
class EpochLog:
    """What one epoch did (validation numbers are NaN without validation tasks)."""

    epoch: int  # 1-based
    lr: float
    loss: float  # mean total loss over the epoch's steps
    contrastive: float
    mse: float
    rank: float
    recall: dict[int, float]  # k -> recall@k of the validation tasks' best models
    tau: float  # mean weighted Kendall tau, weightedtau(acc, predicted, rank=None)
    seconds: float
    best: bool = False  # the checkpoint kept so far

    def to_dict(self) -> dict:
        """JSON-able values; NaN becomes None."""
        out = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}
        out["recall"] = {str(k): None if math.isnan(v) else v for k, v in self.recall.items()}
        return out


@dataclass
class MetaTrainResult:
    """History of :func:`meta_train` and which epoch was kept."""

    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    train_tasks: list[str] = field(default_factory=list)
    val_tasks: list[str] = field(default_factory=list)
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
            "train_tasks": list(self.train_tasks),
            "val_tasks": list(self.val_tasks),
            "seconds": round(self.seconds, 2),
            "stopped_early": self.stopped_early,
        }


def split_tasks(names: Sequence[str], val_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Seeded split of task names into meta-training and validation tasks.

    Parameters
    ----------
    names : sequence of str
        Distinct task names.
    val_fraction : float
        Fraction held out (rounded, at least one task when positive).
    seed : int
        Seed of the draw.

    Returns
    -------
    (list of str, list of str)
        Training and validation names, each sorted.

    Raises
    ------
    TansError
        If the fraction is outside [0, 1) or no training task would remain.
    """
    if not 0 <= val_fraction < 1:
        raise TansError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    names = sorted(set(names))
    n_val = 0 if val_fraction == 0 else max(1, round(val_fraction * len(names)))
    if len(names) - n_val < 1:
        raise TansError(
            f"Holding out {n_val} of {len(names)} tasks leaves none to meta-train on; build a zoo with more "
            "tasks or pass a smaller --val-fraction (0 keeps every task for training)."
        )
    order = np.random.default_rng(seed).permutation(len(names))
    val = sorted(names[i] for i in order[:n_val])
    return [n for n in names if n not in val], val


def _query_batch(tasks: Sequence[MetaTask], per_class: int, rng: np.random.Generator, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded query sets ``(D, S, d)`` and their mask ``(D, S)``."""
    picks = [balanced_indices(t.labels, per_class, rng) for t in tasks]
    size = max(len(p) for p in picks)
    dim = tasks[0].features.shape[1]
    x = torch.zeros(len(tasks), size, dim, device=device)
    mask = torch.zeros(len(tasks), size, dtype=torch.bool, device=device)
    for i, (task, p) in enumerate(zip(tasks, picks)):
        x[i, : len(p)] = task.features[torch.as_tensor(p, device=task.features.device)].to(device)
        mask[i, : len(p)] = True
    return x, mask


def evaluate_tasks(
    net: SearcherNet,
    tasks: Sequence[MetaTask],
    arch: torch.Tensor,
    functional: torch.Tensor,
    *,
    per_class: int,
    recall_ks: Sequence[int],
    seed: int = 0,
) -> tuple[dict[int, float], float]:
    """Recall@k of each task's best model among all models, and the predictor's mean weighted tau.

    Parameters
    ----------
    net : SearcherNet
        The model under evaluation.
    tasks : sequence of MetaTask
        Tasks with their own models.
    arch, functional : torch.Tensor
        Model-encoder inputs of *all* zoo entries (the retrieval candidates).
    per_class : int
        Query images per class (drawn with ``seed``).
    recall_ks : sequence of int
        The ``k`` values.
    seed : int
        Seed of the query sets.

    Returns
    -------
    (dict, float)
        ``{k: recall@k}`` and the mean tau (NaN when no task has two models of different accuracy).
    """
    if not tasks:
        return {k: math.nan for k in recall_ks}, math.nan
    device = arch.device
    was_training = net.training
    net.eval()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        q = net.query(*_query_batch(tasks, per_class, rng, device))  # (T, e)
        m = net.encode_models(arch, functional)  # (M, e)
        order = (q @ m.T).argsort(dim=1, descending=True).cpu().numpy()  # (T, M)
        predicted = net.predictor.score_matrix(q, m).cpu().numpy()  # (T, M)
    net.train(was_training)
    recall = {}
    for k in recall_ks:
        hits = [t.models[int(np.argmax(t.accuracy))] in order[i, :k] for i, t in enumerate(tasks)]
        recall[k] = float(np.mean(hits))
    taus = []
    for i, t in enumerate(tasks):
        if len(t.models) >= 2 and np.ptp(t.accuracy) > 0:
            taus.append(weightedtau(t.accuracy, predicted[i, t.models], rank=None).statistic)
    return recall, float(np.mean(taus)) if taus else math.nan


def meta_train(
    net: SearcherNet,
    train_tasks: Sequence[MetaTask],
    val_tasks: Sequence[MetaTask],
    arch: np.ndarray,
    functional: np.ndarray,
    config: MetaTrainConfig = MetaTrainConfig(),
    *,
    device: torch.device | str = "cpu",
    progress: Callable[[EpochLog], None] | None = None,
) -> MetaTrainResult:
    """Train ``net`` in place; it ends holding the best checkpoint.

    Parameters
    ----------
    net : SearcherNet
        Query encoder, model encoder and predictor.
    train_tasks, val_tasks : sequence of MetaTask
        Meta-training and held-out tasks (``val_tasks`` may be empty: the last epoch is kept).
    arch, functional : np.ndarray
        ``(M, ARCH_FEATURES)`` and ``(M, EMBEDDING_SIZE)`` inputs of every zoo entry
        (:func:`tans.searcher.encoders.model_inputs`); tasks point into them.
    config : MetaTrainConfig
        Settings.
    device : torch.device or str
        Where to train.
    progress : callable, optional
        Called with each epoch's :class:`EpochLog`.

    Returns
    -------
    MetaTrainResult

    Raises
    ------
    TansError
        If there is no training task or a training task has no model.
    """
    if not train_tasks:
        raise TansError("meta-training needs at least one training task with models in the zoo.")
    for t in train_tasks:
        if len(t.models) == 0:
            raise TansError(f"task '{t.name}' has no model in the zoo; every meta-training task needs one.")
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    net.to(device).train()
    arch_t = torch.as_tensor(arch, device=device)
    func_t = torch.as_tensor(functional, device=device)
    loss_fn = MetaContrastiveLoss(
        contrastive=config.loss,
        temperature=config.temperature,
        margin=config.margin,
        predictor_weight=config.predictor_weight if config.use_predictor else 0.0,
    )
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    result = MetaTrainResult(train_tasks=[t.name for t in train_tasks], val_tasks=[t.name for t in val_tasks])
    best_key, best_state = None, None
    batch = min(config.batch_tasks, len(train_tasks))
    for epoch in range(config.epochs):
        epoch_start = time.perf_counter()
        lr = config.lr_at(epoch)
        for group in optimizer.param_groups:  # per epoch, not per batch
            group["lr"] = lr
        sums = np.zeros(4)
        for _ in range(config.steps_per_epoch):
            chosen = [train_tasks[i] for i in rng.choice(len(train_tasks), batch, replace=False)]
            x, mask = _query_batch(chosen, config.per_class, rng, device)
            models = np.concatenate([t.models for t in chosen])  # (M,)
            accuracy = torch.zeros(len(chosen), len(models), device=device)
            observed = torch.zeros(len(chosen), len(models), dtype=torch.bool, device=device)
            col = 0
            for i, t in enumerate(chosen):
                accuracy[i, col : col + len(t.models)] = torch.as_tensor(t.accuracy, dtype=torch.float32)
                observed[i, col : col + len(t.models)] = True
                col += len(t.models)
            idx = torch.as_tensor(models, device=device)
            q = net.query(x, mask)  # (D, e)
            m = net.encode_models(arch_t[idx], func_t[idx])  # (M, e)
            positives = positives_from_accuracy(accuracy, observed, top_k=config.positives)
            predicted = net.predictor.score_matrix(q, m) if config.use_predictor else None
            terms = loss_fn(q, m, positives, predicted, accuracy, observed)
            optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            optimizer.step()
            sums += (float(terms.total.detach()), terms.contrastive, terms.mse, terms.rank)
        recall, tau = evaluate_tasks(
            net, val_tasks, arch_t, func_t, per_class=config.per_class, recall_ks=config.recall_ks, seed=config.seed
        )
        if val_tasks:
            key = float(np.mean(list(recall.values()))) + (0.0 if math.isnan(tau) else tau)
        else:
            key = float(epoch)  # no validation: keep the last epoch
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
            recall=recall,
            tau=tau,
            seconds=time.perf_counter() - epoch_start,
            best=is_best,
        )
        result.history.append(log)
        if progress is not None:
            progress(log)
        if val_tasks and config.patience and epoch + 1 - result.best_epoch >= config.patience:
            result.stopped_early = True
            break
    net.load_state_dict(best_state)
    net.eval()
    result.seconds = time.perf_counter() - start
    return result
