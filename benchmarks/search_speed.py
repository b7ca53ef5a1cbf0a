"""Time of one search on a 1,000-image dataset, after the searcher is loaded.

Rerun (from the repository root; under a minute)::

    .venv/bin/python benchmarks/search_speed.py --zoo ZOO_DIR --searcher SEARCHER_DIR --label "<which zoo>"

Writes ``benchmarks/results/search_speed.{json,md}`` (``--out DIR`` to write elsewhere).

What is timed: :meth:`tans.Searcher.search` end to end on a class-balanced 1,000-image subset of
``--dataset`` (default ``mnist-5k``, 100 images per class): sampling the query set (``per_class``
images per class), frozen features, query encoder, constraint mask, FAISS retrieval of the shortlist,
predictor re-rank, and (without ``--fast``) stage 2's probe of the top candidates. The searcher is loaded and one warm-up search is run first (it embeds the zoo's
models into the cached index, which later searches reuse until the zoo changes); the median and
the 90th percentile of ``--repeats`` searches are reported, with ``--threads`` torch threads.

Goal (issue 4): at most 0.3 s on 2 cores.

Wall time as the user sees it (issue 13): the command ``tans search DATASET --zoo --searcher --json``
in a fresh process (imports, loading the searcher and the dataset, embedding the zoo, the search)
against ``python -c "import torch"``, ``--wall-repeats`` times each, interleaved, in the same run;
goal: the median ratio at most 1.5.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tans._json import dumps

GOAL_S = 0.3
GOAL_WALL_RATIO = 1.5


def wall_times(args) -> dict:
    """Median wall seconds of ``import torch`` and of the ``tans search`` command, run alternately."""
    tans = str(Path(sys.executable).parent / "tans")
    commands = {
        "import_torch": [sys.executable, "-c", "import torch"],
        "tans_search": [tans, "search", args.dataset, "--zoo", str(args.zoo), "--searcher", str(args.searcher), "--json"],
    }
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.wall_repeats):
        for name, command in commands.items():
            tic = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            seconds[name].append(time.perf_counter() - tic)
    medians = {name: statistics.median(v) for name, v in seconds.items()}
    return {"median_s": {k: round(v, 3) for k, v in medians.items()}, "repeats": args.wall_repeats,
            "ratio": round(medians["tans_search"] / medians["import_torch"], 2), "goal_ratio": GOAL_WALL_RATIO,
            "meets_goal": medians["tans_search"] <= GOAL_WALL_RATIO * medians["import_torch"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zoo", type=Path, required=True)
    parser.add_argument("--searcher", type=Path, required=True)
    parser.add_argument("--label", default="", help="Which zoo this is, written into the results.")
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--fast", action="store_true", help="stage 1 only (no probe of the shortlist)")
    parser.add_argument("--wall-repeats", type=int, default=3, help="runs of the CLI and of 'import torch' (0: skip)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    from tans.data import balanced_indices, load_dataset
    from tans.searcher import Searcher
    from tans.zoo import Zoo

    source = load_dataset(args.dataset)
    keep = balanced_indices(source.labels, max(1, args.images // source.num_classes), seed=0)[: args.images]
    dataset = source.subset(keep, name=f"{args.dataset}[{len(keep)}]")
    zoo = Zoo.open(args.zoo)
    tic = time.perf_counter()
    searcher = Searcher.load(args.searcher)
    load_s = time.perf_counter() - tic
    tic = time.perf_counter()
    searcher.search(dataset, zoo=zoo, top_k=args.top_k, fast=args.fast)  # warm-up: embeds the zoo into the index
    first_s = time.perf_counter() - tic

    totals, stages = [], {}
    for _ in range(args.repeats):
        tic = time.perf_counter()
        result = searcher.search(dataset, zoo=zoo, top_k=args.top_k, fast=args.fast)
        totals.append(time.perf_counter() - tic)
        for name, value in result.seconds.items():
            stages.setdefault(name, []).append(value)
    median = statistics.median(totals)
    report = {
        "zoo": args.label or str(args.zoo),
        "zoo_entries": len(zoo),
        "dataset": dataset.name,
        "dataset_images": len(dataset),
        "query_images": result.query_images,
        "extractor": searcher.extractor,
        "set_encoder": searcher.set_encoder,
        "stages": "1" if args.fast else "1+2",
        "threads": args.threads,
        "repeats": args.repeats,
        "load_s": round(load_s, 4),
        "first_search_s": round(first_s, 4),
        "median_s": round(median, 4),
        "p90_s": round(float(np.percentile(totals, 90)), 4),
        "median_stage_s": {k: round(statistics.median(v), 4) for k, v in stages.items()},
        "goal_s": GOAL_S,
        "meets_goal": median <= GOAL_S,
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus".strip(),
        "command": "python benchmarks/search_speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    if args.wall_repeats > 0:
        report["wall"] = wall_times(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search_speed.json").write_text(dumps(report, indent=2) + "\n")
    lines = [
        "# One search on a 1,000-image dataset",
        "",
        f"Zoo: {report['zoo']} ({report['zoo_entries']} entries). Dataset: {report['dataset']} "
        f"({report['query_images']} query images sampled). Stages {report['stages']}. {args.threads} torch threads, "
        f"{args.repeats} repeats.",
        "",
        "| step | median (ms) |",
        "|---|---|",
        *[f"| {k} | {v * 1000:.1f} |" for k, v in report["median_stage_s"].items()],
        "",
        f"Median {median * 1000:.1f} ms, p90 {report['p90_s'] * 1000:.1f} ms (goal <= {GOAL_S * 1000:.0f} ms: "
        f"{'met' if report['meets_goal'] else 'NOT met'}). Load {load_s * 1000:.0f} ms; first search "
        f"(embeds the zoo) {first_s * 1000:.0f} ms.",
        "",
        f"Command: `{report['command']}`",
        "",
    ]
    if "wall" in report:
        w = report["wall"]
        lines[-2:-2] = [
            f"Wall time of the command `tans search {args.dataset} --json` in a fresh process: median "
            f"{w['median_s']['tans_search']:.2f} s against {w['median_s']['import_torch']:.2f} s for "
            f"`python -c \"import torch\"` ({w['repeats']} runs each, alternating): ratio **{w['ratio']}** "
            f"(goal <= {GOAL_WALL_RATIO}: {'met' if w['meets_goal'] else 'NOT met'}).",
            "",
        ]
    (args.out / "search_speed.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
