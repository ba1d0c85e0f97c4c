"""The summary a practitioner decides from: per dataset, a wide table (methods x slices) of
micro and macro F1 with the best in bold and the methods not significantly worse marked, the
cost of each cell, the labels each method needs to reach a target F1; across datasets, mean
F1 and mean rank. Written as ``summary.{md,html,tex}`` (``summary-<rule>.*`` under another
rule than ``own``) and shown by ``harness publish``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.evaluation import prediction_under_rule
from harness.learning_curve import FARTHEST_EXTRAPOLATION, LabelsNeeded, labels_needed
from harness.predictions import PredictionsError
from harness.report import ReportedCell, cell_table, dataset_labels, leaderboard, rule_suffix, slice_order, with_shared_cells
from harness.rules import OWN
from harness.splits import NO_SLICE
from harness.significance import (
    METRICS, BootstrapSettings, Comparison, PairedGain, column_resamples, compare_pair, compare_to_best,
)

METRIC_TITLES = {"micro_f1": "Micro F1", "macro_f1": "Macro F1"}
MARK_TIED = "*"  # not significantly worse than the column's best
MARK_UNTESTED = "?"  # no stored predictions or no seed shared with the best
MARK_BETTER, MARK_WORSE = "↑", "↓"  # a query strategy significantly better / worse than random
SUMMARY_FORMATS = ("md", "html", "tex")
PLATEAU_BOUND = 0.999  # a fitted plateau at the bound 1: the measured slices show no flattening


@dataclass(frozen=True)
class SummaryOptions:
    bootstrap: BootstrapSettings = field(default_factory=BootstrapSettings)
    target_f1: float = 0.7
    target_metric: str = "micro_f1"

    def __post_init__(self) -> None:
        if not 0 < self.target_f1 <= 1:
            raise ValueError(f"--target-f1 {self.target_f1}: expected an F1 between 0 and 1, e.g. 0.7")
        if self.target_metric not in METRICS:
            raise ValueError(f"--target-metric {self.target_metric!r}: expected one of {', '.join(METRICS)}")


@dataclass
class DatasetSummary:
    dataset: str
    table: pd.DataFrame  # the leaderboard rows of this dataset
    methods: list[str]
    slices: list[str]
    comparisons: dict[tuple[str, str], dict[str, Comparison]]  # (metric, slice) -> method -> comparison
    labels_needed: dict[str, LabelsNeeded]
    test_issues: int | None
    seeds: str
    # query strategies (harness/strategies.py): row label -> (its random row, strategy, selector or None)
    strategies: dict[str, tuple[str, str, str | None]] = field(default_factory=dict)
    gains: dict[tuple[str, str], dict[str, PairedGain]] = field(default_factory=dict)  # (metric, slice) -> label -> gain


@dataclass
class Summary:
    """What every report of a results folder is rendered from: the ok cells under the rule, their
    leaderboard, the summary of each dataset and across them."""

    rule: str
    options: SummaryOptions
    cell_rows: pd.DataFrame  # one row per ok cell under ``rule``, label-free ones on every slice (harness.report.cell_table)
    table: pd.DataFrame  # their leaderboard (harness.report.leaderboard)
    datasets: list[DatasetSummary]
    aggregate: pd.DataFrame | None  # None with fewer than two datasets
    notes: list[str] = field(default_factory=list)  # what the tables leave out and why (e.g. ensemble cells)


# ------------------------------------------------------------------ building


def count_phrase(count: int, noun: str) -> str:
    """'1 seed', '3 seeds': counts read as counts everywhere a report shows one."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def seeds_phrase(per_method: pd.Series) -> str:
    """How many seeds each method averages: '5 seeds', '1 seed', '3 to 5 seeds'."""
    low, high = int(per_method.min()), int(per_method.max())
    return count_phrase(low, "seed") if low == high else f"{low} to {high} seeds"




