"""The training recipe: every setting that decides how a network is trained, in one dataclass.

The defaults are sized for the zoo: a few epochs on at most a couple of thousand 32x32 images, one
CPU thread, seconds per network. They are stored with every zoo entry, so an entry says exactly how
it was trained.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from tans._errors import ConfigError, did_you_mean, unknown_choice

__all__ = ["Recipe", "cosine_lr"]

_OPTIMIZERS = ("adamw", "sgd")


def cosine_lr(lr: float, epoch: int, epochs: int, *, warmup_epochs: int = 0, min_lr_ratio: float = 0.0) -> float:
    """The learning rate of epoch ``epoch`` (0-based) of ``epochs``; constant within the epoch.

    Warm-up epochs rise linearly to ``lr`` (epoch ``i`` gets ``lr * (i + 1) / (warmup + 1)``);
    the remaining epochs follow a half cosine from ``lr`` down towards ``lr * min_lr_ratio``,
    reaching the floor only after the last epoch.
    """
    if epoch < warmup_epochs:
        return lr * (epoch + 1) / (warmup_epochs + 1)
    t = (epoch - warmup_epochs) / (epochs - warmup_epochs)
    floor = lr * min_lr_ratio
    return floor + (lr - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


@dataclass(frozen=True)
class Recipe:
    """How to train a network on a small image dataset.

    Parameters
    ----------
    optimizer : str
        ``"adamw"`` or ``"sgd"`` (Nesterov momentum 0.9).
    lr : float
        Peak learning rate, reached after the warm-up.
    weight_decay : float
        Decoupled weight decay (AdamW) or L2 (SGD); not applied to norms and biases.
    epochs : int
        Passes over the (capped) training set.
    batch_size : int
        Images per step; a last batch smaller than 8 is dropped (BatchNorm needs a few samples).
    warmup_epochs : int
        Epochs of linear warm-up before the cosine decay.
    min_lr_ratio : float
        Floor of the cosine schedule as a fraction of ``lr``.
    label_smoothing : float
        Cross-entropy label smoothing.
    crop_padding : int
        Random crop after zero-padding by this many pixels (0 turns it off).
    hflip : bool
        Random horizontal flips. Off by default: glyphs and digits are not mirror-invariant.
    seed : int
        Seeds data order and augmentation.
    max_train_images : int or None
        Cap on training images per task (class-balanced draw); ``None`` uses all.
    max_eval_images : int or None
        Cap on validation and test images (class-balanced draw); ``None`` uses all.
    """

    # optimisation
    optimizer: str = "adamw"
    lr: float = 4e-3
    weight_decay: float = 0.05
    epochs: int = 4
    batch_size: int = 64
    # schedule: one learning rate per epoch (linear warm-up, then cosine)
    warmup_epochs: int = 1
    min_lr_ratio: float = 0.02
    # regularisation and augmentation
    label_smoothing: float = 0.1
    crop_padding: int = 2
    hflip: bool = False
    # reproducibility and budget
    seed: int = 0
    max_train_images: int | None = 1000
    max_eval_images: int | None = 1000

    def __post_init__(self) -> None:
        if self.optimizer not in _OPTIMIZERS:
            raise unknown_choice("optimizer", self.optimizer, _OPTIMIZERS, ConfigError)
        checks = [
            ("lr", self.lr > 0, "a positive number"),
            ("weight_decay", self.weight_decay >= 0, "zero or more"),
            ("epochs", self.epochs >= 1, "at least 1"),
            ("batch_size", self.batch_size >= 2, "at least 2"),
            ("warmup_epochs", 0 <= self.warmup_epochs < self.epochs, "between 0 and epochs - 1"),
            ("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "between 0 and 1"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
            ("crop_padding", self.crop_padding >= 0, "zero or more"),
            ("max_train_images", self.max_train_images is None or self.max_train_images >= 2, "None or at least 2"),
            ("max_eval_images", self.max_eval_images is None or self.max_eval_images >= 1, "None or at least 1"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"Recipe.{name} must be {expected}, got {getattr(self, name)!r}.")

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch ``epoch`` (0-based), by :func:`cosine_lr`."""
        return cosine_lr(self.lr, epoch, self.epochs, warmup_epochs=self.warmup_epochs, min_lr_ratio=self.min_lr_ratio)

    def to_dict(self) -> dict:
        """Plain values for JSON or a metadata column."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Recipe:
        """The recipe ``to_dict`` wrote; unknown keys raise a :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"Unknown recipe field(s) {unknown}; expected some of {sorted(known)}."
                + did_you_mean(unknown[0], known)
            )
        return cls(**values)
