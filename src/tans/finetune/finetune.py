"""Fine-tune a zoo model on a new dataset, or train the same architecture from scratch.

Fine-tuning builds the entry's architecture, loads its (checksum-verified) weights, replaces the
classifier with a fresh one sized for the new classes and trains everything with
:func:`finetune_recipe`. Training the same architecture from random initialisation with the very
same recipe is the comparison ``tans finetune --scratch``, ``tans demo`` and ``tans bench`` report:
whatever the pretrained start gains is then due to the weights alone.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from tans._atomic import check_folder
from tans._errors import TansError
from tans.data.dataset import Dataset
from tans.data.transforms import WorkingFormat, to_working
from tans.finetune.export import OUTPUT_NAMES, save_finetuned
from tans.finetune.plots import plot_curves
from tans.finetune.result import Comparison, FinetuneResult
from tans.progress import Progress, prefixed
from tans.training.loop import default_device, train
from tans.training.recipe import Recipe
from tans.zoo.store import Zoo, open_zoo

__all__ = [
    "FinetuneResult",
    "Comparison",
    "finetune",
    "finetune_and_scratch",
    "finetune_recipe",
    "head_parameter_names",
    "DEFAULT_EPOCHS",
]

DEFAULT_EPOCHS = 5


def finetune_recipe(epochs: int | None = None, *, seed: int = 0) -> Recipe:
    """The recipe for fine-tuning on a small dataset, shared by ``tans finetune`` and ``tans bench``.

    Fine-tuning budgets here are short (1 to a few epochs), so the peak learning rate stays at the
    zoo's 4e-3 (AdamW): measured from a zoo entry trained on digits-0-4 and fine-tuned on
    digits-5-9, lowering it to 2e-3 or 1e-3 cost 7 and 12 points of test accuracy after one epoch
    (0.87 -> 0.80 -> 0.75) and 3 and 11 points after three, while the pretrained start kept its
    lead over training from scratch at every rate. What differs from the zoo's recipe: a one-epoch
    warm-up only when there are at least three epochs, so a one-epoch budget is spent at full rate
    (the new head starts near zero, so early steps cannot wreck the body); lighter weight decay
    (0.01 instead of 0.05), which would otherwise pull pretrained weights towards zero.
    Augmentation (2-pixel random crop, label smoothing 0.1, no flips) is the zoo's. Up to 4,000
    training and 2,000 evaluation images per split (class-balanced draws) keep an epoch to seconds
    on a CPU. Training from scratch for comparison uses this same recipe.

    Parameters
    ----------
    epochs : int or None
        Passes over the training split; at least 1. ``None``: :data:`DEFAULT_EPOCHS`.
    seed : int
        Data order and augmentation seed (also seeds the new classifier in :func:`finetune`).

    Returns
    -------
    Recipe

    Raises
    ------
    TansError
        If ``epochs`` is below 1.
    """
    epochs = DEFAULT_EPOCHS if epochs is None else epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise TansError(f"Fine-tuning needs at least 1 epoch, got {epochs!r}; pass --epochs 1 or more.")
    return Recipe(
        optimizer="adamw",
        lr=4e-3,
        weight_decay=0.01,
        epochs=epochs,
        warmup_epochs=1 if epochs >= 3 else 0,
        seed=seed,
        max_train_images=4000,
        max_eval_images=2000,
    )


def head_parameter_names(model: nn.Module) -> set[str]:
    """Names (in ``model.state_dict()``) of the classifier's tensors, found through ``get_classifier``."""
    head = model.get_classifier()
    ids = {id(t) for t in list(head.parameters()) + list(head.buffers())}
    named = dict(model.named_parameters()) | dict(model.named_buffers())
    return {name for name, t in named.items() if id(t) in ids}


