"""What the zoo remembers about one trained network.

A :class:`ZooEntry` is the metadata row of one model: which architecture, trained on which task
with which recipe and seed, how well it did, what it costs, its functional embedding, and where
its weights live. The id is derived from the build unit (:func:`unit_key`), so a resumed build
recognises the work it already finished.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tans._errors import ZooError
from tans.zoo._record import TrainingRun, canonical_recipe, run_key

__all__ = ["ZooEntry", "unit_key", "FLAG_FACTOR", "ID_PATTERN"]

# An entry whose validation accuracy is below FLAG_FACTOR x chance barely learned anything.
FLAG_FACTOR = 1.5
# Ids become file names (weights/<id>.safetensors) and archive member names: keep them tame.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def unit_key(arch: str, task_fingerprint: str, recipe: str | Mapping[str, Any], seed: int) -> str:
    """Deterministic id of one build unit: the same unit always gets the same id.

    Parameters
    ----------
    arch : str
        Canonical architecture name.
    task_fingerprint : str
        Content fingerprint of the source task (``Dataset.fingerprint``).
    recipe : str or mapping
        Training recipe (a dict or its JSON text; key order does not matter).
    seed : int
        Training seed.

    Returns
    -------
    str
        16 hex digits of ``sha256([arch, task_fingerprint, canonical recipe, seed])``.
    """
    return run_key(arch, task_fingerprint, recipe, seed)


@dataclass(frozen=True, eq=False)
class ZooEntry(TrainingRun):
    """Metadata of one network in the zoo.

    Parameters
    ----------
    id : str
        Unique id, usually :func:`unit_key` of the build unit. Letters, digits, ``.``, ``_``,
        ``-``; at most 128 characters (it names the weights file).
    arch : str
        Canonical architecture name (parses back to the architecture).
    task, task_fingerprint, task_family : str
        Name, content fingerprint and source family of the task the weights were trained on.
    num_classes : int
        Number of classes of that task (size of the classifier).
    recipe : str or dict
        Training recipe; stored as canonical JSON text (see :attr:`recipe_dict`).
    seed : int
        Training seed.
    val_acc, test_acc, chance_acc : float
        Validation and test accuracy, and the task's chance level, all in [0, 1].
    params, flops : int
        Parameter count and FLOPs of one forward pass at the working resolution.
    latency_ms : float
        Median CPU latency at batch 1, measured with ``latency_threads`` threads on ``machine``.
    latency_threads : int
        Thread count of the latency measurement.
    machine : str
        Description of the machine that measured the latency.
    embedding : np.ndarray
        ``(dim,)`` float32 functional embedding (penultimate activations on the probe input).
    weights_file : str
        Weights path relative to the zoo directory; filled in by ``Zoo.add``.
    sha256 : str
        Hex sha256 of the weights file; filled in by ``Zoo.add``.
    created : str
        UTC ISO-8601 creation time; filled in by ``Zoo.add`` when empty.

    Attributes
    ----------
    flagged : bool
        ``val_acc < 1.5 * chance_acc``: the network hardly learned its task. Derived, not passed.

    Raises
    ------
    ZooError
        On a malformed id, recipe, accuracy or embedding.
    """

    # identity
    id: str
    arch: str
    # source task
    task: str
    task_fingerprint: str
    task_family: str
    num_classes: int
    # training
    recipe: str
    seed: int
    # quality
    val_acc: float
    test_acc: float
    chance_acc: float
    # cost
    params: int
    flops: int
    latency_ms: float
    latency_threads: int
    machine: str
    # function
    embedding: np.ndarray = field(repr=False)
    # storage (filled in by Zoo.add)
    weights_file: str = ""
    sha256: str = ""
    created: str = ""
    # derived
    flagged: bool = field(init=False)

    _WHAT = "entry"
    _RUN = ("arch", "task_fingerprint", "recipe", "seed")

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not ID_PATTERN.fullmatch(self.id):
            raise ZooError(
                f"expected an entry id of letters, digits, '.', '_' or '-' (at most 128, starting "
                f"with a letter or digit), got {self.id!r}; use unit_key(...) to make one."
            )
        for name in ("num_classes", "seed", "params", "flops", "latency_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ZooError(f"entry {self.id}: expected an integer {name}, got {value!r}.")
            object.__setattr__(self, name, int(value))
        for name in ("val_acc", "test_acc", "chance_acc"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ZooError(
                    f"entry {self.id}: expected {name} as a fraction in [0, 1], got {value}; "
                    "divide percentages by 100."
                )
            object.__setattr__(self, name, value)
        latency = float(self.latency_ms)
        if not math.isfinite(latency) or latency < 0:
            raise ZooError(f"entry {self.id}: expected a non-negative latency_ms, got {latency}.")
        object.__setattr__(self, "latency_ms", latency)
        object.__setattr__(self, "recipe", canonical_recipe(self.recipe))

        emb = np.asarray(self.embedding)
        if emb.ndim != 1 or not (np.issubdtype(emb.dtype, np.number) or emb.size == 0):
            raise ZooError(
                f"entry {self.id}: expected a 1-D numeric functional embedding, got "
                f"{emb.dtype} {emb.shape}; flatten it first."
            )
        emb = np.array(emb, dtype=np.float32)  # own copy, so freezing it cannot touch the caller's
        if not np.all(np.isfinite(emb)):
            raise ZooError(f"entry {self.id}: the functional embedding holds NaN or inf values.")
        emb.setflags(write=False)  # frozen entry, frozen array
        object.__setattr__(self, "embedding", emb)
        object.__setattr__(self, "flagged", bool(self.val_acc < FLAG_FACTOR * self.chance_acc))

    # -- views ---------------------------------------------------------------------------------

    @property
    def unit_key(self) -> str:
        """:func:`unit_key` of this entry's arch, task fingerprint, recipe and seed."""
        return unit_key(*self._run())

    def same_unit(self, other: ZooEntry) -> bool:
        """Whether ``other`` describes the same build unit (arch, task, recipe, seed)."""
        return self._run() == other._run()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field; the embedding as a list, the recipe as a dict."""
        return {**super().to_dict(), "embedding": self.embedding.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ZooEntry:
        """Inverse of :meth:`to_dict` (``flagged`` is recomputed, unknown keys are refused).

        Raises
        ------
        ZooError
            When a field is missing or unknown.
        """
        kwargs = cls._init_kwargs(data)
        kwargs["embedding"] = np.asarray(kwargs["embedding"], dtype=np.float32)
        return cls(**kwargs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ZooEntry):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.id, self.sha256))
