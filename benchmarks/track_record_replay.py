"""Stage 1's track-record blend, replayed on leave-one-family-out scores of the predictor alone.

Reads the JSON that ``benchmarks/searcher_quality.py --keep-scores`` writes for a searcher whose
stage 1 is the predictor alone (``--no-track-record``, or a run from before track records, such
as benchmarks/results/searcher_quality.json at commit c0d1670). For each held-out target it
rebuilds the records the fold's searcher could read (every candidate's accuracy on the targets of
the *other* families, from the same file; records of a model on a target of its own source family
are not in it), blends them into the held-out predictions as stage 1 does
(:mod:`tans.searcher.track_record`), and prints weighted tau and top-1 regret over every candidate
and within each budget of the run, for each target temperature and track-record weight, with the
paired difference to equal target weights (a 95% bootstrap interval over targets; an interval
that holds 0 is a tie), then the held-out glyph targets ranked with the records of glyph targets
only and of the other targets only. When the file holds each held-out target's query-embedding
similarity to the fold's record targets (``--keep-scores`` since commit 5a19e60), it also replays
target weights that add that similarity, over a temperature, to the profile's softmax logits.
``--records-per-model`` replays instead the track records of the models recorded on most targets
read from at most n of them, which chose how many targets every model of the benchmark zoo gets.
Ranking does not depend on the blend's fitted scale, so none is fitted.
The level and spread of the predictor's lifts are read over the target's candidates (a search
reads them over the zoo's models). Numbers here chose the defaults, so they are validation
numbers, optimistic for the chosen ones.

Rerun (seconds)::

    git show c0d1670:benchmarks/results/searcher_quality.json > predictor-alone.json
    .venv/bin/python benchmarks/track_record_replay.py predictor-alone.json  # -> track_record_replay.md
    .venv/bin/python benchmarks/track_record_replay.py benchmarks/results/searcher_quality_predictor_alone.json
    # -> stage1_levers_rejected.md (add --mean-with FILE of a run with "seed": 1; --records-per-model:
    # -> records_per_model.md); that input came from (9 minutes on 2 cores):
    .venv/bin/python benchmarks/searcher_quality.py --zoo zoo-bench --workers 2 --no-probes --keep-scores \
        --searcher-json '{"use_track_record": false, "probe_k": 0}' --out DIR
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable

import numpy as np
from scipy.stats import weightedtau

from tans.searcher.experience import TransferTable
from tans.searcher.track_record import TARGET_TEMPERATURE, standing_rows, standings, target_weights, track_record

TEMPERATURES = (math.inf, 1.0, 0.5, 0.3, 0.2, 0.1, 0.05)
WEIGHTS = (1.0, 2.0, 4.0)
SIMILARITY_TEMPERATURES = (math.inf, 1.0, 0.3, 0.1, 0.05, 0.03, 0.01)


def _records_table(rows: list[dict]) -> tuple[TransferTable, dict[str, int]]:
    """Every target's recorded accuracy of its candidates, as a transfer table (columns: model ids)."""
    ids = sorted({i for r in rows for i in r["scores"]["ids"]})
    col = {m: k for k, m in enumerate(ids)}
    acc = np.full((len(rows), len(ids)), np.nan, dtype=np.float32)
    for t, r in enumerate(rows):
        acc[t, [col[m] for m in r["scores"]["ids"]]] = r["scores"]["acc"]
    names = [r["target"] for r in rows]
    table = TransferTable(entries=ids, targets=names, names=names, families=[r["family"] for r in rows],  # ids stand for entries
                          accuracy=acc, chance=np.array([r["scores"]["chance"] for r in rows]), recipe="", records=int((~np.isnan(acc)).sum()))
    return table, col


