"""How high can a ranker's weighted tau go in a `tans bench` run? Oracle ceilings from its results.json.

Each ceiling scores a pool member by the mean test accuracy, in the same cell, of the members that
share its architecture (and source family): :func:`tans.bench.metrics.tau_ceilings`, which
``tans bench`` reports itself since it was added. This script computes them for any results.json,
also one written before (the source family then comes from the built-in catalogue), next to the
methods' tau of the same run.

Rerun::

    .venv/bin/python benchmarks/tau_ceilings.py benchmarks/results/bench/results.json
"""

from __future__ import annotations

import argparse
import json
import sys

from tans.bench.metrics import TAU_CEILINGS, TAU_CONVENTIONS, mean_or_none, tau_ceilings
from tans.data.catalogue import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="results.json of a tans bench run")
    args = parser.parse_args()
    with open(args.results) as fh:
        results = json.load(fh)
    epochs = sorted({"1", str(results["config"]["epochs"])}, key=int)
    per_cell = []
    for cell in results["cells"]:
        pool = [m if "source_family" in m else m | {"source_family": get_task(m["source"]).family} for m in cell["pool"]]
        per_cell.append({e: tau_ceilings(pool, int(e)) for e in epochs})
    header = " | ".join(f"{conv} {e} ep" for e in epochs for conv in TAU_CONVENTIONS)
    lines = [f"Weighted tau on the pool within each cell's budget, mean over {len(per_cell)} cells of `{args.results}`.",
             "", f"| ranker | {header} |", "|---|" + "---|" * (len(epochs) * len(TAU_CONVENTIONS))]
    for name in TAU_CEILINGS:
        values = [mean_or_none([c[e][name][conv] for c in per_cell]) for e in epochs for conv in TAU_CONVENTIONS]
        lines.append(f"| ceiling: oracle by {name} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    for name, row in results["summary"].items():
        if row.get("tau"):
            values = [row["tau"][e][conv] for e in epochs for conv in TAU_CONVENTIONS]
            lines.append(f"| {results['methods'][name]['label']} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    lines += ["", "Command: `python " + " ".join(sys.argv) + "`"]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
