"""``tans demo``: the whole pipeline on built-in data, offline, in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tans.cli._output import console, print_json, print_table
from tans.cli._progress import progress_bar
from tans.cli.search import COLUMNS as SEARCH_COLUMNS


def demo(
    out: Annotated[Path, typer.Option("--out", help="Where models, plot and demo.json go.")] = Path("tans-demo"),
    workers: Annotated[int | None, typer.Option(help="Processes for the zoo build (default: every core).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Build a small zoo and searcher (once), find a network for a held-out dataset, fine-tune it vs scratch."""
    from tans.demo import DEMO_EPOCHS, DEMO_MAX_PARAMS, DEMO_TARGET, run_demo

    with progress_bar() as bar:
        jobs: dict[str, int] = {}

        def stage(text: str) -> None:
            if not as_json:
                bar.console.print(f"[bold]>[/] {text}")

        def job(name: str, total: int | None) -> int:
            if name not in jobs:
                jobs[name] = bar.add_task(name, total=total, status="")
            return jobs[name]

        def on_plan(todo: int, skipped: int) -> None:
            if todo:
                job("zoo build", todo)

        def on_unit(report, unit, failure) -> None:
            bar.update(job("zoo build", None), advance=1, status=unit.task)

        def on_transfer_plan(todo: int, skipped: int) -> None:
            if todo:
                job("transfer records", todo)

        def on_transfer(report, unit, failure) -> None:
            bar.update(job("transfer records", None), advance=1, status=unit.target)

        def on_fit(stage_name: str, done: int, total: int, log) -> None:
            tau = log.tau if log is not None else None
            bar.update(job(f"searcher {stage_name}", total), completed=done, total=total,
                       status=f"val tau {tau:.2f}" if tau is not None and tau == tau else "")

        def on_epoch(run: str, stats) -> None:
            bar.update(job(run, DEMO_EPOCHS), advance=1, status=f"val {stats.val_acc:.1%}")

        result = run_demo(out_dir=out, workers=workers, on_stage=stage, build_progress=on_unit, build_plan=on_plan,
                          transfer_progress=on_transfer, transfer_plan=on_transfer_plan, fit_progress=on_fit,
                          finetune_progress=on_epoch)
    if as_json:
        print_json(result.to_dict())
        return

    found, comp = result.search, result.comparison
    print_table([vars(r) for r in found.rows], SEARCH_COLUMNS,
                title=f"Best zoo models for {DEMO_TARGET} (held out), at most {DEMO_MAX_PARAMS:,} parameters")
    console.print(f"search: {found.seconds['total'] * 1000:.0f} ms over {found.candidates} candidates of "
                  f"{found.zoo_size} networks (stage 2 probed the top {found.probed}); predicted_acc is the expected "
                  "test accuracy after the records' recipe (1 epoch on 128 images)")
    rows = [{"epoch": i + 1, "fine-tuned val": f"{p.val_acc:.1%}", "from scratch val": f"{s.val_acc:.1%}"}
            for i, (p, s) in enumerate(zip(comp.pretrained.epochs, comp.scratch.epochs))]
    rows.append({"epoch": "test", "fine-tuned val": f"{comp.pretrained.test_acc:.1%}",
                 "from scratch val": f"{comp.scratch.test_acc:.1%}"})
    print_table(rows, ["epoch", "fine-tuned val", "from scratch val"],
                title=f"{found.rows[0].arch[:40]}... pretrained on {found.rows[0].task} vs the same architecture from scratch")
    console.print(
        f"test accuracy: fine-tuned {comp.pretrained.test_acc:.1%}, from scratch {comp.scratch.test_acc:.1%} "
        f"(gain {comp.gain * 100:+.1f} points; chance {comp.pretrained.chance:.1%}). Plot: {comp.curves}"
    )
    console.print(f"done in {result.seconds:.0f} s. Next: tans search {DEMO_TARGET} --max-params 100000, "
                  f"tans finetune {DEMO_TARGET} --model {found.rows[0].id}")