def replay(rows: list[dict], temperature: float, weight: float, limits: dict[str, int | None],
           records_of: Callable[[str], bool] = lambda family: True,
           ranked: Callable[[str], bool] = lambda family: True,
           similarity_temperature: float = math.inf, at_most: int | None = None, seed: int = 0,
           models: set[str] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per scope, each target's (weighted tau, top-1 regret in points) of the blended stage 1.

    ``records_of`` keeps the record targets of the families it accepts, ``ranked`` the held-out
    targets of the families it accepts. ``similarity_temperature`` weighs the record targets by
    the fold's query-embedding similarity too (rows written with it: ``scores["similarity"]``).
    ``at_most`` keeps each model's standings on at most that many record targets (a random draw
    of ``seed``), ``models`` ranks only those candidates (default: every one).
    """
    table, col = _records_table(rows)
    kept = {f: standing_rows(table, [t for t, g in enumerate(table.families) if g != f and records_of(g)])
            for f in set(table.families)}
    held = {f: standings(table, k) for f, k in kept.items()}
    if at_most is not None:
        rng = np.random.default_rng(seed)
        for z in held.values():
            for m in range(z.shape[1]):
                seen = np.flatnonzero(~np.isnan(z[:, m]))
                z[rng.choice(seen, max(len(seen) - at_most, 0), replace=False), m] = np.nan
    out: dict[str, list[tuple[float, float]]] = {scope: [] for scope in limits}
    for row in (r for r in rows if ranked(r["family"])):
        s = row["scores"]
        chance = s["chance"]
        lift = (np.asarray(s["stage1"], dtype=np.float64) - chance) / (1 - chance)
        acc = np.asarray(s["acc"], dtype=np.float64)
        cols = np.array([col[m] for m in s["ids"]])
        z = held[row["family"]]
        weights = target_weights(lift, z[:, cols], temperature)
        if not math.isinf(similarity_temperature):  # a second softmax term: the logits add, the weights multiply
            similarity = np.array([s["similarity"][table.names[k]] for k in kept[row["family"]]])
            weights = weights * np.exp((similarity - similarity.max()) / similarity_temperature)
            weights /= weights.mean()
        score = lift + weight * lift.std() * track_record(z, weights)[cols]
        scored = np.ones(len(acc), bool) if models is None else np.isin(s["ids"], list(models))
        for scope, limit in limits.items():
            keep = scored & (np.ones(len(acc), bool) if limit is None else np.asarray(s["params"]) <= limit)
            if keep.sum() >= 2:
                a, o = acc[keep], score[keep]
                out[scope].append((weightedtau(a, o, rank=None)[0], 100 * (a.max() - a[np.argmax(o)])))
    return {scope: (np.array([v[0] for v in got]), np.array([v[1] for v in got])) for scope, got in out.items()}


def _interval(diff: np.ndarray, rng: np.random.Generator) -> str:
    boots = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(4000)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return f"{diff.mean():+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _similarity_table(rows: list[dict], limits: dict[str, int | None]) -> None:
    """Target weights that also read the query embedding's similarity to each record target."""
    weight = WEIGHTS[1]
    default = replay(rows, TARGET_TEMPERATURE, weight, limits)
    non_glyph = replay(rows, TARGET_TEMPERATURE, weight, {"all": None}, ranked=lambda f: not f.startswith("glyphs"))
    print(f"\nWith the query embedding's similarity to each record target (weight {weight:g}); Δ: paired difference "
          f"to profile weights alone (temperature {TARGET_TEMPERATURE:g}, the default), 95% bootstrap over targets; "
          "last column: tau over every candidate of the held-out targets of the other families (emoji, digits).\n")
    header = " | ".join(f"tau {s} | Δ tau {s}" for s in limits)
    print(f"| temperature | similarity temperature | {header} | tau, non-glyph targets |\n|" + "---|" * (3 + 2 * len(limits)))
    for temperature in (math.inf, TARGET_TEMPERATURE):
        for sim_t in SIMILARITY_TEMPERATURES:
            got = replay(rows, temperature, weight, limits, similarity_temperature=sim_t)
            other = replay(rows, temperature, weight, {"all": None}, ranked=lambda f: not f.startswith("glyphs"),
                           similarity_temperature=sim_t)
            rng = np.random.default_rng(0)
            cells = [f"{got[s][0].mean():.3f} | " + _interval(got[s][0] - default[s][0], rng) for s in limits]
            print(f"| {temperature:g} | {sim_t:g} | " + " | ".join(cells) + f" | {other['all'][0].mean():.3f} |")
    print(f"\n(profile weights alone, non-glyph targets: {non_glyph['all'][0].mean():.3f})")


