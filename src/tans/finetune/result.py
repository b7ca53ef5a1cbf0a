"""What a fine-tuning run returns: :class:`FinetuneResult`, and :class:`Comparison` of two runs.

Its own module so that fine-tuning, saving (:mod:`~tans.finetune.export`) and plotting
(:mod:`~tans.finetune.plots`) all import it without importing each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from tans.data.transforms import WorkingFormat
from tans.training.loop import EpochStats, TrainResult

__all__ = ["FinetuneResult", "Comparison"]


@dataclass(frozen=True)
class FinetuneResult:
    """What :func:`finetune` did.

    Parameters
    ----------
    model_id : str or None
        Zoo entry the weights came from (also set from scratch, naming whose architecture was
        used); ``None`` for a model passed in memory.
    arch : str
        Architecture name.
    source_task : str or None
        Task the zoo entry was trained on.
    from_scratch : bool
        Random initialisation instead of the entry's weights.
    dataset, dataset_fingerprint : str
        Name and content fingerprint of the dataset trained on.
    class_names : tuple of str
        Classes of the new head, in label order.
    working_format : WorkingFormat
        Image size and channels the model consumes.
    epochs : tuple of EpochStats
        Per-epoch learning rate, train loss, train and val accuracy.
    val_acc, test_acc, chance : float
        Final accuracy (BatchNorm statistics re-estimated) next to the chance level.
    wall_seconds : float
        Time of the whole call, conversion and saving included.
    train : TrainResult
        The training loop's full report (image counts, throughput, device, recipe).
    paths : dict of str to str
        Files written (``weights``, ``metadata``, ``curves``, ``onnx``); empty without ``out_dir``.
    model : nn.Module
        The trained model, on the CPU in eval mode (not part of :meth:`to_dict`).
    """

    # what was trained
    model_id: str | None
    arch: str
    source_task: str | None
    from_scratch: bool
    # on what
    dataset: str
    dataset_fingerprint: str
    class_names: tuple[str, ...]
    working_format: WorkingFormat
    # how well
    epochs: tuple[EpochStats, ...]
    val_acc: float
    test_acc: float
    chance: float
    wall_seconds: float
    train: TrainResult = field(repr=False)
    # where
    paths: dict[str, str] = field(default_factory=dict)
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        """``"fine-tuned"`` or ``"from scratch"``, for tables and plot legends."""
        return "from scratch" if self.from_scratch else "fine-tuned"

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON (no model)."""
        return {
            "model_id": self.model_id,
            "arch": self.arch,
            "source_task": self.source_task,
            "from_scratch": self.from_scratch,
            "dataset": self.dataset,
            "dataset_fingerprint": self.dataset_fingerprint,
            "class_names": list(self.class_names),
            "working_format": asdict(self.working_format),
            "epochs": [asdict(e) for e in self.epochs],
            "val_acc": self.val_acc,
            "test_acc": self.test_acc,
            "chance": self.chance,
            "wall_seconds": self.wall_seconds,
            "train_images": self.train.train_images,
            "val_images": self.train.val_images,
            "test_images": self.train.test_images,
            "device": self.train.device,
            "recipe": self.train.recipe,
            "paths": dict(self.paths),
        }


@dataclass(frozen=True)
class Comparison:
    """A fine-tuned model next to the same architecture trained from scratch, same recipe."""

    pretrained: FinetuneResult
    scratch: FinetuneResult
    curves: str | None = None  # plot of both runs, when an output directory was given

    @property
    def gain(self) -> float:
        """Test accuracy of the fine-tuned model minus that of the from-scratch one."""
        return self.pretrained.test_acc - self.scratch.test_acc

    @property
    def epochs_to_match(self) -> int | None:
        """First epoch (1-based) whose fine-tuned val accuracy reaches the from-scratch final one.

        Per-epoch accuracies use BatchNorm's running statistics; the last epoch counts with its
        final (re-estimated) accuracy, the same kind the target is. ``None`` when the budget ends
        first.
        """
        target = self.scratch.val_acc
        curve = [e.val_acc for e in self.pretrained.epochs[:-1]] + [self.pretrained.val_acc]
        for epoch, acc in enumerate(curve, start=1):
            if acc >= target:
                return epoch
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {
            "pretrained": self.pretrained.to_dict(),
            "scratch": self.scratch.to_dict(),
            "gain": self.gain,
            "epochs_to_match": self.epochs_to_match,
            "curves": self.curves,
        }
