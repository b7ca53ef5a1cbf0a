"""The benchmark's outputs: ``report.md``, ``results.json`` and four plots (matplotlib, Agg backend).

Plots:

- ``accuracy_vs_epochs.png``: validation accuracy after each fine-tuning epoch of the main methods'
  picks, the oracle and the same architecture from scratch, one panel per (budget, test dataset);
- ``regret.png``: mean regret of every method at 1 and E epochs (bars);
- ``pareto.png``: test accuracy against parameters of the candidate pool, with the Pareto front
  and each method's pick, one panel per test dataset (loosest budget);
- ``tsne.png``: a t-SNE map of the searcher's model and dataset embeddings, coloured by family.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from tans._json import dumps

__all__ = ["write_report", "report_markdown", "PLOT_NAMES"]

PLOT_NAMES = ("accuracy_vs_epochs.png", "regret.png", "pareto.png", "speed_accuracy.png", "tsne.png")
_CURVE_METHODS = ("searcher", "static-prior", "largest", "logme", "random")


def write_report(run, out_dir: str | Path) -> dict[str, str]:
    """Write ``results.json``, ``report.md`` and the plots of a :class:`~tans.bench.protocol.BenchRun`.

    Parameters
    ----------
    run : BenchRun
        Results and embeddings of :func:`tans.bench.run_bench`.
    out_dir : path
        Output directory (created).

    Returns
    -------
    dict of str to str
        File kind -> path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = run.results
    files = {
        "accuracy_vs_epochs": _plot_curves(results, out / PLOT_NAMES[0]),
        "regret": _plot_regret(results, out / PLOT_NAMES[1]),
        "pareto": _plot_pareto(results, out / PLOT_NAMES[2]),
        "speed_accuracy": _plot_speed(results, out / PLOT_NAMES[3]),
        "tsne": _plot_tsne(run.embeddings, out / PLOT_NAMES[4]),
    }
    files = {k: str(v) for k, v in files.items()}
    results["files"] = {k: Path(v).name for k, v in files.items()} | {"report": "report.md", "results": "results.json"}
    (out / "results.json").write_text(dumps(results, indent=1) + "\n", encoding="utf-8")
    (out / "report.md").write_text(report_markdown(results), encoding="utf-8")
    files["results"] = str(out / "results.json")
    files["report"] = str(out / "report.md")
    return files


