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


_PARENT = """
import sys, time
from tans._parallel import map_unordered

def nap(item):
    time.sleep(600)
    return item

if __name__ == "__main__":
    for _ in map_unordered(nap, range(4), workers=2):
        pass
"""


def test_workers_die_with_a_killed_parent(tmp_path):
    # kill -9 of a long job's driver must not leave its workers (a GB of RAM each) behind
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)])
    try:
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while time.monotonic() < deadline and len(workers) < 2:
            time.sleep(0.5)
            out = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout.split()
            workers = [int(p) for p in out if _is_pool_worker(int(p))]
        assert len(workers) == 2, "the pool did not start its two workers"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers), "workers outlived their killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def _is_pool_worker(pid: int) -> bool:
    try:
        return "spawn_main" in open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_pool_started_early_runs_the_jobs_and_an_unused_one_closes_at_once():
    # run_transfers and build_zoo start workers before planning, so that the workers' imports
    # overlap it; a run that then finds nothing to do must not wait for those imports
    import multiprocessing
    import signal

    from tans._parallel import map_jobs, start_workers

    with start_workers(2, None) as pool:
        assert pool is not None and pool.workers == 2
        results = list(map_unordered(_square, range(7), 0, workers=1, pool=pool))  # the pool, not workers=1
        assert pool.used
    assert sorted(results) == [(x, x * x) for x in range(7)]
    assert not multiprocessing.active_children()

    with start_workers(2, None) as pool:
        early = list(pool.executor._processes.values())
    assert early and all(p.exitcode == -signal.SIGTERM for p in early), "an unused pool waited for its workers' imports"
    assert not multiprocessing.active_children()

    with start_workers(2, None) as pool:  # one job: this process runs it and the idle workers stop
        results, workers, executor = map_jobs(_square, [3], 0, workers=None, ray_address=None, count=1, pool=pool)
        assert (list(results), workers, executor, pool.closed, pool.used) == ([(3, 9)], 1, "in-process", True, False)
    assert not multiprocessing.active_children()

    with start_workers(1, None) as pool, start_workers(4, "auto") as on_ray:
        assert pool is None and on_ray is None  # in this process, or Ray's own workers
