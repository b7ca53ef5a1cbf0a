"""``tans predict``: the class and its probability for each image, with a model ``tans finetune`` wrote."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer

from tans._errors import TansError
from tans.cli._output import console, print_json, print_table
from tans.cli._progress import event_bars

COLUMNS = ["path", "label", "probability"]


def predict_cmd(
    model_dir: Annotated[Path, typer.Argument(help="Output directory of 'tans finetune' (holds model.json).")],
    images: Annotated[list[Path], typer.Argument(help="Image files, or folders searched at any depth.")],
    batch_size: Annotated[int, typer.Option(help="Images classified at once.")] = 64,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write path,label,index,probability rows to this CSV file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Classify IMAGES with the fine-tuned model in MODEL_DIR; unreadable files are skipped with a warning."""
    from tans.finetune.predict import Prediction, predict_files

    if as_json and csv_path is not None:
        raise TansError("Give --json or --csv FILE, not both.")
    with event_bars() as bars:
        bars.show("predict")
        predictions = predict_files(model_dir, images, batch_size=batch_size, progress=bars)
    rows = [p.to_dict() for p in predictions]
    if as_json:
        print_json(rows)
    elif csv_path is not None:
        try:
            with open(csv_path, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=list(Prediction.__dataclass_fields__))
                writer.writeheader()
                writer.writerows(rows)
        except OSError as exc:
            raise TansError(f"Cannot write {str(csv_path)!r}: {exc.strerror}; pass another --csv FILE.") from None
        console.print(f"wrote {len(rows)} predictions to {csv_path}")
    else:
        print_table(rows, COLUMNS)