def _arch_name(model: nn.Module) -> str:
    """The name :func:`~tans.space.registry.create_model` rebuilds ``model`` from, as far as known."""
    if getattr(model, "arch_name", None):
        return model.arch_name
    timm_arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    if timm_arch:
        from tans.space.registry import TIMM_PREFIX

        return TIMM_PREFIX + timm_arch
    return type(model).__name__


def _resolve_dataset(dataset: Dataset | str | os.PathLike[str]) -> Dataset:
    if isinstance(dataset, Dataset):
        return dataset
    from tans.data import load_dataset

    return load_dataset(str(dataset))


def finetune(
    dataset: Dataset | str | os.PathLike[str],
    *,
    zoo: Zoo | str | os.PathLike[str] | None = None,
    model_id: str | None = None,
    model: nn.Module | str | None = None,
    epochs: int = DEFAULT_EPOCHS,
    recipe: Recipe | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    from_scratch: bool = False,
    device: torch.device | str | None = None,
    working_format: WorkingFormat | None = None,
    seed: int = 0,
) -> FinetuneResult:
    """Fine-tune a zoo model (or train its architecture from scratch) on ``dataset``.

    Parameters
    ----------
    dataset : Dataset, str or path
        The new task (a built-in name or a path is loaded with :func:`tans.data.load_dataset`).
    zoo : Zoo, path or None
        The zoo holding ``model_id``; ``None`` uses the default zoo.
    model_id : str or None
        Zoo entry to start from. Give this or ``model``.
    model : nn.Module, str or None
        Instead of a zoo entry: a model in memory with timm's interface (its weights are the
        start; ``from_scratch`` is then not allowed), or an architecture name, trained from
        scratch.
    epochs : int
        Epochs of :func:`finetune_recipe`; ignored when ``recipe`` is given.
    recipe : Recipe or None
        A recipe of your own instead of :func:`finetune_recipe`.
    out_dir : path or None
        Where to write ``model.safetensors``, ``model.json`` and ``curves.png``; ``None`` writes
        nothing.
    progress : Progress or None
        Receives the events of :func:`~tans.training.loop.train`: stage ``"epoch"`` after each
        epoch, its :class:`~tans.training.loop.EpochStats` in ``extra["stats"]``.
    from_scratch : bool
        Train the entry's architecture from random initialisation with the same recipe.
    device : torch.device, str or None
        Defaults to CUDA when available, else the CPU.
    working_format : WorkingFormat or None
        Image size and channels the network sees; default the zoo's recorded format (32x32 RGB
        for a model given by ``model``).
    seed : int
        Seeds the new classifier (or the whole initialisation from scratch), data order and
        augmentation.

    Returns
    -------
    FinetuneResult

    Raises
    ------
    TansError
        For an unknown entry, a missing zoo, a bad epoch count, a dataset with a class short of
        images for the train/val/test split, or an ``out_dir`` that is a file or holds other files
        than a fine-tune's (checked before training).
    """
    start = time.perf_counter()
    if (model_id is None) == (model is None):
        raise TansError("finetune needs exactly one of model_id (a zoo entry) or model (a module or architecture name).")
    data = _resolve_dataset(dataset)
    data.check_splits()
    _check_out_dir(out_dir)
    recipe = recipe if recipe is not None else finetune_recipe(epochs, seed=seed)
    num_classes = data.num_classes

    source_task = None
    if model_id is not None:
        zoo = open_zoo(zoo)
        entry = zoo.get(model_id)
        working_format = working_format or zoo.working_format
        net = zoo.load_model(model_id, num_classes=num_classes, pretrained=not from_scratch, seed=seed)
        arch, source_task = entry.arch, entry.task
    elif isinstance(model, str):
        from tans.space.registry import create_model

        torch.manual_seed(seed)
        net, arch, from_scratch = create_model(model, num_classes=num_classes), model, True
    elif isinstance(model, nn.Module):
        if from_scratch:
            raise TansError(
                "from_scratch needs an architecture name or a zoo entry, not a model instance; "
                "pass model='<arch>'."
            )
        if not hasattr(model, "reset_classifier"):
            raise TansError(
                f"expected a model with timm's interface (reset_classifier), got {type(model).__name__}; "
                "build it with tans.space.registry.create_model."
            )
        net = model
        torch.manual_seed(seed)
        net.reset_classifier(num_classes)
        arch = _arch_name(model)
    else:
        raise TansError(f"expected model to be an nn.Module or an architecture name, got {type(model).__name__}.")

    fmt = working_format or WorkingFormat()
    working = to_working(data, fmt)
    report = train(net, working, recipe, device=device if device is not None else default_device(), progress=progress)
    net.to("cpu").eval()
    result = FinetuneResult(
        model_id=model_id,
        arch=arch,
        source_task=source_task,
        from_scratch=from_scratch,
        dataset=data.name,
        dataset_fingerprint=data.fingerprint,
        class_names=tuple(data.class_names),
        working_format=fmt,
        epochs=report.epochs,
        val_acc=report.val_acc,
        test_acc=report.test_acc,
        chance=report.chance,
        wall_seconds=time.perf_counter() - start,
        train=report,
        model=net,
    )
    if out_dir is not None:
        result = _write_outputs(result, Path(out_dir))
        result = replace(result, wall_seconds=time.perf_counter() - start)
    return result


