"""``tans data``: list, prepare and inspect datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tans._errors import TansError
from tans.cli._output import console, print_json, print_table, resize_note
from tans.cli._progress import progress_bar

app = typer.Typer(help="Built-in tasks and user datasets.", no_args_is_help=True)


@app.command("list")
def list_cmd(
    pattern: Annotated[str, typer.Argument(help="Wildcard filter on task names, e.g. 'glyphs-*'.")] = "*",
    family: Annotated[str | None, typer.Option(help="Only tasks of this family.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the built-in tasks: family, classes, images, licence, whether installed."""
    from tans.data.catalogue import list_tasks

    rows = [task.summary() for task in list_tasks(pattern, family=family)]
    if as_json:
        print_json(rows)
        return
    print_table(rows, ["name", "family", "classes", "images", "licence", "installed"])
    families = sorted({r["family"] for r in rows})
    console.print(f"{len(rows)} tasks in {len(families)} families; {sum(r['installed'] for r in rows)} installed.")


@app.command("prepare")
def prepare_cmd(
    names: Annotated[list[str] | None, typer.Argument(help="Built-in task names (see 'tans data list').")] = None,
    out: Annotated[Path, typer.Option("--out", help="Directory to write the datasets into.")] = Path("data"),
    format: Annotated[str, typer.Option(help="imagefolder (PNG files) or npz (one array file).")] = "imagefolder",
    all_tasks: Annotated[bool, typer.Option("--all", help="Prepare every installed built-in task.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Load built-in tasks and write each as a dataset directory under OUT."""
    from tans.data.catalogue import get_task, list_tasks
    from tans.data.writers import FORMATS, write_dataset

    if format not in FORMATS:
        raise TansError(f"Unknown format '{format}': expected one of {', '.join(FORMATS)}.")
    if all_tasks and names:
        raise TansError("Give task names or --all, not both.")
    if all_tasks:
        specs = [t for t in list_tasks() if t.installed()]
    elif names:
        specs = [get_task(n) for n in names]
    else:
        raise TansError("Name at least one built-in task (see 'tans data list'), or pass --all.")

    rows = []
    with progress_bar() as bar:
        job = bar.add_task("prepare", total=len(specs), status="")
        for spec in specs:
            bar.update(job, status=spec.name)
            dataset = spec.load()
            path = write_dataset(dataset, out / spec.name, format=format)
            rows.append({**dataset.summary(), "path": str(path)})
            bar.advance(job)
    if as_json:
        print_json(rows)
        return
    print_table(rows, ["name", "family", "classes", "images", "image_shape", "licence", "path"],
                title="Prepared tasks")
    images = sum(r["images"] for r in rows)
    console.print(f"{len(rows)} tasks, {len({r['family'] for r in rows})} families, {images:,} images, "
                  f"written to {out} as {format}.")


@app.command("inspect")
def inspect_cmd(
    path: Annotated[Path, typer.Argument(help="ImageFolder directory, .zip, .npz or MNIST IDX file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Report classes, counts per class, image sizes and modes, and problems found.

    Exits 2 when search and finetune would refuse the dataset, 0 when it has at most warnings.
    """
    from tans.data.inspect import inspect_path

    report = inspect_path(path)
    if as_json:
        print_json(report)
    else:
        _print_report(report)
    if not report["usable"]:
        raise typer.Exit(2)


def size_summary(sizes: dict[str, int]) -> str:
    """``sizes (min / median / max): width 28 / 64 / 300, height 28 / 48 / 200 px, 3 distinct`` from
    ``{"WxH": images}`` (the report's ``sizes``)."""
    import numpy as np

    if not sizes:
        return "sizes: no readable image"
    counts = list(sizes.values())
    widths, heights = (np.repeat([int(k.split("x")[i]) for k in sizes], counts) for i in (0, 1))
    width, height = (" / ".join(f"{v:g}" for v in (a.min(), np.median(a), a.max())) for a in (widths, heights))
    return f"sizes (min / median / max): width {width}, height {height} px, {len(sizes)} distinct"


def _print_report(report: dict) -> None:
    from tans.data.transforms import WorkingFormat

    console.print(f"[bold]{report['path']}[/] ({report['format']}): {len(report['classes'])} classes, "
                  f"{report['images']} images")
    print_table([{"class": c, "images": n} for c, n in report["counts"].items()], ["class", "images"])
    console.print(f"{size_summary(report['sizes'])}; {resize_note(WorkingFormat())} (all sizes: --json)")
    console.print("modes: " + ", ".join(f"{k} x{v}" for k, v in report["modes"].items()))
    if not report["problems"]:
        console.print("[green]no problems found[/]")
    for p in report["problems"]:
        label = "[red]error[/]" if p["refused"] else "[yellow]problem[/]"
        console.print(f"{label} {p['kind']} ({p['count']}): {p['detail']}")
    if not report["usable"]:
        console.print("search and finetune refuse this dataset until the errors above are fixed.")
