"""``tans zoo``: build, list, show, verify, export, import and grow a model zoo."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from tans._errors import TansError, TansWarning
from tans._parallel import RayResources
from tans.cli._output import console, print_json, print_table, screen_row
from tans.cli._progress import EventBars, bar_view, event_bars
from tans.paths import default_zoo_dir

app = typer.Typer(help="Build and manage model zoos.", no_args_is_help=True)

ZooOption = Annotated[Path | None, typer.Option("--zoo", help="Zoo directory (default: ~/.cache/tans/zoo).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
RayOption = Annotated[str | None, typer.Option("--ray", help="Run on Ray: 'auto', an address (HEAD:6379), or 'local'.")]
RayCpusOption = Annotated[float | None, typer.Option(
    "--ray-cpus-per-unit", help="CPUs Ray reserves for each unit, fractions allowed (default: the config's, "
    f"else {RayResources().cpus_per_unit:g}).")]
RayGpusOption = Annotated[float | None, typer.Option(
    "--ray-gpus-per-unit", help="GPUs Ray reserves for each unit; 0.5 lets two units share one (default: the "
    f"config's, else {RayResources().gpus_per_unit:g}).")]

LIST_COLUMNS = ["id", "arch", "task", "val_acc", "chance_acc", "params", "flops", "latency_ms", "flagged"]  # --wide
SCREEN_COLUMNS = ["id", "arch", "task", "val_acc", "chance_acc", "params", "flops", "latency_ms"]
SCREEN_HEADERS = {"val_acc": "val", "chance_acc": "chance", "latency_ms": "ms"}
# --sort keys; True: descending (best or newest first)
SORT_KEYS = {"id": False, "arch": False, "task": False, "val_acc": True, "test_acc": True, "params": False,
             "flops": False, "latency_ms": False, "created": True}
TRANSFER_COLUMNS = ["target", "family", "epochs", "test_acc", "seconds", "origin"]


def _row(entry) -> dict:
    d = entry.to_dict()
    d.pop("embedding")
    d["embedding_dim"] = len(entry.embedding)
    return d


@app.command("build")
def build_cmd(
    config: Annotated[Path | None, typer.Option(help="JSON or TOML build config (see benchmarks/zoo/).")] = None,
    tasks: Annotated[str | None, typer.Option(help="Comma-separated built-in task names or dataset paths.")] = None,
    archs_per_task: Annotated[int | None, typer.Option(help="Architectures trained per task.")] = None,
    num_archs: Annotated[int | None, typer.Option(help="Size of the architecture pool (stratified by size).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs per network.")] = None,
    workers: Annotated[int | None, typer.Option(help="Local worker processes (default: every core).")] = None,
    ray: RayOption = None,
    ray_cpus_per_unit: RayCpusOption = None,
    ray_gpus_per_unit: RayGpusOption = None,
    zoo: ZooOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train networks on tasks and add them to the zoo; a rerun resumes where it stopped."""
    from tans.zoo.build import BuildConfig, build_zoo

    if config is None and tasks is None:
        raise TansError("Give --config FILE or --tasks NAME[,NAME...] (see 'tans data list').")
    cfg = BuildConfig.from_file(config) if config else BuildConfig(tasks=tuple(t for t in tasks.split(",") if t))
    if config and tasks:
        cfg = replace(cfg, tasks=tuple(t for t in tasks.split(",") if t))
    if archs_per_task is not None:
        cfg = replace(cfg, archs_per_task=archs_per_task)
    if num_archs is not None:
        cfg = replace(cfg, num_archs=num_archs)
    if epochs is not None:
        cfg = replace(cfg, recipe=replace(cfg.recipe, epochs=epochs, warmup_epochs=min(cfg.recipe.warmup_epochs, epochs - 1)))
    cfg = _with_ray_resources(cfg, ray, ray_cpus_per_unit, ray_gpus_per_unit)
    path = zoo or default_zoo_dir()

    with _plan_progress("zoo build") as progress:
        report = build_zoo(path, cfg, workers=workers, ray_address=ray, progress=progress)
    summary = {"zoo": str(path), **report.to_dict()}
    if as_json:
        print_json(summary)
    else:
        console.print(
            f"built {len(report.built)}, skipped {report.skipped} (already in the zoo), failed {len(report.failed)} "
            f"in {report.seconds:.0f} s with {report.workers} {report.executor} worker(s): "
            f"{report.models_per_hour:.0f} models/hour, {report.images_per_second:.0f} training images/s. Zoo: {path}"
        )
    _finish(report, as_json=as_json)


