"""``tans bench``: the paper's experiment (every baseline, metrics, plots) as one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tans._errors import TansError
from tans.cli._output import console, print_json, print_table
from tans.cli._progress import bar_view, event_bars

_STAGES = {"zoo": "zoo build", "searchers": "meta-train", "rank": "rank", "finetune": "fine-tune", "report": "report"}


def bench_cmd(
    config: Annotated[Path | None, typer.Option("--config", help="Bench config JSON (default: benchmarks/bench/full.json).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output directory; a rerun resumes there (default: tans-bench[-quick]).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="The whole protocol on a tiny zoo in a few minutes (checks structure, not numbers).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Build the zoo, meta-train, let every method pick, fine-tune the pool, write report.md, results.json and plots."""
    from tans.bench import FULL_CONFIG, BenchConfig, quick_config, run_bench

    if quick and config is not None:
        raise TansError("Give --quick or --config, not both.")
    if quick:
        cfg = quick_config()
    else:
        path = config or FULL_CONFIG
        if config is None and not path.is_file():
            raise TansError(f"No --config given and {FULL_CONFIG} is not here; run from the repository root or pass --config FILE.")
        cfg = BenchConfig.from_file(path)
    out = out or Path("tans-bench-quick" if quick else "tans-bench")

    with event_bars(lambda event: {**bar_view(event), "name": _STAGES.get(event.stage, event.stage)}) as progress:
        run = run_bench(cfg, out, progress=progress)
    results = run.results
    if as_json:
        print_json(results)
        return
    E = str(cfg.epochs)
    rows = []
    for name, info in results["methods"].items():
        row = results["summary"][name]
        rows.append({"method": name, "acc 1 ep": _pct(row["1"]["acc"]), f"acc {E} ep": _pct(row[E]["acc"]),
                     f"regret {E} ep": row[E]["regret"], f"rel@3 {E} ep": row[E]["rel@3"],
                     "search s": row["search_seconds"]})
    oracle = results["summary"]["oracle"]
    rows.append({"method": "oracle", "acc 1 ep": _pct(oracle["1"]["acc"]), f"acc {E} ep": _pct(oracle[E]["acc"]),
                 f"regret {E} ep": 0.0, f"rel@3 {E} ep": 1.0})
    print_table(rows, ["method", "acc 1 ep", f"acc {E} ep", f"regret {E} ep", f"rel@3 {E} ep", "search s"],
                title=f"tans bench {cfg.name}: mean over {len(cfg.test_datasets)} test datasets x {len(cfg.budgets)} budgets")
    console.print(f"report: {run.files['report']} (results.json and plots beside it); "
                  f"total {results['timings']['total']:.0f} s")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"
