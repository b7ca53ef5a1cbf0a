"""What the searcher learns from: the zoo's transfer records as a (target x model) accuracy table.

:func:`transfer_table` reads the records of one fine-tuning recipe (by default the most frequent
one, seeds aside: ``predicted_acc`` means the test accuracy after *that* recipe) and averages the
seeds of each (target, model) pair. Records of targets in ``exclude_families`` are left out: a
benchmark passes its test families there, and leave-one-family-out validation the held-out family.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tans._errors import TansError
from tans.zoo.entry import ZooEntry
from tans.zoo.store import Zoo

__all__ = ["TransferTable", "transfer_table", "recipe_tag"]


def recipe_tag(recipe: str | dict) -> str:
    """A recipe as canonical JSON without its seed: the records of one tag are comparable."""
    values = json.loads(recipe) if isinstance(recipe, str) else dict(recipe)
    values.pop("seed", None)
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


@dataclass
class TransferTable:
    """Mean test accuracy of zoo models fine-tuned on target tasks.

    Attributes
    ----------
    entries : list of ZooEntry
        Every zoo entry (the columns), in zoo order.
    targets : list of str
        Target fingerprints (the rows).
    names, families : list of str
        Each target's name and family.
    accuracy : np.ndarray
        ``(T, M)`` float32 mean test accuracy over seeds; NaN where no record exists.
    chance : np.ndarray
        ``(T,)`` chance level of each target's evaluation images.
    recipe : str
        The fine-tuning recipe of every record used (:func:`recipe_tag`).
    records : int
        Records behind the table.
    """

    entries: list[ZooEntry]
    targets: list[str]
    names: list[str]
    families: list[str]
    accuracy: np.ndarray
    chance: np.ndarray
    recipe: str
    records: int

    @property
    def observed(self) -> np.ndarray:
        """``(T, M)`` bool: the pairs with a record."""
        return ~np.isnan(self.accuracy)

    def candidates(self, t: int) -> np.ndarray:
        """Models recorded on target ``t`` whose source is of another family (as for a new dataset)."""
        family = self.families[t]
        other = np.array([e.task_family != family for e in self.entries])
        return np.flatnonzero(self.observed[t] & other)


def transfer_table(zoo: Zoo, *, recipe: str | None = None, exclude_families: Sequence[str] = ()) -> TransferTable:
    """The zoo's transfer records as a table.

    Parameters
    ----------
    zoo : Zoo
        A zoo with transfer records (``tans zoo transfer``).
    recipe : str or None
        Only records of this recipe (:func:`recipe_tag`); ``None``: the most frequent one.
    exclude_families : sequence of str
        Leave out the records of targets of these families.

    Returns
    -------
    TransferTable

    Raises
    ------
    TansError
        If the zoo has no usable records.
    """
    excluded = set(exclude_families)
    records = [r for r in zoo.transfers() if r.target_family not in excluded]
    if not records:
        raise TansError(
            f"The zoo at {zoo.path} has no transfer records{' outside the excluded families' if excluded else ''}; "
            f"the searcher learns from them: run 'tans zoo transfer --zoo {zoo.path}' first."
        )
    tags = [recipe_tag(r.recipe) for r in records]
    recipe = recipe or Counter(tags).most_common(1)[0][0]
    records = [r for r, tag in zip(records, tags) if tag == recipe]
    if not records:
        raise TansError(f"The zoo at {zoo.path} has no transfer record of the recipe {recipe}.")
    entries = zoo.entries()
    column = {e.id: i for i, e in enumerate(entries)}
    targets: dict[str, int] = {}
    names, families, chance = [], [], []
    for r in records:
        if r.target_fingerprint not in targets:
            targets[r.target_fingerprint] = len(targets)
            names.append(r.target)
            families.append(r.target_family)
            chance.append(r.chance_acc)
    sums = np.zeros((len(targets), len(entries)))
    counts = np.zeros_like(sums)
    for r in records:
        if r.model_id in column:
            sums[targets[r.target_fingerprint], column[r.model_id]] += r.test_acc
            counts[targets[r.target_fingerprint], column[r.model_id]] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).astype(np.float32)
    return TransferTable(
        entries=entries,
        targets=list(targets),
        names=names,
        families=families,
        accuracy=accuracy,
        chance=np.asarray(chance, dtype=np.float32),
        recipe=recipe,
        records=len(records),
    )
