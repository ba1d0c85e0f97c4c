"""Leaderboards and figures, rebuilt from cell records and their stored arrays (no model runs here).

Under the default rule ``own`` the records' metrics are used as they are; under another
decision rule the metrics are recomputed from each cell's stored test scores and the rule's
parameters chosen on valid (harness/evaluation.py). A cell whose rule does not apply (no scores)
keeps its own rule: the ``rule`` column says which rule each row is under.

This module is also the core plugin that registers the built-in leaderboard formats (md, csv,
tex, html) through ``register_report_formats``, the hook a third-party format uses.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Callable

import pandas as pd
from tabulate import tabulate

from harness import hookimpl
from harness.evaluation import metrics_under_rule
from harness.predictions import PredictionsError
from harness.records import CellRecord, Metrics, read_record, record_files, safe_name
from harness.rules import OWN
from harness.splits import NO_SLICE

Writer = Callable[[pd.DataFrame, Path], None]  # writer(leaderboard table, path of leaderboard.<format>)


class MixedDataWarning(UserWarning):
    """Records of one dataset were computed on different configs or data."""


LEADERBOARD_COLUMNS = [
    "dataset", "method", "slice", "n", "seeds",
    "micro_f1_mean", "micro_f1_std", "macro_f1_mean", "macro_f1_std", "rule",
]
ACCURACY_COLUMNS = ["accuracy_mean", "accuracy_std"]  # appended when some dataset is multiclass


def records_under_rule(
    results_dir: Path, rule: str = OWN, on_problem: Callable[[str], None] = lambda message: None
) -> list[CellRecord]:
    """The valid records in ``results_dir``; under a rule other than ``own`` each ok record's
    ``metrics`` and ``rule`` are those under ``rule``. A cell whose stored arrays are missing or
    corrupted is left out, and ``on_problem`` is told why."""
    records = []
    for path in record_files(results_dir):
        record = read_record(path)
        if record is None:
            continue
        if rule != OWN and record.ok:
            try:
                used, metrics = metrics_under_rule(record, path, rule)
            except PredictionsError as exc:
                on_problem(f"{exc}; cell left out of the '{rule}' leaderboard")
                continue
            record = record.model_copy(update={"rule": used, "metrics": Metrics.model_validate(metrics)})
        records.append(record)
    return records


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
        }
        for r, label in zip(records, dataset_labels(records))
        if r.ok and r.metrics is not None
    ]
    table = pd.DataFrame(rows, columns=["dataset", "method", "slice", "n", "seed", "micro_f1", "macro_f1", "rule", "accuracy"])
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


def _slice_order(name: str) -> float:
    if name == NO_SLICE:  # a label-free method with no sliced cells beside it
        return -1.0
    return float("inf") if name == "all" else float(name)


def leaderboard(records: list[CellRecord]) -> pd.DataFrame:
    """Mean and standard deviation over seeds per (dataset, method, slice, decision rule)."""
    cells = cell_table(records)
    if cells.empty:
        return pd.DataFrame(columns=LEADERBOARD_COLUMNS)
    grouped = cells.groupby(["dataset", "method", "slice", "rule"])
    table = grouped.agg(
        n=("n", "mean"), seeds=("seed", "nunique"),
        micro_f1_mean=("micro_f1", "mean"), micro_f1_std=("micro_f1", "std"),
        macro_f1_mean=("macro_f1", "mean"), macro_f1_std=("macro_f1", "std"),
        accuracy_mean=("accuracy", "mean"), accuracy_std=("accuracy", "std"),
    ).reset_index()
    # one seed has no spread: its std stays NaN (an empty CSV cell, no "±" shown), not a false 0
    table["order"] = table["slice"].map(_slice_order)
    table = table.sort_values(["dataset", "method", "order", "rule"]).drop(columns="order")
    accuracy = ACCURACY_COLUMNS if table["accuracy_mean"].notna().any() else []
    return table[LEADERBOARD_COLUMNS + accuracy].reset_index(drop=True)


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


def write_figure(records: list[CellRecord], dataset: str, folder: Path) -> list[Path]:
    """Micro and macro F1 against training samples, one line per method, band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    cells = cell_table(records)
    cells = cells[(cells["dataset"] == dataset) & (cells["slice"] != NO_SLICE)].copy()  # 'none' alone has no x
    if cells.empty:
        return []
    # x = the slice's nominal size, as the book plots it; "all" at the mean actual train size
    all_n = cells.loc[cells["slice"] == "all", "n"].mean()
    cells["samples"] = [all_n if s == "all" else float(s) for s in cells["slice"]]
    figure, axes = plt.subplots(1, 2, figsize=(12.5, 4.2), sharey=True)
    for axis, metric, title in ((axes[0], "micro_f1", "Micro F1"), (axes[1], "macro_f1", "Macro F1")):
        sns.lineplot(data=cells, x="samples", y=metric, hue="method", errorbar="sd", marker="o", ax=axis,
                     hue_order=sorted(cells["method"].unique()))
        axis.set_xscale("log", base=2)
        ticks = sorted(cells["samples"].unique())
        axis.set_xticks(ticks, [("all" if t == all_n else f"{int(t)}") for t in ticks])
        axis.set_xlabel("Number of training samples")
        axis.set_ylabel(title)
        axis.set_title(title)
        axis.grid(alpha=0.3)
        if axis is axes[0]:
            axis.get_legend().remove()
        else:
            axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", title="method")
    per_method = cells.groupby("method")["seed"].nunique()
    seeds = f"{per_method.min()}" if per_method.min() == per_method.max() else f"{per_method.min()} to {per_method.max()}"
    rules = sorted(cells["rule"].unique())
    ruled = "" if rules == [OWN] else f"; decision rule: {', '.join(rules)}"
    figure.suptitle(f"{dataset}: test F1 vs training samples ({seeds} seeds per method; band = ±1 sd{ruled})")
    figure.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{safe_name(dataset)}.png", folder / f"{safe_name(dataset)}.svg"]
    for path in paths:
        figure.savefig(path, dpi=120)
    plt.close(figure)
    return paths


def write_reports(
    results_dir: Path,
    formats: Mapping[str, Writer] = WRITERS,
    rule: str = OWN,
    on_problem: Callable[[str], None] = lambda message: None,
) -> list[Path]:
    """Write ``leaderboard.<format>`` for each of ``formats`` (a plugin manager's
    ``registry.report_formats``) and ``figures/<dataset>.{png,svg}`` from the records in
    results_dir, under decision rule ``rule`` (``on_problem`` hears of cells left out).

    Warns (``MixedDataWarning``) about each dataset whose records come from different data."""
    records = records_under_rule(results_dir, rule, on_problem)
    figures = results_dir / "figures"
    if figures.exists() and not figures.is_dir():
        raise ValueError(f"{figures}: is a file, but the report writes its figures into a folder of that name; move the file away")
    for note in mixed_data_notes(records):
        warnings.warn(note, MixedDataWarning, stacklevel=2)
    table = leaderboard(records)
    written = []
    for fmt, writer in formats.items():
        path = results_dir / f"leaderboard.{fmt}"
        writer(table, path)
        written.append(path)
    for dataset in sorted(table["dataset"].unique()):
        written += write_figure(records, dataset, figures)
    return written
