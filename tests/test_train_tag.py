"""harness train and harness tag: the saved method tags new issues exactly as its benchmark cell
tagged the test split, and every bad input gets one line."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.datasets import Settings, load_dataset
from harness.model_folder import CELL_ARRAYS, MANIFEST, read_manifest
from harness.plugins import get_plugin_manager
from harness.predictions import decode_predictions, read_predictions
from harness.records import read_record, record_path
from harness.rules import ChosenRules
from harness.testing import save_tiny_sentence_transformer, tiny_multilabel, write_tiny_dataset

from conftest import MIRROR

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "results"
DATASET = "github-issues-datasets"


@pytest.fixture
def invoke():
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


def split_rows_file(path: Path, dataset: str, split: str, source: Path, settings: Settings) -> Path:
    """The raw rows of one split of ``dataset`` (read from its JSONL ``source``) written to ``path``,
    as a user would export new issues; the file has their ids."""
    loaded = load_dataset(dataset, settings, get_plugin_manager().registry.readers)
    opener = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    wanted = loaded.source_rows[loaded.split_rows[split]]
    path.write_text("".join(json.dumps(rows[i]) + "\n" for i in wanted), encoding="utf-8")
    return path


def tag_matrix(output: Path, tags: list[str]) -> np.ndarray:
    """The 0/1 tags of a harness tag CSV, columns in ``tags`` order."""
    frame = pd.read_csv(output, keep_default_na=False)
    named = [set(cell.split(",")) if cell else set() for cell in frame["tags"]]
    return np.array([[int(tag in row) for tag in tags] for row in named], dtype=np.uint8)


@pytest.fixture(scope="module")
def nb_model(tmp_path_factory):
    """nb trained on the mirror at `all`, seed 0, beside the published run, and the test split as a file."""
    if not MIRROR.exists():
        pytest.skip(f"data mirror not found at {MIRROR}")
    folder = tmp_path_factory.mktemp("nb")
    args = ["train", "--method", "nb", "--datasets", DATASET, "--data-dir", MIRROR.parent, "--results", PUBLISHED,
            "--cache-dir", folder / "cache", "--out", folder / "model"]
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    settings = Settings(results_dir=str(PUBLISHED), cache_dir=str(folder / "cache"), data_dirs=(str(MIRROR.parent),))
    issues = split_rows_file(folder / "test-issues.jsonl", DATASET, "test", MIRROR, settings)
    return folder / "model", issues, result.output


def test_nb_tags_the_test_issues_as_its_published_cell_did(nb_model, invoke, tmp_path):
    model, issues, output = nb_model
    manifest = read_manifest(model)
    assert manifest["results"]["cell"] == "same key" and manifest["results"]["same_test_predictions"] is True
    assert "has the same test predictions" in output and "test micro F1 0.7198" in output
    published = read_record(record_path(PUBLISHED, DATASET, "nb", "all", 0))
    assert manifest["record"]["key_hash"] == published.key_hash
    assert manifest["expected_test_metrics"]["own"]["micro_f1"] == published.metrics.micro_f1
    stored = read_predictions(record_path(PUBLISHED, DATASET, "nb", "all", 0).parent / published.predictions.file,
                              published.predictions.sha256)

    result = invoke("tag", "--model", model, "--file", issues, "--out", tmp_path / "tags.csv", "--batch-size", 100)
    assert result.exit_code == 0, result.output
    tags = manifest["dataset"]["tags"]
    np.testing.assert_array_equal(tag_matrix(tmp_path / "tags.csv", tags), stored["test_prediction"])
    frame = pd.read_csv(tmp_path / "tags.csv")
    assert list(frame.columns) == ["id", "tags", *[f"score:{tag}" for tag in tags]]  # the issues' own id column
    assert "tagged 100/413 issues" in result.output and "tagged 413/413 issues" in result.output
    np.testing.assert_allclose(frame[[f"score:{tag}" for tag in tags]].to_numpy(), stored["test_scores"], rtol=1e-12)


def test_tagging_twice_gives_identical_output_and_rules_are_the_cells(nb_model, invoke, tmp_path):
    model, issues, _ = nb_model
    for name in ("first.jsonl", "second.jsonl"):
        assert invoke("tag", "--model", model, "--file", issues, "--out", tmp_path / name, "--rule", "per_tag",
                      "--quiet").exit_code == 0
    assert (tmp_path / "first.jsonl").read_bytes() == (tmp_path / "second.jsonl").read_bytes()
    manifest = read_manifest(model)
    arrays = decode_predictions((model / CELL_ARRAYS).read_bytes(), CELL_ARRAYS)
    expected = ChosenRules.from_record(manifest["rules"], manifest["dataset"]["tags"]).apply("per_tag", arrays["test_scores"])
    rows = [json.loads(line) for line in (tmp_path / "first.jsonl").read_text().splitlines()]
    got = np.array([[int(tag in row["tags"]) for tag in manifest["dataset"]["tags"]] for row in rows])
    np.testing.assert_array_equal(got, expected)
    assert set(rows[0]) == {"id", "tags", "scores"} and set(rows[0]["scores"]) == set(manifest["dataset"]["tags"])


def test_a_dataset_split_is_tagged_with_its_ids(nb_model, invoke, tmp_path):
    model, _, _ = nb_model
    out = tmp_path / "pool.csv"
    result = invoke("tag", "--model", model, "--datasets", DATASET, "--split", "unlabeled", "--data-dir", MIRROR.parent,
                    "--cache-dir", tmp_path / "cache", "--out", out)
    assert result.exit_code == 0, result.output
    settings = Settings(results_dir="r", cache_dir=str(tmp_path / "cache"), data_dirs=(str(MIRROR.parent),))
    dataset = load_dataset(DATASET, settings, get_plugin_manager().registry.readers)
    frame = pd.read_csv(out)
    assert frame["id"].tolist() == [dataset.ids[i] for i in dataset.split_rows["unlabeled"]]


def test_setfit_trained_then_tagging_its_test_file_gives_the_cells_tags(invoke, tmp_path):
    cfg_dir, data_dir = write_tiny_dataset(tmp_path / "data")
    body = save_tiny_sentence_transformer(tmp_path / "st", tiny_multilabel(200).texts)
    common = ["--datasets", "tiny", "--datasets-cfg", cfg_dir, "--data-dir", data_dir, "--cache-dir", tmp_path / "cache",
              "--results", tmp_path / "results", "--set", f"setfit.model={body}", "--set", "setfit.num_iterations=2",
              "--set", "setfit.max_length=32"]
    run = invoke("run", "--methods", "setfit", "--slices", "all", "--no-report", *common)
    assert run.exit_code == 0, run.output
    trained = invoke("train", "--method", "setfit", "--out", tmp_path / "model", *common)
    assert trained.exit_code == 0, trained.output
    manifest = read_manifest(tmp_path / "model")
    assert manifest["results"]["same_test_predictions"] is True
    assert (tmp_path / "model" / "method" / "body" / "model.safetensors").is_file()
    settings = Settings(results_dir=str(tmp_path / "results"), cache_dir=str(tmp_path / "cache"), data_dirs=(str(data_dir),),
                        datasets_cfg_dirs=(str(cfg_dir),))
    issues = split_rows_file(tmp_path / "test.jsonl", "tiny", "test", data_dir / "tiny.jsonl", settings)
    tagged = invoke("tag", "--model", tmp_path / "model", "--file", issues, "--out", tmp_path / "tags.csv",
                    "--batch-size", 7, "--cache-dir", tmp_path / "cache")
    assert tagged.exit_code == 0, tagged.output
    assert "tagged 7/" in tagged.output
    cell = read_record(record_path(tmp_path / "results", "tiny", manifest["method"]["label"], "all", 0))
    stored = read_predictions(record_path(tmp_path / "results", "tiny", manifest["method"]["label"], "all", 0).parent
                              / cell.predictions.file, cell.predictions.sha256)
    np.testing.assert_array_equal(tag_matrix(tmp_path / "tags.csv", manifest["dataset"]["tags"]), stored["test_prediction"])


# ---------------------------------------------------------------- bad input, one line each


def one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_a_file_without_the_templates_fields_is_named(nb_model, invoke, tmp_path):
    model, _, _ = nb_model
    (tmp_path / "new.csv").write_text("id,title\n1,crash on load\n")
    one_line_error(invoke("tag", "--model", model, "--file", tmp_path / "new.csv", "--out", tmp_path / "out.csv"),
                   "['body']", "that the rows lack", "fields: id, title")


def test_an_empty_file_is_refused(nb_model, invoke, tmp_path):
    model, _, _ = nb_model
    (tmp_path / "empty.jsonl").write_text("")
    one_line_error(invoke("tag", "--model", model, "--file", tmp_path / "empty.jsonl", "--out", tmp_path / "out.csv"),
                   "no rows")


def test_an_existing_output_is_kept_without_force(nb_model, invoke, tmp_path):
    model, issues, _ = nb_model
    out = tmp_path / "out.csv"
    out.write_text("mine\n")
    one_line_error(invoke("tag", "--model", model, "--file", issues, "--out", out), "exists", "--force")
    assert out.read_text() == "mine\n"
    assert invoke("tag", "--model", model, "--file", issues, "--out", out, "--force", "--quiet").exit_code == 0
    assert out.read_text().startswith("id,tags,")


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("method_version", "0", "saved by method 'nb' version 0, but the installed one is version 1"),
    ("format", 99, "model folder format 99"),
    ("method_name", "nbb", "unknown method 'nbb'"),
])
def test_a_model_from_another_version_is_refused(nb_model, invoke, tmp_path, field, value, expected):
    model, issues, _ = nb_model
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    if field == "format":
        manifest["format"] = value
    else:
        manifest["method"][field.removeprefix("method_")] = value
    (copy / MANIFEST).write_text(json.dumps(manifest))
    one_line_error(invoke("tag", "--model", copy, "--file", issues, "--out", tmp_path / "out.csv"), expected)


def test_a_folder_that_is_no_model_and_a_rule_it_lacks(nb_model, invoke, tmp_path):
    model, issues, _ = nb_model
    one_line_error(invoke("tag", "--model", tmp_path, "--file", issues, "--out", tmp_path / "o.csv"), "no manifest.json")
    one_line_error(invoke("tag", "--model", model, "--file", issues, "--out", tmp_path / "o.csv", "--rule", "argmax"),
                   "--rule argmax: the model carries own, threshold, per_tag, top_k (its default: own)")
    one_line_error(invoke("tag", "--model", model, "--out", tmp_path / "o.csv"), "give --file FILE or --datasets NAME")


def test_train_refuses_a_method_without_save_and_a_taken_folder(invoke, tmp_path, monkeypatch):
    from harness import Method, hookimpl
    from harness.testing import TINY_TAGS

    class Unsaved(Method):
        name = "unsaved"

        def fit(self, train, valid, unlabeled, context):
            pass

        def predict(self, texts):
            return np.zeros((len(texts), len(TINY_TAGS)), dtype=np.uint8)

    class Plugin:
        @hookimpl
        def register_methods(self, register):
            register(Unsaved)

    import harness.plugins

    monkeypatch.setattr(harness.plugins, "_default_pm", None)  # the CLI's manager, rebuilt with the method
    get_plugin_manager().register_module(Plugin(), name="unsaved-plugin")
    cfg_dir, data_dir = write_tiny_dataset(tmp_path / "data")
    common = ["--datasets", "tiny", "--datasets-cfg", cfg_dir, "--data-dir", data_dir, "--cache-dir", tmp_path / "c",
              "--results", tmp_path / "r"]
    one_line_error(invoke("train", "--method", "unsaved", "--out", tmp_path / "m", *common),
                   "method 'unsaved' defines no save and load")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    one_line_error(invoke("train", "--method", "nb", "--out", tmp_path / "taken", *common),
                   "the folder exists and is not empty")
    one_line_error(invoke("train", "--method", "nb", "--slice", "0", "--out", tmp_path / "m2", *common),
                   "--slice '0': expected a positive integer or 'all'")


def test_an_ensemble_is_trained_as_report_builds_it_and_tags_as_its_cell(invoke, tmp_path):
    cfg_dir, data_dir = write_tiny_dataset(tmp_path / "data")
    common = ["--datasets", "tiny", "--datasets-cfg", cfg_dir, "--data-dir", data_dir, "--cache-dir", tmp_path / "cache",
              "--results", tmp_path / "results"]
    run = invoke("run", "--methods", "nb,tfidf_linear", "--slices", "all", "--no-report", *common)
    assert run.exit_code == 0, run.output
    report = invoke("report", "--results", tmp_path / "results", "--ensemble", "pair=nb,tfidf_linear")
    assert report.exit_code == 0, report.output
    trained = invoke("train", "--ensemble", "pair=nb,tfidf_linear", "--out", tmp_path / "model", *common)
    assert trained.exit_code == 0, trained.output
    manifest = read_manifest(tmp_path / "model")
    assert manifest["method"]["label"] == "ensemble-pair" and manifest["results"]["same_test_predictions"] is True
    assert sorted(p.name for p in (tmp_path / "model" / "members").iterdir()) == ["nb", "tfidf_linear"]
    settings = Settings(results_dir=str(tmp_path / "results"), cache_dir=str(tmp_path / "cache"), data_dirs=(str(data_dir),),
                        datasets_cfg_dirs=(str(cfg_dir),))
    issues = split_rows_file(tmp_path / "test.jsonl", "tiny", "test", data_dir / "tiny.jsonl", settings)
    tagged = invoke("tag", "--model", tmp_path / "model", "--file", issues, "--out", tmp_path / "tags.csv",
                    "--rule", "per_tag", "--batch-size", 5, "--cache-dir", tmp_path / "cache")
    assert tagged.exit_code == 0, tagged.output
    arrays = decode_predictions((tmp_path / "model" / CELL_ARRAYS).read_bytes(), CELL_ARRAYS)
    tags = manifest["dataset"]["tags"]
    expected = ChosenRules.from_record(manifest["rules"], tags).apply("per_tag", arrays["test_scores"])
    np.testing.assert_array_equal(tag_matrix(tmp_path / "tags.csv", tags), expected)
    scores = pd.read_csv(tmp_path / "tags.csv")[[f"score:{tag}" for tag in tags]].to_numpy()
    np.testing.assert_allclose(scores, arrays["test_scores"], rtol=1e-9, atol=1e-12)
