"""What zoo entries, transfer records and task references share.

Each is a frozen dataclass that goes to a JSON-able dict and back (:class:`DictRecord`). Entries
and transfer records are also training runs (:class:`TrainingRun`): a canonical JSON recipe, and
an identity of what was trained, on which data, with which recipe and seed, hashed into the id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any, ClassVar

from tans._errors import ZooError


def canonical_recipe(recipe: str | Mapping[str, Any]) -> str:
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


def run_key(trained: str, fingerprint: str, recipe: str | Mapping[str, Any], seed: int) -> str:
    """16 hex digits of ``sha256([trained, fingerprint, canonical recipe, seed])``."""
    payload = json.dumps([str(trained), str(fingerprint), canonical_recipe(recipe), int(seed)])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class DictRecord:
    """``to_dict`` and a ``from_dict`` that names unknown and missing keys, for a dataclass.

    A field with a default may be missing from the dict; a derived field (``init=False``) is
    accepted and dropped, since the constructor computes it again.
    """

    _WHAT: ClassVar[str]  # how messages name one: "entry", "transfer record", "task"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """Inverse of :meth:`to_dict` (every value validated, unknown keys refused).

        Raises
        ------
        ZooError
            When ``data`` is not a mapping, or a field is missing, unknown or malformed.
        """
        return cls(**cls._init_kwargs(data))

    @classmethod
    def _init_kwargs(cls, data: Any) -> dict[str, Any]:
        """The constructor's keyword arguments in ``data``, after naming unknown and missing keys."""
        if not isinstance(data, Mapping):
            article = "an" if cls._WHAT[0] in "aeiou" else "a"
            raise ZooError(f"expected {article} {cls._WHAT} as a JSON object, got {type(data).__name__}.")
        every = fields(cls)  # type: ignore[arg-type]
        names = {f.name for f in every if f.init}
        derived = {f.name for f in every if not f.init}
        optional = {f.name for f in every if f.default is not MISSING or f.default_factory is not MISSING}
        unknown, missing = sorted(set(data) - names - derived), sorted(names - optional - set(data))
        if unknown or missing:
            raise ZooError(
                f"{cls._WHAT} {data.get('id', data.get('name', '?'))}: expected the fields of {cls.__name__}, got "
                f"unknown {unknown} and missing {missing}; was it written by another tans version?"
            )
        return {k: v for k, v in data.items() if k in names}


class TrainingRun(DictRecord):
    """A training run: a zoo entry (a build) or a transfer record (a fine-tune).

    ``recipe`` holds canonical JSON text; ``_RUN`` names the fields that identify the run (what
    was trained, the data's fingerprint, the recipe, the seed), whose :func:`run_key` is the id.
    """

    _RUN: ClassVar[tuple[str, str, str, str]]

    @property
    def recipe_dict(self) -> dict[str, Any]:
        """The recipe as a dict."""
        return json.loads(self.recipe)  # type: ignore[attr-defined]

    def _run(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._RUN)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field; the recipe as a dict."""
        return {**super().to_dict(), "recipe": self.recipe_dict}