def _column_predictions(cells: list[ReportedCell], rule: str, on_problem: Callable[[str], None]):
    """slice -> method -> seed -> (labels, prediction) for one dataset's ok cells; a label-free
    method's cell ('none' slice) stands in every slice."""
    loaded: dict[str, dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]] = {}
    slices = sorted({c.shown.slice.name for c in cells if c.shown.slice.name != NO_SLICE}, key=slice_order)
    for cell in cells:
        try:
            _, _, labels, prediction = prediction_under_rule(cell.stored, cell.path, rule)
        except PredictionsError as exc:
            on_problem(f"{exc}; cell left out of the significance tests")
            continue
        # with no sliced cells beside it, a label-free method keeps its own 'none' column
        targets = (slices or [NO_SLICE]) if cell.shown.slice.name == NO_SLICE else [cell.shown.slice.name]
        for slice_name in targets:
            loaded.setdefault(slice_name, {}).setdefault(cell.shown.method.label, {})[cell.shown.seed] = (labels, prediction)
    return loaded


def _best(rows: pd.DataFrame, metric: str) -> str:
    """The method with the highest mean; ties go to the first name, so the choice is stable."""
    ordered = rows.sort_values([f"{metric}_mean", "method"], ascending=[False, True])
    return str(ordered["method"].iloc[0])


def _dataset_summary(dataset: str, table: pd.DataFrame, cells: list[ReportedCell], rule: str, options: SummaryOptions,
                     on_problem: Callable[[str], None]) -> DatasetSummary:
    """The summary of one dataset (as ``dataset_labels`` names it): ``table`` is its leaderboard rows."""
    slices = sorted(table["slice"].unique(), key=slice_order)
    methods = sorted(table["method"].unique())
    predictions = _column_predictions(cells, rule, on_problem)
    strategies = {c.shown.method.label: (c.shown.method.base, c.shown.method.strategy, c.shown.method.selector)
                  for c in cells if c.shown.method.strategy and c.shown.method.base}
    comparisons, gains = {}, {}
    for slice_name in slices:
        rows = table[table["slice"] == slice_name]
        column = predictions.get(slice_name, {})
        resampled = column_resamples(column, options.bootstrap, f"{dataset}|{slice_name}") if column else {}
        for metric in METRICS:
            best = _best(rows, metric)
            found = compare_to_best(resampled, best, metric, options.bootstrap.alpha) if best in resampled else {best: Comparison("best")}
            comparisons[(metric, slice_name)] = {m: found.get(m, Comparison("untested")) for m in rows["method"]}
            gains[(metric, slice_name)] = {label: compare_pair(resampled, label, base, metric, options.bootstrap.alpha)
                                           for label, (base, _, _) in strategies.items()}
    label_free = {c.shown.method.label for c in cells if c.shown.slice.name == NO_SLICE}
    needed = {}
    for method in methods:
        if method in label_free:
            reached = table.loc[table["method"] == method, f"{options.target_metric}_mean"].max() >= options.target_f1
            needed[method] = LabelsNeeded(0.0 if reached else None, "label-free")
        else:
            rows = table[(table["method"] == method) & (table["slice"] != NO_SLICE)]
            needed[method] = labels_needed(rows["n"].to_numpy(), rows[f"{options.target_metric}_mean"].to_numpy(), options.target_f1)
    sizes = [c.stored.dataset.sizes for c in cells if c.stored.dataset.sizes]
    test_issues = sizes[0].get("test") if sizes else None
    seeds = seeds_phrase(pd.Series({m: int(table[table["method"] == m]["seeds"].max()) for m in methods}))
    return DatasetSummary(dataset, table, methods, slices, comparisons, needed, test_issues, seeds, strategies,
                          gains if strategies else {})


