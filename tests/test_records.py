"""The typed cell record: old schemas migrate, invalid files count as missing and say why."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.records import SCHEMA_VERSION, InvalidRecordWarning, read_record, record_files, write_record
from harness.testing import write_tiny_dataset

# A record as schema 1 (the harness before layout v2) wrote it, per_tag and environment trimmed.
V1_RECORD = {
    "dataset": {"config_hash": "1f0e6bd3c4a25a47", "fingerprint": "4c8e4d5e9d6a3b21", "name": "github-issues-datasets",
                "sizes": {"test": 413, "train": 818, "unlabeled": 5546, "valid": 410}, "tags": ["bug", "question"]},
    "details": {},
    "environment": {"harness_version": "0.1.0", "python": "3.11.7"},
    "finished_at": "2026-11-30T10:00:00+00:00",
    "key": {"config_hash": "1f0e6bd3c4a25a47", "dataset": "github-issues-datasets", "fingerprint": "4c8e4d5e9d6a3b21",
            "method": "nb", "method_version": "1", "params_hash": "44136fa355b3678a", "seed": 0, "slice": "8",
            "slice_index_hash": "0d1c2b3a49586776"},
    "key_hash": "5f1d4b7a9c2e3f60",
    "method": {"distribution": "fewlabels-harness", "distribution_version": "0.1.0", "label": "nb", "name": "nb",
               "params": {"alpha": 1.0}, "plugin": "harness_nb", "preset": "default", "version": "1"},
    "metrics": {"macro_f1": 0.14516, "micro_f1": 0.52195, "per_tag": {"bug": {"f1": 0.5, "precision": 0.5, "recall": 0.5, "support": 10}}},
    "schema_version": 1,
    "seed": 0,
    "slice": {"actual_n": 6, "index_hash": "0d1c2b3a49586776", "name": "8", "nominal": 8},
    "status": "ok",
    "timings": {"fit_s": 0.01, "predict_s": 0.01, "total_s": 0.05},
}


def test_a_schema_1_record_loads_as_the_current_schema(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps(V1_RECORD))
    record = read_record(path)
    assert record.schema_version == SCHEMA_VERSION == 2 and record.dataset.revision is None
    assert (record.metrics.micro_f1, record.slice.actual_n, record.key_hash) == (0.52195, 6, "5f1d4b7a9c2e3f60")
    assert record.metrics.per_tag == V1_RECORD["metrics"]["per_tag"]  # fields beyond the schema survive
    write_record(tmp_path / "again.json", record)
    assert read_record(tmp_path / "again.json") == record


BAD_RECORDS = {
    "metrics is a string": ({**V1_RECORD, "metrics": "0.5"}, "field 'metrics'"),
    "slice.name an integer": ({**V1_RECORD, "slice": {**V1_RECORD["slice"], "name": 8}}, "field 'slice.name'"),
    "a JSON list": ([V1_RECORD], "expected a JSON object, got a JSON list"),
    "no dataset": ({k: v for k, v in V1_RECORD.items() if k != "dataset"}, "field 'dataset': Field required"),
    "not JSON": ('{"status": "ok", ', "not JSON"),
}


@pytest.mark.parametrize("content, reason", BAD_RECORDS.values(), ids=list(BAD_RECORDS))
def test_an_invalid_record_is_reported_and_counts_as_missing(tmp_path, content, reason):
    path = tmp_path / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.warns(InvalidRecordWarning) as caught:
        assert read_record(path) is None
    (message,) = [str(w.message) for w in caught]
    assert message.startswith(f"{path}: not a valid cell record (") and reason in message and "\n" not in message


def test_run_recomputes_an_invalid_record_and_report_status_publish_go_on(tmp_path):
    cfg_dir, data_dir = write_tiny_dataset(tmp_path)
    results = tmp_path / "results"
    run = ["run", "--methods", "nb", "--datasets", "tiny", "--seeds", "0", "--datasets-cfg", cfg_dir,
           "--data-dir", data_dir, "--results", results, "--cache-dir", tmp_path / "cache", "--no-report"]
    invoke = lambda *args: CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)  # noqa: E731
    assert invoke(*run).exit_code == 0
    first, *others = record_files(results)
    first.write_text(json.dumps({**json.loads(first.read_text()), "metrics": "broken"}))
    for command in (["report", "--results", results], ["status", "--results", results],
                    ["publish", "--results", results, "--out", tmp_path / "site"]):
        result = invoke(*command)
        assert result.exit_code == 0, result.output
        assert f"warning: {first}: not a valid cell record (field 'metrics'" in result.output
    again = invoke(*run)
    assert again.exit_code == 0 and f"{len(others) + 1} cells: 1 to run, {len(others)} already done" in again.output
    assert read_record(first).metrics.micro_f1 >= 0  # computed again, valid now
    shutil.rmtree(tmp_path / "site")
