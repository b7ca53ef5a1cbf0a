"""``tans search``: the zoo models that should do best on a dataset, within a budget."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tans.cli._output import console, print_json, print_table, resize_note, screen_row
from tans.cli._progress import bar_view, event_bars

COLUMNS = ["rank", "id", "arch", "task", "predicted_acc", "stage1_acc", "logme", "ncm", "finetune_val_acc", "params",
           "flops", "latency_ms"]  # --wide
SCREEN_COLUMNS = ["rank", "id", "arch", "task", "predicted_acc", "logme", "ncm", "finetune_val_acc", "params", "latency_ms"]
SCREEN_HEADERS = {"rank": "#", "predicted_acc": "pred_acc", "finetune_val_acc": "ft_val", "latency_ms": "ms"}
PROBE_COLUMNS = ("stage1_acc", "logme", "ncm")  # shown only when stage 2 ran


def search(
    dataset: Annotated[str, typer.Argument(help="Built-in task name, ImageFolder directory, .zip, .npz or IDX file.")],
    zoo: Annotated[Path | None, typer.Option("--zoo", help="Zoo directory (default: ~/.cache/tans/zoo).")] = None,
    searcher: Annotated[str | None, typer.Option("--searcher", help="Searcher artifact: a folder or a URL (default: ~/.cache/tans/searcher).")] = None,
    max_params: Annotated[int | None, typer.Option(help="At most this many parameters.")] = None,
    max_flops: Annotated[int | None, typer.Option(help="At most this many FLOPs.")] = None,
    max_latency_ms: Annotated[float | None, typer.Option(help="At most this CPU latency (ms, batch 1).")] = None,
    top_k: Annotated[int | None, typer.Option(help="Models to return (default: the searcher's).")] = None,
    shortlist: Annotated[int | None, typer.Option(help="Candidates ranked by stage 1 (default max(4 * top-k, 1024): every candidate of a zoo of up to 1,024 models).")] = None,
    fast: Annotated[bool, typer.Option("--fast", help="Stage 1 only: no forward pass of any candidate.")] = False,
    probe_k: Annotated[int | None, typer.Option(help="Stage-1 candidates stage 2 probes (default: the searcher's).")] = None,
    finetune_budget: Annotated[float | None, typer.Option(help="Seconds for stage 3: short fine-tunes of the probed candidates by successive halving, picked by validation accuracy.")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Full architecture names and every column (rows may wrap).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Rank the zoo models within the budget by their expected accuracy on DATASET after fine-tuning.

    Stage 1 (instant) predicts it from the dataset's and the models' embeddings; stage 2 (unless
    --fast) runs the top candidates once on a sample of the dataset and fuses LogME and
    nearest-class-mean accuracy of their features with stage 1. Stage 3 (--finetune-budget)
    fine-tunes them briefly, halving the field each round, and ranks by validation accuracy.
    """
    from tans._api import search as run_search
    from tans.zoo import open_zoo

    store = open_zoo(zoo)
    given = dict(max_params=max_params, max_flops=max_flops, max_latency_ms=max_latency_ms, top_k=top_k,
                 shortlist=shortlist, probe_k=probe_k, finetune_budget=finetune_budget)
    labels = {"probe": "probing the shortlist", "finetune": "short fine-tunes"}  # stage 2's probes, stage 3's
    with event_bars(lambda e: {**bar_view(e), "name": labels[e.stage], "status": ""} if e.stage in labels else None) as progress:
        result = run_search(dataset, zoo=store, searcher=searcher, fast=fast, progress=progress,
                            **{k: v for k, v in given.items() if v is not None})  # the rest: the searcher's defaults
    if as_json:
        print_json(result.to_dict())
        return
    columns = [c for c in (COLUMNS if wide else SCREEN_COLUMNS)
               if (result.probed or c not in PROBE_COLUMNS) and (result.finetunes or c != "finetune_val_acc")]
    rows = [screen_row(vars(r), wide=wide) for r in result.rows]
    title = f"Best zoo models for {result.dataset}"
    if wide:
        print_table(rows, columns, title=title)
    else:
        print_table(rows, columns, title=title, headers=SCREEN_HEADERS, fit=("arch", "task"))
    console.print(
        f"{result.candidates} of {result.zoo_size} models within budget ({result.constraints}); "
        f"{result.shortlist} ranked by stage 1 from {result.query_images} query images"
        + (f", top {result.probed} probed by stage 2" if result.probed else " (stage 1 only)")
        + (f", {result.finetunes} short fine-tunes by stage 3 ({result.seconds['finetune']:.0f} s)" if result.finetunes else "")
        + f"; search took {result.seconds['total'] * 1000:.0f} ms; {resize_note(store.working_format)}. "
        "predicted_acc: expected test accuracy after the records' fine-tuning recipe."
    )
    # one line whatever the width (the terminal wraps it), so it copies as one command
    console.print(f"next: tans finetune {dataset} --model {result.best.id}" + (f" --zoo {zoo}" if zoo else ""),
                  soft_wrap=True)