def aggregate_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per method and slice over datasets: mean F1, mean rank among the methods of each
    dataset (1 best), and how many datasets each mean covers (``datasets``), of ``n_datasets``."""
    shown = table[table["slice"] != NO_SLICE].copy()
    for metric in METRICS:
        shown[f"{metric}_rank"] = shown.groupby(["dataset", "slice"])[f"{metric}_mean"].rank(ascending=False, method="average")
    grouped = shown.groupby(["method", "slice"]).agg(
        datasets=("dataset", "nunique"),
        micro_f1_mean=("micro_f1_mean", "mean"), micro_f1_rank=("micro_f1_rank", "mean"),
        macro_f1_mean=("macro_f1_mean", "mean"), macro_f1_rank=("macro_f1_rank", "mean"),
    ).reset_index()
    grouped["n_datasets"] = shown["dataset"].nunique()
    grouped["order"] = grouped["slice"].map(slice_order)
    return grouped.sort_values(["method", "order"]).drop(columns="order").reset_index(drop=True)


def build_summary(cells: Sequence[ReportedCell], rule: str = OWN, options: SummaryOptions = SummaryOptions(),
                  on_problem: Callable[[str], None] = lambda message: None) -> Summary:
    """The summary of the ok cells (as ``harness.report.cells_under_rule`` gives them)."""
    ok = with_shared_cells([c for c in cells if c.shown.ok and c.shown.metrics is not None])
    records = [c.shown for c in ok]
    labels = dataset_labels(records)  # the names the leaderboard gives them
    table, cell_rows = leaderboard(records), cell_table(records)
    datasets = [
        _dataset_summary(name, table[table["dataset"] == name], [c for c, label in zip(ok, labels) if label == name],
                         rule, options, on_problem)
        for name in sorted(set(labels))
    ]
    aggregate = aggregate_table(table) if len(datasets) > 1 else None
    return Summary(rule, options, cell_rows, table, datasets, aggregate)


# ------------------------------------------------------------------ rendering


@dataclass(frozen=True)
class Shown:
    """One table cell: its text, whether it is bold, a mark after it, and its sort value."""

    text: str
    bold: bool = False
    mark: str = ""
    sort: float | str | None = None


@dataclass(frozen=True)
class Table:
    title: str
    headers: list[str]
    rows: list[list[Shown]]
    table_id: str = ""


def _mean_sd(mean: float, sd: float) -> str:
    return f"{mean:.3f}" if pd.isna(sd) else f"{mean:.3f} ± {sd:.3f}"


def _per_slice(summary: DatasetSummary, method: str, shown: Callable[[str, pd.Series], Shown]) -> list[Shown]:
    """A wide table's row: the method's name, then ``shown(slice, leaderboard row)`` per slice
    ('—' where the method has no row)."""
    row = [Shown(method, sort=method)]
    for slice_name in summary.slices:
        found = summary.table[(summary.table["method"] == method) & (summary.table["slice"] == slice_name)]
        row.append(Shown("—", sort=-1) if found.empty else shown(slice_name, found.iloc[0]))
    return row


def _f1_table(summary: DatasetSummary, metric: str, table_id: str) -> Table:
    def shown(slice_name: str, line: pd.Series) -> Shown:
        comparison = summary.comparisons[(metric, slice_name)][line["method"]]
        mark = {"tied": MARK_TIED, "untested": MARK_UNTESTED}.get(comparison.verdict, "")
        return Shown(_mean_sd(line[f"{metric}_mean"], line[f"{metric}_std"]), comparison.verdict == "best",
                     mark, float(line[f"{metric}_mean"]))

    rows = [_per_slice(summary, method, shown) for method in summary.methods]
    return Table(METRIC_TITLES[metric], ["method", *summary.slices], rows, table_id)


def _seconds(value: float) -> str:
    if pd.isna(value):
        return "—"
    return f"{value:.3f}" if value < 0.1 else f"{value:.2f}" if value < 10 else f"{value:.0f}"


def _cost_table(summary: DatasetSummary, table_id: str) -> Table:
    def shown(slice_name: str, line: pd.Series) -> Shown:
        total = line["fit_s_median"] + line["predict_s_median"]
        return Shown(f"{_seconds(line['fit_s_median'])} / {_seconds(line['predict_s_median'])}",
                     sort=float(total) if not pd.isna(total) else -1)

    uses_api = _uses_api(summary)
    rows = []
    for method in summary.methods:
        row = _per_slice(summary, method, shown)
        mine = summary.table[summary.table["method"] == method]
        peak = mine["peak_rss_mb_max"].max()
        row.append(Shown("—", sort=-1) if pd.isna(peak) else Shown(f"{peak:,.0f} MB", sort=float(peak)))
        if uses_api:
            row.append(_api_usage(mine))
        rows.append(row)
    columns = ["method", *summary.slices, "peak RSS"] + (["API per cell"] if uses_api else [])
    return Table("Cost: median seconds per cell, fit / predict", columns, rows, table_id)


def _uses_api(summary: DatasetSummary) -> bool:
    return "requests_median" in summary.table and bool(summary.table["requests_median"].notna().any())


def _api_usage(rows: pd.DataFrame) -> Shown:
    """A method's median requests and tokens per cell over its slices (and money, where priced)."""
    requests = rows["requests_median"].median()
    if pd.isna(requests):
        return Shown("—", sort=-1)
    text = (f"{requests:,.0f} requests, {rows['prompt_tokens_median'].median():,.0f} tokens in / "
            f"{rows['completion_tokens_median'].median():,.0f} out")
    cost = rows["cost_median"].median()
    return Shown(text + ("" if pd.isna(cost) else f", {cost:.4f} per cell"), sort=float(requests))


