"""Building a zoo: train every (task, architecture, seed) unit and store the result.

A build is a list of independent units. Each unit trains one architecture on one task, measures
its cost and functional embedding, and returns an entry plus its weights; the driver alone writes
them to the zoo, with a reference to each task (so the zoo can load it again), so the same unit
function serves a local process pool and Ray tasks on a cluster (whose workers may not share the
zoo's file system). The driver loads each task once and hands its dataset to the units
(:class:`tans._parallel.SharedData`: on Ray, by reference into the object store), so a worker never
loads data and a Ray node needs no data source installed. Unit ids are derived from their content (:func:`tans.zoo.entry.unit_key`), so
a build started again skips what is already stored: a build killed at any moment resumes with no
duplicate and no half-written entry. The driver claims each unit in the zoo when it hands it out
(:mod:`tans.zoo.claims`), so two builders of one zoo split the units instead of both training each.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tans._errors import TansError
from tans._parallel import RayResources, SharedData, start_workers
from tans.data.dataset import Dataset
from tans.data.transforms import WorkingFormat
from tans.progress import Progress, emit
from tans.training.recipe import Recipe
from tans.zoo._run import RunConfig, check_planned, failure_reason
from tans.zoo.claims import run_claimed
from tans.zoo.entry import ZooEntry, unit_key
from tans.zoo.records import TaskRef
from tans.zoo.store import Zoo

__all__ = ["BuildConfig", "BuildReport", "BuildUnit", "build_zoo", "plan_units", "train_unit"]


@dataclass(frozen=True)
class BuildConfig(RunConfig):
    """What to put in a zoo, and what each unit asks of a Ray cluster.

    Parameters
    ----------
    tasks : tuple of str
        Built-in task names (``tans data list``) or dataset paths.
    archs : tuple of str
        Explicit architecture names. Empty: a pool of ``num_archs`` architectures stratified by
        parameter count is sampled with ``arch_seed``.
    num_archs : int
        Size of the sampled architecture pool.
    archs_per_task : int
        Architectures trained on each task, spread evenly over the pool's size range.
    arch_seed : int
        Seed of the architecture sampler.
    max_params : int or None
        Upper limit on sampled architectures' parameter count.
    seeds : tuple of int
        Training seeds; each (task, architecture) is trained once per seed.
    recipe : Recipe
        Training recipe (its own ``seed`` is replaced by each of ``seeds``).
    pretrained : bool
        ``timm/`` architectures start from timm's pretrained weights (an error when they cannot
        be loaded); the space's own architectures always start from scratch.
    image_size, channels : int
        Working format of every network in the zoo.
    latency_repeats : int
        Timed passes for the batch-1 CPU latency (median reported).
    ray_resources : RayResources
        CPUs and GPUs Ray reserves for each unit (a build with ``ray_address`` only).
    """

    # what
    tasks: tuple[str, ...]
    archs: tuple[str, ...] = ()
    num_archs: int = 20
    archs_per_task: int = 10
    arch_seed: int = 0
    max_params: int | None = None
    seeds: tuple[int, ...] = (0,)
    # how
    recipe: Recipe = field(default_factory=Recipe)
    pretrained: bool = False
    image_size: int = 32
    channels: int = 3
    latency_repeats: int = 20
    # where (on Ray)
    ray_resources: RayResources = field(default_factory=RayResources)

    _what, _where, _example = "Build config", "config", "benchmarks/zoo/bench-zoo.json"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "archs", tuple(self.archs))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if not self.tasks:
            raise TansError("A zoo build needs at least one task; pass --tasks or a config with \"tasks\".")
        if self.archs_per_task < 1 or self.num_archs < 1:
            raise TansError(
                f"archs_per_task and num_archs must be at least 1, got {self.archs_per_task} and {self.num_archs}."
            )
        if not self.seeds:
            raise TansError("A zoo build needs at least one training seed.")
        if isinstance(self.recipe, dict):
            object.__setattr__(self, "recipe", Recipe.from_dict(self.recipe))
        self._read_ray_resources()
        WorkingFormat(self.image_size, self.channels)  # validates

    @property
    def working_format(self) -> WorkingFormat:
        return WorkingFormat(self.image_size, self.channels)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["recipe"] = self.recipe.to_dict()
        return values


@dataclass(frozen=True)
class BuildUnit:
    """One network to train: an architecture on a task with a seed. ``id`` names its entry."""

    id: str
    task: str
    task_fingerprint: str
    arch: str
    seed: int


@dataclass
class BuildReport:
    """What a build did and how fast."""

    planned: int = 0
    skipped: int = 0  # already in the zoo (a resumed build, or stored by another builder meanwhile)
    held: int = 0  # being built by another builder (its claim is live)
    built: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # unit id -> one-line reason
    seconds: float = 0.0
    train_images: int = 0  # images passed through training, all units together
    workers: int = 1
    executor: str = "local"

    @property
    def models_per_hour(self) -> float:
        return len(self.built) / self.seconds * 3600 if self.seconds > 0 else 0.0

    @property
    def images_per_second(self) -> float:
        return self.train_images / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "planned": self.planned,
            "skipped": self.skipped,
            "held": self.held,
            "built": len(self.built),
            "failed": self.failed,
            "seconds": round(self.seconds, 2),
            "models_per_hour": round(self.models_per_hour, 1),
            "train_images_per_second": round(self.images_per_second, 1),
            "workers": self.workers,
            "executor": self.executor,
        }


# ---------------------------------------------------------------------------------------- planning
def _arch_pool(config: BuildConfig) -> list[str]:
    from tans.space.registry import create_model, is_model
    from tans.space.sampling import sample_stratified

    if config.archs:
        for name in config.archs:
            if not is_model(name):
                create_model(name, num_classes=2)  # raises the registry's own clear error
        return list(config.archs)
    return [a.name for a in sample_stratified(config.num_archs, seed=config.arch_seed, max_params=config.max_params)]


def _spread(pool_size: int, per_task: int, task_index: int) -> list[int]:
    """Indices of ``per_task`` pool members spread over the (size-sorted) pool, shifted per task.

    Every task gets small, medium and large networks, and over many tasks every architecture is
    used about equally often: the searcher sees each architecture on many tasks.
    """
    per_task = min(per_task, pool_size)
    return sorted({(task_index + (j * pool_size) // per_task) % pool_size for j in range(per_task)})


def plan_units(config: BuildConfig) -> list[BuildUnit]:
    """Every unit of the build, in a deterministic order (tasks are loaded to fingerprint them)."""
    return _plan(config)[0]


def _plan(config: BuildConfig) -> tuple[list[BuildUnit], dict[str, TaskRef], dict[str, Any]]:
    """The units of :func:`plan_units`, a reference to each task keyed by its fingerprint, and each
    task's dataset keyed by ``BuildUnit.task`` (what the units train on)."""
    from tans.data import load_dataset

    pool = _arch_pool(config)
    units, tasks, datasets = [], {}, {}
    for t, task in enumerate(config.tasks):
        dataset = datasets[task] = load_dataset(task)
        fingerprint = dataset.fingerprint
        tasks[fingerprint] = _task_ref(task, dataset)
        for a in _spread(len(pool), config.archs_per_task, t):
            for seed in config.seeds:
                uid = unit_key(pool[a], fingerprint, _recipe_record(config, pool[a], seed), seed)
                units.append(BuildUnit(id=uid, task=task, task_fingerprint=fingerprint, arch=pool[a], seed=seed))
    return units, tasks, datasets


