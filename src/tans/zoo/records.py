"""What the zoo remembers about transfers: fine-tunes of its models, and the tasks it knows.

A :class:`TransferRecord` is one fine-tune of a zoo model on a target task (``tans zoo transfer``
or ``tans finetune``): the recipe, the accuracies reached, the validation curve, the time it took.
Records are the experience the searcher learns from. The id is derived from what was run
(:func:`record_key`), so running the same fine-tune twice stores it once.

A :class:`TaskRef` says how to load a task again (a built-in name or an absolute dataset path),
next to the content fingerprint the loaded data must have.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tans._errors import TansError, ZooError
from tans.zoo._record import DictRecord, TrainingRun, canonical_recipe, run_key
from tans.zoo.entry import ID_PATTERN

if TYPE_CHECKING:
    from tans.data.dataset import Dataset

__all__ = ["TransferRecord", "TaskRef", "record_key", "task_source", "ORIGINS"]

# Where a record came from: a `tans zoo transfer` run, or a user's `tans finetune`.
ORIGINS = ("transfer", "finetune")


def record_key(model_id: str, target_fingerprint: str, recipe: str | Mapping[str, Any], seed: int) -> str:
    """Deterministic id of one fine-tune: the same run always gets the same id.

    Parameters
    ----------
    model_id : str
        Zoo entry that was fine-tuned.
    target_fingerprint : str
        Content fingerprint of the target task (``Dataset.fingerprint``).
    recipe : str or mapping
        Fine-tuning recipe (a dict or its JSON text; key order does not matter).
    seed : int
        Fine-tuning seed.

    Returns
    -------
    str
        16 hex digits of ``sha256([model_id, target_fingerprint, canonical recipe, seed])``.
    """
    return run_key(model_id, target_fingerprint, recipe, seed)


def _finite_json(text: str, what: str) -> str:
    """Refuse JSON text holding NaN or Infinity (JSON output of tans never holds them)."""
    try:
        json.dumps(json.loads(text), allow_nan=False)
    except ValueError:
        raise ZooError(f"{what}: expected finite numbers in the recipe, got NaN or Infinity; fix the recipe values.") from None
    return text


def _integer(value: Any, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
        raise ZooError(f"{where}: expected an integer {name}, got {value!r}.")
    return int(value)


def _fraction(value: Any, name: str, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ZooError(f"{where}: expected {name} as a number in [0, 1], got {value!r}.") from None
    if isinstance(value, bool) or not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise ZooError(
            f"{where}: expected {name} as a finite fraction in [0, 1], got {value!r}; divide "
            "percentages by 100 and drop runs that diverged."
        )
    return number


def _text(value: Any, name: str, where: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise ZooError(f"{where}: expected {name} as a {'' if empty else 'non-empty '}string, got {value!r}.")
    return value


@dataclass(frozen=True)
class TransferRecord(TrainingRun):
    """One fine-tune of a zoo model on a target task.

    Parameters
    ----------
    model_id : str
        The zoo entry that was fine-tuned.
    target, target_fingerprint, target_family : str
        Name, content fingerprint and source family of the target task.
    num_classes : int
        Number of classes of the target (width of the new classifier); at least 2.
    recipe : str or dict
        Fine-tuning recipe (epochs, max_train_images, lr, seed...); stored as canonical JSON text
        (see :attr:`recipe_dict`).
    seed : int
        Fine-tuning seed.
    val_acc, test_acc, chance_acc : float
        Final validation and test accuracy, and the target's chance level; finite, in [0, 1].
    curve : tuple of float
        Validation accuracy after each epoch, finite, in [0, 1].
    train_images : int
        Training images drawn per epoch.
    seconds : float
        Wall time of the fine-tune.
    origin : str, default "transfer"
        ``"transfer"`` (``tans zoo transfer``) or ``"finetune"`` (``tans finetune``).
    created : str
        UTC ISO-8601 time; filled in by ``Zoo.add_transfer`` when empty.
    id : str
        Record id; :func:`record_key` of model, target fingerprint, recipe and seed when empty.

    Raises
    ------
    ZooError
        On a malformed field: an accuracy or curve value that is not a finite fraction (NaN and
        Infinity are refused), negative seconds, fewer than 2 classes, an unknown origin.
    """

    # what was fine-tuned, on what
    model_id: str
    target: str
    target_fingerprint: str
    target_family: str
    num_classes: int
    # how
    recipe: str
    seed: int
    # how well
    val_acc: float
    test_acc: float
    chance_acc: float
    curve: tuple[float, ...]
    # at what cost
    train_images: int
    seconds: float
    # bookkeeping
    origin: str = "transfer"
    created: str = ""
    id: str = ""

    _WHAT = "transfer record"
    _RUN = ("model_id", "target_fingerprint", "recipe", "seed")

    def __post_init__(self) -> None:
        where = f"transfer record {self.id or '(new)'}"
        set_ = object.__setattr__
        _text(self.model_id, "model_id", where)
        if not ID_PATTERN.fullmatch(self.model_id):
            raise ZooError(f"{where}: expected model_id to be a zoo entry id, got {self.model_id!r}.")
        _text(self.target, "target", where)
        _text(self.target_fingerprint, "target_fingerprint", where)
        _text(self.target_family, "target_family", where, empty=True)
        _text(self.created, "created", where, empty=True)
        set_(self, "recipe", _finite_json(canonical_recipe(self.recipe), where))
        for name in ("num_classes", "seed", "train_images"):
            set_(self, name, _integer(getattr(self, name), name, where))
        if self.num_classes < 2:
            raise ZooError(f"{where}: expected num_classes of at least 2, got {self.num_classes}.")
        if self.train_images < 0:
            raise ZooError(f"{where}: expected a non-negative train_images, got {self.train_images}.")
        for name in ("val_acc", "test_acc", "chance_acc"):
            set_(self, name, _fraction(getattr(self, name), name, where))
        if isinstance(self.curve, (str, bytes)) or not hasattr(self.curve, "__iter__"):
            raise ZooError(f"{where}: expected the curve as a list of accuracies, got {self.curve!r}.")
        set_(self, "curve", tuple(_fraction(v, f"curve[{i}]", where) for i, v in enumerate(self.curve)))
        try:
            seconds = float(self.seconds)
        except (TypeError, ValueError):
            seconds = math.nan
        if not math.isfinite(seconds) or seconds < 0:
            raise ZooError(f"{where}: expected seconds as a finite number >= 0, got {self.seconds!r}.")
        set_(self, "seconds", seconds)
        if self.origin not in ORIGINS:
            raise ZooError(f"{where}: expected origin {' or '.join(map(repr, ORIGINS))}, got {self.origin!r}.")
        if not self.id:
            set_(self, "id", record_key(*self._run()))
        elif not isinstance(self.id, str) or not ID_PATTERN.fullmatch(self.id):
            raise ZooError(
                f"transfer record: expected an id of letters, digits, '.', '_' or '-' (at most 128), got "
                f"{self.id!r}; leave it empty to derive one."
            )

    # -- views ---------------------------------------------------------------------------------

    @property
    def epochs(self) -> int:
        """Epochs of the fine-tune: the recipe's ``epochs``, else the length of the curve."""
        epochs = self.recipe_dict.get("epochs")
        return int(epochs) if isinstance(epochs, int) and not isinstance(epochs, bool) else len(self.curve)

    def same_run(self, other: TransferRecord) -> bool:
        """Whether ``other`` describes the same fine-tune (model, target, recipe, seed)."""
        return self._run() == other._run()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field; the recipe as a dict, the curve as a list."""
        return {**super().to_dict(), "curve": list(self.curve)}


@dataclass(frozen=True)
class TaskRef(DictRecord):
    """How to load a task the zoo knows, and the fingerprint its data must have.

    Parameters
    ----------
    name : str
        The task's name (``Dataset.name``).
    fingerprint : str
        Content fingerprint of the data (``Dataset.fingerprint``).
    family : str
        Source family of the task.
    source : str
        What to pass to :func:`tans.data.load_dataset`: a built-in task name, or an absolute
        dataset path (see :func:`task_source`).
    num_classes : int
        Number of classes; at least 2.

    Raises
    ------
    ZooError
        On an empty name, fingerprint or source, or fewer than 2 classes.
    """

    name: str
    fingerprint: str
    family: str
    source: str
    num_classes: int

    _WHAT = "task"

    def __post_init__(self) -> None:
        where = f"task {self.name!r}"
        _text(self.name, "name", where)
        _text(self.fingerprint, "fingerprint", where)
        _text(self.family, "family", where, empty=True)
        _text(self.source, "source", where)
        if "\x00" in self.source:
            raise ZooError(f"{where}: expected a task name or a path as source, got a string holding NUL.")
        object.__setattr__(self, "num_classes", _integer(self.num_classes, "num_classes", where))
        if self.num_classes < 2:
            raise ZooError(f"{where}: expected num_classes of at least 2, got {self.num_classes}.")

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> TaskRef:
        """The reference of a loaded dataset (its source found by :func:`task_source`)."""
        return cls(
            name=dataset.name,
            fingerprint=dataset.fingerprint,
            family=dataset.family,
            source=task_source(dataset),
            num_classes=dataset.num_classes,
        )


def task_source(dataset: Dataset) -> str:
    """What to pass to :func:`tans.data.load_dataset` to load ``dataset`` again.

    Parameters
    ----------
    dataset : Dataset
        A loaded dataset.

    Returns
    -------
    str
        ``dataset.name`` when it is a built-in task whose data has the same fingerprint (the
        portable choice); else the resolved absolute path the dataset was read from, when its
        ``source`` is one that exists; else the name (which may not load: the zoo checks the
        fingerprint when it does).
    """
    from pathlib import Path

    from tans.data import catalogue

    names = {t.name for t in catalogue.list_tasks()}
    if dataset.name in names:
        try:
            if catalogue.load_builtin(dataset.name).fingerprint == dataset.fingerprint:
                return dataset.name
        except TansError:
            pass  # not installed here: fall through to the path
    source = dataset.source
    if source and os.path.isabs(source) and Path(source).exists():
        return str(Path(source).resolve())
    return dataset.name
