"""JSON output that is always valid JSON: NaN and infinities become null, numpy scalars plain numbers."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

__all__ = ["json_safe", "dumps"]


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, numpy scalars and arrays made plain, floats rounded to 6 places."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else round(float(value), 6)
    return value


def dumps(value: Any, *, indent: int | None = None) -> str:
    """``json.dumps`` of :func:`json_safe` (``value``), refusing anything that would still not be JSON."""
    return json.dumps(json_safe(value), indent=indent, allow_nan=False)