# ------------------------------------------------------------------------------------ markdown
def _f(value: Any, fmt: str = "{:.3f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def _pct(value: Any) -> str:
    return _f(None if value is None else 100 * value, "{:.1f}")


def report_markdown(results: dict[str, Any]) -> str:
    """The report as Markdown: setup, headline table, tau, epochs to scratch, goals, per dataset."""
    cfg = results["config"]
    E, S = cfg["epochs"], cfg["scratch_epochs"]
    summary, methods = results["summary"], results["methods"]
    lines = [
        f"# tans bench: {cfg['name']}",
        "",
        f"Zoo: {results['zoo']['entries']} models on {results['zoo']['tasks']} tasks "
        f"(families: {', '.join(results['zoo']['families'])}). "
        f"Test datasets ({len(results['test_datasets'])}, families never in the zoo): "
        + ", ".join(f"{n} ({d['family']}, {d['classes']} classes)" for n, d in results["test_datasets"].items())
        + ".",
        "Budgets: " + ", ".join("no limit" if b["max_params"] is None else f"{b['spec']} = {b['max_params']:,} params"
                                for b in results["budgets"]) + ". "
        f"Seeds: {cfg['seeds']}. Fine-tuning: 1 and {E} epochs, at most {cfg['max_train_images']} training "
        f"images; from scratch: {S} epochs. Candidate pool: every method's top {cfg['pool_top_k']} plus "
        f"{cfg['pool_random']} random models per test dataset ({results['finetunes']['jobs']} fine-tunes, "
        f"{len(results['finetunes']['failed'])} failed).",
        "",
        "Accuracy: mean test accuracy (%) of each method's pick, averaged over seeds, test datasets and budgets. "
        "Regret: oracle minus pick, in points; the oracle is the pool's best model within the budget. "
        "rel@3: best of the top 3 / oracle. Search: seconds per query (methods that fine-tune to pick are charged "
        "those fine-tunes); ratio to the searcher's. "
        f"Δ vs searcher: the method's accuracy minus the default searcher's at {E} epochs, points, with a 95% paired "
        "bootstrap interval over cells and seeds; **bold** where the interval excludes 0 (resolved), else a tie.",
        "",
        f"| method | acc 1 ep | acc {E} ep | Δ vs searcher {E} ep [95% CI] | regret 1 ep | regret {E} ep | rel@3 {E} ep "
        "| mean params | search s | x searcher |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, info in methods.items():
        row = summary[name]
        lines.append(
            f"| {info['label']} | {_pct(row['1']['acc'])} | {_pct(row[str(E)]['acc'])} | {_ci(row.get('ci', {}).get(str(E)))} "
            f"| {_f(row['1']['regret'], '{:.2f}')} "
            f"| {_f(row[str(E)]['regret'], '{:.2f}')} | {_f(row[str(E)]['rel@3'])} | {_f(row['params'], '{:,.0f}')} "
            f"| {_f(row['search_seconds'], '{:.4f}')} | {_f(row['speed_ratio'], '{:.3g}')} |"
        )
    sc, orc = summary["scratch"], summary["oracle"]
    lines += [
        f"| searcher's architecture from scratch | {_pct(sc['1']['acc'])} | {_pct(sc[str(E)]['acc'])} | - "
        f"| {_f(sc['1']['regret'], '{:.2f}')} | {_f(sc[str(E)]['regret'], '{:.2f}')} | - | - | - | - |",
        f"| oracle (best of pool) | {_pct(orc['1']['acc'])} | {_pct(orc[str(E)]['acc'])} | - | 0.00 | 0.00 | 1.000 | - | - | - |",
        "",
        f"From scratch after {S} epochs: {_pct(sc.get('final'))}%.",
        "",
        "Noise floor: the regret of a *seed oracle* (the pool's best model by seed 0, measured on the other seeds) is "
        + ", ".join(f"{_f(v, '{:.2f}')} points at {e} epoch(s)" for e, v in results.get("noise_floor", {}).items())
        + ". A regret below it is not a win over picking by one fine-tune; it is noise.",
        *_failure_lines(results, summary, methods, E),
        "",
        "## Weighted Kendall tau on the candidate pool",
        "",
        "Between each method's score and the true fine-tuned test accuracy of the pool members within the "
        "budget, averaged over test datasets and budgets. Conventions: "
        + "; ".join(f"`{k}` = `{v}`" for k, v in results["tau_conventions"].items()) + ".",
        "",
        f"| method | symmetric 1 ep | true order 1 ep | symmetric {E} ep | true order {E} ep |",
        "|---|---|---|---|---|",
    ]
    for name, info in methods.items():
        tau = summary[name].get("tau")
        if tau:
            lines.append(f"| {info['label']} | {_f(tau['1']['symmetric'])} | {_f(tau['1']['true_order'])} "
                         f"| {_f(tau[str(E)]['symmetric'])} | {_f(tau[str(E)]['true_order'])} |")
    for name, tau in summary["oracle"].get("tau_ceilings", {}).items():
        lines.append(f"| *ceiling: oracle by {name}* | {_f(tau['1']['symmetric'])} | {_f(tau['1']['true_order'])} "
                     f"| {_f(tau[str(E)]['symmetric'])} | {_f(tau[str(E)]['true_order'])} |")
    if summary["oracle"].get("tau_ceilings"):
        lines += ["", "The ceilings are not methods: each scores a pool member by the mean test accuracy, in the same "
                  "cell, of the members sharing its architecture (and source family). They use the answers, so no "
                  "method can reach them by reading only that information about a model."]
    lines += [
        "",
        f"## Epochs to reach the from-scratch accuracy ({S} epochs)",
        "",
        f"First epoch of the {E}-epoch fine-tune whose validation accuracy reaches that of the searcher's "
        f"architecture trained from scratch for {S} epochs (mean over the cases reached; 'reached' counts them).",
        "",
        "| method | mean epochs | reached |",
        "|---|---|---|",
    ]
    for name, info in methods.items():
        row = summary[name]
        lines.append(f"| {info['label']} | {_f(row['epochs_to_scratch'], '{:.2f}')} | {row['reached_scratch']} |")
    lines += ["", "## Goals", ""]
    lines += _goal_lines(results.get("goals", {}), E)
    lines += ["", "## Per test dataset and budget", ""]
    for cell in results["cells"]:
        budget = "no limit" if cell["max_params"] is None else f"<= {cell['max_params']:,} params"
        lines += [
            f"### {cell['dataset']} ({budget}; pool of {cell['pool_size']})",
            "",
            f"| method | pick | acc 1 ep | acc {E} ep | regret {E} ep | epochs to scratch |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in cell["methods"].items():
            pick = row[str(E)]["picked"]
            label = pick[0][:12] if len(pick) == 1 else f"mean of {len(pick)}"
            lines.append(f"| {name} | {label} | {_pct(row['1']['acc'])} | {_pct(row[str(E)]['acc'])} "
                         f"| {_f(row[str(E)]['regret'], '{:.2f}')} | {_f(row['epochs_to_scratch'], '{}')} |")
        lines.append(f"| scratch | {cell['scratch']['model_id'][:12]} | {_pct(cell['scratch']['1']['acc'])} "
                     f"| {_pct(cell['scratch'][str(E)]['acc'])} | {_f(cell['scratch'][str(E)].get('regret'), '{:.2f}')} | - |")
        ids = {(cell["oracle"][e]["id"] or "-")[:12] for e in ("1", str(E))}
        lines.append(f"| oracle (best per column) | {' / '.join(sorted(ids))} | {_pct(cell['oracle']['1']['acc'])} "
                     f"| {_pct(cell['oracle'][str(E)]['acc'])} | 0.00 | - |")
        lines.append("")
    t = results["timings"]
    lines += [
        "## Time",
        "",
        ", ".join(f"{k.replace('_', ' ')} {v:.0f} s" for k, v in t.items()) + ".",
        "",
        "## Plots",
        "",
        *[f"![{name}]({name})" for name in PLOT_NAMES],
        "",
    ]
    return "\n".join(lines)


def _ci(ci: dict | None) -> str:
    """``+1.2 [-0.3, +2.8]`` of an accuracy difference, bold when resolved."""
    if not ci or ci["acc"]["mean"] is None:
        return "-"
    a = ci["acc"]
    text = f"{a['mean']:+.1f} [{a['low']:+.1f}, {a['high']:+.1f}]"
    return f"**{text}**" if a["resolved"] else text


def _failure_lines(results: dict, summary: dict, methods: dict, E: int) -> list[str]:
    """Every failed fine-tune by name, and the methods whose means leave cells or seeds out."""
    failed = results["finetunes"]["failed"]
    lines = ["", f"Failed fine-tunes: {len(failed)} of {results['finetunes']['jobs']}."]
    for f in failed:
        start = "from scratch" if f["scratch"] else "fine-tune"
        lines.append(f"- {f['dataset']} / {f['model_id']} / {f['epochs']} epoch(s) / seed {f['seed']} ({start}): {f['reason']}")
    short = [(info["label"], e, summary[name][e]) for name, info in methods.items() for e in ("1", str(E))
             if summary[name][e].get("missing")]
    for label, e, row in short:
        lines.append(f"- {label} at {e} epoch(s): mean over {row['cells']} cells, {row['missing']} fine-tunes of its "
                     "picks missing (their seeds are left out).")
    return lines


def _goal_lines(goals: dict[str, Any], E: int) -> list[str]:
    """One line per goal: what was measured and whether it is met (per epoch budget where it has them)."""
    if not goals:
        return ["(the searcher was not among the methods)"]

    def values(g: dict) -> str:
        return ", ".join(f"{k} {_f(v, '{:.4g}')}" for k, v in g.items() if k != "met")

    lines = []
    for name, goal in goals.items():
        title = name.replace("_", " ")
        if "met" in goal:
            lines.append(f"- {title}: {values(goal)} ({'met' if goal['met'] else 'missed'}).")
        else:
            for e, g in goal.items():
                lines.append(f"- {title} at {e} epoch(s): {values(g)} ({'met' if g['met'] else 'missed'}).")
    return lines


# --------------------------------------------------------------------------------------- plots
def _loosest_cells(results: dict) -> dict[str, dict]:
    """Per test dataset, its cell of the loosest budget (the largest pool)."""
    cells: dict[str, dict] = {}
    for cell in results["cells"]:
        old = cells.get(cell["dataset"])
        if old is None or old["max_params"] is not None and (cell["max_params"] is None or cell["max_params"] > old["max_params"]):
            cells[cell["dataset"]] = cell
    return cells


def _grid(n: int, width: float = 3.8, height: float = 3.0):
    """A figure of ``n`` panels, at most 4 a row (readable on a screen); unused panels hidden."""
    import matplotlib.pyplot as plt

    cols = min(4, max(n, 1))
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _label_panel(ax, title: str, xlabel: str, ylabel: str) -> None:
    """Small fonts for one panel of a grid, so that four fit a row."""
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)


def _save(fig, path: Path, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` and free it (a report draws many figures in one process)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _plot_curves(results: dict, path: Path) -> Path:
    from matplotlib.ticker import MaxNLocator

    cells = _loosest_cells(results)
    fig, axes = _grid(len(cells))
    for ax, cell in zip(axes, cells.values()):
        for name in _CURVE_METHODS:
            if name in cell["methods"] and cell["methods"][name]["curve"]:
                curve = cell["methods"][name]["curve"]
                ax.plot(range(1, len(curve) + 1), np.array(curve) * 100, marker="o", label=name)
        if cell["oracle"].get("curve"):
            curve = cell["oracle"]["curve"]
            # Drawn under the others: the oracle is often one of the picks.
            ax.plot(range(1, len(curve) + 1), np.array(curve) * 100, color="black", linestyle="--", linewidth=3,
                    alpha=0.35, zorder=1, label="oracle")
        if cell["scratch"]["curve"]:
            curve = cell["scratch"]["curve"]
            ax.plot(range(1, len(curve) + 1), np.array(curve) * 100, color="grey", label="from scratch")
        budget = "no limit" if cell["max_params"] is None else f"<= {cell['max_params']:,}"
        _label_panel(ax, f"{cell['dataset']} ({budget} params)", "epoch", "val accuracy (%)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(axes):
        axes[0].legend(fontsize=7)
    return _save(fig, path)


def _plot_regret(results: dict, path: Path) -> Path:
    import matplotlib.pyplot as plt

    E = str(results["config"]["epochs"])
    summary = results["summary"]
    names = list(results["methods"]) + ["scratch"]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(names)), 3.8))
    for k, (e, offset) in enumerate((("1", -0.2), (E, 0.2))):
        values = [summary[n][e]["regret"] for n in names]
        ax.bar(x + offset, [np.nan if v is None else v for v in values], width=0.4, label=f"{e} epoch(s)")
        if E == "1":
            break
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(x, names, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("regret vs oracle (points)")
    ax.set_title("Mean regret per method (lower is better)")
    ax.legend(fontsize=8)
    return _save(fig, path, dpi=110)


def _plot_pareto(results: dict, path: Path) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    E = results["config"]["epochs"]
    cells = _loosest_cells(results)
    fig, axes = _grid(len(cells), 4.0, 3.3)
    palette = plt.get_cmap("tab20")  # more methods than tab10 has colours
    for ax, (name, cell) in zip(axes, cells.items()):
        pts = [(p["params"], p[f"acc@{E}"] * 100) for p in cell["pool"] if p[f"acc@{E}"] is not None
               and not math.isnan(p[f"acc@{E}"])]
        if pts:
            params, acc = np.array(pts).T
            ax.scatter(params, acc, s=12, color="lightgrey", label="pool")
            order = np.argsort(params)
            front, best = [], -np.inf
            for j in order:
                if acc[j] > best:
                    best = acc[j]
                    front.append(j)
            ax.step(params[front], acc[front], where="post", color="grey", linewidth=1, label="Pareto front")
        for k, (m, row) in enumerate(cell["methods"].items()):
            if len(row[str(E)]["picked"]) == 1 and row[str(E)]["acc"] is not None and not math.isnan(row[str(E)]["acc"]):
                ax.scatter([row["params"]], [row[str(E)]["acc"] * 100], s=30, marker="xP+D"[k % 4], color=palette(k % 20),
                           label=m)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a short log range overlap
        _label_panel(ax, name, "parameters", f"test acc after {E} epochs (%)")
    if len(axes):
        axes[0].legend(fontsize=6)
    return _save(fig, path)


def _plot_speed(results: dict, path: Path) -> Path:
    """Mean accuracy against search seconds (log x) for every method, with the standard error over cells."""
    import matplotlib.pyplot as plt

    E = str(results["config"]["epochs"])
    fig, ax = plt.subplots(figsize=(8.0, 5.0))
    palette = plt.get_cmap("tab20")
    for k, (name, info) in enumerate(results["methods"].items()):
        seconds = results["summary"][name]["search_seconds"]
        accs = [c["methods"][name][E]["acc"] for c in results["cells"]]
        accs = np.array([a for a in accs if a is not None and not math.isnan(a)]) * 100
        if seconds is None or seconds <= 0 or accs.size == 0:
            continue
        err = accs.std(ddof=1) / np.sqrt(accs.size) if accs.size > 1 else 0.0
        ax.errorbar([seconds], [accs.mean()], yerr=[err], fmt="o", color=palette(k % 20), capsize=3, label=name)
        ax.annotate(name, (seconds, accs.mean()), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("search seconds per query (log scale; picking fine-tunes included)")
    ax.set_ylabel(f"mean test accuracy after {E} epochs (%)")
    ax.set_title("Accuracy of the pick against the time to pick it (bars: standard error over cells)")
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def _plot_tsne(embeddings: dict, path: Path) -> Path:
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    points = np.asarray(embeddings["points"], dtype=np.float64)
    families, kinds = embeddings["families"], embeddings["kinds"]
    fig, ax = plt.subplots(figsize=(7, 5.5))
    if len(points) >= 4:
        xy = TSNE(n_components=2, perplexity=min(30.0, (len(points) - 1) / 3), init="pca", random_state=0,
                  metric="cosine").fit_transform(points)
        palette = plt.get_cmap("tab20")
        colours = {f: palette(i % 20) for i, f in enumerate(sorted(set(families)))}
        markers = {"model": "o", "zoo task": "s", "test dataset": "*"}
        sizes = {"model": 10, "zoo task": 40, "test dataset": 160}
        for kind in ("model", "zoo task", "test dataset"):
            idx = [i for i, k in enumerate(kinds) if k == kind]
            if idx:
                ax.scatter(xy[idx, 0], xy[idx, 1], c=[colours[families[i]] for i in idx], marker=markers[kind],
                           s=sizes[kind], edgecolors="black" if kind != "model" else "none", linewidths=0.5)
        for f, c in colours.items():
            ax.scatter([], [], color=c, label=f)
        for kind, mk in markers.items():
            ax.scatter([], [], color="white", edgecolors="black", marker=mk, label=kind)
        ax.legend(fontsize=6, loc="best")
    ax.set_title("t-SNE of the searcher's model and dataset embeddings, by family")
    ax.set_xticks([])
    ax.set_yticks([])
    return _save(fig, path, dpi=110)
