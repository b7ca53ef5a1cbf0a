"""``tans finetune``: fine-tune a zoo model on a dataset, optionally next to the same architecture from scratch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tans.cli._output import console, print_json, print_table
from tans.cli._progress import event_bars


def finetune_cmd(
    dataset: Annotated[str, typer.Argument(help="Built-in task name or dataset path (ImageFolder, .zip, .npz, IDX).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Zoo entry id to start from (see 'tans search' or 'tans zoo list').")],
    zoo: Annotated[Path | None, typer.Option("--zoo", help="Zoo directory (default: the one 'tans demo' builds).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", "-e", help="Training epochs (default: the fine-tuning recipe's).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output directory (default: finetuned/<dataset>-<model>).")] = None,
    onnx: Annotated[bool, typer.Option("--onnx", help="Also export the fine-tuned model as model.onnx.")] = False,
    scratch: Annotated[bool, typer.Option("--scratch", help="Also train the same architecture from scratch, same recipe, for comparison.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the new head, data order and augmentation.")] = 0,
    record: Annotated[bool, typer.Option("--record/--no-record", help="Add the result to the zoo as a transfer record (the searcher learns from them).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Give a zoo model a new head for DATASET's classes and train it; save weights, metadata and curves."""
    from tans._api import add_record, default_out_dir, warn_if_at_chance
    from tans.data import load_dataset
    from tans.finetune import finetune, finetune_and_scratch, finetune_recipe
    from tans.zoo import open_zoo

    recipe = finetune_recipe(epochs, seed=seed)  # checks --epochs before any loading
    epochs = recipe.epochs
    if onnx:
        from tans.finetune.export import check_exporter

        check_exporter()  # the onnx package (tans[onnx]) before training, not after
    store = open_zoo(zoo)
    entry = store.get(model)
    data = load_dataset(dataset)
    out_dir = out or default_out_dir(data.name, entry.id)

    runs = 2 if scratch else 1

    def view(event) -> dict:  # "epoch" of finetune, "<run>/epoch" of finetune_and_scratch: one bar over both runs
        run = event.stage.rpartition("/")[0] or "fine-tuned"
        stats = event.extra["stats"]
        return {"name": "fine-tune", "completed": event.done + (epochs if run == "from scratch" else 0),
                "status": f"{run} epoch {stats.epoch + 1}: val {stats.val_acc:.1%}"}

    with event_bars(view) as bars:
        bars.show("fine-tune", total=epochs * runs)

        if scratch:
            comparison = finetune_and_scratch(data, zoo=store, model_id=entry.id, recipe=recipe, out_dir=out_dir,
                                              progress=bars, seed=seed)
            results = [comparison.pretrained, comparison.scratch]
        else:
            results = [finetune(data, zoo=store, model_id=entry.id, recipe=recipe, out_dir=out_dir,
                                progress=bars, seed=seed)]
            comparison = None
        if onnx:
            from tans.finetune import export_onnx

            bars.show("fine-tune", status="exporting ONNX")
            path = export_onnx(results[0].model, out_dir / "model.onnx", input_size=results[0].working_format.size)
            results[0].paths["onnx"] = str(path)  # the same dict the comparison reports

    warn_if_at_chance(results[0])
    record_id = add_record(store, data, results[0], recipe) if record else None

    if as_json:
        payload = comparison.to_dict() if comparison is not None else results[0].to_dict()
        payload["transfer_record"] = record_id
        print_json(payload)
        return

    rows = []
    for i in range(epochs):
        row = {"epoch": i + 1, "lr": results[0].epochs[i].lr}
        for run in results:
            row[f"{run.label} train"] = f"{run.epochs[i].train_acc:.1%}"
            row[f"{run.label} val"] = f"{run.epochs[i].val_acc:.1%}"
        rows.append(row)
    columns = ["epoch", "lr"] + [f"{run.label} {k}" for run in results for k in ("train", "val")]
    print_table(rows, columns, title=f"{data.name}: {entry.arch} (zoo entry {entry.id}, trained on {entry.task})")
    for run in results:
        console.print(f"{run.label}: test accuracy [bold]{run.test_acc:.1%}[/] vs chance {run.chance:.1%} "
                      f"({run.train.test_images} test images, {run.wall_seconds:.1f} s on {run.train.device})")
    if comparison is not None:
        match = comparison.epochs_to_match
        reach = (f"reaches the from-scratch final val accuracy at epoch {match}" if match
                 else "does not reach the from-scratch final val accuracy")
        console.print(f"gain from the pretrained start: {comparison.gain * 100:+.1f} points; fine-tuned {reach}.")
    for name, path in results[0].paths.items():
        console.print(f"{name}: {path}")
    if comparison is not None:
        console.print(f"from-scratch model: {Path(comparison.scratch.paths['weights']).parent}")
    if record_id is not None:
        console.print(f"added to the zoo as transfer record {record_id} ('tans meta-train' learns from it; --no-record skips)")