def _labels_table(summary: DatasetSummary, options: SummaryOptions, table_id: str) -> Table:
    metric = options.target_metric
    rows = []
    for method in summary.methods:
        needed = summary.labels_needed[method]
        mine = summary.table[(summary.table["method"] == method) & (summary.table["slice"] != NO_SLICE)]
        last = mine.iloc[-1] if not mine.empty else None
        measured = f"{last[f'{metric}_mean']:.3f} at n={last['n']:.0f}" if last is not None else "—"
        plateau = "—" if needed.curve is None else (
            "none below 1" if needed.curve.plateau >= PLATEAU_BOUND else f"{needed.curve.plateau:.3f}")
        if needed.reach == "label-free":
            text = "0 (label-free)" if needed.n is not None else "not reached (label-free)"
        elif needed.reach == "far beyond":
            text = f"> {FARTHEST_EXTRAPOLATION * needed.largest_n:,.0f} (over {FARTHEST_EXTRAPOLATION}x the largest slice)"
        elif needed.n is None:
            text = needed.reach
        elif needed.reach == "below smallest slice":  # the curve below the data says little more than that
            text = f"< {needed.smallest_n:,.0f} (below the smallest slice)"
        else:
            text = f"{needed.n:,.0f}" + ("" if needed.reach == "interpolated" else f" ({needed.reach})")
        sort = needed.n if needed.n is not None else math.inf
        rows.append([Shown(method, sort=method), Shown(measured, sort=float(last[f"{metric}_mean"]) if last is not None else -1),
                     Shown(plateau, sort=needed.curve.plateau if needed.curve else -1), Shown(text, sort=sort)])
    title = f"Labels needed for {METRIC_TITLES[metric]} ≥ {options.target_f1:g} (fitted learning curve)"
    return Table(title, ["method", "largest slice measured", "fitted plateau", "training issues needed"], rows, table_id)


def normalised_auc(sizes: Sequence[float], f1: Sequence[float]) -> float:
    """The area under the learning curve (F1 against log2 of the training issues, trapezoids)
    divided by its width, so that a curve flat at F1 c scores c whatever the slices: curves
    over the same slices compare directly. NaN with fewer than two slices."""
    x, y = np.log2(np.asarray(sizes, dtype=float)), np.asarray(f1, dtype=float)
    if len(x) < 2 or x[-1] == x[0]:
        return float("nan")
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))


def _curve(summary: DatasetSummary, label: str, metric: str) -> float:
    rows = summary.table[(summary.table["method"] == label) & ~summary.table["slice"].isin(["all", NO_SLICE])]
    rows = rows.assign(size=rows["slice"].astype(float)).sort_values("size")
    return normalised_auc(rows["size"].to_numpy(), rows[f"{metric}_mean"].to_numpy())


