"""``tans meta-train``: train the searcher on a zoo and save it as one artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tans.cli._output import console, print_json, print_table
from tans.cli._progress import progress_bar
from tans.paths import default_searcher_path, default_zoo_dir


def meta_train(
    zoo: Annotated[Path | None, typer.Option("--zoo", help="Zoo directory (default: ~/.cache/tans/zoo).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Where to write the searcher (default: ~/.cache/tans/searcher).")] = None,
    epochs: Annotated[int, typer.Option(help="Meta-training epochs (at most).")] = 20,
    patience: Annotated[int, typer.Option(help="Stop after this many epochs without a better validation score (0: never).")] = 5,
    steps_per_epoch: Annotated[int, typer.Option(help="Steps per epoch (each samples new query sets).")] = 50,
    val_fraction: Annotated[float, typer.Option(help="Fraction of the zoo's tasks held out for validation.")] = 0.2,
    extractor: Annotated[str, typer.Option(help="Feature extractor: tans-default or timm/<name>.")] = "tans-default",
    set_encoder: Annotated[str, typer.Option(help="Query pooling: attention or mean.")] = "attention",
    loss: Annotated[str, typer.Option(help="Contrastive loss: infonce or margin.")] = "infonce",
    no_functional: Annotated[bool, typer.Option("--no-functional", help="Model encoder without functional embeddings.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Meta-train the searcher on a zoo; logs recall@k and the predictor's tau on held-out tasks."""
    from tans.cli.zoo import open_zoo
    from tans.searcher import Searcher

    zoo_obj = open_zoo(zoo or default_zoo_dir())
    out = out or default_searcher_path()
    searcher = Searcher(
        extractor=extractor,
        set_encoder=set_encoder,
        epochs=epochs,
        patience=patience,
        steps_per_epoch=steps_per_epoch,
        loss=loss,
        use_functional=not no_functional,
        val_fraction=val_fraction,
        seed=seed,
    )
    with progress_bar() as bar:
        jobs: dict[str, int] = {}

        def progress(stage: str, done: int, total: int, log) -> None:
            if stage not in jobs:
                jobs[stage] = bar.add_task(stage, total=total, status="")
            status = ""
            if log is not None:
                recall = " ".join(f"r@{k}={_fmt(v)}" for k, v in log.recall.items())
                status = f"loss={log.loss:.3f} {recall} tau={_fmt(log.tau)}" + (" *" if log.best else "")
            bar.update(jobs[stage], completed=done, status=status)

        searcher.fit(zoo_obj, progress=progress)
    path = searcher.save(out)
    result = searcher.result_
    if as_json:
        print_json({"searcher": str(path), **result.to_dict()})
        return
    rows = []
    for log in result.history:
        row = {"epoch": log.epoch, "lr": log.lr, "loss": log.loss, "tau": _fmt(log.tau), "best": log.best}
        row.update({f"recall@{k}": _fmt(v) for k, v in log.recall.items()})
        rows.append(row)
    ks = [f"recall@{k}" for k in (result.history[0].recall if result.history else {})]
    print_table(rows, ["epoch", "lr", "loss", *ks, "tau", "best"], title="Meta-training (validation tasks)")
    console.print(
        f"{len(result.train_tasks)} training tasks, {len(result.val_tasks)} validation tasks "
        f"({', '.join(result.val_tasks) or 'none'}); kept epoch {result.best_epoch}; "
        f"tau = weightedtau(true acc, predicted, rank=None); searcher written to {path} in {result.seconds:.1f} s."
    )


def _fmt(value: float) -> str:
    return "-" if value != value else f"{value:.3f}"  # NaN -> "-"