def _with_ray_resources(cfg, ray: str | None, cpus: float | None, gpus: float | None):
    """``cfg`` with the Ray resources given on the command line (checked by :class:`RayResources`)."""
    given = {k: v for k, v in (("cpus_per_unit", cpus), ("gpus_per_unit", gpus)) if v is not None}
    if given and ray is None:
        raise TansError("--ray-cpus-per-unit and --ray-gpus-per-unit apply to a run on Ray; add --ray auto (or an address).")
    return replace(cfg, ray_resources=replace(cfg.ray_resources, **given)) if given else cfg


_HELD = "{} being built by another builder of this zoo (left to it); run again after it ends to pick up any it leaves."


@contextmanager
def _plan_progress(what: str) -> Iterator[EventBars]:
    """One bar for a planned set of units: the ``progress`` of build_zoo and run_transfers.

    Its plan says how many units were already done; each unit's event names it (its task or target).
    """

    def status(event) -> str:
        if event.stage == "plan":
            return event.message if event.done else ""
        return f"{event.message} ({'failed' if event.extra.get('failure') else 'ok'})"

    with event_bars(lambda event: {**bar_view(event), "name": what, "status": status(event)}) as bars:
        bars.show(what, status="planning")
        yield bars


def _finish(report, *, as_json: bool) -> None:
    """After a build or transfer run: say what another builder holds and what failed; exit 1 on a failure."""
    if not as_json:
        if report.held:
            console.print(_HELD.format(report.held))
        for reason in report.failed.values():
            console.print(f"[red]failed[/] {reason}")
    if report.failed:
        raise typer.Exit(1)


