"""`harness dataset new` and `harness dataset show`: configs proposed from small files in each
supported shape, the profile, labels.min_count, and one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from harness.cli import cli
from harness.config import load_config_file
from harness.data import prepare

KINDS = {"bug": "crash error traceback", "docs": "typo readme page", "feature": "add support option"}


@pytest.fixture
def invoke(tmp_path, monkeypatch):
    """The CLI run in an empty folder (where ./datasets_cfg and the data file go)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    monkeypatch.delenv("HARNESS_DATASETS_CFG", raising=False)
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _issue(i: int) -> tuple[str, str, str]:
    kind = list(KINDS)[i % 3]
    return kind, f"issue {i} about {kind}", f"the {KINDS[kind]} thing, number {i}"


def write_tags_csv(path: Path, n: int = 90, rare_rows: tuple[int, ...] = (5, 50), **csv_options) -> Path:
    """title, body, a comma-separated tags column ('security' on ``rare_rows`` only), a state."""
    encoding = csv_options.pop("encoding", "utf-8")
    with path.open("w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle, **csv_options)
        writer.writerow(["number", "title", "body", "tags", "state"])
        for i in range(n):
            kind, title, body = _issue(i)
            tags = [] if i % 10 == 9 else [kind, *(["security"] if i in rare_rows else [])]
            writer.writerow([i, title, body, ", ".join(tags), "open" if i % 2 else "closed"])
    return path


def write_github_jsonl(path: Path, n: int = 60) -> Path:
    rows = []
    for i in range(n):
        kind, title, body = _issue(i)
        rows.append({"url": f"https://example.org/{i}", "title": title, "body": None if i % 6 == 0 else body,
                     "state": "open", "user": {"login": "someone"}, "assignees": [],
                     "labels": [] if i % 5 == 4 else [{"id": i, "name": kind}]})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_one_label_csv(path: Path, n: int = 60) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "category"])
        for i in range(n):
            kind, title, body = _issue(i)
            writer.writerow([i, f"{title}: {body}", kind])
    return path


def write_list_parquet(path: Path, n: int = 60) -> Path:
    """Lists of label names, as parquet stores them (arrays)."""
    import pandas as pd

    rows = [{"title": title, "body": body, "topics": [] if i % 5 == 4 else [kind]}
            for i, (kind, title, body) in enumerate(map(_issue, range(n)))]
    pd.DataFrame(rows).to_parquet(path)
    return path


SHAPES = {
    "issues.csv": (write_tags_csv, {"field": "tags"}, "multilabel"),
    "issues.parquet": (write_list_parquet, {"field": "topics"}, "multilabel"),
    "issues.jsonl": (write_github_jsonl, {"field": "labels"}, "multilabel"),
    "kinds.csv": (write_one_label_csv, {"field": "category"}, "multiclass"),
}


@pytest.mark.parametrize("file_name", list(SHAPES))
def test_a_config_proposed_without_flags_runs(invoke, tmp_path, file_name):
    write, labels, task = SHAPES[file_name]
    write(tmp_path / file_name)
    created = invoke("dataset", "new", "mine", "--file", file_name)
    assert created.exit_code == 0, created.output
    cfg = load_config_file(tmp_path / "datasets_cfg" / "mine.yaml")
    assert cfg.labels.model_dump(include={"field"}) == labels and cfg.task == task
    assert cfg.source.file == file_name
    assert "next: harness run --datasets mine --methods nb" in created.output
    ran = invoke("run", "--datasets", "mine", "--methods", "nb", "--slices", "8,all", "--cache-dir", tmp_path / "cache",
                 "--no-report")
    assert ran.exit_code == 0, ran.output
    assert "done: 2 ok, 0 failed" in ran.output


