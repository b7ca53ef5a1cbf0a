"""Classify image files with a fine-tuned model: the class and its probability, per image.

Files are decoded with :func:`tans.data.images.read_image` (any size and mode), resized to the
model's working format one at a time and classified in batches, so a folder of large photos never
sits in memory at once. Unreadable files are skipped and counted in one warning.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tans._errors import TansError
from tans.data.images import UnreadableImageError, read_image
from tans.data.loaders.folder import _warn_skipped, files_under
from tans.data.transforms import resize_images
from tans.finetune.export import FinetunedModel, load_finetuned
from tans.progress import Progress, emit

__all__ = ["Prediction", "image_files", "predict_files"]


@dataclass(frozen=True)
class Prediction:
    """The most probable class of one image file."""

    path: str
    label: str  # class name
    index: int  # position of ``label`` in the model's class_names
    probability: float  # softmax probability of that class

    def to_dict(self) -> dict:
        return asdict(self)


def image_files(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The files named in ``inputs`` and every file under the folders named, in natural order.

    Hidden files and OS clutter inside folders are left out; whether a file is an image is decided
    when it is decoded.

    Raises
    ------
    TansError
        When an input does not exist.
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            files += files_under(path)
        elif path.exists():
            files.append(path)
        else:
            raise TansError(f"No such file or directory: {str(path)!r}; pass image files or folders of them.")
    return files


def predict_files(
    model: FinetunedModel | str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]],
    *,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> list[Prediction]:
    """The most probable class of each readable image among ``inputs`` (files or folders).

    Parameters
    ----------
    model : FinetunedModel or path
        A fine-tuned model, or the directory ``tans finetune`` wrote it to.
    inputs : sequence of paths
        Image files and folders of them (searched at any depth).
    batch_size : int
        Images classified at once.
    progress : Progress or None
        Receives a :class:`~tans.progress.ProgressEvent` of stage ``"predict"`` after each batch
        (``done`` files handled of ``total``).

    Returns
    -------
    list of Prediction
        In the order of the files; unreadable files are left out.

    Raises
    ------
    TansError
        When the model directory is not valid, an input does not exist, or no file is a readable image.

    Warns
    -----
    TansWarning
        Once, counting the unreadable files that were skipped.

    Examples
    --------
    >>> from tans.finetune.predict import predict_files
    >>> for p in predict_files("finetuned/my-model", ["photos/"]):  # doctest: +SKIP
    ...     print(p.path, p.label, round(p.probability, 2))
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise TansError(f"batch_size must be a positive integer, got {batch_size!r}.")
    model = model if isinstance(model, FinetunedModel) else load_finetuned(model)
    fmt = model.meta.working_format
    files = image_files(inputs)
    out: list[Prediction] = []
    skipped: Counter = Counter()
    first_bad: Path | None = None
    for start in range(0, len(files), batch_size):
        chunk, images = files[start : start + batch_size], []
        for path in chunk:
            try:
                image = read_image(path)
            except UnreadableImageError as exc:
                skipped[exc.reason] += 1
                first_bad = first_bad or path
                continue
            images.append((path, resize_images(image[None], fmt.size, fmt.channels)[0]))
        if images:
            probs = _softmax(model.logits(np.stack([image for _, image in images])))  # (batch, num_classes)
            for (path, _), row in zip(images, probs, strict=True):
                best = int(row.argmax())
                out.append(Prediction(str(path), model.meta.class_names[best], best, float(row[best])))
        emit(progress, "predict", start + len(chunk), len(files))
    if skipped:
        _warn_skipped(Path(os.path.commonpath([f.parent for f in files])), skipped, first_bad)
    if not out:
        raise TansError(
            f"none of the {len(files)} file(s) given is a readable image; expected PNG, JPEG, GIF, BMP, TIFF or WebP files."
        )
    return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)
