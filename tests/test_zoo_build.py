"""Zoo building: a tiny zoo in seconds, resume after SIGKILL, the process pool, `tans zoo` commands (Ray: test_unit_data)."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tans._errors import TansError
from tans.cli.main import main
from tans.training.recipe import Recipe
from tans.zoo import Zoo
from tans.zoo.build import BuildConfig, _spread, build_zoo, plan_units

TINY_RECIPE = Recipe(epochs=1, warmup_epochs=0, max_train_images=48, max_eval_images=32)


def tiny_config(**overrides):
    values = dict(tasks=("digits-0-4", "digits-5-9"), num_archs=3, archs_per_task=2, recipe=TINY_RECIPE,
                  latency_repeats=2)
    values.update(overrides)
    return BuildConfig(**values)


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    path = tmp_path_factory.mktemp("zoo") / "zoo"
    report = build_zoo(path, tiny_config(), workers=1)
    assert not report.failed
    return path


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_tiny_zoo_has_every_field(tiny_zoo):
    zoo = Zoo.open(tiny_zoo)
    entries = zoo.entries()
    assert len(entries) == 4
    assert {e.task for e in entries} == {"digits-0-4", "digits-5-9"}
    for e in entries:
        assert e.params > 1000 and e.flops > e.params and e.latency_ms > 0 and e.latency_threads == 1
        assert 0 <= e.val_acc <= 1 and e.chance_acc == pytest.approx(0.2, abs=0.05)
        assert e.embedding.shape == (2048,) and np.isfinite(e.embedding).all()
        assert e.recipe_dict["epochs"] == 1 and e.task_family == "handwritten-digits"
        assert e.sha256 and e.created and e.machine
    assert zoo.verify().ok


def test_spread_covers_the_size_range_and_uses_every_arch():
    assert _spread(20, 10, 0) == list(range(0, 20, 2))
    assert _spread(20, 10, 1) == list(range(1, 20, 2))
    counts = np.zeros(7, int)
    for t in range(14):
        picks = _spread(7, 3, t)
        assert len(picks) == 3
        counts[picks] += 1
    assert counts.min() == counts.max() == 6
    assert _spread(3, 10, 0) == [0, 1, 2]


def test_rebuild_skips_everything(tiny_zoo):
    report = build_zoo(tiny_zoo, tiny_config(), workers=1)
    assert report.skipped == 4 and not report.built and len(Zoo.open(tiny_zoo)) == 4


def test_max_units_builds_part_and_a_rerun_continues(tmp_path):
    config = tiny_config(tasks=("digits-0-4",), archs_per_task=3)
    first = build_zoo(tmp_path / "zoo", config, workers=1, max_units=1)
    assert len(first.built) == 1 and first.skipped == 0
    second = build_zoo(tmp_path / "zoo", config, workers=1)
    assert second.skipped == 1 and len(second.built) == 2


def test_units_are_deterministic():
    a, b = plan_units(tiny_config()), plan_units(tiny_config())
    assert [u.id for u in a] == [u.id for u in b]
    other = plan_units(tiny_config(seeds=(1,)))
    assert not {u.id for u in a} & {u.id for u in other}


def _checksums(path):
    return {e.id: e.sha256 for e in Zoo.open(path).entries()}


@pytest.mark.slow
def test_process_pool_builds_the_same_units_byte_for_byte(tiny_zoo, tmp_path):
    config = tiny_config(tasks=("digits-0-4",), archs_per_task=2)
    report = build_zoo(tmp_path / "zoo", config, workers=2)
    assert report.workers == 2 and report.executor == "process pool"
    assert sorted(report.built) == sorted(u.id for u in plan_units(config))
    built = _checksums(tmp_path / "zoo")
    assert built == {i: sha for i, sha in _checksums(tiny_zoo).items() if i in built}  # same weights, same file


def test_the_same_zoo_built_twice_has_the_same_checksums(tiny_zoo, tmp_path):
    build_zoo(tmp_path / "again", tiny_config(), workers=1)
    assert _checksums(tmp_path / "again") == _checksums(tiny_zoo)  # before: the header's metadata order varied


def test_failed_unit_is_reported_and_the_rest_is_built(tmp_path, monkeypatch):
    import tans.zoo.build as build

    real = build.train_unit

    def flaky(unit, dataset, config):
        if unit.arch == "mbv3_min":
            raise RuntimeError("out of memory\nsecond line")
        return real(unit, dataset, config)

    monkeypatch.setattr(build, "train_unit", flaky)
    config = tiny_config(tasks=("digits-0-4",), archs=("mbv3_min", "mbv3_small"), archs_per_task=2)
    report = build_zoo(tmp_path / "zoo", config, workers=1)
    assert len(report.built) == 1 and len(report.failed) == 1
    assert next(iter(report.failed.values())) == "digits-0-4 / mbv3_min: RuntimeError: out of memory"


def test_config_file_and_its_errors(tmp_path):
    good = tmp_path / "zoo.json"
    good.write_text(json.dumps({"comment": "tiny", "tasks": ["digits-0-4"], "archs_per_task": 1,
                                "recipe": {"epochs": 2, "max_train_images": 32}}))
    cfg = BuildConfig.from_file(good)
    assert cfg.recipe.epochs == 2 and cfg.tasks == ("digits-0-4",)
    toml = tmp_path / "zoo.toml"
    toml.write_text('tasks = ["digits-0-4"]\nnum_archs = 4\n')
    assert BuildConfig.from_file(toml).num_archs == 4
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"tasks": ["digits"], "archs_per_tsk": 3}))
    with pytest.raises(TansError, match="Did you mean 'archs_per_task'"):
        BuildConfig.from_file(bad)
    with pytest.raises(TansError, match="does not exist"):
        BuildConfig.from_file(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(TansError, match="not valid json"):
        BuildConfig.from_file(tmp_path / "broken.json")


@pytest.mark.slow
def test_build_resumes_after_sigkill(tmp_path):
    """Kill a real `tans zoo build` once it has stored something; a rerun completes the rest."""
    config = tmp_path / "zoo.json"
    config.write_text(json.dumps({"tasks": ["digits-0-4", "digits-5-9"], "num_archs": 3, "archs_per_task": 3,
                                  "latency_repeats": 2,
                                  "recipe": {"epochs": 1, "warmup_epochs": 0, "max_train_images": 48,
                                             "max_eval_images": 32}}))
    zoo_dir = tmp_path / "zoo"
    cmd = [sys.executable, "-m", "tans.cli.main", "zoo", "build", "--config", str(config), "--zoo", str(zoo_dir),
           "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if (zoo_dir / "zoo.sqlite").exists() and len(Zoo.open(zoo_dir)) >= 1:
                break
        except TansError:  # opened while the build was still writing the new zoo's schema
            pass
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(Zoo.open(zoo_dir))
    assert 1 <= done_before < 6
    assert Zoo.open(zoo_dir).verify().ok
    again = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["skipped"] == done_before and summary["built"] == 6 - done_before
    zoo = Zoo.open(zoo_dir)
    assert len(zoo) == 6 and len(set(zoo.ids())) == 6 and zoo.verify().ok


def test_cli_list_show_verify_export_import(tiny_zoo, tmp_path, capsys):
    code, out, _ = run(capsys, "zoo", "list", "--zoo", tiny_zoo, "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 4
    fields = {"id", "arch", "task", "task_fingerprint", "recipe", "seed", "val_acc", "test_acc", "params", "flops",
              "latency_ms", "latency_threads", "machine", "embedding_dim", "created", "sha256", "flagged"}
    assert fields <= set(rows[0])
    smallest = min(r["params"] for r in rows)
    code, out, _ = run(capsys, "zoo", "list", "--zoo", tiny_zoo, "--max-params", smallest, "--json")
    assert all(r["params"] <= smallest for r in json.loads(out))
    code, out, _ = run(capsys, "zoo", "show", rows[0]["id"], "--zoo", tiny_zoo, "--json")
    assert code == 0 and json.loads(out)["id"] == rows[0]["id"]
    code, out, _ = run(capsys, "zoo", "verify", "--zoo", tiny_zoo)
    assert code == 0
    archive = tmp_path / "zoo.tar"
    assert run(capsys, "zoo", "export", archive, "--zoo", tiny_zoo)[0] == 0
    code, out, _ = run(capsys, "zoo", "import", archive, "--zoo", tmp_path / "copy", "--json")
    assert code == 0 and len(json.loads(out)["added"]) == 4


def test_cli_build_json_is_clean_and_a_rerun_skips(tmp_path, capsys):
    config = tmp_path / "zoo.json"
    config.write_text(json.dumps(tiny_config(tasks=("digits-0-4",)).to_dict()))
    args = ("zoo", "build", "--config", config, "--zoo", tmp_path / "zoo", "--workers", 1)
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    assert json.loads(out)["built"] == 2  # stdout holds the JSON summary alone
    code, out, _ = run(capsys, *args)
    assert code == 0 and "built 0, skipped 2" in out


def test_cli_verify_fails_on_tampered_weights(tmp_path, capsys):
    build_zoo(tmp_path / "zoo", tiny_config(tasks=("digits-0-4",), archs_per_task=1), workers=1)
    zoo = Zoo.open(tmp_path / "zoo")
    path = zoo.weights_path(zoo.ids()[0])
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    code, out, _ = run(capsys, "zoo", "verify", "--zoo", tmp_path / "zoo")
    assert code == 1 and "tampered" in out.lower()


@pytest.mark.parametrize(
    "args, message",
    [
        (("zoo", "build"), "Give --config FILE or --tasks"),
        (("zoo", "build", "--tasks", "digts-0-4"), "Did you mean 'digits-0-4'"),
        (("zoo", "list", "--zoo", "/no/such/zoo"), "expected a tans zoo at /no/such/zoo"),
        (("zoo", "add-timm", "resnet10t", "--task", "digits-0-4", "--init", "maybe"), "Unknown --init 'maybe'"),
    ],
)
def test_cli_errors_are_one_line(capsys, args, message):
    code, _, err = run(capsys, *args)
    assert code == 2 and message in err and err.count("\n") == 1


def test_cli_show_unknown_id_suggests(tiny_zoo, capsys):
    some_id = Zoo.open(tiny_zoo).ids()[0]
    code, _, err = run(capsys, "zoo", "show", some_id[:-1] + "x", "--zoo", tiny_zoo)
    assert code == 2 and "Did you mean" in err


def test_add_timm_trains_a_timm_architecture(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the test must not wait on a network
    code, out, err = run(capsys, "zoo", "add-timm", "test_resnet", "--task", "digits-0-4", "--epochs", "1",
                         "--zoo", tmp_path / "zoo", "--json")
    assert code == 0, err
    assert "warning:" not in err or "from scratch" in err  # no pretrained weights offline: says so
    [entry] = Zoo.open(tmp_path / "zoo").entries()
    assert entry.arch == "timm/test_resnet" and entry.embedding.shape == (2048,)
    code, _, err = run(capsys, "zoo", "add-timm", "test_resnet", "--task", "digits-0-4", "--init", "pretrained",
                       "--zoo", tmp_path / "zoo")
    assert code == 2 and "pretrained weights" in err and err.count("\n") == 1


def test_refused_zoo_commands_leave_no_folder_behind(tmp_path, capsys):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar file")
    code, _, err = run(capsys, "zoo", "import", junk, "--zoo", tmp_path / "imported")
    assert code == 2 and "not a tar file" in err and not (tmp_path / "imported").exists()
    code, _, err = run(capsys, "zoo", "build", "--tasks", "nosuchtask", "--zoo", tmp_path / "built")
    assert code == 2 and "nosuchtask" in err and err.count("\n") == 1 and not (tmp_path / "built").exists()


def test_cli_import_of_a_non_archive_and_zero_workers_are_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.tar"
    junk.write_text("not a tar file\nsecond line\n")
    code, _, err = run(capsys, "zoo", "import", junk, "--zoo", tmp_path / "zoo")
    assert code == 2 and "not a tar file" in err and err.count("\n") == 1
    code, _, err = run(capsys, "zoo", "build", "--tasks", "digits-0-4", "--workers", "0", "--zoo", tmp_path / "z2")
    assert code == 2 and "workers must be at least 1" in err


def test_two_concurrent_builders_train_each_unit_once(tmp_path, monkeypatch):
    """Two builders of one zoo (threads, each with its own store connection) split the units."""
    import collections
    import threading

    import tans.zoo.build as build

    real, calls, lock = build.train_unit, collections.Counter(), threading.Lock()
    started, first_call = threading.Barrier(2, timeout=120), threading.local()

    def counted(unit, dataset, config):
        with lock:
            calls[unit.id] += 1
        if not getattr(first_call, "seen", False):  # both builders are training before either goes on
            first_call.seen = True
            started.wait()
        return real(unit, dataset, config)

    monkeypatch.setattr(build, "train_unit", counted)
    config = tiny_config()
    Zoo.create(tmp_path / "zoo")
    reports = [None, None]

    def builder(i):
        reports[i] = build_zoo(Zoo.open(tmp_path / "zoo"), config, workers=1)

    threads = [threading.Thread(target=builder, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    units = {u.id for u in plan_units(config)}
    assert set(calls) == units and max(calls.values()) == 1, calls  # before: every unit trained twice
    built = [set(r.built) for r in reports]
    assert built[0] | built[1] == units and not built[0] & built[1] and all(built)
    zoo = Zoo.open(tmp_path / "zoo")
    assert set(zoo.ids()) == units and zoo.verify().ok


def test_a_unit_under_a_live_claim_is_left_to_its_builder_and_taken_over_after_expiry(tmp_path, capsys):
    config_file = tmp_path / "zoo.json"
    config_file.write_text(json.dumps({"tasks": ["digits-0-4"], "num_archs": 3, "archs_per_task": 2,
                                       "latency_repeats": 2, "recipe": TINY_RECIPE.to_dict()}))
    config = BuildConfig.from_file(config_file)
    first, second = (u.id for u in plan_units(config))
    zoo = Zoo.create(tmp_path / "zoo")
    zoo.claim(first, "elsewhere/1/aa", lease_s=2)  # a builder on another machine, still renewing
    code, out, _ = run(capsys, "zoo", "build", "--config", config_file, "--zoo", tmp_path / "zoo", "--workers", 1)
    assert code == 0 and "built 1," in out and "1 being built by another builder" in out
    assert zoo.ids() == [second]
    time.sleep(2)  # it stopped renewing: the lease expires
    report = build_zoo(zoo, config, workers=1)
    assert report.built == [first] and report.held == 0 and report.skipped == 1
