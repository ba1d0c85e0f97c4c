"""Leaderboards, rebuilt from cell records and their stored arrays (no model runs here).

Under the default rule ``own`` the records' metrics are used as they are; under another
decision rule the metrics are recomputed from each cell's stored test scores and the rule's
parameters chosen on valid (harness/evaluation.py). A cell whose rule does not apply (no scores)
keeps its own rule: the ``rule`` column says which rule each row is under.

This module is also the core plugin that registers the built-in leaderboard formats (md, csv,
tex, html) through ``register_report_formats``, the hook a third-party format uses. The figures
are drawn in harness/figures.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
from tabulate import tabulate

from harness.evaluation import metrics_under_rule
from harness.hookspecs import hookimpl
from harness.predictions import PredictionsError
from harness.records import CellRecord, Metrics, safe_name
from harness.results import StoredCell
from harness.rules import OWN
from harness.splits import NO_SLICE, slice_order

Writer = Callable[[pd.DataFrame, Path], None]  # writer(leaderboard table, path of leaderboard.<format>)


class MixedDataWarning(UserWarning):
    """Records of one dataset were computed on different configs or data."""


LEADERBOARD_COLUMNS = [
    "dataset", "method", "slice", "n", "seeds",
    "micro_f1_mean", "micro_f1_std", "macro_f1_mean", "macro_f1_std", "rule",
]
ACCURACY_COLUMNS = ["accuracy_mean", "accuracy_std"]  # appended when some dataset is multiclass
# appended last: median seconds per cell of fit, and of inference (test predictions, plus the
# valid and test scores a method with scores gives for the rules), and the largest peak
# resident memory of the process while one of the row's cells ran (MB; empty where not measured)
COST_COLUMNS = ["fit_s_median", "predict_s_median", "peak_rss_mb_max"]
# appended after them where some cell used a model behind an API (CellRecord.usage): medians per cell
USAGE_COUNTS = ["requests", "prompt_tokens", "completion_tokens", "cost"]
USAGE_COLUMNS = [f"{name}_median" for name in USAGE_COUNTS]
# appended after them where some cell trained on a query strategy's trajectory (harness/trajectories.py):
# median seconds per cell that its trajectory spent, up to that slice, on queries and on the selector's fits
QUERY_COUNTS = ["query_s", "selector_fit_s"]
QUERY_COLUMNS = [f"{name}_median" for name in QUERY_COUNTS]


@dataclass(frozen=True)
class ReportedCell:
    """A cell record as stored (with the path of its file) and as reported under a rule."""

    stored: CellRecord
    path: Path
    shown: CellRecord  # ``metrics`` and ``rule`` under the report's rule


def under_rule(record: CellRecord, path: Path, rule: str) -> CellRecord:
    """``record`` with its ``metrics`` and ``rule`` under ``rule`` (recomputed from its stored
    arrays); raises PredictionsError when they are missing or corrupted."""
    if rule == OWN or not record.ok:
        return record
    used, metrics = metrics_under_rule(record, path, rule)
    return record.model_copy(update={"rule": used, "metrics": Metrics.model_validate(metrics)})


def cells_under_rule(
    cells: Sequence[StoredCell], rule: str = OWN, on_problem: Callable[[str], None] = lambda message: None
) -> list[ReportedCell]:
    """Each of the loaded ``cells`` (``harness.results.load_results``, less the stale derived
    ones: ``harness.ensembles.fresh``) also under ``rule``. A cell whose stored arrays are
    missing or corrupted is left out, and ``on_problem`` is told why."""
    reported = []
    for cell in cells:
        try:
            reported.append(ReportedCell(cell.record, cell.path, under_rule(cell.record, cell.path, rule)))
        except PredictionsError as exc:
            on_problem(f"{exc}; cell left out of the '{rule}' leaderboard")
    return reported


def with_shared_cells(cells: Sequence[ReportedCell]) -> list[ReportedCell]:
    """``cells`` and, for each query strategy's row (``nb · uncertainty``), the random cells it
    shares: its first slice (the smallest slice of its random row) and ``all``, relabelled as
    the strategy's, so that its learning curve and tests cover every slice of the row it is
    paired with. The copies read the random cells' arrays."""
    def data_of(record: CellRecord) -> tuple:
        return record.dataset.name, record.dataset.config_hash, record.dataset.fingerprint, record.seed

    strategy_rows: dict[tuple, dict[str, CellRecord]] = {}  # (data, seed, base) -> label -> a record of it
    have: set[tuple] = set()
    for cell in cells:
        method = cell.stored.method
        if method.strategy and method.base:
            strategy_rows.setdefault((*data_of(cell.stored), method.base), {})[method.label] = cell.stored
            have.add((*data_of(cell.stored), method.label, cell.stored.slice.name))
    if not strategy_rows:
        return list(cells)
    base_slices: dict[tuple, list[str]] = {}
    for cell in cells:
        if not cell.stored.method.strategy:
            base_slices.setdefault((*data_of(cell.stored), cell.stored.method.label), []).append(cell.stored.slice.name)
    shared = []
    for cell in cells:
        key = (*data_of(cell.stored), cell.stored.method.label)
        if cell.stored.method.strategy or key not in strategy_rows:
            continue
        numeric = [name for name in base_slices[key] if name not in ("all", NO_SLICE)]
        first = min(numeric, key=slice_order) if numeric else None
        if cell.stored.slice.name not in ("all", first):
            continue
        for label, example in strategy_rows[key].items():
            if (*data_of(cell.stored), label, cell.stored.slice.name) in have:
                continue
            as_strategy = {"label": label, "strategy": example.method.strategy, "selector": example.method.selector,
                           "base": example.method.base}

            def relabel(record: CellRecord) -> CellRecord:
                return record.model_copy(update={"method": record.method.model_copy(update=as_strategy)})

            shared.append(ReportedCell(relabel(cell.stored), cell.path, relabel(cell.shown)))
    return [*cells, *shared]


