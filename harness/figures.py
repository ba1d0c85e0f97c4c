"""The figures, drawn from the summary model (harness/summary.py): per dataset, F1 against the
number of training samples with each method's rank (and per method run under query strategies,
one line per strategy); across datasets, the mean rank per slice.
PNG and SVG, the same bytes from the same records.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.records import safe_name
from harness.rules import OWN
from harness.splits import NO_SLICE, slice_order
from harness.summary import Summary, count_phrase, seeds_phrase


def dataset_figures(summary: Summary, folder: Path, suffix: str = "") -> list[Path]:
    """``folder/<dataset><suffix>.{png,svg}`` for each dataset of ``summary`` with sliced cells, and
    ``folder/<dataset>-<method>-strategies<suffix>.{png,svg}`` for each method run under query strategies."""
    written = []
    for dataset in sorted(summary.table["dataset"].unique()):
        written += write_figure(summary.cell_rows[summary.cell_rows["dataset"] == dataset],
                                summary.table[summary.table["dataset"] == dataset], dataset, folder,
                                f"{safe_name(dataset)}{suffix}")
    for dataset in summary.datasets:  # with query strategies: per method, random and each strategy's line
        for base in sorted({base for base, _, _ in dataset.strategies.values()}):
            labels = [base, *(label for label, (b, _, _) in dataset.strategies.items() if b == base)]
            cells = summary.cell_rows[(summary.cell_rows["dataset"] == dataset.dataset)
                                      & summary.cell_rows["method"].isin(labels)]
            written += write_figure(cells, dataset.table[dataset.table["method"].isin(labels)],
                                    f"{dataset.dataset}, {base} by query strategy", folder,
                                    f"{safe_name(dataset.dataset)}-{safe_name(base)}-strategies{suffix}")
    return written


def aggregate_figure(summary: Summary, folder: Path, suffix: str = "") -> list[Path]:
    """``folder/aggregate<suffix>.{png,svg}`` with several datasets; none with one."""
    if summary.aggregate is None:
        return []
    return write_aggregate_figure(summary.aggregate, int(summary.aggregate["n_datasets"].max()), folder, suffix)


def slice_ranks(table: pd.DataFrame, metric: str = "micro_f1_mean") -> pd.DataFrame:
    """The leaderboard with a ``rank`` column: each method's rank on ``metric`` among the
    methods of its (dataset, slice), 1 the best, ties sharing their mean rank."""
    ranked = table[table["slice"] != NO_SLICE].copy()
    ranked["rank"] = ranked.groupby(["dataset", "slice"])[metric].rank(ascending=False, method="average")
    return ranked


def _slice_axis(axis, positions: dict[str, float]) -> None:
    axis.set_xscale("log", base=2)
    ticks = sorted(positions.items(), key=lambda item: item[1])
    axis.set_xticks([x for _, x in ticks], [name for name, _ in ticks])
    axis.set_xlabel("Number of training samples")
    axis.grid(alpha=0.3)


def write_figure(cell_rows: pd.DataFrame, table: pd.DataFrame, dataset: str, folder: Path, stem: str) -> list[Path]:
    """``stem.{png,svg}`` in ``folder``: micro and macro F1 against training samples, one line per
    method, band over seeds, and each method's rank (on mean micro F1) at every slice, of one
    dataset's cell rows and leaderboard rows (a ``Summary``'s ``cell_rows`` and ``table``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    cells = cell_rows[cell_rows["slice"] != NO_SLICE].copy()  # 'none' alone has no x
    if cells.empty:
        return []
    # x = the slice's nominal size, as the book plots it; "all" at the mean actual train size
    all_n = cells.loc[cells["slice"] == "all", "n"].mean()
    cells["samples"] = [all_n if s == "all" else float(s) for s in cells["slice"]]
    positions = dict(zip(cells["slice"], cells["samples"]))
    methods = sorted(cells["method"].unique())
    figure, axes = plt.subplots(1, 3, figsize=(17, 4.2), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    for axis, metric, title in ((axes[0], "micro_f1", "Micro F1"), (axes[1], "macro_f1", "Macro F1")):
        sns.lineplot(data=cells, x="samples", y=metric, hue="method", errorbar="sd", marker="o", ax=axis,
                     hue_order=methods)
        _slice_axis(axis, positions)
        axis.set_ylabel(title)
        axis.set_title(title)
        axis.get_legend().remove()
    ranks = slice_ranks(table).assign(samples=lambda t: t["slice"].map(positions))
    sns.lineplot(data=ranks, x="samples", y="rank", hue="method", marker="o", ax=axes[2], hue_order=methods)
    _slice_axis(axes[2], positions)
    axes[2].set_ylim(len(methods) + 0.5, 0.5)  # rank 1 on top
    axes[2].set_yticks(range(1, len(methods) + 1))
    axes[2].set_ylabel("Rank (1 = best)")
    axes[2].set_title("Rank on mean micro F1")
    axes[2].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", title="method")
    seeds = seeds_phrase(cells.groupby("method")["seed"].nunique())
    rules = sorted(cells["rule"].unique())
    ruled = "" if rules == [OWN] else f"; decision rule: {', '.join(rules)}"
    figure.suptitle(f"{dataset}: test F1 vs training samples ({seeds} per method; band = ±1 sd{ruled})")
    figure.tight_layout()
    return _save(figure, folder, stem)


def write_aggregate_figure(aggregate: pd.DataFrame, n_datasets: int, folder: Path, suffix: str = "") -> list[Path]:
    """Mean rank over datasets against the slice, one line per method (``aggregate`` as
    harness.summary.aggregate_table makes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    shown = aggregate[aggregate["slice"] != NO_SLICE].copy()
    if shown.empty:
        return []
    order = sorted(shown["slice"].unique(), key=slice_order)
    shown["position"] = shown["slice"].map({name: i for i, name in enumerate(order)})
    methods = sorted(shown["method"].unique())
    figure, axis = plt.subplots(figsize=(8, 4.2))
    sns.lineplot(data=shown, x="position", y="micro_f1_rank", hue="method", marker="o", ax=axis, hue_order=methods)
    axis.set_xticks(range(len(order)), order)
    axis.set_xlabel("Number of training samples (slice)")
    axis.set_ylim(len(methods) + 0.5, 0.5)
    axis.set_ylabel("Mean rank on micro F1 (1 = best)")
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", title="method")
    axis.set_title(f"Mean rank over {count_phrase(n_datasets, 'dataset')}")
    figure.tight_layout()
    return _save(figure, folder, f"aggregate{suffix}")


def _save(figure, folder: Path, stem: str) -> list[Path]:
    """PNG and SVG; the same records give the same bytes (an SVG carries no date, and its
    element ids are drawn from a fixed salt rather than a random one)."""
    import matplotlib
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.png", folder / f"{stem}.svg"]
    with matplotlib.rc_context({"svg.hashsalt": "fewlabels-harness"}):
        figure.savefig(paths[0], dpi=120)
        figure.savefig(paths[1], dpi=120, metadata={"Date": None})
    plt.close(figure)
    return paths
