"""What a zoo build and a transfer run share: their config files, Ray resources, one unit's data and failure."""

from __future__ import annotations

import os
from typing import Any, Self

from tans._config import check_keys, read_config_file
from tans._errors import TansError
from tans._parallel import RayResources


class RunConfig:
    """Mixin of :class:`~tans.zoo.build.BuildConfig` and :class:`~tans.zoo.transfer.TransferConfig`.

    A subclass is a frozen dataclass with a ``ray_resources`` field, and names itself for messages
    with ``_what`` (``"Build config"``), ``_where`` (the default place a dict comes from) and
    ``_example`` (a config file to copy).
    """

    _what = "Config"
    _where = "config"
    _example = ""

    def _read_ray_resources(self) -> None:
        """Call from ``__post_init__``: a ``ray_resources`` object of a config file becomes :class:`RayResources`."""
        if not isinstance(self.ray_resources, RayResources):
            where = f"{self._where} 'ray_resources'"
            object.__setattr__(self, "ray_resources", RayResources.from_dict(self.ray_resources, where=where))

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, where: str | None = None) -> Self:
        """The config of these settings; unknown keys are refused with a close name suggested."""
        return cls(**check_keys(cls, values, where or cls._where))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Self:
        """Read a config from a ``.json`` or ``.toml`` file with the fields of this class."""
        values = read_config_file(path, what=cls._what, example=cls._example)
        return cls.from_dict(values, where=str(path))


def check_planned(dataset: Any, fingerprint: str, task: str) -> None:
    """Refuse a unit's dataset that is not the one it was planned with (another fingerprint).

    The driver hands each unit the dataset it planned with, so this fails only for a caller that
    passes another one.
    """
    if dataset.fingerprint != fingerprint:
        raise TansError(
            f"the dataset given for task '{task}' is not the one its unit was planned with (fingerprint "
            f"{dataset.fingerprint[:12]} != {fingerprint[:12]}); pass the dataset the plan loaded."
        )


def failure_reason(exc: Exception) -> str:
    """The one line a failed unit is reported with: a tans error's message, else the exception's type and message."""
    reason = str(exc) if isinstance(exc, TansError) else f"{type(exc).__name__}: {exc}"
    return (reason.splitlines() or [type(exc).__name__])[0]
