"""Draw architectures from the space: uniformly, or stratified by parameter count.

A uniform draw concentrates around the middle of the space (every stage averages out), so a zoo
built from it spans only about 3x in parameters. The stratified sampler splits the log-parameter
range of the space into equal bins and fills them in turn, tilting each choice towards small or
large options to reach the outer bins, so a zoo of a dozen networks already spans more than 10x.
"""

from __future__ import annotations

import math

import numpy as np

from tans._errors import TansError
from tans.space.arch import DEPTHS, EXPANSIONS, KERNELS, NUM_STAGES, WIDTHS, Arch
from tans.space.mobilenet import count_params

__all__ = ["sample_uniform", "sample_stratified", "param_range"]


def _draw(rng: np.random.Generator, tilt: float = 0.0) -> Arch:
    """One architecture; ``tilt`` in [-1, 1] favours the smallest (-1) or largest (+1) options."""

    def pick(choices: tuple) -> int | float:
        ranks = np.linspace(-1.0, 1.0, len(choices))
        p = np.exp(3.0 * tilt * ranks)
        return choices[rng.choice(len(choices), p=p / p.sum())]

    width = pick(WIDTHS)
    kernels, expansions = [], []
    for _ in range(NUM_STAGES):
        depth = pick(DEPTHS)
        kernels.append(tuple(pick(KERNELS) for _ in range(depth)))
        expansions.append(tuple(pick(EXPANSIONS) for _ in range(depth)))
    return Arch(width=width, kernels=tuple(kernels), expansions=tuple(expansions))


def _check_n(n: int) -> None:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise TansError(f"Number of architectures must be a positive integer, got {n!r}.")


def sample_uniform(n: int, *, seed: int = 0) -> list[Arch]:
    """``n`` architectures, every choice drawn uniformly and independently (repeats possible).

    The same ``seed`` gives the same list; a ``n`` below 1 raises :class:`~tans.errors.TansError`.
    """
    _check_n(n)
    rng = np.random.default_rng(seed)
    return [_draw(rng) for _ in range(n)]


def param_range(*, num_classes: int = 10) -> tuple[int, int]:
    """Parameter counts of the smallest and the largest architecture of the space."""
    lo = Arch(min(WIDTHS), ((min(KERNELS),) * min(DEPTHS),) * NUM_STAGES, ((min(EXPANSIONS),) * min(DEPTHS),) * NUM_STAGES)
    hi = Arch(max(WIDTHS), ((max(KERNELS),) * max(DEPTHS),) * NUM_STAGES, ((max(EXPANSIONS),) * max(DEPTHS),) * NUM_STAGES)
    return count_params(lo, num_classes=num_classes), count_params(hi, num_classes=num_classes)


def sample_stratified(
    n: int,
    *,
    seed: int = 0,
    min_params: int | None = None,
    max_params: int | None = None,
    num_classes: int = 10,
    tries: int = 200,
) -> list[Arch]:
    """``n`` distinct architectures spread evenly over log(parameter count).

    The range ``[min_params, max_params]`` (default: the whole space) is cut into ``n`` equal bins
    in log scale and each architecture is drawn to land in its own bin; the result is sorted by
    size. A bin no draw reaches within ``tries`` gets the closest draw.

    Parameters
    ----------
    n : int
        How many.
    seed : int
        Same seed, same list.
    min_params, max_params : int or None
        Limits of the size range (parameters with a ``num_classes`` classifier).
    num_classes : int
        Classifier width assumed when counting parameters.
    tries : int
        Draws per bin before settling for the closest.

    Returns
    -------
    list of Arch
        From smallest to largest.

    Raises
    ------
    TansError
        If the size range is empty or outside the space.
    """
    _check_n(n)
    space_lo, space_hi = param_range(num_classes=num_classes)
    lo = space_lo if min_params is None else max(min_params, space_lo)
    hi = space_hi if max_params is None else min(max_params, space_hi)
    if lo >= hi:
        raise TansError(
            f"Parameter range [{min_params}, {max_params}] leaves nothing of the space, which spans "
            f"[{space_lo}, {space_hi}] parameters for {num_classes} classes."
        )
    rng = np.random.default_rng(seed)
    edges = np.linspace(math.log(lo), math.log(hi), n + 1)
    chosen: list[Arch] = []
    seen: set[str] = set()
    for b in range(n):
        a_lo, a_hi = edges[b], edges[b + 1]
        centre = 0.5 * (a_lo + a_hi)
        # tilt towards small/large choices according to where the bin sits in the whole space
        pos = (centre - math.log(space_lo)) / (math.log(space_hi) - math.log(space_lo))
        best, best_gap = None, math.inf
        for t in range(tries):
            tilt = float(np.clip(2.0 * pos - 1.0 + rng.normal(0.0, 0.25), -1.0, 1.0))
            arch = _draw(rng, tilt)
            if arch.name in seen:
                continue
            size = math.log(count_params(arch, num_classes=num_classes))
            gap = 0.0 if a_lo <= size <= a_hi else min(abs(size - a_lo), abs(size - a_hi))
            if gap < best_gap:
                best, best_gap = arch, gap
            if gap == 0.0:
                break
        if best is None:
            raise TansError(f"Could not draw {n} distinct architectures in the range; ask for fewer.")
        chosen.append(best)
        seen.add(best.name)
    return sorted(chosen, key=lambda a: count_params(a, num_classes=num_classes))
