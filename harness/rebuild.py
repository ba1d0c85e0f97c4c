"""``harness report``: every report of a results folder rebuilt from its records, one way down.

1. load: each record file read once (harness.results);
2. derive: the ensembles brought up to date from the loaded cells (harness.ensembles), which
   leaves no stale derived cell behind;
3. compute: the cells under the decision rule and the summary model, leaderboard included
   (harness.report, harness.summary);
4. render: ``leaderboard.<format>`` (harness.report), the figures (harness.figures) and
   ``summary.{md,html,tex}`` (harness.summary).

``harness publish`` (harness/publish.py) goes the same way down for the site.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.ensembles import EnsembleSpec, refresh_ensembles
from harness.errors import HarnessError
from harness.figures import aggregate_figure, dataset_figures
from harness.report import (
    WRITERS, MixedDataWarning, Writer, cells_under_rule, mixed_data_notes, rule_suffix, write_leaderboards,
)
from harness.results import load_results
from harness.rules import OWN
from harness.summary import SummaryOptions, build_summary, write_summary


@dataclass(frozen=True)
class Rebuilt:
    ensemble_records: list[Path]  # derived records written
    files: list[Path]  # the reports and figures written


def rebuild_reports(
    results_dir: Path,
    formats: Mapping[str, Writer] = WRITERS,
    rule: str = OWN,
    options: SummaryOptions = SummaryOptions(),
    ensembles: Sequence[EnsembleSpec] = (),
    on_problem: Callable[[str], None] = lambda message: None,
) -> Rebuilt:
    """Refresh the ensembles of ``results_dir`` (those of ``ensembles`` and those already there)
    and write its leaderboards in ``formats``, figures and summary under decision rule ``rule``.
    ``on_problem`` hears of every cell left out and why; where an ensemble has no cell is also
    written at the end of the summary. Warns (``MixedDataWarning``) about each dataset whose
    records come from different data."""
    figures = results_dir / "figures"
    if figures.exists() and not figures.is_dir():
        raise HarnessError(f"{figures}: is a file, but the report writes its figures into a folder of that name; "
                         "move the file away")
    notes: list[str] = []

    def ensemble_note(note: str) -> None:
        notes.append(note)
        on_problem(note)

    refreshed = refresh_ensembles(results_dir, load_results(results_dir), ensembles, ensemble_note)
    cells = cells_under_rule(refreshed.cells, rule, on_problem)
    for note in mixed_data_notes([cell.shown for cell in cells]):
        warnings.warn(note, MixedDataWarning, stacklevel=2)
    summary = build_summary(cells, rule, options, on_problem)
    summary.notes = notes
    suffix = rule_suffix(rule)
    files = write_leaderboards(results_dir, summary.table, formats, rule) + dataset_figures(summary, figures, suffix)
    files += write_summary(results_dir, summary) + aggregate_figure(summary, figures, suffix)
    return Rebuilt(refreshed.written, files)
