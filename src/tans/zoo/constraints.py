"""Deployment constraints (parameters, FLOPs, latency) and which zoo entries satisfy them.

The searcher turns the mask into the ``allowed_ids`` of :meth:`tans.index.VectorIndex.search`, so
candidates are filtered *before* ranking and every returned model satisfies the budget. An
impossible budget gets an error that names the smallest value the zoo has, so the user knows what
to ask for instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tans._errors import SearchError

__all__ = ["Constraints", "allowed_mask", "require_allowed"]


@dataclass(frozen=True)
class _Field:
    # How one constraint is named and printed.
    attr: str  # Constraints attribute
    option: str  # command-line option
    noun: str  # "parameters"
    integral: bool
    smallest: str  # how the zoo's minimum is named, with {} for the value


_FIELDS = (
    _Field("max_params", "--max-params", "parameters", True, "the smallest has {}"),
    _Field("max_flops", "--max-flops", "FLOPs", True, "the smallest has {}"),
    _Field("max_latency_ms", "--max-latency-ms", "ms of latency", False, "the fastest takes {} ms"),
)


@dataclass(frozen=True)
class Constraints:
    """Upper bounds a returned model must satisfy; ``None`` means no bound.

    Attributes
    ----------
    max_params : int, optional
        Most trainable parameters.
    max_flops : int, optional
        Most FLOPs (multiply-adds counted as the zoo counts them) for one image.
    max_latency_ms : float, optional
        Most measured CPU latency per image, in milliseconds.

    Raises
    ------
    SearchError
        If a bound is not a positive number.
    """

    max_params: int | None = None
    max_flops: int | None = None
    max_latency_ms: float | None = None

    def __post_init__(self) -> None:
        for field in _FIELDS:
            value = getattr(self, field.attr)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise SearchError(f"{field.option} must be a number, got {value!r}.")
            if not math.isfinite(float(value)) or value <= 0:
                raise SearchError(f"{field.option} must be a positive number, got {value}.")

    @property
    def active(self) -> dict[str, float]:
        """The bounds that are set, by attribute name."""
        return {f.attr: getattr(self, f.attr) for f in _FIELDS if getattr(self, f.attr) is not None}

    def __bool__(self) -> bool:
        return bool(self.active)

    def describe(self) -> str:
        """Human summary, e.g. ``"params <= 300,000, latency <= 5 ms"`` (``"none"`` when unset)."""
        parts = []
        for f in _FIELDS:
            value = getattr(self, f.attr)
            if value is not None:
                parts.append(f"{f.option.removeprefix('--max-')} <= {_fmt(value, f.integral)}")
        return ", ".join(parts) or "none"


def _fmt(value: float, integral: bool) -> str:
    return f"{int(value):,}" if integral else f"{float(value):g}"


def _columns(
    constraints: Constraints,
    params: np.ndarray | None,
    flops: np.ndarray | None,
    latency_ms: np.ndarray | None,
) -> list[tuple[_Field, float, np.ndarray]]:
    """(field, bound, column) for each active constraint, validated."""
    given = {"max_params": params, "max_flops": flops, "max_latency_ms": latency_ms}
    lengths = {len(np.asarray(v).reshape(-1)) for v in given.values() if v is not None}
    if len(lengths) > 1:
        raise SearchError(f"params, flops and latency_ms must have the same length, got lengths {sorted(lengths)}.")
    out = []
    for field in _FIELDS:
        bound = getattr(constraints, field.attr)
        if bound is None:
            continue
        column = given[field.attr]
        if column is None:
            raise SearchError(
                f"{field.option} was given but the zoo has no {field.noun.split()[-1]} column; "
                "drop the option or measure the zoo first."
            )
        column = np.asarray(column, dtype=np.float64).reshape(-1)
        out.append((field, float(bound), column))
    return out


def allowed_mask(
    constraints: Constraints,
    params: np.ndarray | None = None,
    flops: np.ndarray | None = None,
    latency_ms: np.ndarray | None = None,
) -> np.ndarray:
    """Which zoo entries satisfy every active constraint.

    A missing value (NaN, e.g. latency never measured) does not satisfy a bound on it.

    Parameters
    ----------
    constraints : Constraints
        The budget.
    params, flops, latency_ms : np.ndarray, optional
        ``(n,)`` per-entry values; each is needed only when its bound is set.

    Returns
    -------
    np.ndarray
        ``(n,)`` bool, True where the entry fits the budget (all True without constraints).

    Raises
    ------
    SearchError
        If a bound is set but its column is missing, or the columns differ in length.
    """
    columns = _columns(constraints, params, flops, latency_ms)
    lengths = [len(np.asarray(v).reshape(-1)) for v in (params, flops, latency_ms) if v is not None]
    mask = np.ones(lengths[0] if lengths else 0, dtype=bool)
    for _, bound, column in columns:
        with np.errstate(invalid="ignore"):
            mask &= column <= bound  # NaN compares False
    return mask


def require_allowed(
    constraints: Constraints,
    params: np.ndarray | None = None,
    flops: np.ndarray | None = None,
    latency_ms: np.ndarray | None = None,
) -> np.ndarray:
    """Like :func:`allowed_mask`, but raise a helpful error when nothing fits.

    Returns
    -------
    np.ndarray
        ``(n,)`` bool mask with at least one True.

    Raises
    ------
    SearchError
        If the zoo is empty, or no entry fits. The message names, for each bound that no entry
        meets on its own, the smallest value in the zoo ("No model in the zoo has at most 1,000
        parameters; the smallest has 21,344. Raise --max-params to at least 21344."). When each
        bound is met by some entry but no entry meets all of them, it names for each bound the
        value it would need with the others kept.
    """
    mask = allowed_mask(constraints, params, flops, latency_ms)
    if mask.size == 0:
        raise SearchError("The zoo is empty: there is no model to search. Build one with `tans zoo build`.")
    if mask.any():
        return mask
    columns = _columns(constraints, params, flops, latency_ms)

    sentences = []
    for field, bound, column in columns:
        known = column[np.isfinite(column)]
        if known.size == 0:
            sentences.append(f"No model in the zoo has a measured value for {field.option}; drop it or measure the zoo.")
        elif not (known <= bound).any():
            smallest = float(known.min())
            sentences.append(
                f"No model in the zoo has at most {_fmt(bound, field.integral)} {field.noun}; "
                f"{field.smallest.format(_fmt(smallest, field.integral))}. "
                f"Raise {field.option} to at least {_needed(smallest, field.integral)}."
            )
    if sentences:
        raise SearchError(" ".join(sentences))

    # Each bound alone is satisfiable, together they are not: say what each would need.
    options = []
    for i, (field, _, column) in enumerate(columns):
        others = np.ones(column.shape, dtype=bool)
        for j, (_, bound_j, column_j) in enumerate(columns):
            if j != i:
                with np.errstate(invalid="ignore"):
                    others &= column_j <= bound_j
        candidates = column[others & np.isfinite(column)]
        if candidates.size:
            options.append(f"{field.option} to at least {_needed(float(candidates.min()), field.integral)}")
    summary = constraints.describe()
    fix = (" Keeping the other bounds, raise " + ", or ".join(options) + ".") if options else " Relax the bounds."
    raise SearchError(f"No model in the zoo satisfies all constraints together ({summary}).{fix}")


def _needed(value: float, integral: bool) -> str:
    # Round up so the suggested bound admits the model it names.
    if integral:
        return str(int(math.ceil(value)))
    return f"{math.ceil(value * 100) / 100:g}"
