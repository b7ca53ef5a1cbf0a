"""What a benchmark run does: the zoo, the held-out test datasets, budgets, seeds and epochs.

A config is a committed JSON file (``benchmarks/bench/full.json``) read by
:meth:`BenchConfig.from_file`; :func:`quick_config` is the tiny one behind ``tans bench --quick``.
Everything that decides a number in the report is here, so a report names the config it came from
and nothing is tuned on the test datasets at run time.

Parameter budgets are absolute parameter counts (``120000``), ``null`` (no budget) or a
percentile of the zoo's parameter counts (``"p50"``): percentiles depend on the zoo only, never on
the test datasets, and keep a config valid for a zoo of any size.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tans._config import check_keys, read_config_file
from tans._errors import TansError, did_you_mean
from tans.zoo.build import BuildConfig
from tans.zoo.transfer import TransferConfig

__all__ = ["BenchConfig", "quick_config", "resolve_budget", "FULL_CONFIG"]

#: The committed full benchmark, relative to the repository root.
FULL_CONFIG = Path("benchmarks/bench/full.json")


@dataclass(frozen=True)
class BenchConfig:
    """Settings of one benchmark run.

    Parameters
    ----------
    name : str
        Label written into the report.
    zoo : BuildConfig
        The zoo to build (resumable; built into ``zoo_dir``).
    transfer : TransferConfig
        The zoo's transfer records (resumable; the searchers learn from them). The test datasets
        and their families are added to its ``exclude`` and are never targets.
    zoo_dir : str or None
        Where the zoo lives; ``None``: ``<out>/zoo``. A relative path is relative to the output
        directory.
    test_datasets : tuple of str
        Built-in task names (or paths) whose families never appear in the zoo.
    budgets : tuple
        Parameter budgets: int, ``None`` (no budget) or ``"pNN"`` (percentile of the zoo).
    seeds : tuple of int
        Fine-tuning seeds; every accuracy is a mean over them.
    epochs : int
        The longer fine-tuning budget E (the shorter is always 1 epoch).
    scratch_epochs : int
        Epochs of the from-scratch run whose final accuracy is the target of "epochs to reach".
    pool_top_k : int
        Every method's top-k enters the candidate pool.
    pool_random : int
        Extra random candidates in the pool of each test dataset (spread over the budgets).
    random_draws : int
        Draws of the random-choice baseline (its accuracy is their mean).
    max_train_images, max_eval_images : int
        Caps of :func:`tans.finetune.finetune_recipe` for every fine-tune of the run (same for
        every method).
    logme_per_class : int
        Images per class LogME sees.
    finetune_budget : float
        Seconds the 'searcher-stage3' method's stage 3 may fine-tune for, per search (charged to it).
    searcher : dict
        Keyword arguments of :class:`tans.searcher.Searcher` for the main searcher; the ablations
        change one of them each.
    methods : tuple of str
        Methods to compare (default: every registered one, see :func:`tans.bench.list_methods`).
    seed : int
        Seeds the random candidates and random draws.
    workers : int or None
        Processes for the zoo build and the fine-tunes (default: every core).
    """

    # what
    name: str
    zoo: BuildConfig
    test_datasets: tuple[str, ...]
    budgets: tuple[int | str | None, ...]
    transfer: TransferConfig = field(default_factory=TransferConfig)
    zoo_dir: str | None = None
    # fine-tuning budget
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 2
    scratch_epochs: int = 8
    max_train_images: int = 256
    max_eval_images: int = 256
    # candidate pool and baselines
    pool_top_k: int = 5
    pool_random: int = 30
    random_draws: int = 5
    logme_per_class: int = 20
    finetune_budget: float = 30.0
    searcher: dict[str, Any] = field(default_factory=dict)
    methods: tuple[str, ...] = ()
    # reproducibility and resources
    seed: int = 0
    workers: int | None = None

    def __post_init__(self) -> None:
        for name in ("test_datasets", "budgets", "seeds", "methods"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if isinstance(self.zoo, dict):
            object.__setattr__(self, "zoo", BuildConfig.from_dict(self.zoo, where="bench config 'zoo'"))
        if isinstance(self.transfer, dict):
            object.__setattr__(self, "transfer", TransferConfig.from_dict(self.transfer, where="bench config 'transfer'"))
        if not self.test_datasets:
            raise TansError("A bench config needs at least one test dataset in 'test_datasets'.")
        if not self.budgets:
            raise TansError("A bench config needs at least one budget in 'budgets' (null means no budget).")
        for budget in self.budgets:
            _check_budget(budget)
        checks = [
            ("seeds", len(self.seeds) >= 1, "a non-empty list"),
            ("epochs", self.epochs >= 1, "at least 1"),
            ("scratch_epochs", self.scratch_epochs >= 1, "at least 1"),
            ("pool_top_k", self.pool_top_k >= 3, "at least 3 (rel@3 needs the top 3)"),
            ("pool_random", self.pool_random >= 0, "zero or more"),
            ("random_draws", self.random_draws >= 1, "at least 1"),
            ("max_train_images", self.max_train_images >= 16, "at least 16"),
            ("max_eval_images", self.max_eval_images >= 8, "at least 8"),
            ("logme_per_class", self.logme_per_class >= 2, "at least 2"),
            ("finetune_budget", self.finetune_budget > 0, "a positive number of seconds"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise TansError(f"bench config '{name}' must be {expected}, got {getattr(self, name)!r}.")
        if self.methods:
            from tans.bench.methods import list_methods

            known = list_methods()
            for method in self.methods:
                if method not in known:
                    raise TansError(
                        f"Unknown method '{method}' in bench config; expected some of {', '.join(known)}."
                        f"{did_you_mean(method, known)}"
                    )

    # ------------------------------------------------------------------ derived
    def method_names(self) -> tuple[str, ...]:
        """The methods to run, in registry order."""
        from tans.bench.methods import list_methods

        return tuple(m for m in list_methods() if not self.methods or m in self.methods)

    def zoo_path(self, out_dir: str | os.PathLike[str]) -> Path:
        """The zoo directory for an output directory."""
        if self.zoo_dir is None:
            return Path(out_dir) / "zoo"
        path = Path(self.zoo_dir).expanduser()
        return path if path.is_absolute() else Path(out_dir) / path

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["zoo"] = self.zoo.to_dict()
        values["transfer"] = self.transfer.to_dict()
        for name in ("test_datasets", "budgets", "seeds", "methods"):
            values[name] = list(values[name])
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, where: str = "bench config", base: Path | None = None) -> BenchConfig:
        """A config from plain values; ``zoo`` and ``transfer`` may be dicts or paths of their config files.

        Parameters
        ----------
        values : dict
            Fields of this class (a ``comment`` key is ignored).
        where : str
            Named in error messages.
        base : Path or None
            Directory a relative ``zoo`` or ``transfer`` config path is resolved against.

        Raises
        ------
        TansError
            For unknown keys, missing required keys or invalid values.
        """
        values = check_keys(cls, values, where)
        missing = [k for k in ("name", "zoo", "test_datasets", "budgets") if k not in values]
        if missing:
            raise TansError(f"{where} is missing '{missing[0]}'; see benchmarks/bench/full.json for an example.")
        for key, kind in (("zoo", BuildConfig), ("transfer", TransferConfig)):
            if isinstance(values.get(key), str):
                file = Path(values[key])
                values[key] = kind.from_file(file if file.is_absolute() or base is None else base / file)
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> BenchConfig:
        """Read a JSON config; a ``zoo`` path inside it is relative to the file's directory.

        Raises
        ------
        TansError
            If the file is missing, not JSON, or holds invalid settings.
        """
        path = Path(path)
        values = read_config_file(path, what="Bench config", example=str(FULL_CONFIG))
        return cls.from_dict(values, where=str(path), base=path.parent)


_PERCENTILE = re.compile(r"^p(\d{1,3})$")  # a budget as a percentile of the zoo's parameter counts


def _check_budget(budget: Any) -> None:
    if budget is None:
        return
    if isinstance(budget, str):
        match = _PERCENTILE.match(budget)
        if match and 1 <= int(match.group(1)) <= 100:
            return
    elif isinstance(budget, int) and not isinstance(budget, bool) and budget > 0:
        return
    raise TansError(
        f"A budget must be a positive parameter count, null or a zoo percentile such as \"p50\", got {budget!r}."
    )


def resolve_budget(budget: int | str | None, params: np.ndarray) -> int | None:
    """The parameter limit of a budget spec for a zoo whose entries have ``params``.

    Parameters
    ----------
    budget : int, str or None
        A parameter count, ``"pNN"`` or ``None``.
    params : np.ndarray
        ``(n,)`` parameter counts of the zoo's entries.

    Returns
    -------
    int or None
        ``None`` means no limit. A percentile is rounded up to an existing entry's count, so at
        least one entry always fits.
    """
    _check_budget(budget)
    if budget is None or isinstance(budget, int):
        return budget
    q = int(budget[1:])
    values = np.sort(np.asarray(params, dtype=np.int64))
    if values.size == 0:
        raise TansError("The zoo is empty; a percentile budget needs at least one entry.")
    return int(values[max(int(np.ceil(q / 100 * values.size)) - 1, 0)])


def quick_config() -> BenchConfig:
    """The tiny benchmark of ``tans bench --quick``: the whole protocol in a few minutes.

    A 4-task zoo of digits and emoji with transfer records of 6 models on 5 other digit and emoji
    tasks, two icon datasets held out (a family neither the zoo nor its records saw), two budgets,
    one seed and short fine-tunes. Its numbers mean little; it checks that every part runs and that
    the report has its full structure.
    """
    from tans.training.recipe import Recipe

    zoo = BuildConfig(
        tasks=("digits-0-4", "digits-5-9", "emoji-activities", "emoji-food-drink"),
        num_archs=6,
        archs_per_task=3,
        recipe=Recipe(epochs=1, warmup_epochs=0, max_train_images=192, max_eval_images=128),
        latency_repeats=3,
    )
    return BenchConfig(
        name="quick",
        zoo=zoo,
        transfer=TransferConfig(
            targets=("mnist-0-4", "mnist-5-9", "emoji-objects", "emoji-animals-nature", "emoji-symbols"),
            models=6,
            max_train_images=96,
            max_eval_images=96,
        ),
        test_datasets=("icons-contexts-tango", "icons-contexts-elementary-xfce"),
        budgets=("p50", None),
        seeds=(0,),
        epochs=2,
        scratch_epochs=4,
        max_train_images=96,
        max_eval_images=96,
        pool_top_k=3,
        pool_random=2,
        random_draws=3,
        logme_per_class=8,
        finetune_budget=4.0,
        searcher={
            "epochs": 2,
            "steps_per_epoch": 5,
            "batch_targets": 4,
            "per_class": 5,
            "pool_per_class": 10,
            "extractor_epochs": 1,
            "val_fraction": 0.25,
        },
    )
