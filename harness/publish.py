"""``harness publish``: a static leaderboard site built from the cell records of results folders.

Several folders merge into one leaderboard. One leaderboard cell is (dataset, method label,
slice, seed); when folders hold different records for it (other metrics for the same cell key,
or another cell key: parameters, method version or data) the record of the earliest folder is
used, and the conflict is warned about and listed on the dataset's page. Every record is copied
into the site so that it can be downloaded. One way down, as ``harness report`` goes
(harness/rebuild.py): each folder loaded once (harness.results), the records merged, the summary
computed from the cells kept (harness.summary), then the pages rendered from it. Pages are
rendered by Jinja2 with autoescaping: dataset, tag and method names are escaped.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import secrets
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from markupsafe import Markup

from harness.ensembles import fresh
from harness.figures import aggregate_figure, write_figure
from harness.records import CELLS_DIR, CellRecord
from harness.report import cells_under_rule, dataset_labels, mixed_data_notes
from harness.results import StoredCell, load_results
from harness.rules import OWN
from harness.splits import NO_SLICE, slice_order
from harness.summary import HtmlParts, Summary, SummaryOptions, build_summary, count_phrase, html_parts

TEMPLATE_DIR = Path(__file__).resolve().parent / "site_templates"
SITE_MARKER = ".harness-site"  # marks a folder this module wrote, so it may be replaced


class PublishError(ValueError):
    """A results folder or the output folder cannot be used."""


@dataclass
class SourcedRecord:
    """A loaded cell, the results folder it came from (1-based) and its copy in the site."""

    stored: StoredCell
    source: int
    site_path: str  # relative to the site root, with '/' separators

    @property
    def record(self) -> CellRecord:
        return self.stored.record

    @property
    def file(self) -> Path:
        return self.stored.path

    @property
    def cell(self) -> tuple[str, str, str, int]:
        r = self.record
        return (r.dataset.name, r.method.label, r.slice.name, r.seed)

    @property
    def ok(self) -> bool:
        return self.record.ok


@dataclass
class Conflict:
    """Records from different folders that disagree about one leaderboard cell."""

    kept: SourcedRecord
    others: list[tuple[SourcedRecord, str]]  # (record, why it disagrees)

    @property
    def cell(self) -> tuple[str, str, str, int]:
        return self.kept.cell

    def describe(self) -> str:
        dataset, method, slice_name, seed = self.cell
        reasons = "; ".join(f"{other.file} ({why})" for other, why in self.others)
        return (f"conflicting records for dataset {dataset!r} method {method!r} slice {slice_name} seed {seed}: "
                f"kept {self.kept.file}, not used: {reasons}")


@dataclass
class Site:
    index: Path
    datasets: list[str]
    n_records: int
    conflicts: list[Conflict] = field(default_factory=list)
    mixed_data: list[str] = field(default_factory=list)  # harness.report.mixed_data_notes of the records used
    problems: list[str] = field(default_factory=list)  # cells left out under the rule or of the significance tests


def collect_records(results_dirs: list[Path], on_problem: Callable[[str], None] = lambda message: None) -> list[SourcedRecord]:
    """Every readable record of every folder, in folder order, with its path inside the site;
    a derived record whose members changed since it was built is left out (``on_problem``)."""
    collected = []
    for source, folder in enumerate(results_dirs, start=1):
        if not (folder / CELLS_DIR).is_dir():
            raise PublishError(f"--results {folder}: no cell records (expected a '{CELLS_DIR}' folder); run 'harness run' first")
        for stored in fresh(load_results(folder), on_problem):
            relative = stored.path.relative_to(folder / CELLS_DIR).as_posix()
            collected.append(SourcedRecord(stored, source, f"records/{source}/{relative}"))
    if not collected:
        raise PublishError(f"no cell records found in {', '.join(map(str, results_dirs))}")
    return collected


def _same_metrics(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal up to float rounding: the same cell run twice should score the same."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_metrics(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _metrics(record: CellRecord) -> dict[str, Any]:
    return record.metrics.model_dump() if record.metrics is not None else {}


def merge_records(records: list[SourcedRecord]) -> tuple[list[SourcedRecord], list[Conflict]]:
    """One record per leaderboard cell (the earliest folder's ok record) and the conflicts.

    An identical record in a later folder is a duplicate, not a conflict; a failed record is
    used only when no folder has an ok one for that cell.
    """
    groups: dict[tuple, list[SourcedRecord]] = defaultdict(list)
    for item in records:
        groups[item.cell].append(item)
    kept, conflicts = [], []
    for items in groups.values():
        ok = [item for item in items if item.ok]
        chosen = ok[0] if ok else items[0]
        kept.append(chosen)
        others = []
        for other in ok[1:]:
            if other.record.key_hash != chosen.record.key_hash:
                others.append((other, "another cell key: parameters, method version or data differ"))
            elif not _same_metrics(_metrics(other.record), _metrics(chosen.record)):
                others.append((other, "same cell key, different metrics"))
        if others:
            conflicts.append(Conflict(chosen, others))
    return kept, conflicts


def _page_names(datasets: list[str]) -> dict[str, str]:
    """A file-name-safe, unique page stem per dataset."""
    names: dict[str, str] = {}
    for dataset in datasets:
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset).lstrip(".") or "dataset"
        candidate, number = stem, 2
        while candidate in names.values():
            candidate, number = f"{stem}-{number}", number + 1
        names[dataset] = candidate
    return names


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / SITE_MARKER).exists():
        raise PublishError(f"--out {out_dir}: folder exists and was not written by 'harness publish'; choose an empty or new folder")


def _staging_dir(out_dir: Path) -> Path:
    """A new, empty folder beside ``out_dir`` (same file system, so it can be renamed into place)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    while True:
        staging = out_dir.with_name(f".{out_dir.name}.{secrets.token_hex(4)}.tmp")
        try:
            staging.mkdir()  # unlike mkdtemp's 0700, the usual mode: a site is for others to read
            return staging
        except FileExistsError:
            continue


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Put the finished site in place of the previous one, then drop the previous one."""
    previous = None
    if out_dir.exists():
        previous = staging.with_suffix(".old")
        os.replace(out_dir, previous)
    os.replace(staging, out_dir)
    if previous is not None:
        shutil.rmtree(previous)


def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,  # every value from records (dataset, tag, method names) is escaped
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _distinct(values) -> list[Any]:
    return sorted({v for v in values if v not in (None, "")}, key=str)


def _provenance(items: list[SourcedRecord]) -> list[dict[str, Any]]:
    """What produced each method's cells on one dataset."""
    by_method: dict[str, list[SourcedRecord]] = defaultdict(list)
    for item in items:
        by_method[item.record.method.label].append(item)
    rows = []
    for label in sorted(by_method):
        group = by_method[label]
        methods = [i.record.method for i in group]
        envs = [i.record.environment for i in group]
        dists = {f"{m.distribution} {m.distribution_version}" for m in methods if m.distribution}
        params = _distinct(json.dumps(m.params, sort_keys=True, indent=1) for m in methods)
        dates = _distinct(i.record.finished_at for i in group)
        rows.append({
            "label": label,
            "name": _distinct(m.name for m in methods),
            "version": _distinct(m.version for m in methods),
            "plugin": _distinct(m.plugin for m in methods),
            "distribution": sorted(dists),
            "params": params,
            "seeds": _distinct(i.record.seed for i in group),
            "harness": _distinct(e.get("harness_version") for e in envs),
            "git": _distinct((e.get("git_sha") or "")[:10] for e in envs),
            "python": _distinct(e.get("python") for e in envs),
            "dates": f"{dates[0]} … {dates[-1]}" if len(dates) > 1 else (dates[0] if dates else ""),
            "sources": _distinct(i.source for i in group),
        })
    return rows


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def _fmt_std(value: float) -> str:
    return "" if math.isnan(value) else _fmt(value)  # one seed: no spread to show


def _dataset_page(dataset: str, items: list[SourcedRecord], conflicts: list[Conflict], figures: list[str],
                  shown: dict[int, CellRecord], summary: Summary, parts: HtmlParts) -> dict[str, Any]:
    ok = [i for i in items if i.ok and id(i) in shown]
    table = summary.table[summary.table["dataset"] == dataset]  # none where every cell failed or was left out
    links: dict[tuple[str, str], list[SourcedRecord]] = defaultdict(list)
    for item in sorted(ok, key=lambda i: i.record.seed):
        links[(item.record.method.label, item.record.slice.name)].append(item)
    disputed = {(c.cell[1], c.cell[2]) for c in conflicts}
    # the site sorts on a slice's place in harness.splits' order ('none' first, 'all' last)
    positions = {name: place for place, name in enumerate(sorted(set(table["slice"]), key=slice_order))}
    rows = []
    for row in table.itertuples(index=False):
        # label-free methods ran once ('none' slice) and are repeated on every slice
        key = (row.method, row.slice) if (row.method, row.slice) in links else (row.method, NO_SLICE)
        rows.append({
            "method": row.method, "slice": row.slice, "slice_sort": positions[row.slice],
            "n": f"{row.n:.1f}".removesuffix(".0"), "n_sort": row.n, "seeds": int(row.seeds),
            "micro": _fmt(row.micro_f1_mean), "micro_sort": row.micro_f1_mean, "micro_std": _fmt_std(row.micro_f1_std),
            "macro": _fmt(row.macro_f1_mean), "macro_sort": row.macro_f1_mean, "macro_std": _fmt_std(row.macro_f1_std),
            "records": [(f"seed {i.record.seed}", quote(i.site_path)) for i in links.get(key, [])],
            "disputed": key in disputed,
        })
    failed = [i for i in items if not i.ok]
    first = ok[0].record.dataset if ok else items[0].record.dataset
    return {
        "dataset": dataset,
        "tags": first.tags or [],
        "sizes": first.sizes or {},
        "rows": rows,
        "figures": figures,
        "rule": summary.rule,
        "legend": parts.legend,
        "summary_tables": [{"title": t.title, "html": Markup(t.html), "caption": t.caption}
                           for t in parts.datasets.get(dataset, [])],
        "provenance": _provenance(items),
        "conflicts": [
            {"cell": c.cell, "kept": c.kept, "kept_link": quote(c.kept.site_path),
             "others": [(o, quote(o.site_path), why) for o, why in c.others]}
            for c in conflicts
        ],
        "failed": [(i, quote(i.site_path)) for i in failed],
    }


def publish_site(results_dirs: list[Path], out_dir: Path, rule: str = OWN, options: SummaryOptions = SummaryOptions()) -> Site:
    """Write ``out_dir/index.html``, one page per dataset, figures and every record, with the
    leaderboards and summary under decision rule ``rule``."""
    stale: list[str] = []
    records = collect_records(results_dirs, stale.append)
    kept, conflicts = merge_records(records)
    _check_out_dir(out_dir)
    # rendered aside and swapped in only when complete: a failing publish leaves the old site
    staging = _staging_dir(Path(os.path.abspath(out_dir)))  # '--out .' has a name to put beside
    try:
        site = _render_site(records, kept, conflicts, results_dirs, staging, rule, options)
        _swap_in(staging, Path(os.path.abspath(out_dir)))
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    site.index = out_dir / site.index.name
    site.problems = stale + site.problems
    return site


def _source_name(folder: Path) -> str:
    """How the site names a results folder: as given when relative; an absolute path would show
    the publishing machine's file system, so only its last part."""
    return folder.name if folder.is_absolute() and folder.name else folder.as_posix()


def _render_site(records: list[SourcedRecord], kept: list[SourcedRecord], conflicts: list[Conflict],
                 results_dirs: list[Path], out_dir: Path, rule: str, options: SummaryOptions) -> Site:
    from harness import __version__

    (out_dir / SITE_MARKER).write_text("written by harness publish; replaced on the next publish\n", encoding="utf-8")
    for item in records:  # all of them, conflicting ones included, so each can be downloaded
        target = out_dir / item.site_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(item.stored.data)  # the bytes as loaded: no record is read twice

    env = _environment()
    problems: list[str] = []
    cells = cells_under_rule([item.stored for item in kept], rule, problems.append)
    by_dataset: dict[str, list[SourcedRecord]] = defaultdict(list)
    # a dataset whose records come from different data gets one page per version (never averaged)
    for item, label in zip(kept, dataset_labels([item.record for item in kept])):
        by_dataset[label].append(item)
    mixed_data = mixed_data_notes([item.record for item in kept])
    by_path = {item.file: item for item in kept}  # one kept record per leaderboard cell, each its own file
    shown = {id(by_path[cell.path]): cell.shown for cell in cells}
    summary = build_summary(cells, rule, options, problems.append)
    parts = html_parts(summary)
    datasets = sorted(by_dataset)
    pages = _page_names(datasets)
    generated = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    sources = [(number, _source_name(folder)) for number, folder in enumerate(results_dirs, start=1)]
    summaries = []
    for dataset in datasets:
        items = by_dataset[dataset]
        name = items[0].record.dataset.name  # the records of one page share one data version
        drawn = write_figure(summary.cell_rows[summary.cell_rows["dataset"] == dataset],
                             summary.table[summary.table["dataset"] == dataset], name, out_dir / "figures", pages[dataset])
        figures = [f"figures/{quote(path.name)}" for path in drawn]
        dataset_conflicts = [c for c in conflicts if any(c.kept is item for item in items)]
        page = _dataset_page(dataset, items, dataset_conflicts, figures, shown, summary, parts)
        html = env.get_template("dataset.html").render(
            title=f"{dataset} leaderboard", generated=generated, harness_version=__version__, sources=sources, **page
        )
        (out_dir / f"{pages[dataset]}.html").write_text(html, encoding="utf-8")
        dates = _distinct(i.record.finished_at for i in items)
        seeds = _distinct(i.record.seed for i in items)
        summaries.append({
            "dataset": dataset, "page": quote(f"{pages[dataset]}.html"),
            "methods": len({i.record.method.label for i in items}),
            "cells": len(items), "failed": sum(not i.ok for i in items),
            "seeds": f"{count_phrase(len(seeds), 'seed')}: {', '.join(str(s) for s in seeds)}", "n_seeds": len(seeds),
            "last_run": dates[-1] if dates else "", "conflicts": len(dataset_conflicts),
        })
    aggregate = [{"title": t.title, "html": Markup(t.html)} for t in parts.aggregate]
    aggregate_figures = [f"figures/{quote(p.name)}" for p in aggregate_figure(summary, out_dir / "figures")]
    index = out_dir / "index.html"
    index.write_text(
        env.get_template("index.html").render(
            title="Leaderboards", generated=generated, harness_version=__version__, sources=sources,
            datasets=summaries, n_conflicts=len(conflicts), rule=rule, aggregate=aggregate,
            aggregate_figures=aggregate_figures,
        ),
        encoding="utf-8",
    )
    return Site(index=index, datasets=datasets, n_records=len(records), conflicts=conflicts, mixed_data=mixed_data,
                problems=problems)