def _task_ref(task: str, dataset: Any) -> TaskRef:
    """How the zoo loads ``task`` again: by its built-in name, or by its absolute path."""
    if Path(task).expanduser().exists():  # loaded from a path: a built-in name only if the data is identical
        return TaskRef.from_dataset(dataset)
    return TaskRef(dataset.name, dataset.fingerprint, dataset.family, task, dataset.num_classes)


def _recipe_record(config: BuildConfig, arch: str, seed: int) -> dict[str, Any]:
    """The recipe as stored with an entry: the training settings, the seed and the start point."""
    record = {**config.recipe.to_dict(), "seed": seed}
    if config.pretrained and arch.startswith("timm/"):
        record["init"] = "timm-pretrained"
    return record


# ------------------------------------------------------------------------------------ one unit
def train_unit(unit: BuildUnit, dataset: Dataset, config: BuildConfig) -> tuple[ZooEntry, dict[str, np.ndarray], int]:
    """Train, measure and embed one unit.

    Parameters
    ----------
    unit : BuildUnit
        What to train.
    dataset : Dataset
        The unit's task as the plan loaded it (``load_dataset(unit.task)``); never loaded here.
    config : BuildConfig
        The build's recipe and working format.

    Returns
    -------
    (ZooEntry, dict, int)
        The entry (without checksum: the zoo fills it in), the weights as numpy arrays, and the
        number of images passed through training.

    Raises
    ------
    TansError
        If ``dataset`` is not the one the unit was planned with.
    """
    import torch

    from tans.data import to_working
    from tans.space.functional import functional_embedding
    from tans.space.measure import measure
    from tans.space.registry import create_model
    from tans.training.loop import default_device, train

    check_planned(dataset, unit.task_fingerprint, unit.task)
    fmt = config.working_format
    data = to_working(dataset, fmt)
    torch.manual_seed(unit.seed)
    pretrained = config.pretrained and unit.arch.startswith("timm/")
    model = create_model(unit.arch, num_classes=dataset.num_classes, pretrained=pretrained)
    recipe = replace(config.recipe, seed=unit.seed)
    result = train(model, data, recipe, device=default_device())  # CUDA when present
    model.to("cpu")  # latency is a CPU measurement; weights are stored from the CPU
    cost = measure(model, input_size=fmt.size, in_chans=3, repeats=config.latency_repeats)
    entry = ZooEntry(
        id=unit.id,
        arch=unit.arch,
        task=dataset.name,
        task_fingerprint=unit.task_fingerprint,
        task_family=dataset.family,
        num_classes=dataset.num_classes,
        recipe=_recipe_record(config, unit.arch, unit.seed),
        seed=unit.seed,
        val_acc=result.val_acc,
        test_acc=result.test_acc,
        chance_acc=result.chance,
        params=cost.params,
        flops=cost.flops,
        latency_ms=cost.latency_ms,
        latency_threads=cost.latency_threads,
        machine=cost.machine,
        embedding=functional_embedding(model, size=fmt.size),
    )
    weights = {k: v.detach().cpu().contiguous().numpy() for k, v in model.state_dict().items()}
    return entry, weights, result.train_images * len(result.epochs)


