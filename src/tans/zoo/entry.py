"""What the zoo remembers about one trained network.

A :class:`ZooEntry` is the metadata row of one model: which architecture, trained on which task
with which recipe and seed, how well it did, what it costs, its functional embedding, and where
its weights live. The id is derived from the build unit (:func:`unit_key`), so a resumed build
recognises the work it already finished.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from tans._errors import ZooError

__all__ = ["ZooEntry", "unit_key", "FLAG_FACTOR", "ID_PATTERN"]

# An entry whose validation accuracy is below FLAG_FACTOR x chance barely learned anything.
FLAG_FACTOR = 1.5
# Ids become file names (weights/<id>.safetensors) and archive member names: keep them tame.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _canonical_recipe(recipe: str | Mapping[str, Any]) -> str:
    """Return the recipe as compact JSON with sorted keys, so equal recipes compare equal."""
    if isinstance(recipe, str):
        try:
            recipe = json.loads(recipe)
        except json.JSONDecodeError as exc:
            raise ZooError(
                f"expected the training recipe as a JSON object, got unparsable text ({exc}); "
                "pass a dict or json.dumps(recipe)."
            ) from None
    if not isinstance(recipe, Mapping):
        raise ZooError(
            f"expected the training recipe as a JSON object (dict), got {type(recipe).__name__}; "
            "wrap the settings in a dict."
        )
    try:
        return json.dumps(dict(recipe), sort_keys=True, separators=(",", ":"))
    except TypeError as exc:
        raise ZooError(
            f"expected a JSON-serialisable training recipe, got {exc}; convert values to "
            "numbers, strings, lists or dicts."
        ) from None


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
    payload = json.dumps([str(arch), str(task_fingerprint), _canonical_recipe(recipe), int(seed)])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _fields_from_dict(
    cls: type, data: Any, what: str, *, optional: set[str], ignored: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The keyword arguments of dataclass ``cls`` in ``data``, after naming unknown and missing keys.

    Shared by the ``from_dict`` of zoo entries, transfer records and task references; keys in
    ``ignored`` are accepted and dropped (derived fields).

    Raises
    ------
    ZooError
        When ``data`` is not a mapping, has unknown keys or misses a required one.
    """
    if not isinstance(data, Mapping):
        article = "an" if what[0] in "aeiou" else "a"
        raise ZooError(f"expected {article} {what} as a JSON object, got {type(data).__name__}.")
    names = {f.name for f in fields(cls) if f.init}
    unknown, missing = sorted(set(data) - names - ignored), sorted(names - optional - set(data))
    if unknown or missing:
        raise ZooError(
            f"{what} {data.get('id', data.get('name', '?'))}: expected the fields of {cls.__name__}, got "
            f"unknown {unknown} and missing {missing}; was it written by another tans version?"
        )
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True, eq=False)
class ZooEntry:
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
        object.__setattr__(self, "recipe", _canonical_recipe(self.recipe))

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
    def recipe_dict(self) -> dict[str, Any]:
        """The training recipe as a dict."""
        return json.loads(self.recipe)

    @property
    def unit_key(self) -> str:
        """:func:`unit_key` of this entry's arch, task fingerprint, recipe and seed."""
        return unit_key(self.arch, self.task_fingerprint, self.recipe, self.seed)

    def same_unit(self, other: ZooEntry) -> bool:
        """Whether ``other`` describes the same build unit (arch, task, recipe, seed)."""
        return (self.arch, self.task_fingerprint, self.recipe, self.seed) == (
            other.arch,
            other.task_fingerprint,
            other.recipe,
            other.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field; the embedding as a list, the recipe as a dict."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["embedding"] = self.embedding.tolist()
        out["recipe"] = self.recipe_dict
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ZooEntry:
        """Inverse of :meth:`to_dict` (``flagged`` is recomputed, unknown keys are refused).

        Raises
        ------
        ZooError
            When a field is missing or unknown.
        """
        kwargs = _fields_from_dict(cls, data, "entry", optional={"weights_file", "sha256", "created"},
                                   ignored=frozenset({"flagged"}))
        kwargs["embedding"] = np.asarray(kwargs["embedding"], dtype=np.float32)
        return cls(**kwargs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ZooEntry):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.id, self.sha256))
