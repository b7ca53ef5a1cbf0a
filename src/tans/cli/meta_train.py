"""``tans meta-train``: train the searcher on a zoo and save it as one artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tans.cli._output import console, print_json, print_table
from tans.cli._progress import bar_view, event_bars
from tans.paths import default_searcher_path


def meta_train(
    zoo: Annotated[Path | None, typer.Option("--zoo", help="Zoo directory (default: ~/.cache/tans/zoo).")] = None,
    out: Annotated[str | None, typer.Option("--out", help="Where to write the searcher: a folder or a URL (default: ~/.cache/tans/searcher).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Meta-training epochs (at most).")] = None,
    patience: Annotated[int | None, typer.Option(help="Stop after this many epochs without a better validation tau (0: never).")] = None,
    val_fraction: Annotated[float | None, typer.Option(help="Fraction of record targets held out (whole families) for validation and stage 2.")] = None,
    exclude_family: Annotated[list[str] | None, typer.Option("--exclude-family", help="Ignore records of targets of this family (repeatable).")] = None,
    extractor: Annotated[str | None, typer.Option(help="Feature extractor: tans-default or timm/<name>.")] = None,
    set_encoder: Annotated[str | None, typer.Option(help="Query pooling: attention or mean.")] = None,
    functional: Annotated[bool | None, typer.Option("--functional/--no-functional", help="Model encoder reads functional embeddings.")] = None,
    track_record: Annotated[bool | None, typer.Option("--track-record/--no-track-record", help="Stage 1 blends in each model's track record in the transfer records.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Meta-train the searcher on a zoo's transfer records (run 'tans zoo transfer' first).

    Logs the weighted tau, top-1 regret and predicted-accuracy error on held-out target families.
    """
    from tans.searcher import Searcher
    from tans.zoo import open_zoo

    zoo_obj = open_zoo(zoo)
    out = out or default_searcher_path()
    options = {"epochs": epochs, "patience": patience, "val_fraction": val_fraction, "extractor": extractor,
               "set_encoder": set_encoder, "use_functional": functional, "use_track_record": track_record}
    searcher = Searcher(seed=seed, **{k: v for k, v in options.items() if v is not None})  # defaults: Searcher's

    def status(event) -> str:  # a meta-training epoch's validation metrics
        log = event.extra.get("log")
        if log is None:
            return ""
        return (f"loss={log.loss:.3f} tau={_fmt(log.tau)} regret={_fmt(log.regret, 2)} "
                f"mae={_fmt(log.mae)}" + (" *" if log.best else ""))

    with event_bars(lambda event: {**bar_view(event), "status": status(event)}) as progress:
        searcher.fit(zoo_obj, exclude_families=exclude_family or (), progress=progress)
    path = searcher.save(out)
    result = searcher.result_
    combiner = searcher.combiner_.to_dict() if searcher.combiner_ is not None else None
    if as_json:
        blend = searcher.stage1_blend_.to_dict() if searcher.stage1_blend_ is not None else None
        print_json({"searcher": str(path), "records": searcher.records_, **result.to_dict(), "track_record_blend": blend,
                    "combiner": combiner})
        return
    rows = [{"epoch": log.epoch, "lr": log.lr, "loss": log.loss, "tau": _fmt(log.tau), "regret": _fmt(log.regret, 2),
             "mae": _fmt(log.mae), "best": log.best} for log in result.history]
    print_table(rows, ["epoch", "lr", "loss", "tau", "regret", "mae", "best"], title="Meta-training (validation targets)")
    records = searcher.records_
    console.print(
        f"Learned from {records['records']} transfer records ({records['models']} models on {records['targets']} targets); "
        f"{len(result.train_targets)} training and {len(result.val_targets)} validation targets; kept epoch "
        f"{result.best_epoch}. tau = weightedtau(true acc, predicted, rank=None); regret in points."
    )
    if searcher.stage1_blend_ is not None:
        blend = searcher.stage1_blend_
        tracked = searcher.track_record_
        console.print(f"Stage 1 track records: {len(tracked.recorded())} models on {len(tracked.z)} targets; blend fitted on "
                      f"{blend.rows} validation pairs: scale {blend.scale:.3f} (track-record weight {blend.weight:g}, "
                      f"target temperature {blend.temperature:g}).")
    if combiner is not None:
        console.print(f"Stage 2 combiner: {combiner['rows']} rows; leave-one-target-out MAE of the accuracy lift: "
                      f"level {combiner['cv_mae']['level']:.3f}, order within a shortlist {combiner['cv_mae']['order']:.3f}.")
    console.print(f"Searcher written to {path} in {result.seconds:.1f} s.")


def _fmt(value: float, digits: int = 3) -> str:
    return "-" if value != value else f"{value:.{digits}f}"  # NaN -> "-"