def _gain_text(summary: DatasetSummary, label: str, base: str, slice_name: str) -> Shown:
    """'+0.031↑ / -0.004' (micro / macro): the strategy's mean F1 minus random's, marked where the
    paired bootstrap finds it significantly better or worse."""
    table = summary.table[summary.table["slice"] == slice_name]
    parts, micro = [], None
    for metric in METRICS:
        mine, theirs = table[table["method"] == label], table[table["method"] == base]
        if mine.empty or theirs.empty:
            return Shown("—", sort=-math.inf)
        difference = float(mine[f"{metric}_mean"].iloc[0] - theirs[f"{metric}_mean"].iloc[0])
        micro = difference if micro is None else micro
        verdict = summary.gains[(metric, slice_name)][label].verdict
        mark = {"better": MARK_BETTER, "worse": MARK_WORSE, "untested": MARK_UNTESTED}.get(verdict, "")
        parts.append(f"{difference:+.3f}{mark}")
    return Shown(" / ".join(parts), sort=micro)


def _strategy_table(summary: DatasetSummary, table_id: str) -> Table:
    """Each random row with its strategies: normalised AUC, the gain over random per slice, and
    what the queries cost."""
    shared = {"all"} | {min((s for s in summary.slices if s not in ("all", NO_SLICE)), key=slice_order, default="all")}
    gain_slices = [s for s in summary.slices if s not in shared and s != NO_SLICE]
    largest = max(gain_slices, key=slice_order, default=None)
    rows = []
    for base in sorted({base for base, _, _ in summary.strategies.values()}):
        for label in [base, *sorted(label for label, (b, _, _) in summary.strategies.items() if b == base)]:
            row = [Shown(label, sort=label)]
            row += [Shown(f"{value:.3f}", sort=value) if not math.isnan(value := _curve(summary, label, metric))
                    else Shown("—", sort=-1) for metric in METRICS]
            row += [Shown("·", sort=0.0) if label == base else _gain_text(summary, label, base, s) for s in gain_slices]
            found = summary.table[(summary.table["method"] == label) & (summary.table["slice"] == largest)]
            if label == base or found.empty:
                row.append(Shown("—", sort=-1))
            else:
                query, fit = found["query_s_median"].iloc[0], found["selector_fit_s_median"].iloc[0]
                row.append(Shown(f"{_seconds(query)} / {_seconds(fit)}", sort=float(query)))
            rows.append(row)
    headers = ["method", "AUC micro", "AUC macro", *(f"gain {s}" for s in gain_slices),
               f"query / selector fit s (to {largest})"]
    return Table("Query strategies against random: normalised AUC, gain in micro / macro F1, query cost", headers,
                 rows, table_id)


def _aggregate_tables(aggregate: pd.DataFrame) -> list[Table]:
    n_datasets = int(aggregate["n_datasets"].max())
    slices = sorted(aggregate["slice"].unique(), key=slice_order)
    tables = []
    for metric in METRICS:
        rows = []
        for method, group in aggregate.groupby("method"):
            row = [Shown(str(method), sort=str(method))]
            for slice_name in slices:
                found = group[group["slice"] == slice_name]
                if found.empty:
                    row.append(Shown(f"— (0/{n_datasets})", sort=math.inf))
                    continue
                line = found.iloc[0]
                covered = "" if line["datasets"] == n_datasets else f" ({line['datasets']}/{n_datasets})"
                row.append(Shown(f"{line[f'{metric}_mean']:.3f} · r{line[f'{metric}_rank']:.1f}{covered}",
                                 sort=float(line[f"{metric}_rank"])))
            mean_rank = (group[f"{metric}_rank"] * group["datasets"]).sum() / group["datasets"].sum()
            row.append(Shown(f"{mean_rank:.2f}", sort=float(mean_rank)))
            row.append(Shown(f"{int(group['datasets'].min())}/{n_datasets}", sort=int(group["datasets"].min())))
            rows.append(row)
        tables.append(Table(f"{METRIC_TITLES[metric]}: mean over datasets · mean rank",
                            ["method", *slices, "mean rank", "datasets"], rows, f"aggregate-{metric.split('_')[0]}"))
    return tables