def rule_suffix(rule: str) -> str:
    """What the files of a report under ``rule`` add to their name: nothing for ``own``, so
    that a results folder holds the reports of several rules side by side."""
    return "" if rule == OWN else f"-{safe_name(rule)}"


def _data_version(record: CellRecord) -> tuple[str, str]:
    """(config hash, data fingerprint) of the dataset a record was computed on."""
    return (record.dataset.config_hash or "?", record.dataset.fingerprint or "?")


def _versions(records: list[CellRecord]) -> dict[str, dict[tuple[str, str], int]]:
    """Dataset name -> {data version: number of ok cells}."""
    versions: dict[str, dict[tuple[str, str], int]] = {}
    for record in records:
        if record.ok:
            counts = versions.setdefault(record.dataset.name, {})
            counts[_data_version(record)] = counts.get(_data_version(record), 0) + 1
    return versions


def dataset_labels(records: list[CellRecord]) -> list[str]:
    """The name each record's dataset is reported under: its name, qualified by its config hash
    and data fingerprint when the records of that name come from more than one of them, so that
    cells computed on different data are shown apart and never averaged."""
    versions = _versions(records)
    labels = []
    for record in records:
        name = record.dataset.name
        if len(versions.get(name, {})) > 1 and record.dataset.config_hash:
            config_hash, fingerprint = _data_version(record)
            name = f"{name} [config {config_hash[:8]}, data {fingerprint[:8]}]"
        labels.append(name)
    return labels


def mixed_data_notes(records: list[CellRecord]) -> list[str]:
    """One line per dataset whose ok records were computed on more than one config or data version."""
    notes = []
    for name, counts in sorted(_versions(records).items()):
        if len(counts) > 1:
            parts = ", ".join(f"config {c[:8]} data {f[:8]}: {n} cell(s)" for (c, f), n in sorted(counts.items()))
            notes.append(
                f"dataset {name!r}: cell records come from {len(counts)} versions of its config or data ({parts}); "
                "they are shown as separate rows, not averaged; run the older cells again to bring them up to date"
            )
    return notes


def _inference_seconds(timings: dict[str, float]) -> float:
    parts = [timings[key] for key in ("predict_s", "scores_s") if key in timings]
    return sum(parts) if parts else float("nan")


def cell_table(records: list[CellRecord]) -> pd.DataFrame:
    """One row per ok cell; label-free methods ('none' slice) are repeated on every slice of
    their dataset so that they are drawn as a flat line, or keep their 'none' row when the
    dataset has no sliced cells to spread them across. Records of one dataset computed on
    different data appear under different dataset labels (see ``dataset_labels``)."""
    rows = [
        {
            "dataset": label,
            "method": r.method.label,
            "slice": r.slice.name,
            "n": r.slice.actual_n,
            "seed": r.seed,
            "micro_f1": r.metrics.micro_f1,
            "macro_f1": r.metrics.macro_f1,
            "rule": r.rule,
            "accuracy": r.metrics.accuracy if r.metrics.accuracy is not None else float("nan"),
            "fit_s": r.timings.get("fit_s", float("nan")),
            "predict_s": _inference_seconds(r.timings),
            "peak_rss_mb": r.peak_rss_mb if r.peak_rss_mb is not None else float("nan"),
            **{name: r.usage.get(name, float("nan")) for name in USAGE_COUNTS},
            **{name: r.timings.get(name, float("nan")) for name in QUERY_COUNTS},
        }
        for r, label in zip(records, dataset_labels(records))
        if r.ok and r.metrics is not None
    ]
    table = pd.DataFrame(rows, columns=["dataset", "method", "slice", "n", "seed", "micro_f1", "macro_f1", "rule", "accuracy",
                                        "fit_s", "predict_s", "peak_rss_mb", *USAGE_COUNTS, *QUERY_COUNTS])
    flat = table[table["slice"] == NO_SLICE]
    table = table[table["slice"] != NO_SLICE]
    expanded = [table]
    for dataset, group in flat.groupby("dataset"):
        sizes = table[table["dataset"] == dataset].groupby(["slice", "seed"], as_index=False)["n"].first()
        if sizes.empty:
            expanded.append(group)
            continue
        expanded.append(group.drop(columns=["slice", "n"]).merge(sizes, on="seed"))
    return pd.concat(expanded, ignore_index=True)


