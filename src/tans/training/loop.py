"""Train and evaluate any timm-style classifier on a :class:`~tans.data.dataset.Dataset`.

The loop knows nothing about the model beyond ``model(x) -> logits``: zoo building and fine-tuning
both use it. Images arrive as uint8 ``(n, h, w, c)`` already at the working resolution (see
:func:`tans.data.transforms.to_working`) and are normalised here by :func:`to_input`. The whole
(capped) split is held as one tensor; augmentation is done on batches with a seeded generator, so a
run is reproducible for a given model initialisation and recipe seed.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tans._errors import TansError
from tans.data.dataset import Dataset
from tans.data.sampling import balanced_indices
from tans.progress import Progress, emit
from tans.training.recipe import Recipe

__all__ = ["EpochStats", "TrainResult", "train", "evaluate", "to_input", "default_device", "INPUT_MEAN", "INPUT_STD"]

# fixed normalisation for every task: x = (pixel / 255 - 0.5) / 0.25
INPUT_MEAN = 0.5
INPUT_STD = 0.25
_MIN_LAST_BATCH = 8  # a smaller last batch is dropped: BatchNorm statistics of a few images are noise
_CALIBRATION_IMAGES = 512  # training images used to re-estimate BatchNorm statistics before validation


@dataclass(frozen=True)
class EpochStats:
    """What one epoch did."""

    epoch: int  # 0-based
    lr: float
    train_loss: float  # mean over the epoch's batches (label-smoothed cross-entropy)
    train_acc: float  # on augmented training batches, in train mode
    val_acc: float  # eval mode, BatchNorm statistics re-estimated first; NaN without validation images
    seconds: float  # training plus validation time of the epoch


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`."""

    # accuracy after the last epoch (BatchNorm statistics re-estimated), next to the chance level
    val_acc: float
    test_acc: float
    chance: float  # majority-class fraction of the validation images evaluated (class-balanced draw)
    epochs: tuple[EpochStats, ...]
    # budget actually used
    train_images: int
    val_images: int
    test_images: int
    wall_seconds: float
    train_images_per_second: float  # image passes per second of training (no evaluation)
    device: str
    num_threads: int
    recipe: dict = field(default_factory=dict)

    @property
    def above_chance(self) -> float:
        """Test accuracy as a multiple of the chance level."""
        return self.test_acc / self.chance if self.chance > 0 else math.nan

    def to_dict(self) -> dict:
        """Plain values for JSON."""
        out = asdict(self)
        out["epochs"] = [asdict(e) for e in self.epochs]
        return out


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_input(images: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 ``(n, h, w, c)`` images -> normalised float ``(n, 3, h, w)`` (grey repeated to RGB).

    Parameters
    ----------
    images : np.ndarray
        uint8 images with 1 or 3 channels.
    device : torch.device, str or None
        Where the tensor goes (CPU when ``None``).

    Returns
    -------
    torch.Tensor
        float32 in channels-last memory layout (faster convolutions on the CPU).
    """
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise TansError(
            f"Expected uint8 images (n, h, w, 1 or 3), got {images.dtype} {images.shape}; "
            "convert the dataset with tans.data.transforms.to_working first."
        )
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device or "cpu")
    x = x.permute(0, 3, 1, 2).float().div_(255.0).sub_(INPUT_MEAN).div_(INPUT_STD)  # (n, c, h, w)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.contiguous(memory_format=torch.channels_last)


def _cap(labels: np.ndarray, indices: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
    """A class-balanced subset of ``indices`` with at most ``cap`` elements."""
    if cap is None or len(indices) <= cap:
        return indices
    rng = np.random.default_rng(seed)
    sub_labels = labels[indices]
    per_class = max(1, cap // len(np.unique(sub_labels)))
    keep = balanced_indices(sub_labels, per_class, rng)
    if len(keep) > cap:
        keep = np.sort(rng.choice(keep, size=cap, replace=False))
    return indices[keep]


def _augment(x: torch.Tensor, padding: int, hflip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding, optional horizontal flip; ``x`` is ``(b, c, h, w)``."""
    b, _, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))
        oy = torch.randint(0, 2 * padding + 1, (b,), generator=gen)
        ox = torch.randint(0, 2 * padding + 1, (b,), generator=gen)
        rows = (oy[:, None] + torch.arange(h))[:, None, :, None].to(x.device)  # (b, 1, h, 1)
        cols = (ox[:, None] + torch.arange(w))[:, None, None, :].to(x.device)  # (b, 1, 1, w)
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chans, rows, cols]
    if hflip:
        flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x.contiguous(memory_format=torch.channels_last)


