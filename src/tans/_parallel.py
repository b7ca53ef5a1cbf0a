"""Run independent CPU jobs in this process, in a pool of single-threaded worker processes, or on Ray."""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any

__all__ = ["map_jobs", "map_unordered", "ray_map"]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> None:
    """Make this worker exit when ``parent`` dies, even by ``kill -9`` (no orphan holding a GB of RAM).

    Linux delivers SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``); everywhere, a daemon
    thread also watches for the worker being re-parented and exits then.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass  # the watcher below still works
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="tans-parent-watch", daemon=True).start()


def _init_worker(parent: int) -> None:
    _die_with_parent(parent)  # first: importing torch takes seconds, and the parent may die meanwhile
    import torch

    torch.set_num_threads(1)


_END = object()  # end of the queue (an item may be anything, None included)


def map_unordered(fn: Callable[..., Any], items: Iterable[Any], *args: Any, workers: int) -> Iterator[Any]:
    """Yield ``fn(item, *args)`` for every item, in completion order.

    Every job runs with one torch thread: on a busy machine a second OpenMP thread that waits for a
    core makes every operation stall (seen here: 100x slower training). ``workers == 1`` runs in
    this process (restoring its thread count afterwards); more use a spawned process pool (forking
    a process that has started torch's thread pools can deadlock) with at most two jobs per worker
    in flight, so an interrupted run loses little finished work, and workers that exit when this
    process dies, however it dies. ``fn`` must not raise. ``items`` is drawn lazily, one item when
    a job is started (a builder claims a unit only then); the pool starts only when there is one.
    """
    queue = iter(items)
    first = next(queue, _END)
    if first is _END:
        return
    queue = itertools.chain([first], queue)
    if workers <= 1:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for item in queue:
                yield fn(item, *args)
        finally:
            torch.set_num_threads(before)
        return
    with ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(os.getpid(),)
    ) as pool:
        # range first: zip stops on it without drawing (and dropping) one more item from the queue
        pending: set[Future] = {pool.submit(fn, item, *args) for _, item in zip(range(2 * workers), queue, strict=False)}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
                nxt = next(queue, _END)
                if nxt is not _END:
                    pending.add(pool.submit(fn, nxt, *args))


def _ray_call(fn: Callable[..., Any], item: Any, *args: Any) -> Any:
    import torch

    torch.set_num_threads(1)  # one Ray CPU, one thread
    return fn(item, *args)


def ray_map(fn: Callable[..., Any], items: Iterable[Any], *args: Any, address: str) -> Iterator[Any]:
    """Yield ``fn(item, *args)`` for every item, run as Ray tasks (one CPU each), in completion order.

    ``address``: ``"auto"`` joins the running cluster, an address joins that one, ``"local"`` starts
    a local Ray instance. Results travel back to this process. ``fn`` must not raise. At most two
    tasks per cluster CPU are in flight; ``items`` is drawn lazily, one item when a task is submitted.
    """
    from tans._errors import TansError

    try:
        import ray
    except ImportError:
        raise TansError("Ray is not installed; run: pip install 'tans[ray]' (or bash scripts/setup.sh --ray).") from None
    if not ray.is_initialized():
        try:
            if address == "local":
                ray.init(include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        except ConnectionError as exc:
            raise TansError(
                f"Could not join a Ray cluster at '{address}' ({exc}); start one with 'ray start --head' "
                "or pass --ray local."
            ) from None
    remote = ray.remote(num_cpus=1)(_ray_call)
    window = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    queue = iter(items)
    pending = [remote.remote(fn, item, *args) for _, item in zip(range(window), queue, strict=False)]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])
        nxt = next(queue, _END)
        if nxt is not _END:
            pending.append(remote.remote(fn, nxt, *args))


def map_jobs(
    fn: Callable[..., Any], items: Iterable[Any], *args: Any, workers: int | None, ray_address: str | None, count: int
) -> tuple[Iterator[Any], int, str]:
    """Pick the executor of a build-like run and start it: Ray tasks, a process pool, or this process.

    Parameters
    ----------
    workers : int or None
        Local processes (default: every core), at most ``count`` (how many items there may be).
    ray_address : str or None
        Run on Ray (see :func:`ray_map`) instead.

    Returns
    -------
    (iterator, int, str)
        The results as :func:`map_unordered` yields them, the worker count, and the executor's name.
    """
    if ray_address is not None:
        return ray_map(fn, items, *args, address=ray_address), 1, f"ray ({ray_address})"
    workers = min(workers or os.cpu_count() or 1, max(count, 1))
    executor = "in-process" if workers == 1 else "process pool"
    return map_unordered(fn, items, *args, workers=workers), workers, executor
