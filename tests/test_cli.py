"""The command line: run, report, ls, and its error messages."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from harness.cli import cli


@pytest.fixture
def invoke():
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_run_then_report(invoke, tmp_path, mirror_dir):
    results = tmp_path / "results"
    args = ["run", "--methods", "nb", "--datasets", "github-issues-datasets", "--seeds", "0,1", "--slices", "8,all",
            "--data-dir", mirror_dir, "--results", results, "--cache-dir", tmp_path / "cache"]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "4 cells: 4 to run, 0 already done" in first.output
    assert (results / "leaderboard.csv").exists() and (results / "figures" / "github-issues-datasets.png").exists()
    second = invoke(*args)
    assert "4 cells: 0 to run, 4 already done" in second.output
    (results / "leaderboard.md").unlink()
    report = invoke("report", "--results", results)
    assert report.exit_code == 0 and (results / "leaderboard.md").exists()
    assert "## github-issues-datasets" in report.output and "| nb " in report.output  # the summary it printed


def test_run_errors_are_one_line(invoke, tmp_path, mirror_dir):
    result = invoke("run", "--methods", "nb", "--datasets", "github-issues", "--data-dir", mirror_dir, "--results", tmp_path)
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: unknown dataset 'github-issues'; did you mean 'github-issues-datasets'? "
        "(known: github-issues-datasets, github-issues-datasets-kind, github-issues-datasets-plain, "
        "github-issues-transformers)"
    )


def test_offline_without_mirror_says_what_to_set(invoke, tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "far.yaml").write_text(
        "source: {file: far.jsonl, url: 'http://127.0.0.1:9/far.jsonl'}\ntext: '{title}'\nlabels: {field: labels}\n"
    )
    result = invoke("run", "--methods", "nb", "--datasets", "far", "--datasets-cfg", tmp_path / "cfg", "--results", tmp_path / "r",
                    "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 2
    assert "file far.jsonl not found locally" in result.output and "--data-dir DIR" in result.output


def test_report_without_records(invoke, tmp_path):
    result = invoke("report", "--results", tmp_path)
    assert result.exit_code == 2 and "no cell records" in result.output


def test_ls(invoke):
    plugins = {line.split()[0]: line for line in invoke("ls", "plugins").output.splitlines()[2:]}
    assert "methods: nb " in plugins["harness_nb"] + " "
    assert "core" in plugins["harness.sources"] and "readers: jsonl, csv, parquet" in plugins["harness.sources"]
    assert "core" in plugins["harness.report"] and "report formats: md, csv, tex, html" in plugins["harness.report"]
    assert "  alpha = 1.0\n" in invoke("ls", "methods").output
    # the parameters a run would use: the preset's, not the class defaults
    zeroshot = invoke("ls", "methods").output.split("\nzeroshot ")[1].split("\n\n")[0]
    assert "  calibrate = 'center'  # preset\n" in zeroshot + "\n"
    book = invoke("ls", "methods", "--preset", "book").output.split("\nzeroshot ")[1].split("\n\n")[0]
    assert "  backend = 'nli'  # preset" in book and "  calibrate = 'none'\n" in book + "\n"
    unknown = invoke("ls", "methods", "--preset", "nope")
    assert unknown.exit_code == 2 and "unknown preset 'nope'" in unknown.output
    datasets = invoke("ls", "datasets").output
    assert "github-issues-datasets" in datasets and "github-issues-transformers" in datasets


def test_python_dash_m_harness_is_the_command_line(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "harness", "ls", "datasets"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "github-issues-datasets" in result.stdout
