"""Leases on units, so that several builders of one zoo split the work instead of repeating it.

A builder (``tans zoo build``, ``tans zoo transfer``, in one process or as a Ray driver) claims a
unit in the zoo (:meth:`tans.zoo.Zoo.claim`) only when it hands the unit to a worker, renews its
leases from a background thread while it runs, and drops them when it ends. Another builder skips a
unit under a live lease; takes over a unit whose builder died (its process on this host is gone,
or its lease, no longer renewed, expired); and never claims a unit already stored. A builder
killed at any moment leaves at worst a lease that the next builder takes over.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from tans._errors import TansError
from tans._parallel import RayResources, SharedData, WorkerPool, map_jobs
from tans.zoo.store import Zoo, claim_owner

__all__ = ["Claims", "LEASE_S", "run_claimed"]

# A lease lasts this long unless renewed; its builder renews it every LEASE_S / 4 seconds.
LEASE_S = 120.0


class _Unit(Protocol):
    id: str


U = TypeVar("U", bound=_Unit)


class Claims:
    """This builder's leases on the units of a zoo; use as a context manager around the build.

    Parameters
    ----------
    zoo : Zoo
        The zoo the units go to.
    lease_s : float, default LEASE_S
        Lease length; another builder takes a unit over this long after its builder stopped
        renewing (at once when that builder's process on this host is gone).

    Attributes
    ----------
    done : int
        Units found stored when claimed (another builder finished them after planning).
    held : int
        Units skipped because another live builder holds them.
    """

    def __init__(self, zoo: Zoo, *, lease_s: float = LEASE_S) -> None:
        self.zoo, self.lease_s = zoo, lease_s
        self.owner = claim_owner()
        self.done = self.held = 0
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> Claims:
        self._renewer = threading.Thread(target=self._renew, name="tans-claims", daemon=True)
        self._renewer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        self.zoo.release_claims(self.owner)

    def _renew(self) -> None:
        zoo = None
        try:
            while not self._stop.wait(self.lease_s / 4):
                try:
                    zoo = zoo or Zoo(self.zoo.path)  # a connection of this thread's own
                    zoo.renew_claims(self.owner, lease_s=self.lease_s)
                except (sqlite3.Error, TansError):
                    pass  # tried again next time; at worst another builder repeats a unit
        finally:
            if zoo is not None:
                zoo.close()

    def take(self, units: Iterable[U], *, limit: int | None = None) -> Iterator[U]:
        """Yield the units this builder claims, claiming each only when it is drawn.

        Parameters
        ----------
        units : iterable
            Units with an ``id`` (the id of the entry or record they will store).
        limit : int or None
            Stop after claiming this many.
        """
        taken = 0
        for unit in units:
            if limit is not None and taken >= limit:
                return
            state = self.zoo.claim(unit.id, self.owner, lease_s=self.lease_s)
            if state == "claimed":
                taken += 1
                yield unit
            elif state == "done":
                self.done += 1
            else:
                self.held += 1


@contextmanager
def run_claimed(
    zoo: Zoo, todo: list[U], fn: Callable[..., Any], *args: Any, report: Any, workers: int | None,
    ray_address: str | None, max_units: int | None, shared: SharedData, ray_resources: RayResources,
    pool: WorkerPool | None = None,
) -> Iterator[Iterator[tuple[U, Any, str | None]]]:
    """Run ``fn`` on the units of ``todo`` that this builder claims: ``with run_claimed(...) as results``.

    The driver loop of ``tans zoo build`` and ``tans zoo transfer``: a unit is claimed when a
    worker takes it (:meth:`Claims.take`) and runs on :func:`tans._parallel.map_jobs`; ``results``
    yields ``(unit, output, failure)``. ``report`` gets the executor's ``workers`` and ``executor``;
    when the block ends, ``skipped`` grows by the units found stored when claimed and ``held``
    counts those another builder holds. The leases are dropped however the block ends. ``pool``:
    the run's workers, started before it planned (:func:`tans._parallel.start_workers`).
    """
    with Claims(zoo) as claims:
        claimed = claims.take(todo, limit=max_units)
        results, report.workers, report.executor = map_jobs(
            fn, claimed, *args, workers=workers, ray_address=ray_address, count=len(todo[:max_units]),
            shared=shared, ray_resources=ray_resources, pool=pool,
        )
        yield results
    report.skipped, report.held = report.skipped + claims.done, claims.held