def test_csv_to_summary_in_three_commands_and_the_rare_tag(invoke, tmp_path):
    write_tags_csv(tmp_path / "issues.csv")
    created = invoke("dataset", "new", "issues", "--file", "issues.csv")
    assert created.exit_code == 0, created.output
    text = (tmp_path / "datasets_cfg" / "issues.yaml").read_text()
    assert yaml.safe_load(text)["text"] == "{title}\n\n{body}"  # the two free-text columns, in file order
    out = created.output
    assert "90 rows read" in out and "81 labeled, 9 unlabeled" in out
    # 'security' has 2 labeled rows: a stratified slice of 8 is expected to hold less than one
    assert "too rare for the smallest slices" in out
    assert "  security: 2 labeled rows, 1 in train; slices 8" in out
    assert "drop them with `labels.min_count` (under `labels:` in datasets_cfg/issues.yaml)" in out
    assert "  min_count: 3 keeps every tag expected in slices of 8 and up (drops the tags with fewer than 3 labeled " \
           "rows: security)" in out
    assert invoke("run", "--datasets", "issues", "--methods", "nb", "--slices", "8,all",
                  "--cache-dir", tmp_path / "cache", "--quiet").exit_code == 0
    assert "| nb " in (tmp_path / "results" / "summary.md").read_text()


def test_min_count_drops_the_rare_tag_and_leaves_old_hashes_alone(invoke, tmp_path):
    write_tags_csv(tmp_path / "issues.csv")
    invoke("dataset", "new", "issues", "--file", "issues.csv")
    path = tmp_path / "datasets_cfg" / "issues.yaml"
    plain = load_config_file(path)
    cfg = yaml.safe_load(path.read_text())
    cfg["labels"]["separator"] = ","  # the default, written out: same config, same hash (same cell keys)
    path.write_text(yaml.safe_dump(cfg))
    assert load_config_file(path).config_hash() == plain.config_hash()
    cfg["labels"]["min_count"] = 3
    path.write_text(yaml.safe_dump(cfg))
    assert load_config_file(path).config_hash() != plain.config_hash()
    dataset = prepare(load_config_file(path), [tmp_path], tmp_path / "cache")
    assert dataset.tags == ["bug", "docs", "feature"]
    shown = invoke("dataset", "show", "issues")
    assert shown.exit_code == 0, shown.output
    assert "dropped by labels.min_count (3): security" in shown.output
    assert "every tag is frequent enough for the smallest slice" in shown.output


def test_another_encoding_and_delimiter_are_detected(invoke, tmp_path):
    path = tmp_path / "issues.csv"
    with path.open("w", newline="", encoding="cp1252") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(["title", "body", "labels"])
        for i in range(60):
            kind, title, body = _issue(i)
            writer.writerow([f"café {title}", f"problème: {body}", kind + ("|docs" if i % 4 == 0 else "")])
    created = invoke("dataset", "new", "issues", "--file", path)
    assert created.exit_code == 0, created.output
    cfg = load_config_file(tmp_path / "datasets_cfg" / "issues.yaml")
    assert cfg.source.delimiter == ";" and cfg.source.encoding != "utf-8"
    assert cfg.labels.separator == "|"
    dataset = prepare(cfg, [tmp_path], tmp_path / "cache")
    assert dataset.texts[0].startswith("café issue 0") and "problème" in dataset.texts[0]
    assert dataset.tags == ["bug", "docs", "feature"]


def test_named_columns_win_and_a_file_outside_the_folder_needs_its_data_dir(invoke, tmp_path):
    outside = tmp_path.parent / f"{tmp_path.name}-data"
    outside.mkdir()
    write_tags_csv(outside / "issues.csv", rare_rows=())
    created = invoke("dataset", "new", "issues", "--file", outside / "issues.csv", "--text", "title", "--labels", "tags")
    assert created.exit_code == 0, created.output
    cfg = load_config_file(tmp_path / "datasets_cfg" / "issues.yaml")
    assert cfg.text == "{title}" and cfg.source.file == "issues.csv"
    assert f"--data-dir {outside}" in created.output
    assert "every tag is frequent enough" in created.output


def test_an_existing_config_is_kept_without_force(invoke, tmp_path):
    write_tags_csv(tmp_path / "issues.csv")
    assert invoke("dataset", "new", "issues", "--file", "issues.csv").exit_code == 0
    path = tmp_path / "datasets_cfg" / "issues.yaml"
    path.write_text("# mine\n" + path.read_text())
    again = invoke("dataset", "new", "issues", "--file", "issues.csv")
    assert again.exit_code == 2 and "already exists; pass --force" in again.output
    assert path.read_text().startswith("# mine")
    assert invoke("dataset", "new", "issues", "--file", "issues.csv", "--force").exit_code == 0
    assert not path.read_text().startswith("# mine")