def _records_per_model_table(rows: list[dict], limits: dict[str, int | None]) -> None:
    """How a track record's worth grows with the number of targets a model was fine-tuned on."""
    table, _ = _records_table(rows)
    counts = (~np.isnan(table.accuracy)).sum(axis=0)
    most = counts.max()
    full = {m for m, n in zip(table.entries, counts) if n >= most // 2}
    print(f"# Track records of fewer targets per model, replayed on {len(rows)} held-out targets\n")
    print(f"Records per model in the file: {', '.join(f'{n}: {c} models' for n, c in zip(*np.unique(counts, return_counts=True)))}. "
          f"Ranked: the {len(full)} models with {most // 2} records or more, each keeping its standings on at most n "
          "random targets of the fold's records (3 draws, mean); weight and temperature the defaults; "
          "Δ: paired difference to every record, 95% bootstrap over targets.\n")
    every = replay(rows, TARGET_TEMPERATURE, WEIGHTS[1], limits, models=full)
    print(f"| records per model (at most) | {' | '.join(f'tau {s} | Δ tau {s}' for s in limits)} |\n|" + "---|" * (1 + 2 * len(limits)))
    print("| every one | " + " | ".join(f"{every[s][0].mean():.3f} | -" for s in limits) + " |")
    for n in (24, 12, 6, 3, 1, 0):
        draws = [replay(rows, TARGET_TEMPERATURE, WEIGHTS[1], limits, at_most=n, seed=d, models=full) for d in range(3)]
        rng = np.random.default_rng(0)
        cells = []
        for s in limits:
            tau = np.mean([d[s][0] for d in draws], axis=0)
            cells.append(f"{tau.mean():.3f} | " + _interval(tau - every[s][0], rng))
        print(f"| {n} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scores", help="searcher_quality.json of the predictor alone, written with --keep-scores")
    parser.add_argument("--mean-with", nargs="*", default=[], metavar="SCORES",
                        help="more such files of the same records (other seeds): replay the mean of their predictions")
    parser.add_argument("--records-per-model", action="store_true",
                        help="only replay track records read from fewer targets per model (records_per_model.md)")
    args = parser.parse_args()
    with open(args.scores) as fh:
        data = json.load(fh)
    rows = [r for r in data["targets_detail"] if "scores" in r]
    if not rows:
        raise SystemExit(f"{args.scores} holds no per-candidate scores; rerun searcher_quality.py with --keep-scores.")
    for other in args.mean_with:  # an ensemble of predictors, one per file
        with open(other) as fh:
            more = {r["target"]: r["scores"] for r in json.load(fh)["targets_detail"] if "scores" in r}
        for r in rows:
            if r["target"] not in more or more[r["target"]]["ids"] != r["scores"]["ids"]:
                raise SystemExit(f"{other} does not score the candidates of {r['target']} that {args.scores} does.")
            r["scores"]["stage1"] = (np.add(r["scores"]["stage1"], more[r["target"]]["stage1"])).tolist()
    for r in rows:
        r["scores"]["stage1"] = (np.asarray(r["scores"]["stage1"]) / (1 + len(args.mean_with))).tolist()
    limits = data.get("scopes", {"all": None})
    if args.records_per_model:
        _records_per_model_table(rows, limits)
        return
    mean = f" (predictions averaged with {', '.join(args.mean_with)})" if args.mean_with else ""
    print(f"# Stage 1's track-record blend, replayed on {args.scores}{mean}\n")
    print(f"{len(rows)} held-out targets of {len({r['family'] for r in rows})} families; run: "
          f"`{data.get('command', '?')}`. Weighted tau (true order) and top-1 regret (points), mean over targets; "
          "Δ: paired difference to equal target weights (temperature inf) at the same weight, 95% bootstrap over targets.\n")
    alone = replay(rows, math.inf, 0.0, limits)
    header = " | ".join(f"tau {s} | regret {s} | Δ tau {s}" for s in limits)
    print(f"| weight | temperature | {header} |\n|" + "---|" * (2 + 3 * len(limits)))
    print("| 0 (predictor alone) | - | " + " | ".join(f"{alone[s][0].mean():.3f} | {alone[s][1].mean():.2f} | -" for s in limits) + " |")
    for weight in WEIGHTS:
        equal = replay(rows, math.inf, weight, limits)
        for temperature in TEMPERATURES:
            got = equal if math.isinf(temperature) else replay(rows, temperature, weight, limits)
            rng = np.random.default_rng(0)
            cells = [f"{got[s][0].mean():.3f} | {got[s][1].mean():.2f} | "
                     + ("-" if math.isinf(temperature) else _interval(got[s][0] - equal[s][0], rng)) for s in limits]
            print(f"| {weight:g} | {temperature:g} | " + " | ".join(cells) + " |")
    if all("similarity" in r["scores"] for r in rows):
        _similarity_table(rows, limits)
    # Why weight targets: what the records say depends on the kind of data they were taken on.
    glyphs = [r["family"] for r in rows if r["family"].startswith("glyphs")]
    print(f"\nHeld-out glyph targets only ({len(glyphs)}), weight {WEIGHTS[1]:g}, equal target weights, tau over every "
          "candidate, reading the records of:\n")
    is_glyph = lambda family: family.startswith("glyphs")  # noqa: E731
    for label, records_of in (("every other family", lambda f: True), ("glyph families only", is_glyph),
                              ("the other families only (emoji, digits)", lambda f: not is_glyph(f))):
        got = replay(rows, math.inf, WEIGHTS[1], {"all": None}, records_of=records_of, ranked=is_glyph)
        print(f"- {label}: {got['all'][0].mean():.3f}")


if __name__ == "__main__":
    main()
