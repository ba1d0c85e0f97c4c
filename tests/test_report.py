"""Leaderboards and figures are rebuilt from records alone."""

from __future__ import annotations

import pandas as pd
import pytest

from harness.records import CellRecord, parse_record, record_path, write_record
from harness.rebuild import rebuild_reports
from harness.report import COST_COLUMNS, LEADERBOARD_COLUMNS, leaderboard


def _record(method, slice_name, seed, micro, macro, n, dataset="toy", status="ok") -> CellRecord:
    return parse_record({
        "schema_version": 2, "key": {}, "key_hash": f"{method}-{slice_name}-{seed}", "status": status, "seed": seed,
        "dataset": {"name": dataset}, "method": {"name": method.split("@")[0], "label": method, "preset": "default", "params": {}},
        "slice": {"name": slice_name, "actual_n": n},
        "metrics": {"micro_f1": micro, "macro_f1": macro} if status == "ok" else None,
    })


RECORDS = [
    _record("nb", "8", 0, 0.50, 0.20, 6), _record("nb", "8", 1, 0.60, 0.30, 8),
    _record("nb", "all", 0, 0.70, 0.40, 100), _record("nb", "all", 1, 0.72, 0.42, 100),
    _record("zs", "none", 0, 0.45, 0.35, 0), _record("zs", "none", 1, 0.45, 0.35, 0),
    _record("nb", "16", 0, None, None, 0, status="failed"),
]


def test_leaderboard_means_and_stds_over_seeds():
    table = leaderboard(RECORDS)
    assert list(table.columns) == LEADERBOARD_COLUMNS + COST_COLUMNS  # new columns only ever at the end
    row = table[(table["method"] == "nb") & (table["slice"] == "8")].iloc[0]
    assert row["seeds"] == 2 and row["n"] == 7
    assert row["micro_f1_mean"] == pytest.approx(0.55) and row["micro_f1_std"] == pytest.approx(0.0707107, abs=1e-6)
    # slices in numeric order, 'all' last
    assert table[table["method"] == "nb"]["slice"].tolist() == ["8", "all"]


def test_label_free_method_is_a_flat_line_on_every_slice():
    table = leaderboard(RECORDS)
    zero_shot = table[table["method"] == "zs"]
    assert zero_shot["slice"].tolist() == ["8", "all"]
    assert zero_shot["micro_f1_mean"].tolist() == [0.45, 0.45]
    assert zero_shot["n"].tolist() == [7, 100]


def test_label_free_method_alone_keeps_its_row_and_draws_no_figure(tmp_path):
    records = [_record("zs", "none", 0, 0.45, 0.35, 0)]
    table = leaderboard(records)
    assert table[["method", "slice", "micro_f1_mean"]].values.tolist() == [["zs", "none", 0.45]]
    write_record(record_path(tmp_path, "toy", "zs", "none", 0), records[0])
    written = {p.name for p in rebuild_reports(tmp_path).files}
    assert written == {"leaderboard.md", "leaderboard.csv", "leaderboard.tex", "leaderboard.html", "summary.md", "summary.html", "summary.tex"}


def test_write_reports_from_records_only(tmp_path):
    for i, record in enumerate(RECORDS):
        write_record(record_path(tmp_path, "toy", record.method.label, record.slice.name, record.seed), record)
    written = {p.name for p in rebuild_reports(tmp_path).files}
    assert written == {"leaderboard.md", "leaderboard.csv", "leaderboard.tex", "leaderboard.html", "toy.png", "toy.svg", "summary.md", "summary.html", "summary.tex"}
    csv = pd.read_csv(tmp_path / "leaderboard.csv", dtype={"slice": str})
    assert list(csv.columns) == LEADERBOARD_COLUMNS + COST_COLUMNS and len(csv) == 4
    assert "0.5500 ± 0.0707" in (tmp_path / "leaderboard.md").read_text()


def test_one_seed_shows_no_spread(tmp_path):
    records = [_record("ft", "8", 0, 0.50, 0.20, 6), *RECORDS[:2]]
    table = leaderboard(records)
    one_seed = table[table["method"] == "ft"].iloc[0]
    assert one_seed["seeds"] == 1 and pd.isna(one_seed["micro_f1_std"])  # unknown, not 0
    for record in records:
        write_record(record_path(tmp_path, "toy", record.method.label, "8", record.seed), record)
    rebuild_reports(tmp_path)
    rows = {line.split("|")[2].strip(): line for line in (tmp_path / "leaderboard.md").read_text().splitlines()[2:]}
    assert "| 0.5000 " in rows["ft"] and "±" not in rows["ft"]
    assert "0.5500 ± 0.0707" in rows["nb"]
    assert (tmp_path / "figures" / "toy.png").stat().st_size > 10_000


def test_names_are_escaped_in_html_and_latex(tmp_path):
    records = [_record("nb@<b>x</b>", "8", 0, 0.5, 0.2, 6, dataset="a&b_c")]
    for record in records:
        write_record(record_path(tmp_path, "a&b_c", record.method.label, "8", 0), record)
    rebuild_reports(tmp_path)
    assert "&lt;b&gt;x&lt;/b&gt;" in (tmp_path / "leaderboard.html").read_text()
    assert r"a\&b\_c" in (tmp_path / "leaderboard.tex").read_text()
