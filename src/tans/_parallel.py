"""Run independent CPU jobs in this process or in a pool of single-threaded worker processes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any

__all__ = ["map_unordered"]


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)


_END = object()  # end of the queue (an item may be anything, None included)


def map_unordered(fn: Callable[..., Any], items: Iterable[Any], *args: Any, workers: int) -> Iterator[Any]:
    """Yield ``fn(item, *args)`` for every item, in completion order.

    Every job runs with one torch thread: on a busy machine a second OpenMP thread that waits for a
    core makes every operation stall (seen here: 100x slower training). ``workers == 1`` runs in
    this process (restoring its thread count afterwards); more use a spawned process pool (forking
    a process that has started torch's thread pools can deadlock) with at most two jobs per worker
    in flight, so an interrupted run loses little finished work. ``fn`` must not raise.
    """
    items = list(items)
    if not items:
        return
    if workers <= 1:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for item in items:
                yield fn(item, *args)
        finally:
            torch.set_num_threads(before)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_single_thread) as pool:
        queue = iter(items)
        # range first: zip stops on it without drawing (and dropping) one more item from the queue
        pending: set[Future] = {pool.submit(fn, item, *args) for _, item in zip(range(2 * workers), queue)}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
                nxt = next(queue, _END)
                if nxt is not _END:
                    pending.add(pool.submit(fn, nxt, *args))
