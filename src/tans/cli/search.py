"""``tans search``: the zoo models that should do best on a dataset, within a budget."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tans._errors import TansError
from tans.cli._output import console, print_json, print_table
from tans.paths import default_searcher_path, default_zoo_dir

COLUMNS = ["rank", "id", "arch", "task", "similarity", "predicted_acc", "logme", "params", "flops", "latency_ms"]


def search(
    dataset: Annotated[str, typer.Argument(help="Built-in task name, ImageFolder directory, .zip, .npz or IDX file.")],
    zoo: Annotated[Path | None, typer.Option("--zoo", help="Zoo directory (default: ~/.cache/tans/zoo).")] = None,
    searcher: Annotated[Path | None, typer.Option("--searcher", help="Searcher artifact (default: ~/.cache/tans/searcher).")] = None,
    max_params: Annotated[int | None, typer.Option(help="At most this many parameters.")] = None,
    max_flops: Annotated[int | None, typer.Option(help="At most this many FLOPs.")] = None,
    max_latency_ms: Annotated[float | None, typer.Option(help="At most this CPU latency (ms, batch 1).")] = None,
    top_k: Annotated[int, typer.Option(help="Models to return.")] = 5,
    shortlist: Annotated[int | None, typer.Option(help="Candidates re-ranked (default max(4 * top-k, 20)).")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="Check the shortlist with LogME on the dataset and re-rank.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Embed DATASET, retrieve the most similar zoo models within the budget, re-rank by predicted accuracy."""
    from tans.cli.zoo import open_zoo
    from tans.data import load_dataset
    from tans.index import Constraints
    from tans.searcher import Searcher
    from tans.searcher.artifact import is_artifact

    zoo_obj = open_zoo(zoo or default_zoo_dir())
    path = searcher or default_searcher_path()
    if not is_artifact(path):
        raise TansError(
            f"No searcher at '{path}'; train one with 'tans meta-train --zoo {zoo_obj.path} --out {path}' "
            "or run 'tans demo'."
        )
    model = Searcher.load(path)
    constraints = Constraints(max_params=max_params, max_flops=max_flops, max_latency_ms=max_latency_ms)
    result = model.search(
        load_dataset(dataset), zoo=zoo_obj, constraints=constraints, top_k=top_k, shortlist=shortlist, verify=verify
    )
    if as_json:
        print_json(result.to_dict())
        return
    columns = [c for c in COLUMNS if verify or c != "logme"]
    print_table([vars(r) for r in result.rows], columns, title=f"Best zoo models for {result.dataset}")
    console.print(
        f"{result.candidates} of {result.zoo_size} models within budget ({result.constraints}); "
        f"{result.shortlist} shortlisted from {result.query_images} query images; "
        f"search took {result.seconds['total'] * 1000:.0f} ms."
    )
