"""tans._parallel.map_unordered: every item comes back exactly once, in-process or in a pool."""

from __future__ import annotations

import pytest

from tans._parallel import map_unordered


def _square(x: int | None, offset: int) -> tuple[int | None, int | None]:
    return x, None if x is None else x * x + offset


@pytest.mark.parametrize("workers", [1, 2])
def test_every_item_returns_once(workers):
    # more items than the 2 * workers kept in flight: a lost item showed up as a missing zoo entry
    items = list(range(11)) + [None]
    results = list(map_unordered(_square, items, 1, workers=workers))
    assert sorted(results, key=lambda r: (r[0] is None, r[0] or 0)) == [(x, x * x + 1) for x in range(11)] + [(None, None)]