def _majority_fraction(labels: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent class of ``labels``.

    Measured on the images actually evaluated: the capped validation split is a class-balanced
    draw, so the whole dataset's majority fraction would overstate chance on imbalanced tasks.
    """
    return float(np.bincount(labels).max() / len(labels))


@torch.no_grad()
def _recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Re-estimate BatchNorm running statistics as exact averages over ``x`` (no augmentation).

    After a few dozen steps the exponential running averages still remember their initial values
    and eval-mode accuracy can sit at chance; one forward pass over the training images fixes that.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the pass
    was_training = model.training
    model.train()
    for i in range(0, len(x), batch_size):
        if len(x[i : i + batch_size]) >= 2:
            model(x[i : i + batch_size])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.train(was_training)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)  # norms and biases are not decayed
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    groups = _param_groups(model, recipe.weight_decay)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=recipe.lr)


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    if len(y) == 0:
        return math.nan
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        correct += int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    model.train(was_training)
    return correct / len(y)


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    split: str | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> float:
    """Top-1 accuracy of ``model`` on ``dataset`` (or one of its splits).

    Parameters
    ----------
    model : nn.Module
        A classifier whose output width is the dataset's number of classes.
    dataset : Dataset
        uint8 images at the working resolution.
    split : str or None
        ``"train"``, ``"val"`` or ``"test"``; ``None`` evaluates every image.
    batch_size : int
        Images per forward pass.
    device : torch.device, str or None
        Defaults to the device the model's parameters are on.

    Returns
    -------
    float
        Accuracy in [0, 1].
    """
    if split is not None:
        dataset = dataset.split(split)
    if device is None:
        device = next(model.parameters()).device
    x = to_input(dataset.images, device)
    y = torch.from_numpy(dataset.labels).to(device)
    return _accuracy(model, x, y, batch_size)


def train(
    model: nn.Module,
    dataset: Dataset,
    recipe: Recipe = Recipe(),
    *,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train ``model`` on the dataset's train split; report val and test accuracy.

    Parameters
    ----------
    model : nn.Module
        A classifier with ``dataset.num_classes`` outputs (trained in place).
    dataset : Dataset
        uint8 images at the working resolution, with its train/val/test split.
    recipe : Recipe
        Optimiser, schedule, augmentation, seed and caps on images.
    device : torch.device, str or None
        Defaults to CUDA when available, else the CPU. The model is left there, in eval mode.
    progress : Progress or None
        Receives a :class:`~tans.progress.ProgressEvent` of stage ``"epoch"`` after each epoch
        (``done`` epochs of ``recipe.epochs``), its :class:`EpochStats` in ``extra["stats"]``.

    Returns
    -------
    TrainResult
        Per-epoch statistics, final val and test accuracy, chance level, time and throughput.

    Raises
    ------
    TansError
        If the training split is empty or the model's output does not match the classes.
    """
    start = time.perf_counter()
    device = torch.device(device) if device is not None else default_device()
    splits = dataset.splits()
    labels = dataset.labels
    train_idx = _cap(labels, splits["train"], recipe.max_train_images, recipe.seed)
    val_idx = _cap(labels, splits["val"], recipe.max_eval_images, recipe.seed + 1)
    test_idx = _cap(labels, splits["test"], recipe.max_eval_images, recipe.seed + 2)
    if len(train_idx) < 2:
        raise TansError(
            f"Dataset '{dataset.name}' has {len(train_idx)} training image(s); need at least 2 to train."
        )

    def tensors(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return to_input(dataset.images[idx], device), torch.from_numpy(labels[idx]).to(device)

    x_train, y_train = tensors(train_idx)
    x_val, y_val = tensors(val_idx)
    x_test, y_test = tensors(test_idx)

    model.to(device=device, memory_format=torch.channels_last)
    model.train()
    with torch.no_grad():
        out_width = model(x_train[:2]).shape[1]
    if out_width != dataset.num_classes:
        raise TansError(
            f"Model has {out_width} outputs but dataset '{dataset.name}' has {dataset.num_classes} classes; "
            f"call model.reset_classifier({dataset.num_classes}) first."
        )
    optimizer = _make_optimizer(model, recipe)
    gen = torch.Generator().manual_seed(recipe.seed)
    n = len(y_train)
    x_calib = x_train[torch.randperm(n, generator=torch.Generator().manual_seed(recipe.seed))[:_CALIBRATION_IMAGES].to(device)]
    bs = min(recipe.batch_size, n)
    history: list[EpochStats] = []
    train_seconds = 0.0
    seen = 0
    for epoch in range(recipe.epochs):
        t0 = time.perf_counter()
        lr = recipe.lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        order = torch.randperm(n, generator=gen).to(device)
        loss_sum, correct, count, batches = 0.0, 0, 0, 0
        for i in range(0, n, bs):
            idx = order[i : i + bs]
            if len(idx) < min(_MIN_LAST_BATCH, bs):
                continue
            xb = _augment(x_train[idx], recipe.crop_padding, recipe.hflip, gen)
            yb = y_train[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach())
            correct += int((logits.argmax(1) == yb).sum())
            count += len(yb)
            batches += 1
        train_seconds += time.perf_counter() - t0
        seen += count
        # Lagging running statistics make eval-mode accuracy of a young network meaningless (a
        # from-scratch curve sat at chance while its final accuracy was 97%): re-estimate them on
        # a fixed slice of the training images before every validation, not only at the end.
        _recalibrate_batchnorm(model, x_calib, max(bs, 128))
        val_acc = _accuracy(model, x_val, y_val)
        stats = EpochStats(
            epoch=epoch,
            lr=lr,
            train_loss=loss_sum / max(batches, 1),
            train_acc=correct / max(count, 1),
            val_acc=val_acc,
            seconds=time.perf_counter() - t0,
        )
        history.append(stats)
        emit(progress, "epoch", epoch + 1, recipe.epochs, stats=stats)
    if n > _CALIBRATION_IMAGES:  # the last epoch calibrated on a slice; the final numbers use all
        _recalibrate_batchnorm(model, x_train, max(bs, 128))
    val_acc = _accuracy(model, x_val, y_val)
    test_acc = _accuracy(model, x_test, y_test)
    model.eval()
    model.to(memory_format=torch.contiguous_format)  # safetensors wants contiguous weights
    return TrainResult(
        val_acc=val_acc,
        test_acc=test_acc,
        chance=_majority_fraction(labels[val_idx] if len(val_idx) else labels),
        epochs=tuple(history),
        train_images=n,
        val_images=len(y_val),
        test_images=len(y_test),
        wall_seconds=time.perf_counter() - start,
        train_images_per_second=seen / train_seconds if train_seconds > 0 else math.nan,
        device=str(device),
        num_threads=torch.get_num_threads(),
        recipe=recipe.to_dict(),
    )