BAD_FILES = {
    "no label column": ("title,body,score\nhello there,some body text,1\nanother one,more text here,2\n", (),
                        "data.csv: no label column found (columns: title, body, score)"),
    "integer labels": ("title,label\nhello there,1\nanother one,2\n", (),
                       "data.csv: column 'label' holds int values (e.g. 1); expected label names"),
    "named integer labels": ("title,score\nhello there,1\nanother one,2\n", ("--labels", "score"),
                             "data.csv: column 'score' holds int values (e.g. 1); expected label names"),
    "no text column": ("id,tags\n1,bug\n2,docs\n3,bug\n", (),
                       "data.csv: no text column found (columns: id, tags)"),
    "unknown label column": ("title,tags\nhello there,bug\n", ("--labels", "kind"),
                             "data.csv: --labels 'kind': no such column (columns: title, tags)"),
    "unknown encoding": ("title,tags\nhello there,bug\n", ("--encoding", "nosuch", "--labels", "tags"),
                         "data.csv: field 'encoding': Value error, unknown text encoding 'nosuch'"),
    "bad delimiter": ("title,tags\nhello there,bug\n", ("--delimiter", "ab", "--labels", "tags"),
                      "data.csv: field 'delimiter': String should have at most 1 character"),
    "unknown text column": ("title,tags\nhello there,bug\nanother one,docs\nthird one,bug\n", ("--text", "title,body"),
                            "data.csv: --text 'body': no such column (columns: title, tags)"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_input_is_one_line_naming_file_and_column(invoke, tmp_path, case):
    content, options, message = BAD_FILES[case]
    (tmp_path / "data.csv").write_text(content)
    result = invoke("dataset", "new", "bad", "--file", "data.csv", *options)
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {message}") and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "datasets_cfg" / "bad.yaml").exists()


def test_labels_that_are_neither_strings_nor_lists_in_jsonl(invoke, tmp_path):
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"title": f"t {i} x", "labels": [{"id": i}]}) + "\n" for i in range(5)))
    result = invoke("dataset", "new", "d", "--file", "d.jsonl", "--labels", "labels")
    assert result.exit_code == 2
    assert result.output.strip() == ("error: d.jsonl: column 'labels' holds list of dict values (e.g. [{'id': 0}]); "
                                     "expected label names: lists of strings, label objects with a 'name', names "
                                     "joined by ',' or '|', or one name a row")


def test_dataset_show_of_a_missing_file_is_one_line(invoke, tmp_path):
    (tmp_path / "datasets_cfg").mkdir()
    (tmp_path / "datasets_cfg" / "gone.yaml").write_text("source: {file: gone.csv}\ntext: '{title}'\nlabels: {field: tags}\n")
    result = invoke("dataset", "show", "gone")
    assert result.exit_code == 2 and result.output.startswith("error: dataset 'gone': file 'gone.csv' not found")
    assert result.output.count("\n") == 1


def test_a_hub_dataset_saved_to_disk(invoke, tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [json.loads(line) for line in write_github_jsonl(tmp_path / "x.jsonl").read_text().splitlines()]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "hub" / "someone" / "issues"))
    created = invoke("dataset", "new", "hubbed", "--hf", "someone/issues", "--data-dir", tmp_path / "hub")
    assert created.exit_code == 0, created.output
    cfg = load_config_file(tmp_path / "datasets_cfg" / "hubbed.yaml")
    assert cfg.source.hf == "someone/issues" and cfg.labels.field == "labels"
    assert "48 labeled, 12 unlabeled" in created.output


def test_the_readme_quick_start_is_true(invoke, tmp_path, monkeypatch):
    """The README's three commands take a CSV of issues to results/summary.md."""
    import re
    import shlex

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Your own data\n.*?```bash\n(.*?)```", readme, re.S).group(1)
    commands = [shlex.split(line.split("#")[0]) for line in block.splitlines() if line.strip()]
    assert [c[:2] for c in commands] == [["harness", "dataset"], ["harness", "run"], ["harness", "report"]]
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    write_tags_csv(tmp_path / "issues.csv")
    for command in commands:
        result = invoke(*command[1:])
        assert result.exit_code == 0, (command, result.output)
    assert "| nb " in (tmp_path / "results" / "summary.md").read_text() and "| nb " in result.output
