"""The benchmark's fine-tunes: one job per (dataset, model, epochs, seed, start), cached on disk.

Every fine-tune of a run uses :func:`tans.zoo.transfer.transfer_recipe` (the recipe of the transfer
records the searcher learns from) with the run's image caps, so all methods are compared under the
same recipe. Each finished job is written at once as a small
JSON file (atomically), keyed by dataset, model id, epochs, seed and start (pretrained or from
scratch) under a folder named by the recipe's hash: an interrupted run resumes with what it had,
and a rerun with the same recipe reuses every result. Jobs run in a process pool (one torch thread
per process), like the zoo build.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tans._atomic import write_bytes
from tans._errors import TansError
from tans._json import dumps
from tans._parallel import map_unordered
from tans.progress import Progress, emit
from tans.zoo.transfer import transfer_recipe

__all__ = ["FinetuneJob", "FinetuneCache", "run_jobs"]


@dataclass(frozen=True, order=True)
class FinetuneJob:
    """One fine-tune (or from-scratch training) of a zoo entry's network on a test dataset."""

    dataset: str
    model_id: str
    epochs: int
    seed: int
    scratch: bool = False

    @property
    def filename(self) -> str:
        start = "scratch" if self.scratch else "ft"
        return f"{self.model_id}-e{self.epochs}-s{self.seed}-{start}.json"


class FinetuneCache:
    """Fine-tune results on disk, one JSON file per job.

    Parameters
    ----------
    root : path
        Cache folder (``<out>/cache/finetune``).
    max_train_images, max_eval_images : int
        The run's caps; with the rest of the recipe they name the sub-folder, so results of
        another recipe are never mixed in.
    """

    def __init__(self, root: str | os.PathLike[str], *, max_train_images: int, max_eval_images: int) -> None:
        self.caps = {"max_train_images": max_train_images, "max_eval_images": max_eval_images}
        recipe = transfer_recipe(1, 0, **self.caps).to_dict()
        recipe.pop("seed"), recipe.pop("epochs"), recipe.pop("warmup_epochs")
        tag = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
        self.root = Path(root) / f"recipe-{tag}"

    def path(self, job: FinetuneJob) -> Path:
        return self.root / re.sub(r"[^A-Za-z0-9._-]", "_", job.dataset) / job.filename

    def get(self, job: FinetuneJob) -> dict[str, Any] | None:
        """The stored result of a job, or None (an unreadable file counts as missing)."""
        path = self.path(job)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def put(self, job: FinetuneJob, record: dict[str, Any]) -> None:
        """Store a result atomically (a temporary file renamed over it); never NaN in the JSON."""
        path = self.path(job)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(path, dumps(record, indent=1, digits=None).encode())


def _run_one(job: FinetuneJob, zoo_path: str, cache: FinetuneCache) -> tuple[FinetuneJob, dict | None, str | None]:
    """Run one job and store it; returns (job, record, failure reason)."""
    from tans.finetune import finetune

    try:
        result = finetune(
            job.dataset,
            zoo=zoo_path,
            model_id=job.model_id,
            recipe=transfer_recipe(job.epochs, job.seed, **cache.caps),
            from_scratch=job.scratch,
            seed=job.seed,
        )
    except Exception as exc:  # noqa: BLE001 - one failed job is reported, the run goes on
        reason = str(exc) if isinstance(exc, TansError) else f"{type(exc).__name__}: {exc}"
        return job, None, (reason.splitlines() or [type(exc).__name__])[0]
    # The curve's last point is the final (BatchNorm re-estimated) accuracy, like the target's.
    curve = [e.val_acc for e in result.epochs[:-1]] + [result.val_acc]
    record = {
        "dataset": job.dataset,
        "dataset_fingerprint": result.dataset_fingerprint,
        "model_id": job.model_id,
        "arch": result.arch,
        "epochs": job.epochs,
        "seed": job.seed,
        "scratch": job.scratch,
        "val_acc": result.val_acc,
        "test_acc": result.test_acc,
        "chance": result.chance,
        "curve": curve,
        "wall_seconds": result.wall_seconds,
        "train_images": result.train.train_images,
    }
    cache.put(job, record)
    return job, record, None


def run_jobs(
    jobs: Sequence[FinetuneJob],
    *,
    zoo_path: str | os.PathLike[str],
    cache: FinetuneCache,
    workers: int | None = None,
    progress: Progress | None = None,
) -> tuple[dict[FinetuneJob, dict], dict[FinetuneJob, str]]:
    """Run every job not yet in the cache; return all results and the failures.

    Parameters
    ----------
    jobs : sequence of FinetuneJob
        What to train (duplicates are run once).
    zoo_path : path
        The zoo holding the models.
    cache : FinetuneCache
        Where results are read from and written to.
    workers : int or None
        Processes (default: every core); 1 runs in this process with one torch thread.
    progress : Progress or None
        Receives a :class:`~tans.progress.ProgressEvent` of stage ``"finetune"`` after each job
        that had to run (``done`` of ``total``, ``message`` the dataset and the model id's first
        10 characters; ``extra`` holds the ``job`` and its ``failure`` reason or None).

    Returns
    -------
    (dict, dict)
        Records by job, and one-line failure reasons by job.
    """
    jobs = sorted(set(jobs))
    records = {job: rec for job in jobs if (rec := cache.get(job)) is not None}
    todo = [job for job in jobs if job not in records]
    failures: dict[FinetuneJob, str] = {}
    workers = max(1, min(workers or os.cpu_count() or 1, max(len(todo), 1)))
    for done, (job, record, failure) in enumerate(map_unordered(_run_one, todo, str(zoo_path), cache, workers=workers), start=1):
        if record is not None:
            records[job] = record
        else:
            failures[job] = failure or "failed"
        emit(progress, "finetune", done, len(todo), f"{job.dataset} {job.model_id[:10]}", job=job, failure=failure)
    return records, failures