def _safe_train_unit(unit: BuildUnit, dataset: Dataset, config: BuildConfig):
    """``train_unit`` that returns a one-line failure instead of raising (workers must not die)."""
    try:
        return unit, train_unit(unit, dataset, config), None
    except Exception as exc:  # noqa: BLE001 - reported per unit, the build goes on
        return unit, None, failure_reason(exc)


# -------------------------------------------------------------------------------------- driver

def build_zoo(
    zoo: Zoo | str | os.PathLike[str],
    config: BuildConfig,
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    progress: Progress | None = None,
    max_units: int | None = None,
) -> BuildReport:
    """Train every unit of ``config`` not yet in the zoo and add it.

    Parameters
    ----------
    zoo : Zoo or path
        The zoo to fill (created if the path does not exist yet).
    config : BuildConfig
        Tasks, architectures, seeds and recipe.
    workers : int or None
        Local processes (default: every core); each trains with one torch thread. ``1`` trains in
        this process.
    ray_address : str or None
        Run the units as Ray tasks instead: ``"auto"`` joins the running cluster, an address joins
        that one, ``"local"`` starts a local Ray instance. Each task's dataset is put into Ray's
        object store once and reaches the units by reference, each unit reserves
        ``config.ray_resources``; results travel back to this process, which alone writes the zoo.
    progress : Progress or None
        Receives events (:class:`~tans.progress.ProgressEvent`): stage ``"plan"`` once before work starts
        (``done`` units already built of the ``total`` to run now, ``message`` says so), then stage
        ``"build"`` after each unit (``done`` of ``total``, ``message`` its task; ``extra`` holds the
        running ``report``, the ``unit`` and its ``failure`` reason or None).
    max_units : int or None
        Build at most this many of the missing units (in plan order); a later build continues.

    Returns
    -------
    BuildReport
    """
    if workers is not None and workers < 1:
        raise TansError(f"workers must be at least 1, got {workers}; omit it to use every core.")
    start = time.perf_counter()
    with start_workers(workers, ray_address) as pool:  # the workers import torch while the tasks load
        units, tasks, datasets = _plan(config)  # refuses unknown tasks before a zoo is created
        zoo = zoo if isinstance(zoo, Zoo) else Zoo.create(zoo)
        zoo.record_working_format(config.working_format)
        stored = set(zoo.ids())
        registered = set(zoo.tasks())
        for fingerprint in dict.fromkeys(u.task_fingerprint for u in units if u.id in stored):
            if fingerprint not in registered:  # entries of an older build: remember their task now
                zoo.register_task(tasks[fingerprint])
                registered.add(fingerprint)
        todo = [u for u in units if u.id not in stored]
        report = BuildReport(planned=len(units), skipped=len(units) - len(todo))
        emit(progress, "plan", report.skipped, len(todo[:max_units]), f"{report.skipped} already built")
        with run_claimed(zoo, todo, _safe_train_unit, config, report=report, workers=workers, ray_address=ray_address,
                         max_units=max_units, shared=SharedData(datasets, key=lambda unit: unit.task),
                         ray_resources=config.ray_resources, pool=pool) as results:
            for unit, output, failure in results:
                if output is not None:
                    entry, weights, images = output
                    zoo.add(entry, weights)
                    if unit.task_fingerprint not in registered:  # the driver alone writes the zoo
                        zoo.register_task(tasks[unit.task_fingerprint])
                        registered.add(unit.task_fingerprint)
                    report.built.append(unit.id)
                    report.train_images += images
                else:
                    report.failed[unit.id] = f"{unit.task} / {unit.arch}: {failure}"
                report.seconds = time.perf_counter() - start
                emit(progress, "build", len(report.built) + len(report.failed), len(todo[:max_units]), unit.task,
                     report=report, unit=unit, failure=failure)
    report.seconds = time.perf_counter() - start
    return report
