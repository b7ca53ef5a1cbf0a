"""Zoo build speed and quality on this machine.

Measures, for a build config (default: the benchmark zoo):

1. throughput: the first N units of the config built into fresh zoos with 1 worker and with 2
   workers, in the same run: models per hour, training images per second, and the 2-over-1 ratio;
2. the full build from nothing: wall time, models per hour, and the zoo it made (entries, tasks,
   architectures, parameter span, flagged fraction, median val accuracy over chance).

Each phase writes into benchmarks/results/zoo_build.json (phases run separately are merged) and the
markdown table beside it. The load average is recorded: timings on a shared machine are noisy.

Rerun:
    .venv/bin/python benchmarks/zoo_build.py --phase throughput --units 8
    .venv/bin/python benchmarks/zoo_build.py --phase full --zoo zoo-bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from tans._json import dumps
from tans.zoo import Zoo
from tans.zoo.build import BuildConfig, build_zoo

RESULTS = Path(__file__).parent / "results"
DEFAULT_CONFIG = Path(__file__).parent / "zoo" / "bench-zoo.json"


def machine() -> dict:
    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version()}


def throughput(config: BuildConfig, units: int) -> dict:
    """Build the same first ``units`` units with 1 and with 2 workers into fresh zoos."""
    out = {"units": units}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            load_before = os.getloadavg()[0]
            start = time.perf_counter()
            report = build_zoo(Path(tmp) / "zoo", config, workers=workers, max_units=units)
            seconds = time.perf_counter() - start
            out[f"workers_{workers}"] = {
                "seconds": round(seconds, 1),
                "models_per_hour": round(len(report.built) / seconds * 3600, 1),
                "train_images_per_second": round(report.train_images / seconds, 1),
                "load_average_before": round(load_before, 2),
                "load_average_after": round(os.getloadavg()[0], 2),
                "failed": len(report.failed),
            }
    out["speedup_2_over_1"] = round(out["workers_2"]["models_per_hour"] / out["workers_1"]["models_per_hour"], 2)
    return out


def full(config: BuildConfig, zoo_dir: Path, workers: int) -> dict:
    if zoo_dir.exists():
        if any(zoo_dir.iterdir()):
            raise SystemExit(f"{zoo_dir} exists: the full build is measured from nothing; remove it or pick another.")
    loads = [os.getloadavg()[0]]
    start = time.perf_counter()
    done = [0]

    def progress(event):
        if event.stage != "build":
            return
        done[0] += 1
        if done[0] % 10 == 0:
            loads.append(os.getloadavg()[0])
            print(f"{done[0]} units, {time.perf_counter() - start:.0f} s", flush=True)

    report = build_zoo(zoo_dir, config, workers=workers, progress=progress)
    seconds = time.perf_counter() - start
    entries = Zoo.open(zoo_dir).entries()
    ratios = [e.val_acc / e.chance_acc for e in entries]
    params = [e.params for e in entries]
    return {
        "zoo": os.path.relpath(zoo_dir),
        "workers": workers,
        "seconds": round(seconds, 1),
        "minutes": round(seconds / 60, 1),
        "models_per_hour": round(len(report.built) / seconds * 3600, 1),
        "train_images_per_second": round(report.train_images / seconds, 1),
        "entries": len(entries),
        "failed": len(report.failed),
        "tasks": len({e.task for e in entries}),
        "architectures": len({e.arch for e in entries}),
        "params_min": min(params),
        "params_max": max(params),
        "params_span": round(max(params) / min(params), 1),
        "flagged_fraction": round(sum(e.flagged for e in entries) / len(entries), 4),
        "median_val_over_chance": round(statistics.median(ratios), 2),
        "median_val_acc": round(statistics.median(e.val_acc for e in entries), 4),
        "load_average_median": round(statistics.median(loads), 2),
    }


def write(results: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "zoo_build.json").write_text(dumps(results, indent=2) + "\n")
    lines = ["# Zoo build: speed and quality", "",
             f"Machine: {results['machine']}. Config: `{results['config']}`.", ""]
    if "throughput" in results:
        t = results["throughput"]
        lines += [f"## Throughput ({t['units']} units of the config, fresh zoos, measured {t['measured']})", "",
                  "| workers | seconds | models/hour | training images/s | load avg before -> after |",
                  "|---|---|---|---|---|"]
        for w in (1, 2):
            r = t[f"workers_{w}"]
            lines.append(f"| {w} | {r['seconds']} | {r['models_per_hour']} | {r['train_images_per_second']} | "
                         f"{r['load_average_before']} -> {r['load_average_after']} |")
        lines += ["", f"2 workers over 1 worker: **{t['speedup_2_over_1']}x** (goal >= 1.7x).", "",
                  "Rerun: `.venv/bin/python benchmarks/zoo_build.py --phase throughput --units "
                  f"{t['units']}`", ""]
    if "full" in results:
        f = results["full"]
        lines += [f"## Full build from nothing (measured {f['measured']})", "",
                  "| entries | tasks | archs | params span | minutes | models/hour | flagged | median val/chance | "
                  "median load avg |", "|---|---|---|---|---|---|---|---|---|",
                  f"| {f['entries']} | {f['tasks']} | {f['architectures']} | {f['params_min']:,}-{f['params_max']:,} "
                  f"({f['params_span']}x) | {f['minutes']} | {f['models_per_hour']} | {f['flagged_fraction']:.1%} | "
                  f"{f['median_val_over_chance']}x | {f['load_average_median']} |", "",
                  *([f"Note: {f['note']}", ""] if f.get("note") else []),
                  "Goals (issue 3): >= 300 entries, >= 30 tasks, >= 15 archs spanning >= 10x, <= 30 minutes on "
                  "2 cores, <= 5% flagged, median >= 3x chance.", "",
                  f"Rerun: `.venv/bin/python benchmarks/zoo_build.py --phase full --zoo {f['zoo']}`", ""]
    (RESULTS / "zoo_build.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--phase", choices=["throughput", "full", "both"], default="both")
    parser.add_argument("--units", type=int, default=8, help="units per throughput measurement")
    parser.add_argument("--zoo", type=Path, default=Path("zoo-bench"), help="where the full build goes")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    config = BuildConfig.from_file(args.config)
    path = RESULTS / "zoo_build.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results.update(machine=machine(), config=os.path.relpath(args.config))
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if args.phase in ("throughput", "both"):
        results["throughput"] = {**throughput(config, args.units), "measured": stamp}
        write(results)
    if args.phase in ("full", "both"):
        results["full"] = {**full(config, args.zoo, args.workers), "measured": stamp}
        write(results)
    print(dumps(results, indent=2))


if __name__ == "__main__":
    main()