@app.command("transfer")
def transfer_cmd(
    zoo: ZooOption = None,  # first: the zoo whose models transfer (it must exist)
    config: Annotated[Path | None, typer.Option(help="JSON transfer config (see benchmarks/zoo/bench-transfer.json).")] = None,
    targets: Annotated[list[str] | None, typer.Option("--targets", help="Target task name or dataset path (repeatable; default: the zoo families' other catalogue tasks).")] = None,
    models: Annotated[int | None, typer.Option(help="Fine-tune at most this many zoo models, spread over architectures and sources.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Fine-tuning epochs per record (default: the transfer config's).")] = None,
    targets_per_other_model: Annotated[int | None, typer.Option(help="Also fine-tune every model not picked by --models on this many targets (a different mix each).")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Task or family that is never a target (repeatable), e.g. your test sets.")] = None,
    workers: Annotated[int | None, typer.Option(help="Local worker processes (default: every core).")] = None,
    ray: RayOption = None,
    ray_cpus_per_unit: RayCpusOption = None,
    ray_gpus_per_unit: RayGpusOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fine-tune zoo models on other tasks and record how well each transferred; a rerun resumes.

    The searcher learns from these records ('tans meta-train'). Each (model, target, seed) is one
    short fine-tune with the benchmark's recipe; a killed run loses at most the fine-tunes in flight.
    """
    from tans.zoo import open_zoo
    from tans.zoo.transfer import TransferConfig, run_transfers

    cfg = TransferConfig.from_file(config) if config else TransferConfig()
    overrides = {"targets": tuple(targets) if targets else None, "models": models, "epochs": epochs,
                 "targets_per_other_model": targets_per_other_model,
                 "exclude": tuple(cfg.exclude) + tuple(exclude) if exclude else None}
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    cfg = _with_ray_resources(cfg, ray, ray_cpus_per_unit, ray_gpus_per_unit)
    store = open_zoo(zoo)
    with _plan_progress("transfer records") as progress:
        report = run_transfers(store, cfg, workers=workers, ray_address=ray, progress=progress)
    if as_json:
        print_json({"zoo": str(store.path), "records": store.transfer_count(), **report.to_dict()})
    else:
        console.print(
            f"recorded {len(report.added)} fine-tunes ({report.models} models x {report.targets} targets), skipped "
            f"{report.skipped} already recorded, failed {len(report.failed)} in {report.seconds:.0f} s with "
            f"{report.workers} {report.executor} worker(s); the zoo holds {store.transfer_count()} records. "
            f"Next: tans meta-train --zoo {store.path}"
        )
    _finish(report, as_json=as_json)


@app.command("list")
def list_cmd(
    zoo: ZooOption = None,
    task: Annotated[str | None, typer.Option(help="Only entries trained on this task.")] = None,
    family: Annotated[str | None, typer.Option(help="Only entries of this task family.")] = None,
    max_params: Annotated[int | None, typer.Option(help="At most this many parameters.")] = None,
    max_flops: Annotated[int | None, typer.Option(help="At most this many FLOPs.")] = None,
    max_latency_ms: Annotated[float | None, typer.Option(help="At most this CPU latency (ms, batch 1).")] = None,
    sort: Annotated[str | None, typer.Option(help=f"Order by one of {', '.join(SORT_KEYS)} (accuracies and created: highest first).")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Full architecture names and every column (rows may wrap).")] = False,
    as_json: JsonOption = False,
) -> None:
    """List the zoo's entries (every field with --json), and count their transfer records."""
    from tans._errors import did_you_mean
    from tans.zoo import open_zoo

    if sort is not None and sort not in SORT_KEYS:
        raise TansError(f"Unknown --sort '{sort}'; expected one of {', '.join(SORT_KEYS)}.{did_you_mean(sort, SORT_KEYS)}")
    store = open_zoo(zoo)
    entries = store.entries(
        task=task, family=family, max_params=max_params, max_flops=max_flops, max_latency_ms=max_latency_ms
    )
    if sort is not None:
        entries = sorted(entries, key=lambda e: getattr(e, sort), reverse=SORT_KEYS[sort])
    rows = [_row(e) for e in entries]
    if as_json:
        print_json(rows)
        return
    shown = [screen_row(r, wide=wide) for r in rows]
    if wide:
        print_table(shown, LIST_COLUMNS)
    else:
        print_table(shown, SCREEN_COLUMNS, headers=SCREEN_HEADERS, fit=("arch", "task"))
    console.print(f"{len(rows)} entries")
    listed = {e.id for e in entries}
    records = [r for r in store.transfers() if r.model_id in listed]
    console.print(f"{len(records)} transfer records on {len({r.target_fingerprint for r in records})} targets")


@app.command("show")
def show_cmd(entry_id: Annotated[str, typer.Argument(help="Entry id (see 'tans zoo list').")],
             zoo: ZooOption = None, as_json: JsonOption = False) -> None:
    """Every field of one entry, and its transfer records (fine-tunes on target tasks)."""
    from tans.zoo import open_zoo

    store = open_zoo(zoo)
    row = _row(store.get(entry_id))
    records = store.transfers(model_id=entry_id)
    if as_json:
        print_json({**row, "transfers": [r.to_dict() for r in records]})
        return
    print_table([{"field": k, "value": v} for k, v in row.items()], ["field", "value"], title=entry_id)
    if records:
        rows = [
            {"target": r.target, "family": r.target_family, "epochs": r.epochs, "test_acc": r.test_acc,
             "seconds": round(r.seconds, 1), "origin": r.origin}
            for r in records
        ]  # fmt: skip
        print_table(rows, TRANSFER_COLUMNS, title=f"{len(records)} transfer records")
    else:
        console.print("no transfer records")


@app.command("export-onnx")
def export_onnx_cmd(
    entry_id: Annotated[str, typer.Argument(help="Entry id (see 'tans zoo list').")],
    out: Annotated[Path, typer.Option("--out", help="The .onnx file to write.")],
    zoo: ZooOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write one zoo entry (its source task's head included) as a self-contained ONNX graph.

    Input 'input': float32 (batch, 3, size, size) normalised as (pixel / 255 - 0.5) / 0.25, at the
    zoo's working size; output 'logits'.
    """
    from tans.finetune import export_onnx
    from tans.training.loop import INPUT_MEAN, INPUT_STD
    from tans.zoo import open_zoo

    store = open_zoo(zoo)
    size = store.working_format.size
    path = export_onnx(store.load_model(entry_id), out, input_size=size)
    if as_json:
        print_json({"id": entry_id, "onnx": str(path), "input_size": size, "mean": INPUT_MEAN, "std": INPUT_STD})
    else:
        console.print(f"wrote {path}: input float32 (batch, 3, {size}, {size}) normalised as "
                      f"(pixel / 255 - {INPUT_MEAN}) / {INPUT_STD}, output logits")


@app.command("verify")
def verify_cmd(zoo: ZooOption = None, as_json: JsonOption = False) -> None:
    """Check every weights file against its checksum; exit 1 when something is missing or tampered."""
    from tans.zoo import open_zoo

    report = open_zoo(zoo).verify()
    if as_json:
        print_json(report.to_dict())
    else:
        console.print(report.summary())
    if not report.ok:
        raise typer.Exit(1)


@app.command("export")
def export_cmd(
    out: Annotated[str, typer.Argument(help="Archive to write (.tar): a path or a URL (s3://, hf://, ... with its fsspec backend).")],
    ids: Annotated[str | None, typer.Option(help="Comma-separated entry ids (default: all).")] = None,
    zoo: ZooOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write the zoo, or some entries, as one archive of safetensors files plus metadata."""
    from tans.zoo import export_zoo, open_zoo

    store = open_zoo(zoo)
    path = export_zoo(store, out, ids=ids.split(",") if ids else None)
    chosen = list(dict.fromkeys(ids.split(","))) if ids else store.ids()
    if as_json:
        print_json({"archive": str(path), "entries": chosen})
    else:
        console.print(f"wrote {path} ({len(chosen)} {'entry' if len(chosen) == 1 else 'entries'})", soft_wrap=True)


@app.command("import")
def import_cmd(
    archive: Annotated[str, typer.Argument(help="Archive written by 'tans zoo export': a path or a URL.")],
    zoo: ZooOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add the entries of an archive (checksums and formats are validated first; nothing is unpickled)."""
    from tans.zoo import import_zoo

    report = import_zoo(zoo or default_zoo_dir(), archive)  # creates the zoo only for a valid archive
    if as_json:
        print_json(report.to_dict())
    else:
        console.print(
            f"added {len(report.added)} entries, skipped {len(report.skipped)} already present, "
            f"added {report.records_added} transfer records"
        )


@app.command("add-timm")
def add_timm_cmd(
    name: Annotated[str, typer.Argument(help="timm architecture name, e.g. resnet10t or mobilenetv3_small_050.")],
    task: Annotated[str, typer.Option(help="Built-in task name or dataset path to train it on.")],
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default: the zoo recipe's).")] = None,
    init: Annotated[str, typer.Option(help="auto (pretrained when loadable), pretrained, or scratch.")] = "auto",
    zoo: ZooOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train (or fine-tune from timm's pretrained weights) a timm architecture on a task; add it to the zoo."""
    from tans.space.registry import create_model
    from tans.training.recipe import Recipe
    from tans.zoo.build import BuildConfig, build_zoo

    if init not in ("auto", "pretrained", "scratch"):
        raise TansError(f"Unknown --init '{init}': expected auto, pretrained or scratch.")
    arch = name if name.startswith("timm/") else f"timm/{name}"
    create_model(arch, num_classes=2)  # unknown names fail here with timm's suggestions
    pretrained = init != "scratch"
    if pretrained:
        try:
            create_model(arch, num_classes=2, pretrained=True)
        except TansError as exc:
            if init == "pretrained":
                raise
            warnings.warn(f"{exc} Training from scratch instead.", TansWarning, stacklevel=1)
            pretrained = False
    recipe = Recipe() if epochs is None else Recipe(epochs=epochs, warmup_epochs=min(1, epochs - 1))
    cfg = BuildConfig(tasks=(task,), archs=(arch,), archs_per_task=1, recipe=recipe, pretrained=pretrained)
    report = build_zoo(zoo or default_zoo_dir(), cfg, workers=1)
    if report.failed:
        raise TansError(next(iter(report.failed.values())))
    if as_json:
        print_json({"added": report.built, "skipped": report.skipped})
    else:
        console.print(f"added {', '.join(report.built) or 'nothing (already in the zoo)'}")