def legend(summary: Summary) -> str:
    b = summary.options.bootstrap
    return (f"Test F1, mean ± sd over seeds, under decision rule '{summary.rule}'. In each slice column the best "
            f"mean is bold; {MARK_TIED} marks a method not significantly worse than the best (paired bootstrap "
            f"over test issues, {b.resamples} resamples, one-sided, level {b.alpha:g}, seeds both methods share, "
            f"bootstrap seed {b.seed}); {MARK_UNTESTED}: not tested (no stored predictions or no shared seed); "
            "unmarked: significantly worse. Cost: median seconds per cell on the machine that ran it, fit / "
            "predict (test predictions plus, for methods with scores, valid and test scores), with whatever "
            "embeddings and scores the shared cache already held; peak RSS: the largest peak resident memory of "
            "the process while one of the method's cells ran (— where not measured)." + (
                " API per cell, for a model behind an API: median requests and tokens per cell (answers served from "
                "the request cache included), and money at the prices given." if any(map(_uses_api, summary.datasets)) else "") + (
                " Query strategies: a row METHOD · STRATEGY (SELECTOR) trained on the strategy's picks from random's "
                "first slice, which it shares with random, as it shares 'all'; normalised AUC: the area under the mean "
                "F1 curve against log2 of the slice size, over the row's slices below 'all', divided by its width; "
                f"gain: the strategy's mean F1 minus random's, micro / macro, {MARK_BETTER} or {MARK_WORSE} where the "
                "paired bootstrap finds it significantly better or worse (one-sided, same resamples and level); query "
                "cost: median seconds per seed that the trajectory spent up to the largest slice on scoring the pool and "
                "selecting, and on fitting the selector where no cell's fit served."
                if any(dataset.strategies for dataset in summary.datasets) else ""))


def dataset_tables(summary: Summary, dataset: DatasetSummary, prefix: str = "") -> list[Table]:
    return [
        _f1_table(dataset, "micro_f1", f"{prefix}micro"), _f1_table(dataset, "macro_f1", f"{prefix}macro"),
        _cost_table(dataset, f"{prefix}cost"), _labels_table(dataset, summary.options, f"{prefix}labels"),
    ] + ([_strategy_table(dataset, f"{prefix}strategies")] if dataset.strategies else [])


def aggregate_tables(summary: Summary) -> list[Table]:
    return _aggregate_tables(summary.aggregate) if summary.aggregate is not None else []


def dataset_caption(dataset: DatasetSummary) -> str:
    test = f"{dataset.test_issues} test issues, " if dataset.test_issues else ""
    return f"{test}{dataset.seeds} per method; slices by nominal size ('all': the whole train split)."


def _md_cell(cell: Shown) -> str:
    text = cell.text.replace("|", "\\|")
    return (f"**{text}**" if cell.bold else text) + cell.mark


def render_markdown(table: Table) -> str:
    from tabulate import tabulate

    rows = [[_md_cell(cell) for cell in row] for row in table.rows]
    return tabulate(rows, headers=table.headers, tablefmt="github", disable_numparse=True)


def _tex_escape(text: str) -> str:
    replacements = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$",
                    MARK_BETTER: r"$\uparrow$", MARK_WORSE: r"$\downarrow$"}
    return "".join(replacements.get(char, char) for char in text)


