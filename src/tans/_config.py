"""Reading a config dataclass from a file or a dict: one place for the checks every config shares."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from tans._errors import ConfigError, did_you_mean

__all__ = ["check_keys", "read_config_file"]


def check_keys(cls: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    """``values`` without a ``comment`` key, after refusing any key that is not a field of ``cls``."""
    values = {k: v for k, v in values.items() if k != "comment"}
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"Unknown key '{unknown[0]}' in {where}; expected some of {', '.join(sorted(known))}."
            f"{did_you_mean(unknown[0], known)}"
        )
    return values


def read_config_file(path: str | os.PathLike[str], *, what: str, example: str) -> dict[str, Any]:
    """The object of settings in a ``.json`` (or ``.toml``) file.

    Raises
    ------
    ConfigError
        If the file is missing, unparsable, or not an object; the message names ``what`` it should
        be and an ``example`` file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} '{path}' does not exist; pass a .json file such as {example}.")
    text = path.read_text(encoding="utf-8")
    try:
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{what} '{path}' is not valid {path.suffix[1:] or 'JSON'}: {exc}.") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{what} '{path}' must hold an object of settings, got {type(values).__name__}.")
    return values
