"""Run independent CPU jobs in this process, in a pool of single-threaded worker processes, or on Ray.

Jobs that share a large read-only input (a task's images) get it from the driver through
:class:`SharedData`, never by loading it themselves: the driver loads it once, and each executor
delivers it its own way (the object itself, a pickled copy, or a reference into Ray's object store).
"""

from __future__ import annotations

import itertools
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

from tans._config import check_keys
from tans._errors import ConfigError, TansError

__all__ = ["RayResources", "SharedData", "WorkerPool", "map_jobs", "map_unordered", "ray_map", "start_workers"]


@dataclass(frozen=True)
class RayResources:
    """What Ray reserves for each job of a run (``ray.remote(num_cpus=..., num_gpus=...)``).

    Parameters
    ----------
    cpus_per_unit : float
        CPUs per job, above 0 (a fraction packs several jobs on one CPU); the job runs with that
        many torch threads, at least one.
    gpus_per_unit : float
        GPUs per job, 0 or more (0: none; 0.5: two jobs share a GPU). A job given a GPU trains on it.
    """

    cpus_per_unit: float = 1.0
    gpus_per_unit: float = 0.0

    def __post_init__(self) -> None:
        for name, ok, expected in (
            ("cpus_per_unit", lambda v: v > 0, "above 0"),
            ("gpus_per_unit", lambda v: v >= 0, "0 or more"),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not ok(value):
                raise ConfigError(
                    f"Ray setting {name} (--ray-{name.replace('_', '-')}) must be a number {expected}, got {value!r}; "
                    "e.g. 2 CPUs and 0.5 GPU per unit."
                )
            object.__setattr__(self, name, float(value))

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, where: str = "ray_resources") -> RayResources:
        if not isinstance(values, dict):
            raise ConfigError(f"{where} must be an object such as {{\"cpus_per_unit\": 1}}, got {values!r}.")
        return cls(**check_keys(cls, values, where))


@dataclass(frozen=True)
class SharedData:
    """Large read-only inputs that jobs share (a task's dataset), loaded once by the driver.

    The job of ``item`` is called as ``fn(item, objects[key(item)], *args)``. The executor delivers
    the object: in this process the object itself; in a process pool a copy pickled with the job;
    on Ray a reference to one copy in the object store (``ray.put`` once per key, when the first
    job that needs it is submitted), which Ray resolves on the worker's node (numpy arrays arrive
    read-only, without a copy on that node). A job never loads its input, so a Ray node needs
    nothing but the package.

    Parameters
    ----------
    objects : mapping
        The inputs by key.
    key : callable
        The key of an item's input (called in the driver only).
    """

    objects: Mapping[Hashable, Any]
    key: Callable[[Any], Hashable]


def _job(item: Any, args: tuple, shared: SharedData | None, deliver: Callable[[Hashable, Any], Any] | None = None) -> tuple:
    """The arguments of ``item``'s job: the item, its shared input as ``deliver(key, object)`` sends it, ``args``."""
    if shared is None:
        return (item, *args)
    key = shared.key(item)
    value = shared.objects[key]
    return (item, deliver(key, value) if deliver is not None else value, *args)

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
    import torch._dynamo  # noqa: F401 - an optimizer's first use imports it (1.5 s here): better before the first job

    torch.set_num_threads(1)


# Workers a pool starts before its first job: enough to begin work the moment planning ends.
EARLY_WORKERS = 4


def _started() -> None:
    """A no-op job: each one submitted to a fresh pool makes it spawn a worker now."""


