"""``tans demo``: the whole pipeline on built-in data, offline, in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tans.cli._output import console, print_json, print_table
from tans.cli._progress import bar_view, event_bars
from tans.cli.search import COLUMNS as SEARCH_COLUMNS


def demo(
    out: Annotated[Path, typer.Option("--out", help="Where models, plot and demo.json go.")] = Path("tans-demo"),
    workers: Annotated[int | None, typer.Option(help="Processes for the zoo build (default: every core).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Build a small zoo and searcher (once), find a network for a held-out dataset, fine-tune it vs scratch."""
    from tans.demo import DEMO_MAX_PARAMS, DEMO_TARGET, run_demo

    bars_of = {"zoo": "zoo build", "records": "transfer records"}

    def view(event) -> dict | None:  # "<step>/<stage>": the events of the step's function
        step, _, stage = event.stage.partition("/")
        shown = bar_view(event)
        if step in bars_of:
            if stage == "plan" and not event.total:
                return None  # no bar for nothing to do
            return {**shown, "name": bars_of[step], "status": "" if stage == "plan" else event.message}
        if step == "searcher":
            log = event.extra.get("log")
            return {**shown, "name": f"searcher {stage}",
                    "status": f"val tau {log.tau:.2f}" if log is not None and log.tau == log.tau else ""}
        if step == "compare":  # stage: "<run>/epoch", the run fine-tuned or from scratch
            return {**shown, "name": stage.partition("/")[0], "status": f"val {event.extra['stats'].val_acc:.1%}"}
        return None

    with event_bars(view) as bars:

        def progress(event) -> None:
            if event.stage != "step":
                bars(event)
            elif not as_json:
                bars.bar.console.print(f"[bold]>[/] {event.message}")

        result = run_demo(out_dir=out, workers=workers, progress=progress)
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
    gains = [g * 100 for g in result.gains]
    console.print(f"gain over {len(gains)} seeds: {sum(gains) / len(gains):+.1f} points on average "
                  f"(per seed: {', '.join(f'{g:+.1f}' for g in gains)})")
    console.print(f"done in {result.seconds:.0f} s. Next: tans search {DEMO_TARGET} --max-params 100000, "
                  f"tans finetune {DEMO_TARGET} --model {found.rows[0].id}")