def render_latex(table: Table) -> str:
    def cell(shown: Shown) -> str:
        text = _tex_escape(shown.text)
        return (rf"\textbf{{{text}}}" if shown.bold else text) + _tex_escape(shown.mark)

    lines = [r"\begin{tabular}{l" + "r" * (len(table.headers) - 1) + "}", r"\toprule",
             " & ".join(_tex_escape(h) for h in table.headers) + r" \\", r"\midrule"]
    lines += [" & ".join(cell(c) for c in row) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def render_html(table: Table) -> str:
    """A sortable table (the site's script sorts on each cell's data-sort); all text escaped."""
    def cell(shown: Shown, first: bool) -> str:
        text = html.escape(shown.text)
        body = (f"<strong>{text}</strong>" if shown.bold else text) + (
            f'<span class="mark">{html.escape(shown.mark)}</span>' if shown.mark else "")
        sort = "" if shown.sort is None or first else f' data-sort="{html.escape(str(shown.sort))}"'
        css = "" if first else ' class="num"'
        return f"<td{css}{sort}>{body}</td>"

    header = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = "\n".join("<tr>" + "".join(cell(c, i == 0) for i, c in enumerate(row)) + "</tr>" for row in table.rows)
    table_id = f' id="{html.escape(table.table_id)}"' if table.table_id else ""
    return f'<table class="sortable"{table_id}>\n<thead><tr>{header}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'


def _document(summary: Summary, heading: Callable[[int, str], str], render: Callable[[Table], str],
              paragraph: Callable[[str], str]) -> str:
    parts = [heading(1, f"Summary (decision rule: {summary.rule})"), paragraph(legend(summary))]
    for dataset in summary.datasets:
        parts += [heading(2, dataset.dataset), paragraph(dataset_caption(dataset))]
        for table in dataset_tables(summary, dataset):
            parts += [heading(3, table.title), render(table)]
    if summary.aggregate is not None:
        n = int(summary.aggregate["n_datasets"].max())
        parts += [heading(2, f"Across datasets ({count_phrase(n, 'dataset')})"),
                  paragraph("Mean F1 over the datasets a method ran on · its mean rank among the methods of each "
                            f"dataset (1 = best); (k/{n}): the mean covers only k datasets.")]
        for table in aggregate_tables(summary):
            parts += [heading(3, table.title), render(table)]
    if summary.notes:
        parts += [heading(2, "Notes"), *(paragraph(note) for note in summary.notes)]
    return "\n\n".join(parts) + "\n"


def to_markdown(summary: Summary) -> str:
    return _document(summary, lambda level, text: "#" * level + " " + text, render_markdown, lambda text: text)


def to_html(summary: Summary) -> str:
    body = _document(summary, lambda level, text: f"<h{level}>{html.escape(text)}</h{level}>", render_html,
                     lambda text: f"<p>{html.escape(text)}</p>")
    return (f'<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8"><title>Summary ({html.escape(summary.rule)})'
            f"</title></head>\n<body>\n{body}</body>\n</html>\n")


def to_latex(summary: Summary) -> str:
    names = {1: "section*", 2: "subsection*", 3: "subsubsection*"}
    return _document(summary, lambda level, text: rf"\{names[level]}{{{_tex_escape(text)}}}", render_latex, _tex_escape)


RENDERERS = {"md": to_markdown, "html": to_html, "tex": to_latex}


def write_summary(results_dir: Path, summary: Summary) -> list[Path]:
    """Write ``summary{-rule}.{md,html,tex}`` of ``summary`` into ``results_dir``."""
    written = []
    for fmt in SUMMARY_FORMATS:
        path = results_dir / f"summary{rule_suffix(summary.rule)}.{fmt}"
        path.write_text(RENDERERS[fmt](summary), encoding="utf-8")
        written.append(path)
    return written


@dataclass(frozen=True)
class HtmlTable:
    title: str
    html: str  # escaped, sortable (``render_html``)
    caption: str = ""


@dataclass(frozen=True)
class HtmlParts:
    """The summary as the site shows it: its legend, each dataset's tables and the aggregate's."""

    legend: str
    datasets: dict[str, list[HtmlTable]]  # dataset (as the leaderboard names it) -> its tables
    aggregate: list[HtmlTable]


def html_parts(summary: Summary, prefix: str = "summary-") -> HtmlParts:
    """The parts of ``summary`` a page shows, table ids starting with ``prefix``."""
    datasets = {
        dataset.dataset: [HtmlTable(t.title, render_html(t), dataset_caption(dataset))
                          for t in dataset_tables(summary, dataset, prefix)]
        for dataset in summary.datasets
    }
    return HtmlParts(legend(summary), datasets, [HtmlTable(t.title, render_html(t)) for t in aggregate_tables(summary)])
