"""A unit's data comes from the driver, never from the worker's disk: zoo build and transfer units get
their task's dataset through tans._parallel.SharedData (in this process, pickled into a pool, by
reference through Ray's object store), and the Ray resources of a unit are checked and passed on.

Every test here deletes the dataset folder once the run is planned: a worker that loaded its unit's
data by name would fail. The Ray tests start one local instance with 2 CPUs (skipped without Ray).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tans._errors import ConfigError, TansError
from tans._parallel import RayResources, SharedData, _job, map_unordered
from tans.cli.main import main
from tans.training.recipe import Recipe
from tans.zoo import Zoo
from tans.zoo.build import BuildConfig, build_zoo, plan_units
from tans.zoo.transfer import TransferConfig, run_transfers

TINY_RECIPE = Recipe(epochs=1, warmup_epochs=0, max_train_images=32, max_eval_images=16)
TINY_TRANSFER = {"max_train_images": 16, "max_eval_images": 8}


@pytest.fixture
def folder_task(image_folder):
    """A tiny dataset folder, and a ``progress`` callback that deletes it at the plan (which has loaded it by then)."""
    root = image_folder({"a": 8, "b": 8, "c": 8})

    def delete(event) -> None:
        if event.stage == "plan":
            shutil.rmtree(root)

    return root, delete


def tiny_build(task: str, **overrides) -> BuildConfig:
    return BuildConfig(tasks=(task,), archs=("mbv3_min",), archs_per_task=1, seeds=(0, 1), recipe=TINY_RECIPE,
                       latency_repeats=1, **overrides)


def checksums(path) -> dict[str, str]:
    return {e.id: e.sha256 for e in Zoo.open(path).entries()}


@pytest.fixture(scope="module")
def source_zoo(tmp_path_factory):
    """A zoo of one small network (digits-0-4), trained enough not to be flagged, to fine-tune on other tasks."""
    path = tmp_path_factory.mktemp("source") / "zoo"
    recipe = Recipe(epochs=2, warmup_epochs=0, max_train_images=128, max_eval_images=64)
    config = BuildConfig(tasks=("digits-0-4",), archs=("mbv3_min",), archs_per_task=1, recipe=recipe, latency_repeats=1)
    assert not build_zoo(path, config, workers=1).failed
    assert not Zoo.open(path).entries()[0].flagged
    return path


def transfer_copy(source_zoo, tmp_path, name: str) -> Zoo:
    shutil.copytree(source_zoo, tmp_path / name)
    return Zoo.open(tmp_path / name)


def accuracies(zoo: Zoo) -> dict[str, tuple[float, float]]:
    return {r.id: (r.val_acc, r.test_acc) for r in zoo.transfers()}


# ------------------------------------------------------------------------------ without Ray
def _pair(item: int, data: np.ndarray, offset: int) -> tuple[int, int]:
    return item, int(data.sum()) + offset


def test_a_job_gets_its_items_shared_input_not_a_name():
    arrays = {"even": np.arange(4), "odd": np.ones(3, int)}
    shared = SharedData(arrays, key=lambda i: "even" if i % 2 == 0 else "odd")
    item, data, offset = _job(3, (10,), shared)
    assert (item, offset) == (3, 10) and data is arrays["odd"]  # the object itself, not its key
    sent = []
    _job(4, (), shared, deliver=lambda key, value: sent.append(key) or f"ref-{key}")
    assert sent == ["even"]
    assert sorted(map_unordered(_pair, range(4), 10, workers=1, shared=shared)) == [(0, 16), (1, 13), (2, 16), (3, 13)]
    assert _job(5, (1, 2), None) == (5, 1, 2)  # without shared inputs, jobs are called as before


@pytest.mark.slow
def test_build_units_train_on_the_planned_data_in_a_pool_and_in_process(folder_task, tmp_path, image_folder):
    root, delete = folder_task
    config = tiny_build(str(root))
    pool = build_zoo(tmp_path / "pool", config, workers=2, progress=delete)  # spawned after the folder is gone
    assert pool.executor == "process pool" and not pool.failed and len(pool.built) == 2
    image_folder({"a": 8, "b": 8, "c": 8}, root=root)  # the same images again
    local = build_zoo(tmp_path / "local", config, workers=1, progress=delete)
    assert not local.failed and checksums(tmp_path / "pool") == checksums(tmp_path / "local")


def test_train_unit_refuses_a_dataset_the_unit_was_not_planned_with():
    from tans.data import load_dataset
    from tans.zoo.build import train_unit

    config = tiny_build("digits-0-4")
    unit = plan_units(config)[0]
    with pytest.raises(TansError, match="not the one its unit was planned with"):
        train_unit(unit, load_dataset("digits-5-9"), config)


def test_transfer_units_fine_tune_on_the_planned_data(source_zoo, folder_task, tmp_path):
    root, delete = folder_task
    zoo = transfer_copy(source_zoo, tmp_path, "zoo")
    report = run_transfers(zoo, TransferConfig(targets=(str(root),), seeds=(0, 1), **TINY_TRANSFER), workers=1,
                           progress=delete)
    assert not report.failed and len(report.added) == 2 and zoo.transfer_count() == 2


def test_ray_resources_are_checked_in_one_line():
    assert RayResources() == RayResources(cpus_per_unit=1, gpus_per_unit=0)
    assert RayResources(cpus_per_unit=0.5, gpus_per_unit=0.25).gpus_per_unit == 0.25
    for bad in ({"cpus_per_unit": 0}, {"cpus_per_unit": "two"}, {"gpus_per_unit": -1}, {"gpus_per_unit": True},
                {"cpus_per_unit": float("nan")}):
        with pytest.raises(ConfigError, match=r"must be a number (above 0|0 or more), got") as caught:
            RayResources(**bad)
        assert "\n" not in str(caught.value)
    config = BuildConfig.from_dict({"tasks": ["digits-0-4"], "ray_resources": {"cpus_per_unit": 2}})
    assert config.ray_resources == RayResources(cpus_per_unit=2)
    assert BuildConfig.from_dict(config.to_dict()) == config  # round trip through a config file's dict
    assert TransferConfig.from_dict({"ray_resources": {"gpus_per_unit": 0.5}}).ray_resources.gpus_per_unit == 0.5
    with pytest.raises(ConfigError, match="Did you mean 'cpus_per_unit'"):
        TransferConfig.from_dict({"ray_resources": {"cpu_per_unit": 2}})
    with pytest.raises(ConfigError, match="ray_resources' must be an object"):
        BuildConfig.from_dict({"tasks": ["digits-0-4"], "ray_resources": 2})


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "args, message",
    [
        (("zoo", "build", "--tasks", "digits-0-4", "--ray", "local", "--ray-cpus-per-unit", "0"),
         "cpus_per_unit (--ray-cpus-per-unit) must be a number above 0, got 0.0"),
        (("zoo", "transfer", "--ray", "local", "--ray-gpus-per-unit", "-1"),
         "gpus_per_unit (--ray-gpus-per-unit) must be a number 0 or more, got -1.0"),
        (("zoo", "build", "--tasks", "digits-0-4", "--ray-cpus-per-unit", "2"), "apply to a run on Ray; add --ray"),
        (("zoo", "transfer", "--ray-gpus-per-unit", "1"), "apply to a run on Ray; add --ray"),
    ],
)
def test_cli_ray_resources_errors_are_one_line(capsys, tmp_path, args, message):
    code, out, err = run(capsys, *args, "--zoo", tmp_path / "zoo")
    assert code == 2 and out == "" and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "zoo").exists()


def test_cli_ray_resources_of_a_config_file_are_checked(capsys, tmp_path):
    config = tmp_path / "zoo.json"
    config.write_text(json.dumps({"tasks": ["digits-0-4"], "ray_resources": {"gpus_per_unit": -2}}))
    code, _, err = run(capsys, "zoo", "build", "--config", config, "--zoo", tmp_path / "zoo")
    assert code == 2 and "gpus_per_unit (--ray-gpus-per-unit) must be a number 0 or more" in err


# -------------------------------------------------------------------------------------- Ray
@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_puts_each_input_once_and_reserves_the_units_resources(ray_instance, monkeypatch):
    from tans._parallel import ray_map

    def assigned(item: int, data: np.ndarray) -> tuple[int, int, dict]:  # a closure: Ray ships it by value
        import ray
        import torch

        used = ray.get_runtime_context().get_assigned_resources()
        return item, int(data.sum()), {**used, "threads": torch.get_num_threads()}

    puts = []
    real_put = ray_instance.put
    monkeypatch.setattr(ray_instance, "put", lambda value: puts.append(value) or real_put(value))
    arrays = {"a": np.arange(5), "b": np.ones(2, int)}
    shared = SharedData(arrays, key=lambda i: "a" if i < 3 else "b")
    results = sorted(ray_map(assigned, range(5), address="local", shared=shared,
                             resources=RayResources(cpus_per_unit=2)))
    assert [(i, total) for i, total, _ in results] == [(0, 10), (1, 10), (2, 10), (3, 2), (4, 2)]
    assert all(used == {"CPU": 2.0, "threads": 2} for _, _, used in results)
    assert len(puts) == 2 and puts[0] is arrays["a"] and puts[1] is arrays["b"]  # one put per input, not per job
    with pytest.raises(TansError, match="asks Ray for 1 CPU and 1 GPU, but the cluster at 'local' has 2 CPU and 0 GPU"):
        list(ray_map(assigned, range(2), address="local", shared=shared, resources=RayResources(gpus_per_unit=1)))


@pytest.mark.slow
def test_ray_build_and_transfer_never_load_data_on_a_worker(ray_instance, source_zoo, folder_task, tmp_path,
                                                            image_folder):
    root, delete = folder_task
    config = tiny_build(str(root))
    on_ray = build_zoo(tmp_path / "ray", config, ray_address="local", progress=delete)
    assert on_ray.executor.startswith("ray") and not on_ray.failed and len(on_ray.built) == 2
    image_folder({"a": 8, "b": 8, "c": 8}, root=root)
    build_zoo(tmp_path / "local", config, workers=1)
    assert checksums(tmp_path / "ray") == checksums(tmp_path / "local")  # the same networks, bit for bit

    transfer = TransferConfig(targets=(str(root),), seeds=(0, 1), **TINY_TRANSFER)
    local = transfer_copy(source_zoo, tmp_path, "local-records")
    assert not run_transfers(local, transfer, workers=1).failed
    remote = transfer_copy(source_zoo, tmp_path, "ray-records")
    report = run_transfers(remote, transfer, ray_address="local", progress=delete)
    assert report.executor.startswith("ray") and not report.failed and len(report.added) == 2
    assert accuracies(remote) == accuracies(local)
