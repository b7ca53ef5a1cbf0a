"""The package-root API: search the default zoo, load a zoo model, fine-tune one, in three lines.

Each function opens the default zoo and searcher (``$TANS_HOME/zoo``, ``$TANS_HOME/searcher``, which
``tans demo`` makes) unless given others, and is what the commands ``tans search`` and ``tans
finetune`` call. Heavy libraries (torch, faiss, SciPy) load when a function runs, not on ``import
tans``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Unpack

from tans._errors import TansError, TansWarning

if TYPE_CHECKING:
    from torch import nn

    from tans.data import Dataset
    from tans.finetune import FinetunedModel, FinetuneResult
    from tans.searcher import Searcher, SearchResult
    from tans.searcher.searcher import SearchOptions
    from tans.training.recipe import Recipe
    from tans.zoo import Zoo

__all__ = ["add_record", "default_out_dir", "finetune", "load_model", "open_searcher", "search", "warn_if_at_chance"]

PathLike = str | os.PathLike[str]


def open_searcher(path: PathLike | None = None, *, zoo: Zoo) -> Searcher:
    """The searcher artifact at ``path`` (``None``: the default one), or how to make one.

    Raises
    ------
    TansError
        When there is no searcher artifact at that place.
    """
    from tans.paths import default_searcher_path
    from tans.searcher import Searcher
    from tans.searcher.artifact import is_artifact

    path = path if path is not None else default_searcher_path()  # a folder or an fsspec URL
    if not is_artifact(path):
        raise TansError(
            f"No searcher at '{path}'; train one with 'tans meta-train --zoo {zoo.path} --out {path}' "
            "or run 'tans demo'."
        )
    return Searcher.load(path)


def search(
    dataset: Dataset | PathLike,
    *,
    zoo: Zoo | PathLike | None = None,
    searcher: Searcher | PathLike | None = None,
    **options: Unpack[SearchOptions],
) -> SearchResult:
    """The zoo models that should do best on ``dataset`` after fine-tuning, within a budget.

    Parameters
    ----------
    dataset : Dataset, str or path
        A built-in task name (``tans data list``), an ImageFolder directory, ``.zip``, ``.npz`` or
        IDX file, or a loaded :class:`tans.Dataset`.
    zoo : Zoo, path or None
        The zoo to search; ``None``: the default zoo.
    searcher : Searcher, path or None
        A fitted searcher or its artifact directory (or fsspec URL); ``None``: the default searcher.
    **options
        The budget (``max_params``, ``max_flops``, ``max_latency_ms`` or ``constraints``),
        ``top_k``, ``fast`` (stage 1 only), ``shortlist``, ``probe_k``, ``finetune_budget`` (stage 3)
        and ``progress``, as :meth:`tans.Searcher.search` takes them.

    Returns
    -------
    SearchResult
        ``.rows`` best first; ``.best.id`` is what :func:`load_model` and :func:`finetune` take.

    Raises
    ------
    TansError
        When the zoo or searcher is missing, the dataset cannot be loaded, or nothing fits the budget.

    Examples
    --------
    >>> import tans
    >>> found = tans.search("glyphs-tamil-p1", max_params=100_000, top_k=3)
    >>> [(row.id, round(row.predicted_acc, 2)) for row in found.rows]  # doctest: +SKIP
    """
    from tans.searcher import Searcher
    from tans.zoo import open_zoo

    store = open_zoo(zoo)
    model = searcher if isinstance(searcher, Searcher) else open_searcher(searcher, zoo=store)
    return model.search(dataset, zoo=store, **options)


def load_model(model_id: str, *, zoo: Zoo | PathLike | None = None) -> nn.Module:
    """A zoo entry as a plain PyTorch module with its trained weights (sha256-checked).

    The network takes float32 ``(batch, 3, 32, 32)`` input (the zoo's working size, see
    ``Zoo.working_format``), normalised as ``(pixel / 255 - 0.5) / 0.25``, and returns the logits
    of its source task's classes. ``reset_classifier(n)`` gives it a new head of ``n`` classes.

    Parameters
    ----------
    model_id : str
        Zoo entry id (``tans zoo list``, or ``tans.search(...).best.id``).
    zoo : Zoo, path or None
        The zoo holding it; ``None``: the default zoo.

    Returns
    -------
    torch.nn.Module
        On the CPU, in eval mode.

    Raises
    ------
    TansError
        For an unknown id (close ids suggested), a missing zoo, or modified weights.

    Examples
    --------
    >>> import torch, tans
    >>> net = tans.load_model("3f9c2a1b")  # doctest: +SKIP
    >>> net(torch.zeros(1, 3, 32, 32)).shape  # doctest: +SKIP
    torch.Size([1, 5])
    """
    from tans.zoo import open_zoo

    return open_zoo(zoo).load_model(model_id).eval()


def finetune(
    dataset: Dataset | PathLike,
    *,
    model: str,
    zoo: Zoo | PathLike | None = None,
    epochs: int | None = None,
    out_dir: PathLike | None = None,
    seed: int = 0,
    record: bool = True,
) -> FinetunedModel:
    """Fine-tune zoo entry ``model`` on ``dataset`` and save it, as ``tans finetune`` does.

    Parameters
    ----------
    dataset : Dataset, str or path
        The new task: a built-in task name, a dataset path, or a loaded :class:`tans.Dataset`.
    model : str
        Zoo entry id to start from.
    zoo : Zoo, path or None
        The zoo holding it; ``None``: the default zoo.
    epochs : int or None
        Training epochs of :func:`tans.finetune.finetune_recipe`; ``None``: its default.
    out_dir : path or None
        Where ``model.safetensors``, ``model.json`` and ``curves.png`` go; ``None``:
        ``finetuned/<dataset>-<model>`` under the current directory. ``tans predict`` reads it.
    seed : int
        Seed of the new head, data order and augmentation.
    record : bool
        Add the result to the zoo as a transfer record (the searcher learns from them).

    Returns
    -------
    FinetunedModel
        ``.predict(images)`` (label indices into ``.meta.class_names``), ``.export_onnx(path)``;
        ``.meta.results`` holds the accuracies.

    Raises
    ------
    TansError
        For an unknown entry, a missing zoo, a bad epoch count or a dataset too small to train.

    Warns
    -----
    TansWarning
        When the test accuracy is at or below chance.

    Examples
    --------
    >>> import tans
    >>> tuned = tans.finetune("glyphs-tamil-p1", model="3f9c2a1b", epochs=3)  # doctest: +SKIP
    >>> tuned.meta.results["test_acc"], tuned.export_onnx("model.onnx")  # doctest: +SKIP
    """
    from tans.data import load_dataset
    from tans.finetune import finetune as run_finetune
    from tans.finetune import finetune_recipe, load_finetuned
    from tans.zoo import open_zoo

    recipe = finetune_recipe(epochs, seed=seed)  # checks epochs before any loading
    store = open_zoo(zoo)
    entry = store.get(model)
    data = dataset if not isinstance(dataset, (str, os.PathLike)) else load_dataset(str(dataset))
    out = Path(out_dir) if out_dir is not None else default_out_dir(data.name, entry.id)
    result = run_finetune(data, zoo=store, model_id=entry.id, recipe=recipe, out_dir=out, seed=seed)
    warn_if_at_chance(result)
    if record:
        add_record(store, data, result, recipe)
    return load_finetuned(out)


def add_record(store: Zoo, data: Dataset, result: FinetuneResult, recipe: Recipe) -> str:
    """Add ``result`` (a fine-tune of a zoo model with ``recipe``) to ``store`` as a transfer record; returns its id."""
    from tans.zoo.records import TaskRef, task_source
    from tans.zoo.transfer import record_from_finetune

    store.register_task(TaskRef(data.name, data.fingerprint, data.family, task_source(data), data.num_classes))
    made = record_from_finetune(result, recipe, family=data.family, origin="finetune")
    store.add_transfer(made)
    return made.id


def default_out_dir(dataset_name: str, model_id: str) -> Path:
    """``finetuned/<dataset>-<model>``: where a fine-tuned model goes when no directory is given."""
    text = f"{dataset_name}-{model_id}"
    slug = "".join(c if c.isalnum() or c in "._-" else "_" for c in text).strip("._")
    if not slug:
        raise TansError(f"cannot make an output directory name from {text!r}; pass --out DIR.")
    return Path("finetuned") / slug


def warn_if_at_chance(result: FinetuneResult) -> None:
    """A :class:`TansWarning` when ``result``'s test accuracy is at or below chance."""
    if result.test_acc <= result.chance:
        warnings.warn(
            f"the {result.label} model's test accuracy {result.test_acc:.1%} is at or below chance "
            f"({result.chance:.1%} for {len(result.class_names)} classes): it learned nothing usable; "
            "train more epochs, check the labels, or pick another model.",
            TansWarning,
            stacklevel=2,
        )
