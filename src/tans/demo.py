"""The end-to-end demonstration behind ``tans demo``: zoo, transfer records, searcher, search, fine-tune, compare.

Everything runs offline on the built-in data. The zoo (with its transfer records) and the searcher
are built once into the default locations (``~/.cache/tans/zoo`` and ``~/.cache/tans/searcher``)
and reused by later runs and by ``tans search`` / ``tans finetune``. The target dataset comes from
a family that neither the zoo nor its records ever saw (Indic scripts), so the search is a real
transfer, not a look-up.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tans._atomic import write_bytes
from tans._json import dumps
from tans.errors import TansError
from tans.finetune import Comparison, finetune_and_scratch, finetune_recipe
from tans.paths import default_searcher_path, default_zoo_dir
from tans.progress import Progress, emit, prefixed
from tans.searcher import Searcher, SearchResult
from tans.searcher.artifact import is_artifact
from tans.training.recipe import Recipe
from tans.zoo import Constraints, Zoo
from tans.zoo.build import BuildConfig, BuildReport, build_zoo
from tans.zoo.transfer import TransferConfig, TransferReport, run_transfers

__all__ = ["DEMO_ZOO", "DEMO_TRANSFER", "DEMO_TARGET", "DEMO_MAX_PARAMS", "DEMO_SEEDS", "DemoResult", "run_demo"]

log = logging.getLogger("tans.demo")

# A small zoo over 6 families (12 tasks x 6 of 12 architectures = 72 networks): minutes on 2 cores.
DEMO_ZOO = BuildConfig(
    tasks=(
        "digits-0-4", "digits-5-9", "mnist-even",
        "emoji-animals-nature", "emoji-food-drink", "emoji-symbols",
        "glyphs-latin-upper-p1", "glyphs-greek-lower-p2", "glyphs-cyrillic-upper-p1", "glyphs-runic-p1",
        "glyphs-hebrew-p1", "glyphs-georgian-p2",
    ),
    num_archs=12,
    archs_per_task=6,
    recipe=Recipe(epochs=3, warmup_epochs=1, max_train_images=512, max_eval_images=300),
    latency_repeats=10,
)
# Transfer records: 24 of the 72 networks fine-tuned for one epoch on 21 other tasks of the zoo's
# families (never an Indic script): about 500 short fine-tunes, a couple of minutes on 2 cores.
DEMO_TRANSFER = TransferConfig(
    targets=(
        "mnist-0-4", "mnist-5-9", "mnist-odd",
        "emoji-smileys-emotion", "emoji-travel-places", "emoji-objects-google", "emoji-people-body-twitter",
        "emoji-activities",
        "glyphs-latin-upper-p2", "glyphs-latin-lower-p1", "glyphs-greek-upper-p1", "glyphs-cyrillic-lower-p1",
        "glyphs-runic-p2", "glyphs-gothic-p1", "glyphs-ogham-p1",
        "glyphs-hebrew-p2", "glyphs-arabic-p1", "glyphs-syriac-p1", "glyphs-armenian-upper-p1", "glyphs-georgian-p3",
        "glyphs-phoenician-p1",
    ),
    models=24,
    epochs=1,
    max_train_images=128,
    max_eval_images=128,
)
# Searcher settings: none, the defaults of Searcher; tests shrink them.
DEMO_SEARCHER: dict[str, Any] = {}
# Held out: no Indic script is in the demo zoo (nor in the benchmark zoo).
DEMO_TARGET = "glyphs-bengali-p1"
DEMO_MAX_PARAMS = 200_000
DEMO_EPOCHS = 3
# A small new dataset, where a pretrained start matters most (and the comparison takes seconds).
DEMO_TRAIN_IMAGES = 250
# One seed's gain over scratch is noise (at 1,000 images one seed gave +0.4 points, two others +11.0
# and +8.5): the demo compares on several and reports each.
DEMO_SEEDS = 3


@dataclass
class DemoResult:
    """What the demo did, for printing or JSON."""

    zoo: str
    searcher: str
    build: BuildReport | None  # None when the zoo was complete already
    transfers: TransferReport | None  # None when every record was there already
    fitted: bool  # False when a cached searcher was loaded
    search: SearchResult
    comparison: Comparison  # seed 0, the one written to the output folder
    gains: list[float]  # fine-tuned minus from-scratch test accuracy, one per seed (0, 1, ...)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "zoo": self.zoo,
            "searcher": self.searcher,
            "zoo_build": self.build.to_dict() if self.build else None,
            "transfer_records": self.transfers.to_dict() if self.transfers else None,
            "searcher_fitted": self.fitted,
            "target": DEMO_TARGET,
            "max_params": DEMO_MAX_PARAMS,
            "search": self.search.to_dict(),
            "comparison": self.comparison.to_dict(),
            "gains_by_seed": self.gains,
            "seconds": round(self.seconds, 1),
        }


def run_demo(
    *,
    zoo_dir: str | os.PathLike[str] | None = None,
    searcher_path: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] = "tans-demo",
    workers: int | None = None,
    progress: Progress | None = None,
) -> DemoResult:
    """Build (or reuse) the demo zoo and searcher, search for the held-out target, compare.

    Parameters
    ----------
    zoo_dir, searcher_path : path or None
        Defaults: the locations ``tans search`` and ``tans finetune`` use when given none.
    out_dir : path
        Where the fine-tuned and from-scratch models, the plot and ``demo.json`` go.
    workers : int or None
        Processes for the zoo build (default: every core).
    progress : Progress or None
        Receives events (:class:`~tans.progress.ProgressEvent`): stage ``"step"`` as each step
        starts (``message`` describes it; also logged to the ``tans.demo`` logger), then the
        events of the step's function with its name before their stage: ``"zoo/..."`` of
        :func:`build_zoo`, ``"records/..."`` of :func:`run_transfers`, ``"searcher/..."`` of
        :meth:`Searcher.fit` (when it fits one) and ``"compare/..."`` of :func:`finetune_and_scratch`.

    Returns
    -------
    DemoResult
    """
    start = time.perf_counter()
    steps = itertools.count(1)

    def stage(text: str) -> None:
        log.info(text)
        emit(progress, "step", next(steps), None, text)

    zoo_dir = Path(zoo_dir) if zoo_dir else default_zoo_dir()
    searcher_path = Path(searcher_path) if searcher_path else default_searcher_path()
    out_dir = Path(out_dir)

    zoo = Zoo.create(zoo_dir)
    build = None
    stage(f"zoo: {zoo_dir}")
    report = build_zoo(zoo, DEMO_ZOO, workers=workers, progress=prefixed(progress, "zoo"))
    if report.built or report.failed:
        build = report

    stage(f"transfer records: {DEMO_TRANSFER.models} networks fine-tuned on {len(DEMO_TRANSFER.targets)} other tasks")
    records = run_transfers(zoo, DEMO_TRANSFER, workers=workers, progress=prefixed(progress, "records"))
    transfers = records if records.added or records.failed else None

    fitted = build is not None or transfers is not None or not is_artifact(searcher_path)
    if not fitted:
        try:
            stage(f"searcher: {searcher_path}")
            searcher = Searcher.load(searcher_path)
        except TansError as exc:  # one an older tans wrote: fit a new one
            stage(f"the cached searcher is not usable, meta-training a new one ({exc})")
            fitted = True
    if fitted:
        stage(f"meta-training the searcher on {zoo.transfer_count()} transfer records")
        searcher = Searcher(**DEMO_SEARCHER).fit(zoo, progress=prefixed(progress, "searcher"))
        searcher.save(searcher_path)

    stage(f"searching for {DEMO_TARGET} (at most {DEMO_MAX_PARAMS:,} parameters)")
    found = searcher.search(DEMO_TARGET, zoo=zoo, constraints=Constraints(max_params=DEMO_MAX_PARAMS), top_k=5)

    stage(f"fine-tuning the pick and training its architecture from scratch ({DEMO_EPOCHS} epochs, "
          f"{DEMO_TRAIN_IMAGES} training images, {DEMO_SEEDS} seeds)")
    comparisons = [
        finetune_and_scratch(
            DEMO_TARGET, zoo=zoo, model_id=found.rows[0].id, epochs=DEMO_EPOCHS, seed=seed,
            recipe=replace(finetune_recipe(DEMO_EPOCHS, seed=seed), max_train_images=DEMO_TRAIN_IMAGES),
            out_dir=out_dir if seed == 0 else None, progress=prefixed(progress, "compare"),
        )
        for seed in range(DEMO_SEEDS)
    ]
    result = DemoResult(zoo=str(zoo_dir), searcher=str(searcher_path), build=build, transfers=transfers, fitted=fitted,
                        search=found, comparison=comparisons[0], gains=[c.gain for c in comparisons],
                        seconds=time.perf_counter() - start)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_bytes(out_dir / "demo.json", (dumps(result.to_dict(), indent=2, digits=None) + "\n").encode())
    return result
