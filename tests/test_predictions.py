"""Stored predictions: written beside each record, checked on read, used by reports under a rule."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.predictions import PredictionsError, read_predictions, write_predictions
from harness.rebuild import rebuild_reports
from harness.report import COST_COLUMNS, LEADERBOARD_COLUMNS, cells_under_rule, leaderboard
from harness.results import load_results
from harness.driver import run_plan
from harness.plan import plan_run
from harness.records import iter_records, read_record, record_files
from harness.testing import TINY_DATASET


def test_arrays_round_trip_and_their_checksum_is_verified(tmp_path):
    arrays = {"tags": np.array(["bug", "docs"]), "test_scores": np.random.default_rng(0).random((5, 2)),
              "test_labels": np.eye(5, 2, dtype=np.uint8)}
    path = tmp_path / "slice-8_seed-0.npz"
    entry = write_predictions(path, arrays)
    assert entry["file"] == "slice-8_seed-0.npz" and len(entry["sha256"]) == 64
    again = read_predictions(path, entry["sha256"])
    assert set(again) == set(arrays)
    for name, array in arrays.items():
        np.testing.assert_array_equal(again[name], array)
        assert again[name].dtype == array.dtype
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(PredictionsError, match="slice-8_seed-0.npz: sha256 .* does not match"):
        read_predictions(path, entry["sha256"])
    path.unlink()
    with pytest.raises(PredictionsError, match="cannot be read"):
        read_predictions(path, entry["sha256"])


def test_pickled_objects_are_refused_even_with_a_matching_checksum(tmp_path):
    import hashlib
    import io

    buffer = io.BytesIO()
    np.savez(buffer, scores=np.array([{"not": "an array"}], dtype=object))
    (tmp_path / "cell.npz").write_bytes(buffer.getvalue())
    with pytest.raises(PredictionsError, match="not a readable .npz of arrays"):
        read_predictions(tmp_path / "cell.npz", hashlib.sha256(buffer.getvalue()).hexdigest())


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    """Results of nb (predict and scores) on the tiny dataset, two seeds."""
    from harness.plugins import make_plugin_manager
    from harness.testing import tiny_run_settings

    settings = tiny_run_settings(tmp_path_factory.mktemp("stored"))
    pm = make_plugin_manager(autoload=False)
    summary = run_plan(pm, plan_run(pm, settings, ["nb"], [TINY_DATASET], [0, 1]))
    assert summary["failed"] == 0
    return Path(settings.results_dir)


def test_each_cell_stores_its_arrays_beside_its_record(tiny_results):
    from harness.metrics import score

    for path in record_files(tiny_results):
        record = read_record(path)
        stored = path.parent / record.predictions.file
        arrays = read_predictions(stored, record.predictions.sha256)
        assert stored.stat().st_size < 300_000
        n_test, n_tags = arrays["test_labels"].shape
        assert arrays["tags"].tolist() == record.dataset.tags
        assert arrays["test_scores"].shape == (n_test, n_tags) and arrays["valid_scores"].shape[1] == n_tags
        # the stored own prediction is the one the record's metrics come from
        assert score(arrays["test_labels"], arrays["test_prediction"], arrays["tags"].tolist()) == record.metrics.model_dump(exclude_none=True)
        assert record.rule == "own" and set(record.rule_metrics) == {"own", "threshold", "per_tag", "top_k"}
        assert record.rule_metrics["own"] == record.metrics
        assert set(record.ranking) == {"macro_average_precision", "label_ranking_average_precision"}


def _records_under_rule(results: Path, rule: str, on_problem=lambda message: None) -> list:
    return [cell.shown for cell in cells_under_rule(load_results(results), rule, on_problem)]


def test_report_under_a_rule_recomputes_the_records_metrics_from_stored_arrays(tiny_results):
    records = {r.key_hash: r for r in iter_records(tiny_results)}
    for rule in ("threshold", "per_tag", "top_k"):
        for record in _records_under_rule(tiny_results, rule):
            assert record.rule == rule
            assert record.metrics == records[record.key_hash].rule_metrics[rule]


def test_own_rule_gives_todays_leaderboard_even_for_records_written_before_rules(tiny_results):
    """Records of today's schema (no rule fields, no arrays) give the same leaderboard."""
    from harness.records import parse_record

    new = list(iter_records(tiny_results))
    new_fields = {"rule", "rule_metrics", "rules", "ranking", "predictions"}
    old = [parse_record({k: v for k, v in r.to_json().items() if k not in new_fields}) for r in new]
    assert all(r.rule == "own" and r.predictions is None for r in old)
    for records in (new, old):
        table = leaderboard(records)
        assert list(table.columns) == LEADERBOARD_COLUMNS + COST_COLUMNS and set(table["rule"]) == {"own"}
    pd.testing.assert_frame_equal(leaderboard(new), leaderboard(old))
    # a rule that needs scores leaves such records under their own rule
    from harness.evaluation import metrics_under_rule

    assert metrics_under_rule(old[0], Path("nowhere.json"), "per_tag") == ("own", old[0].metrics.model_dump())


