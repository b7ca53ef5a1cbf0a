"""Stage 3 of a search (optional): successive halving over the shortlist with short fine-tunes.

Rung ``r`` fine-tunes each surviving candidate for ``2**r`` epochs with the transfer records'
recipe (:func:`tans.zoo.transfer.transfer_recipe`: the same image caps, so one rung-0 result is
what a record measures) and keeps the better half by *validation* accuracy (the test split is
never looked at), until one model is left or the time budget is spent. Each rung costs about as
much as the first (half the models, twice the epochs). A fine-tune is started only when the
seconds measured so far say it ends within the budget (the first one always runs), so the budget
is kept to within about one fine-tune. Candidates ever fine-tuned rank first: by the last rung they
reached, then by their validation accuracy there; the rest keep the order they came in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tans._errors import TansError
from tans.data.dataset import Dataset
from tans.progress import Progress, emit
from tans.zoo.store import Zoo

__all__ = ["HalvingTrial", "check_budget", "successive_halving"]


@dataclass(frozen=True)
class HalvingTrial:
    """One short fine-tune of stage 3."""

    id: str
    rung: int
    epochs: int
    val_acc: float
    seconds: float


def check_budget(budget_seconds: float) -> None:
    """Raise a one-line :class:`TansError` unless ``budget_seconds`` is a positive number."""
    if isinstance(budget_seconds, bool) or not isinstance(budget_seconds, (int, float)) or not budget_seconds > 0:
        raise TansError(f"The fine-tuning budget must be a positive number of seconds, got {budget_seconds!r}.")


def successive_halving(
    dataset: Dataset,
    ids: Sequence[str],
    *,
    zoo: Zoo,
    budget_seconds: float,
    seed: int = 0,
    max_train_images: int = 192,
    max_eval_images: int = 192,
    progress: Progress | None = None,
) -> tuple[list[str], list[HalvingTrial]]:
    """Re-order ``ids`` (best first) by short fine-tunes on ``dataset`` within ``budget_seconds``.

    Parameters
    ----------
    dataset : Dataset
        The new dataset; its training split trains, its validation split decides.
    ids : sequence of str
        Zoo entry ids, most promising first (they are fine-tuned in this order).
    zoo : Zoo
        The zoo holding them.
    budget_seconds : float
        Wall-clock seconds stage 3 may spend (positive).
    seed : int
        Fine-tuning seed.
    max_train_images, max_eval_images : int
        Caps of each fine-tune's training and evaluation draws.
    progress : Progress, optional
        Receives a :class:`~tans.progress.ProgressEvent` of stage ``"finetune"`` after each
        fine-tune (``done`` so far, ``total`` None: the budget decides; ``message`` the entry's id),
        its :class:`HalvingTrial` in ``extra["trial"]``.

    Returns
    -------
    (list of str, list of HalvingTrial)
        ``ids`` re-ordered, and every fine-tune run, in order.

    Raises
    ------
    TansError
        If the budget is not a positive number of seconds, or a fine-tune fails.

    Examples
    --------
    >>> order, trials = successive_halving(dataset, ["a1b2...", "c3d4..."], zoo=zoo, budget_seconds=60)  # doctest: +SKIP
    """
    from tans.finetune import finetune
    from tans.zoo.transfer import transfer_recipe

    check_budget(budget_seconds)
    start = time.perf_counter()
    trials: list[HalvingTrial] = []
    reached: dict[str, tuple[int, float]] = {}  # id -> (last rung, val acc there)
    alive, rung = list(dict.fromkeys(ids)), 0
    while True:
        epochs, finished = 2**rung, True
        for entry_id in alive:
            per_epoch = [t.seconds / t.epochs for t in trials]
            expected = epochs * sum(per_epoch) / len(per_epoch) if per_epoch else 0.0
            if trials and time.perf_counter() - start + expected > budget_seconds:
                finished = False
                break
            recipe = transfer_recipe(epochs, seed, max_train_images=max_train_images, max_eval_images=max_eval_images)
            result = finetune(dataset, zoo=zoo, model_id=entry_id, recipe=recipe, seed=seed)
            trial = HalvingTrial(entry_id, rung, epochs, float(result.val_acc), float(result.wall_seconds))
            trials.append(trial)
            reached[entry_id] = (rung, trial.val_acc if math.isfinite(trial.val_acc) else -1.0)
            emit(progress, "finetune", len(trials), None, entry_id, trial=trial)
        if not finished or len(alive) <= 2:  # out of time, or this rung picked the one left
            break
        alive = sorted(alive, key=lambda i: -reached[i][1])[: math.ceil(len(alive) / 2)]  # the better half
        rung += 1
    tried = sorted(reached, key=lambda i: (-reached[i][0], -reached[i][1]))
    return tried + [i for i in ids if i not in reached], trials
