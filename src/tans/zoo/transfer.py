"""Transfer records: fine-tune zoo models on target tasks and remember how well each transferred.

The searcher learns from these records (what a model reached *after fine-tuning on another task*),
not from each model's accuracy on its own source task. :func:`run_transfers` plans one unit per
(model, target, seed), skips the units already recorded, fine-tunes the rest with
:func:`transfer_recipe` on the same executors as the zoo build (a local process pool or Ray tasks),
and the driver alone writes each finished record to the zoo in one transaction: a run killed at any
moment resumes with no duplicate and no half row. Units are claimed in the zoo as they are handed
out (:mod:`tans.zoo.claims`), so two runs on one zoo split the fine-tunes. The driver loads each
target once and hands its dataset to the units (on Ray, by reference into the object store): a
worker loads no data, only the model's weights from the zoo.

Default targets (:func:`default_targets`): the catalogue tasks of the zoo's own families that are
not a source task of the zoo, never one of ``exclude`` (a benchmark passes its test datasets and
their families there).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from tans._errors import TansError
from tans._parallel import RayResources, SharedData, start_workers
from tans.progress import Progress, emit
from tans.zoo._run import RunConfig, check_planned, failure_reason
from tans.zoo.claims import run_claimed
from tans.zoo.records import TaskRef, TransferRecord, record_key, task_source
from tans.zoo.store import Zoo

__all__ = [
    "TransferConfig",
    "TransferReport",
    "TransferUnit",
    "default_targets",
    "pick_models",
    "plan_transfers",
    "record_from_finetune",
    "run_transfers",
    "transfer_recipe",
]


def transfer_recipe(epochs: int = 1, seed: int = 0, *, max_train_images: int = 192, max_eval_images: int = 192):
    """The fine-tuning recipe of transfer records: :func:`tans.finetune.finetune_recipe` with image caps.

    The benchmark fine-tunes with this very recipe, so a record's accuracy and the benchmark's
    accuracy of the same pair measure the same thing.
    """
    from tans.finetune import finetune_recipe

    return replace(finetune_recipe(epochs, seed=seed), max_train_images=max_train_images, max_eval_images=max_eval_images)


@dataclass(frozen=True)
class TransferConfig(RunConfig):
    """What to fine-tune for the records, and what each fine-tune asks of a Ray cluster.

    Parameters
    ----------
    targets : tuple of str
        Target task names or dataset paths; empty: :func:`default_targets`.
    models : int or None
        Fine-tune at most this many zoo models, spread over architectures and source tasks
        (:func:`pick_models`); ``None``: every unflagged model.
    epochs : int
        Fine-tuning epochs of :func:`transfer_recipe`.
    seeds : tuple of int
        Fine-tuning seeds; each (model, target) is fine-tuned once per seed.
    max_train_images, max_eval_images : int
        Caps of the recipe (class-balanced draws).
    exclude : tuple of str
        Task names or families that are never targets (e.g. benchmark test datasets and families).
    max_classes : int or None
        Default targets have at most this many classes (``None``: no limit).
    targets_per_other_model : int
        Every unflagged model *not* among the ``models`` picked is also fine-tuned on this many
        of the targets (0: none), a different mix of targets for each, so that the searcher sees
        how every model of the zoo transfers, not only the picked ones.
    ray_resources : RayResources
        CPUs and GPUs Ray reserves for each fine-tune (a run with ``ray_address`` only).
    """

    targets: tuple[str, ...] = ()
    models: int | None = None
    epochs: int = 1
    seeds: tuple[int, ...] = (0,)
    max_train_images: int = 192
    max_eval_images: int = 192
    exclude: tuple[str, ...] = ()
    max_classes: int | None = None
    targets_per_other_model: int = 0
    ray_resources: RayResources = field(default_factory=RayResources)

    _what, _where, _example = "Transfer config", "transfer config", "benchmarks/zoo/bench-transfer.json"

    def __post_init__(self) -> None:
        for name in ("targets", "seeds", "exclude"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self._read_ray_resources()
        checks = [
            ("models", self.models is None or self.models >= 1, "None or at least 1"),
            ("epochs", self.epochs >= 1, "at least 1"),
            ("seeds", len(self.seeds) >= 1, "a non-empty list"),
            ("max_train_images", self.max_train_images >= 16, "at least 16"),
            ("max_eval_images", self.max_eval_images >= 8, "at least 8"),
            ("max_classes", self.max_classes is None or self.max_classes >= 2, "None or at least 2"),
            ("targets_per_other_model", self.targets_per_other_model >= 0, "0 or more"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise TansError(f"transfer setting '{name}' must be {expected}, got {getattr(self, name)!r}.")

    def recipe(self, seed: int):
        return transfer_recipe(self.epochs, seed, max_train_images=self.max_train_images, max_eval_images=self.max_eval_images)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TransferUnit:
    """One fine-tune: a zoo model on a target with a seed. ``id`` names its record."""

    id: str
    model_id: str
    target: str  # name or path, as load_dataset takes it
    target_fingerprint: str
    seed: int


@dataclass
class TransferReport:
    """What a records run did."""

    planned: int = 0
    skipped: int = 0  # already recorded (a resumed run, or by another run meanwhile)
    held: int = 0  # being fine-tuned by another run (its claim is live)
    added: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # unit id -> "target / model: reason"
    models: int = 0
    targets: int = 0
    seconds: float = 0.0
    workers: int = 1
    executor: str = "local"

    def to_dict(self) -> dict[str, Any]:
        return {
            "planned": self.planned,
            "skipped": self.skipped,
            "held": self.held,
            "added": len(self.added),
            "failed": self.failed,
            "models": self.models,
            "targets": self.targets,
            "seconds": round(self.seconds, 2),
            "fine_tunes_per_minute": round(len(self.added) / self.seconds * 60, 1) if self.seconds > 0 else 0.0,
            "workers": self.workers,
            "executor": self.executor,
        }


# ------------------------------------------------------------------------------------ planning
def default_targets(zoo: Zoo, *, exclude: Sequence[str] = (), max_classes: int | None = None) -> list[str]:
    """Installed catalogue tasks of the zoo's families that are not a source task of the zoo.

    Parameters
    ----------
    zoo : Zoo
        The zoo whose families and source tasks decide.
    exclude : sequence of str
        Task names or family names never to use.
    max_classes : int or None
        Keep tasks with at most this many classes.

    Returns
    -------
    list of str
        Task names, sorted.
    """
    from tans.data.catalogue import list_tasks

    entries = zoo.entries()
    families = {e.task_family for e in entries}
    sources = {e.task for e in entries}
    excluded = set(exclude)
    return sorted(
        t.name
        for t in list_tasks()
        if t.family in families
        and t.name not in sources
        and t.name not in excluded
        and t.family not in excluded
        and (max_classes is None or t.num_classes <= max_classes)
        and t.installed()
    )


def pick_models(zoo: Zoo, count: int | None) -> list[str]:
    """Up to ``count`` unflagged zoo models spread over source tasks and architectures.

    Round-robin over source tasks; within a task the architecture used least so far comes first,
    so ``count`` models cover as many (task, architecture) combinations as they can. Deterministic.
    """
    entries = [e for e in zoo.entries() if not e.flagged]
    if count is None or count >= len(entries):
        return [e.id for e in entries]
    by_task: dict[str, list] = {}
    for e in entries:
        by_task.setdefault(e.task, []).append(e)
    used_arch: dict[str, int] = {}
    picked: list[str] = []
    while len(picked) < count:
        for task in sorted(by_task):
            left = by_task[task]
            if not left or len(picked) >= count:
                continue
            best = min(left, key=lambda e: (used_arch.get(e.arch, 0), e.params, e.id))
            left.remove(best)
            used_arch[best.arch] = used_arch.get(best.arch, 0) + 1
            picked.append(best.id)
    return picked


def plan_transfers(zoo: Zoo, config: TransferConfig) -> tuple[list[TransferUnit], list[str], dict[str, Any]]:
    """Every unit of a records run, in a deterministic order.

    Returns
    -------
    (list of TransferUnit, list of str, dict)
        The units, the model ids, and the loaded target datasets by name (targets are loaded once
        here to fingerprint them and to validate them before any training).

    Raises
    ------
    TansError
        If there is no target or no model, or a target is excluded or one of the zoo's source tasks.
    """
    from tans.data import load_dataset

    targets = list(config.targets) or default_targets(zoo, exclude=config.exclude, max_classes=config.max_classes)
    if not targets:
        raise TansError(
            f"No target task for transfer records in {zoo.path}: the zoo's families have no other installed "
            "catalogue task; pass --targets NAME_OR_PATH (tasks that are not source tasks of the zoo)."
        )
    sources = {e.task_fingerprint for e in zoo.entries()}
    model_ids = pick_models(zoo, config.models)
    if not model_ids:
        raise TansError(f"The zoo at {zoo.path} has no unflagged model to fine-tune; build one with 'tans zoo build'.")
    datasets = {}
    for name in targets:
        dataset = load_dataset(name)
        if dataset.name in config.exclude or dataset.family in config.exclude:
            raise TansError(f"Target '{name}' is excluded (it or its family '{dataset.family}' is in exclude); drop it from --targets.")
        if dataset.fingerprint in sources:
            raise TansError(
                f"Target '{name}' is a source task of the zoo (a model was trained on it); transfer records are "
                "about other tasks: pick a task no zoo model was trained on."
            )
        datasets[name] = dataset
    pairs = [(name, model_id) for name in datasets for model_id in model_ids]
    if config.targets_per_other_model:
        # each other model takes k consecutive targets of one fixed shuffle, from a start spread
        # evenly over it: every target gets about as many of them as any other, each model a mix
        # of families, and the start does not depend on k, so a run with a larger k extends each
        # model's targets and keeps the records of the smaller one
        others = sorted(e.id for e in zoo.entries() if not e.flagged and e.id not in set(model_ids))
        names = [list(datasets)[i] for i in np.random.default_rng(0).permutation(len(datasets))]
        n, k = len(names), min(config.targets_per_other_model, len(names))
        pairs += [(names[(i * n // len(others) + j) % n], model_id) for i, model_id in enumerate(others) for j in range(k)]
        model_ids = [*model_ids, *others]
    units = []
    for name, model_id in pairs:
        for seed in config.seeds:
            uid = record_key(model_id, datasets[name].fingerprint, config.recipe(seed).to_dict(), seed)
            units.append(TransferUnit(uid, model_id, name, datasets[name].fingerprint, seed))
    return units, model_ids, datasets


# ------------------------------------------------------------------------------------ one unit
def record_from_finetune(result, recipe, *, family: str, origin: str = "transfer") -> TransferRecord:
    """A :class:`TransferRecord` from a :class:`tans.finetune.FinetuneResult` of a zoo model."""
    if result.model_id is None or result.from_scratch:
        raise TansError("Only a fine-tune of a zoo model makes a transfer record (not a model from scratch).")
    # the curve's last point is the final (BatchNorm re-estimated) accuracy, like the recorded val_acc
    curve = [e.val_acc for e in result.epochs[:-1]] + [result.val_acc]
    return TransferRecord(
        model_id=result.model_id,
        target=result.dataset,
        target_fingerprint=result.dataset_fingerprint,
        target_family=family,
        num_classes=len(result.class_names),
        recipe=recipe.to_dict(),
        seed=recipe.seed,
        val_acc=result.val_acc,
        test_acc=result.test_acc,
        chance_acc=result.chance,
        curve=tuple(curve),
        train_images=result.train.train_images,
        seconds=result.wall_seconds,
        origin=origin,
    )


def _run_unit(unit: TransferUnit, dataset, zoo_path: str, config: TransferConfig):
    """Fine-tune one unit on ``dataset`` (its target as the plan loaded it); returns (unit, record or
    None, failure reason or None). Never raises."""
    from tans.finetune import finetune

    try:
        check_planned(dataset, unit.target_fingerprint, unit.target)
        recipe = config.recipe(unit.seed)
        result = finetune(dataset, zoo=zoo_path, model_id=unit.model_id, recipe=recipe, seed=unit.seed)
        record = record_from_finetune(result, recipe, family=dataset.family)
        if record.id != unit.id:  # the key is the plan's: a mismatch would duplicate work on resume
            raise TansError(f"record id {record.id} differs from the planned {unit.id}; the recipe changed mid-run.")
        return unit, record, None
    except Exception as exc:  # noqa: BLE001 - one failed unit is reported, the run goes on
        return unit, None, failure_reason(exc)


# -------------------------------------------------------------------------------------- driver

def run_transfers(
    zoo: Zoo | str | os.PathLike[str],
    config: TransferConfig = TransferConfig(),
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    progress: Progress | None = None,
    max_units: int | None = None,
) -> TransferReport:
    """Fine-tune every planned (model, target, seed) not yet recorded and add its record.

    Parameters
    ----------
    zoo : Zoo or path
        An existing zoo; records are added to it.
    config : TransferConfig
        Targets, models, seeds and recipe.
    workers : int or None
        Local processes (default: every core), one torch thread each; ``1`` runs in this process.
    ray_address : str or None
        Run the units as Ray tasks: ``"auto"``, an address, or ``"local"``. Each target's dataset
        is put into Ray's object store once and reaches the units by reference; each unit reserves
        ``config.ray_resources``. Workers read the models' weights from the zoo at its path.
    progress : Progress or None
        Receives events (:class:`~tans.progress.ProgressEvent`): stage ``"plan"`` once before work starts
        (``done`` units already recorded of the ``total`` to run now, ``message`` says so), then stage
        ``"transfer"`` after each fine-tune (``done`` of ``total``, ``message`` its target; ``extra`` holds the
        running ``report``, the ``unit`` and its ``failure`` reason or None).
    max_units : int or None
        Run at most this many of the missing units (a later run continues).

    Returns
    -------
    TransferReport

    Raises
    ------
    TansError
        For a missing zoo, no target or model, an excluded target, or ``workers < 1``.
    """
    if workers is not None and workers < 1:
        raise TansError(f"workers must be at least 1, got {workers}; omit it to use every core.")
    zoo = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo)
    start = time.perf_counter()
    with start_workers(workers, ray_address) as pool:  # the workers import torch while the targets load
        units, model_ids, datasets = plan_transfers(zoo, config)
        for dataset in datasets.values():
            zoo.register_task(TaskRef(dataset.name, dataset.fingerprint, dataset.family, task_source(dataset), dataset.num_classes))
        done = zoo.transfer_ids()
        todo = [u for u in units if u.id not in done]
        report = TransferReport(planned=len(units), skipped=len(units) - len(todo), models=len(model_ids),
                                targets=len(datasets))
        emit(progress, "plan", report.skipped, len(todo[:max_units]), f"{report.skipped} already recorded")
        with run_claimed(zoo, todo, _run_unit, str(zoo.path), config, report=report, workers=workers,
                         ray_address=ray_address, max_units=max_units,
                         shared=SharedData(datasets, key=lambda unit: unit.target),
                         ray_resources=config.ray_resources, pool=pool) as results:
            for unit, record, failure in results:
                if record is not None:
                    zoo.add_transfer(record)
                    report.added.append(unit.id)
                else:
                    report.failed[unit.id] = f"{unit.target} / {unit.model_id}: {failure}"
                report.seconds = time.perf_counter() - start
                emit(progress, "transfer", len(report.added) + len(report.failed), len(todo[:max_units]), unit.target,
                     report=report, unit=unit, failure=failure)
    report.seconds = time.perf_counter() - start
    return report