def _check_out_dir(out_dir: str | os.PathLike[str] | None) -> None:
    """Refuse an output path that is a file, or a folder of other things, before any training."""
    if out_dir is not None:

        check_folder(out_dir, OUTPUT_NAMES)


def _write_outputs(result: FinetuneResult, out_dir: Path, *, curves: bool = True) -> FinetuneResult:
    paths = save_finetuned(result, out_dir)
    if curves:
        paths["curves"] = str(plot_curves([result], out_dir / "curves.png"))
    return replace(result, paths=paths)


def finetune_and_scratch(
    dataset: Dataset | str | os.PathLike[str],
    *,
    zoo: Zoo | str | os.PathLike[str] | None = None,
    model_id: str,
    epochs: int = DEFAULT_EPOCHS,
    recipe: Recipe | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    device: torch.device | str | None = None,
    working_format: WorkingFormat | None = None,
    seed: int = 0,
) -> Comparison:
    """Fine-tune ``model_id`` and train its architecture from scratch, same recipe and seed.

    With ``out_dir``, the fine-tuned model goes to ``out_dir`` and the from-scratch one to
    ``out_dir/scratch``; ``out_dir/curves.png`` shows both runs.

    Parameters
    ----------
    dataset, zoo, model_id, epochs, recipe, device, working_format, seed
        As in :func:`finetune`.
    out_dir : path or None
        Where to write both models and the joint plot.
    progress : Progress or None
        Receives :func:`finetune`'s events with the run in the stage: ``"fine-tuned/epoch"``, then
        ``"from scratch/epoch"``.

    Returns
    -------
    Comparison
    """

    data = _resolve_dataset(dataset)
    _check_out_dir(out_dir)
    zoo = open_zoo(zoo)
    runs = []
    for scratch in (False, True):
        label = "from scratch" if scratch else "fine-tuned"
        run = finetune(
            data,
            zoo=zoo,
            model_id=model_id,
            epochs=epochs,
            recipe=recipe,
            progress=prefixed(progress, label),
            from_scratch=scratch,
            device=device,
            working_format=working_format,
            seed=seed,
        )
        if out_dir is not None:
            run = _write_outputs(run, Path(out_dir) / ("scratch" if scratch else ""), curves=False)
        runs.append(run)
    curves = None
    if out_dir is not None:
        curves = str(plot_curves(runs, Path(out_dir) / "curves.png"))
        runs[0] = replace(runs[0], paths={**runs[0].paths, "curves": curves})
    return Comparison(pretrained=runs[0], scratch=runs[1], curves=curves)