class WorkerPool:
    """Spawned single-threaded worker processes, some started at once; use as a context manager.

    A fresh worker spends seconds importing torch before its first job. Started before the driver's
    own preparation (planning, loading datasets), workers import while it works, on the cores it
    leaves idle: as many start at once as there are such cores (every core but one; on 2 cores,
    both would slow the driver down: a resumed run with nothing left took 6-7 s instead of 4.5),
    at most ``EARLY_WORKERS``, the rest when jobs come, so a small run on a large machine holds few
    idle workers (each holds torch: ~300 MB). Workers exit when this process dies, however it dies.
    A pool that ran no job is terminated at exit instead of waited for (nothing to do: no wait).

    Parameters
    ----------
    workers : int
        Processes, 2 or more.
    """

    def __init__(self, workers: int) -> None:
        if workers < 2:
            raise ValueError(f"a WorkerPool needs at least 2 workers, got {workers}; 1 runs in this process.")
        self.workers = workers
        self.used = self.closed = False
        self.executor = ProcessPoolExecutor(
            workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(os.getpid(),)
        )
        # the executor spawns a process per job submitted while none is idle, up to ``workers``
        for _ in range(min(workers, EARLY_WORKERS, max(1, (os.cpu_count() or 1) - 1))):
            self.executor.submit(_started)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        if self.closed:
            raise RuntimeError("this WorkerPool is closed; start another.")
        self.used = True
        return self.executor.submit(fn, *args)

    def close(self) -> None:
        """Wait for the jobs, or stop the workers at once if none was submitted. Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.used:
            self.executor.shutdown(wait=True)
            return
        # no job ran: the workers may still be importing torch; stop them rather than wait seconds
        # (Python 3.14 has terminate_workers(); before it, the processes are only in _processes)
        terminate = getattr(self.executor, "terminate_workers", None)
        if terminate is not None:
            terminate()
            return
        for process in list((getattr(self.executor, "_processes", None) or {}).values()):
            process.terminate()
        self.executor.shutdown(wait=True, cancel_futures=True)  # its manager thread reaps them, once

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_END = object()  # end of the queue (an item may be anything, None included)


def map_unordered(
    fn: Callable[..., Any],
    items: Iterable[Any],
    *args: Any,
    workers: int,
    shared: SharedData | None = None,
    pool: WorkerPool | None = None,
) -> Iterator[Any]:
    """Yield ``fn(item, *args)`` for every item, in completion order (``fn(item, input, *args)`` with ``shared``).

    Every job runs with one torch thread: on a busy machine a second OpenMP thread that waits for a
    core makes every operation stall (seen here: 100x slower training). ``workers == 1`` runs in
    this process (restoring its thread count afterwards); more use a spawned process pool (forking
    a process that has started torch's thread pools can deadlock) with at most two jobs per worker
    in flight, so an interrupted run loses little finished work, and workers that exit when this
    process dies, however it dies. ``fn`` must not raise. ``items`` is drawn lazily, one item when
    a job is started (a builder claims a unit only then); the pool starts only when there is one.
    ``shared``: see :class:`SharedData` (in a pool, each job's input is pickled with it). ``pool``:
    a :class:`WorkerPool` started earlier (see there) to run the jobs on instead of ``workers``;
    the caller closes it.
    """
    queue = iter(items)
    first = next(queue, _END)
    if first is _END:
        return
    queue = itertools.chain([first], queue)
    if pool is not None:
        yield from _map_on_pool(pool, fn, queue, args, shared)
        return
    if workers <= 1:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for item in queue:
                yield fn(*_job(item, args, shared))
        finally:
            torch.set_num_threads(before)
        return
    with WorkerPool(workers) as own:
        yield from _map_on_pool(own, fn, queue, args, shared)


def _map_on_pool(pool: WorkerPool, fn: Callable[..., Any], queue: Iterator[Any], args: tuple,
                 shared: SharedData | None) -> Iterator[Any]:
    # range first: zip stops on it without drawing (and dropping) one more item from the queue
    pending: set[Future] = {
        pool.submit(fn, *_job(item, args, shared)) for _, item in zip(range(2 * pool.workers), queue, strict=False)
    }
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            yield future.result()
            nxt = next(queue, _END)
            if nxt is not _END:
                pending.add(pool.submit(fn, *_job(nxt, args, shared)))


def _ray_call(fn: Callable[..., Any], threads: int, item: Any, *args: Any) -> Any:
    import torch

    torch.set_num_threads(threads)  # as many threads as Ray CPUs reserved for the job
    return fn(item, *args)


def _ray_window(address: str, resources: RayResources) -> int:
    """Tasks kept in flight: two per job the cluster can run at once. Refuses a job no node could ever run."""
    import ray

    total = ray.cluster_resources()
    cpus, gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
    if resources.cpus_per_unit > cpus or resources.gpus_per_unit > gpus:
        raise TansError(
            f"Each unit asks Ray for {resources.cpus_per_unit:g} CPU and {resources.gpus_per_unit:g} GPU, but the "
            f"cluster at '{address}' has {cpus:g} CPU and {gpus:g} GPU in all; lower --ray-cpus-per-unit / "
            "--ray-gpus-per-unit or add nodes."
        )
    at_once = cpus / resources.cpus_per_unit
    if resources.gpus_per_unit > 0:
        at_once = min(at_once, gpus / resources.gpus_per_unit)
    return 2 * max(1, int(at_once))


def ray_map(
    fn: Callable[..., Any],
    items: Iterable[Any],
    *args: Any,
    address: str,
    shared: SharedData | None = None,
    resources: RayResources = RayResources(),
) -> Iterator[Any]:
    """Yield ``fn(item, *args)`` for every item, run as Ray tasks, in completion order.

    ``address``: ``"auto"`` joins the running cluster, an address joins that one, ``"local"`` starts
    a local Ray instance. ``shared``: see :class:`SharedData` (each input is put into the object
    store once and travels by reference). ``resources``: what each task reserves. Results travel
    back to this process. ``fn`` must not raise. At most two tasks per job the cluster can run at
    once are in flight; ``items`` is drawn lazily, one item when a task is submitted.
    """
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
    window = _ray_window(address, resources)
    remote = ray.remote(num_cpus=resources.cpus_per_unit, num_gpus=resources.gpus_per_unit)(_ray_call)
    threads = max(1, int(resources.cpus_per_unit))
    refs: dict[Hashable, Any] = {}

    def put(key: Hashable, value: Any) -> Any:  # one copy in the object store per input
        if key not in refs:
            refs[key] = ray.put(value)
        return refs[key]

    def submit(item: Any) -> Any:
        return remote.remote(fn, threads, *_job(item, args, shared, put))  # a top-level reference: Ray resolves it

    queue = iter(items)
    pending = [submit(item) for _, item in zip(range(window), queue, strict=False)]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])
        nxt = next(queue, _END)
        if nxt is not _END:
            pending.append(submit(nxt))


def map_jobs(
    fn: Callable[..., Any],
    items: Iterable[Any],
    *args: Any,
    workers: int | None,
    ray_address: str | None,
    count: int,
    shared: SharedData | None = None,
    ray_resources: RayResources = RayResources(),
    pool: WorkerPool | None = None,
) -> tuple[Iterator[Any], int, str]:
    """Pick the executor of a build-like run and start it: Ray tasks, a process pool, or this process.

    Parameters
    ----------
    workers : int or None
        Local processes (default: every core), at most ``count`` (how many items there may be).
    ray_address : str or None
        Run on Ray (see :func:`ray_map`) instead.
    shared : SharedData or None
        Inputs the driver loaded for the jobs; ``fn`` is called as ``fn(item, input, *args)``.
    ray_resources : RayResources
        What each Ray task reserves.
    pool : WorkerPool or None
        The run's pool from :func:`start_workers`, used instead of starting one (not when
        ``count`` is 1: a single job runs in this process, as with ``workers=1``).

    Returns
    -------
    (iterator, int, str)
        The results as :func:`map_unordered` yields them, the worker count, and the executor's name.
    """
    if ray_address is not None:
        results = ray_map(fn, items, *args, address=ray_address, shared=shared, resources=ray_resources)
        return results, 1, f"ray ({ray_address})"
    workers = min(pool.workers if pool is not None else workers or os.cpu_count() or 1, max(count, 1))
    executor = "in-process" if workers == 1 else "process pool"
    if pool is not None and workers == 1:
        pool.close()  # a single job runs in this process; idle workers importing torch would slow it
        pool = None
    return map_unordered(fn, items, *args, workers=workers, shared=shared, pool=pool), workers, executor


@contextmanager
def start_workers(workers: int | None, ray_address: str | None) -> Iterator[WorkerPool | None]:
    """Start a build-like run's local workers now, before it plans: ``with start_workers(...) as pool``.

    Yields the :class:`WorkerPool` (``workers``, default every core) to pass to :func:`map_jobs`, or
    None when the run goes to Ray or runs in this process (one worker).
    """
    workers = workers or os.cpu_count() or 1
    if ray_address is not None or workers <= 1:
        yield None
        return
    with WorkerPool(workers) as pool:
        yield pool