def leaderboard(records: list[CellRecord]) -> pd.DataFrame:
    """Mean and standard deviation over seeds per (dataset, method, slice, decision rule)."""
    cells = cell_table(records)
    if cells.empty:
        return pd.DataFrame(columns=LEADERBOARD_COLUMNS + COST_COLUMNS)
    grouped = cells.groupby(["dataset", "method", "slice", "rule"])
    table = grouped.agg(
        n=("n", "mean"), seeds=("seed", "nunique"),
        micro_f1_mean=("micro_f1", "mean"), micro_f1_std=("micro_f1", "std"),
        macro_f1_mean=("macro_f1", "mean"), macro_f1_std=("macro_f1", "std"),
        accuracy_mean=("accuracy", "mean"), accuracy_std=("accuracy", "std"),
        fit_s_median=("fit_s", "median"), predict_s_median=("predict_s", "median"), peak_rss_mb_max=("peak_rss_mb", "max"),
        **{f"{name}_median": (name, "median") for name in [*USAGE_COUNTS, *QUERY_COUNTS]},
    ).reset_index()
    # one seed has no spread: its std stays NaN (an empty CSV cell, no "±" shown), not a false 0
    table["order"] = table["slice"].map(slice_order)
    table = table.sort_values(["dataset", "method", "order", "rule"]).drop(columns="order")
    accuracy = ACCURACY_COLUMNS if table["accuracy_mean"].notna().any() else []
    usage = USAGE_COLUMNS if table["requests_median"].notna().any() else []
    queries = QUERY_COLUMNS if table["query_s_median"].notna().any() else []
    return table[LEADERBOARD_COLUMNS + accuracy + COST_COLUMNS + usage + queries].reset_index(drop=True)


def _display(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.copy()
    shown["n"] = shown["n"].round(1)
    metrics = ["micro_f1", "macro_f1"] + (["accuracy"] if "accuracy_mean" in shown else [])
    for metric in metrics:
        shown[metric] = [
            "" if pd.isna(m) else f"{m:.4f}" if pd.isna(s) else f"{m:.4f} ± {s:.4f}"
            for m, s in zip(shown[f"{metric}_mean"], shown[f"{metric}_std"])
        ]
    # the rule is shown once some row is under another rule than the methods' own
    return shown[["dataset", "method", "slice", "n", "seeds", *metrics] + (["rule"] if (shown["rule"] != OWN).any() else [])]


def _write_md(table: pd.DataFrame, path: Path) -> None:
    path.write_text(tabulate(_display(table), headers="keys", tablefmt="github", showindex=False) + "\n", encoding="utf-8")


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    table.to_csv(path, index=False, float_format="%.5f")


def _write_tex(table: pd.DataFrame, path: Path) -> None:
    # tabulate's latex_booktabs escapes &, %, _ and friends in the cells
    path.write_text(tabulate(_display(table), headers="keys", tablefmt="latex_booktabs", showindex=False) + "\n", encoding="utf-8")


def _write_html(table: pd.DataFrame, path: Path) -> None:
    # tabulate's html format escapes cell text
    path.write_text(tabulate(_display(table), headers="keys", tablefmt="html", showindex=False) + "\n", encoding="utf-8")


WRITERS: dict[str, Writer] = {"md": _write_md, "csv": _write_csv, "tex": _write_tex, "html": _write_html}


@hookimpl
def register_report_formats(register: Callable[[str, Writer], None]) -> None:
    for fmt, writer in WRITERS.items():
        register(fmt, writer)


def write_leaderboards(results_dir: Path, table: pd.DataFrame, formats: Mapping[str, Writer] = WRITERS,
                       rule: str = OWN) -> list[Path]:
    """Write ``leaderboard.<format>`` of ``table`` (``leaderboard``) for each of ``formats`` (a
    plugin manager's ``registry.report_formats``) into ``results_dir``. Under a rule other than
    ``own`` the names end in ``-<rule>`` (``leaderboard-per_tag.md``)."""
    written = []
    for fmt, writer in formats.items():
        path = results_dir / f"leaderboard{rule_suffix(rule)}.{fmt}"
        writer(table, path)
        written.append(path)
    return written
