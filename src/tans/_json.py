"""JSON output that is always valid JSON: NaN and infinities become null, numpy scalars plain numbers."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

__all__ = ["dumps", "json_safe"]


def json_safe(value: Any, digits: int | None = 6) -> Any:
    """``value`` with every non-finite float replaced by None, numpy scalars and arrays made plain, paths
    made strings, and floats rounded to ``digits`` places (``None``: not rounded)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v, digits) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            return None
        return float(value) if digits is None else round(float(value), digits)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def dumps(value: Any, *, indent: int | None = None, digits: int | None = 6, ensure_ascii: bool = True) -> str:
    """``json.dumps`` of :func:`json_safe` (``value``, ``digits``), refusing anything that would still not be JSON.

    Files that are read back (model metadata, configs, manifests) pass ``digits=None``: nothing is lost.
    """
    return json.dumps(json_safe(value, digits), indent=indent, allow_nan=False, ensure_ascii=ensure_ascii)