def test_a_corrupted_file_fails_its_cell_in_the_report_not_the_report(tiny_results, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(tiny_results, results)
    first = record_files(results)[0]
    npz = first.with_suffix(".npz")
    npz.write_bytes(npz.read_bytes()[:-10])
    problems: list[str] = []
    records = _records_under_rule(results, "per_tag", problems.append)
    assert len(records) == len(record_files(results)) - 1
    assert len(problems) == 1 and npz.name in problems[0] and "left out of the 'per_tag' leaderboard" in problems[0]
    assert len(_records_under_rule(results, "own", problems.append)) == len(record_files(results))  # own needs no arrays

    result = CliRunner().invoke(cli, ["report", "--results", str(results), "--rule", "per_tag"])
    assert result.exit_code == 0, result.output
    assert f"warning: {npz}" in result.output and "Traceback" not in result.output
    csv = pd.read_csv(results / "leaderboard-per_tag.csv", dtype={"slice": str})  # beside own's leaderboard.csv
    assert list(csv.columns) == LEADERBOARD_COLUMNS + COST_COLUMNS and set(csv["rule"]) == {"per_tag"}
    assert "| per_tag " in (results / "leaderboard-per_tag.md").read_text()


def test_report_rebuilds_figures_from_records_and_arrays_without_a_model(tiny_results, tmp_path):
    import sys

    results = tmp_path / "results"
    shutil.copytree(tiny_results, results)
    shutil.rmtree(results / "figures", ignore_errors=True)
    written = rebuild_reports(results, rule="per_tag").files
    assert (results / "figures" / f"{TINY_DATASET}-per_tag.png") in written
    # no model is loaded by a report: in a fresh process the model libraries stay unimported
    import subprocess

    code = (
        "import sys; from pathlib import Path; from harness.rebuild import rebuild_reports; "
        f"rebuild_reports(Path({str(results)!r}), rule='per_tag'); "
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_cell_whose_arrays_were_cut_short_runs_again(tiny_results, tmp_path):
    """A valid record beside a truncated .npz counts as missing for run, which rewrites both."""
    from harness.datasets import Settings
    from harness.plugins import make_plugin_manager
    from harness.records import InvalidRecordWarning

    results = tmp_path / "results"
    shutil.copytree(tiny_results, results)
    folder = tiny_results.parent
    settings = Settings(results_dir=str(results), cache_dir=str(tmp_path / "cache"), data_dirs=(str(folder / "data"),),
                        datasets_cfg_dirs=(str(folder / "datasets_cfg"),))
    first = record_files(results)[0]
    npz = first.with_suffix(".npz")
    npz.write_bytes(npz.read_bytes()[:-10])
    pm = make_plugin_manager(autoload=False)
    with pytest.warns(InvalidRecordWarning, match="cut short after the run .*counts as missing and runs again"):
        plan = plan_run(pm, settings, ["nb"], [TINY_DATASET], [0, 1])
    assert [spec.path() for spec in plan.todo] == [first] and len(plan.skipped) == len(record_files(results)) - 1
    assert run_plan(pm, plan)["ok"] == 1
    read_predictions(npz, read_record(first).predictions.sha256)  # rewritten whole
    assert not plan_run(pm, settings, ["nb"], [TINY_DATASET], [0, 1]).todo
