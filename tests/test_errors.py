"""Bad input gets one clear line naming the file, field or value and what is expected."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import toy_config, toy_rows, write_jsonl
from harness.config import ConfigError, DatasetConfig, load_config, load_config_file
from harness.data import prepare
from harness.sources import DataError
from harness.splits import nested_slices


def _prepare(tmp_path: Path, rows=None, **overrides):
    if rows is not None:
        write_jsonl(tmp_path / "toy.jsonl", rows)
    return prepare(DatasetConfig.model_validate(toy_config(**overrides)), [tmp_path], tmp_path / "cache")


def _write_cfg(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_config_missing_field_names_file_and_field(tmp_path):
    cfg = toy_config()
    del cfg["text"]
    with pytest.raises(ConfigError, match=r"bad\.yaml: field 'text': Field required"):
        load_config_file(_write_cfg(tmp_path, cfg))


def test_config_wrong_type_names_field_and_value(tmp_path):
    cfg = toy_config(split={"method": "iterative", "split_seed": "zero"})
    with pytest.raises(ConfigError, match=r"field 'split.split_seed'.*integer.*'zero'"):
        load_config_file(_write_cfg(tmp_path, cfg))


def test_config_unknown_field_is_rejected(tmp_path):
    cfg = toy_config(labelz={"field": "labels"})
    with pytest.raises(ConfigError, match=r"field 'labelz': Extra inputs are not permitted"):
        load_config_file(_write_cfg(tmp_path, cfg))


def test_label_field_absent(tmp_path):
    with pytest.raises(DataError, match=r"toy\.jsonl: label field 'tags' not found \(fields: title, body"):
        _prepare(tmp_path, toy_rows(), labels={"field": "tags"})


def test_template_field_absent(tmp_path):
    with pytest.raises(DataError, match=r"text template .* names field\(s\) \['titel'\]"):
        _prepare(tmp_path, toy_rows(), text="{titel}")


def test_malformed_jsonl_line_names_line(tmp_path):
    path = write_jsonl(tmp_path / "toy.jsonl", toy_rows(5))
    path.write_text(path.read_text() + '{"title": "cut off\n')
    with pytest.raises(DataError, match=r"toy\.jsonl: line 6: malformed JSON"):
        _prepare(tmp_path)


def test_non_utf8_bytes_name_line_and_setting(tmp_path):
    path = write_jsonl(tmp_path / "toy.jsonl", toy_rows(40))
    path.write_bytes(path.read_bytes() + b'{"title": "caf\xe9", "body": "", "labels": []}\n')
    with pytest.raises(DataError, match=r"line 41: bytes b'\\xe9' .* not valid utf-8; set source.encoding"):
        _prepare(tmp_path)
    dataset = _prepare(tmp_path, source={"file": "toy.jsonl", "encoding_errors": "replace"})
    assert any("caf\ufffd" in t for t in dataset.texts)


def test_checksum_mismatch(tmp_path):
    write_jsonl(tmp_path / "toy.jsonl", toy_rows())
    with pytest.raises(DataError, match=r"checksum mismatch for .*toy\.jsonl: sha256 is [0-9a-f]{64}, the config expects 00ff"):
        _prepare(tmp_path, source={"file": "toy.jsonl", "sha256": "00ff"})


def test_missing_file_offline_names_file_url_and_setting(tmp_path):
    source = {"file": "absent.jsonl", "url": "http://127.0.0.1:9/absent.jsonl"}
    with pytest.raises(DataError, match=r"file absent\.jsonl not found locally .* download of http://127\.0\.0\.1:9/absent\.jsonl failed .*--data-dir"):
        _prepare(tmp_path, source=source)


def test_missing_file_without_url(tmp_path):
    with pytest.raises(DataError, match=r"file 'toy\.jsonl' not found .* no 'url'; point --data-dir or HARNESS_DATA_DIR"):
        _prepare(tmp_path)


def test_unknown_dataset_suggests_a_name():
    with pytest.raises(ConfigError, match=r"unknown dataset 'github-issues-dataset'; did you mean 'github-issues-datasets'\?"):
        load_config("github-issues-dataset")


def test_no_labeled_rows(tmp_path):
    rows = [{**r, "labels": []} for r in toy_rows()]
    with pytest.raises(DataError, match=r"no row carries a tag after the label map"):
        _prepare(tmp_path, rows)
    with pytest.raises(DataError, match=r"no row carries a tag after the label map"):
        _prepare(tmp_path, toy_rows(), labels={"field": "labels", "map": {"wontfix": "wontfix"}})


def test_too_few_labeled_rows(tmp_path):
    rows = toy_rows()
    rows = rows[:3] + [{**r, "labels": []} for r in rows[3:]]
    with pytest.raises(DataError, match=r"3 labeled rows; the train/valid/test split needs at least 4"):
        _prepare(tmp_path, rows)
    rows = toy_rows()[:5]
    with pytest.raises(DataError, match=r"4 labeled rows are too few for the train/valid/test split"):
        _prepare(tmp_path, rows)


def test_slice_larger_than_train_is_clamped_with_a_warning(tmp_path):
    dataset = _prepare(tmp_path, toy_rows())
    train_labels = dataset.labels[dataset.split_rows["train"]]
    with pytest.warns(UserWarning, match=r"slice size\(s\) \[500\] are not smaller than the train split"):
        slices = nested_slices(train_labels, [4, 500], seed=0)
    assert [s.name for s in slices] == ["4", "all"]
    assert slices[-1].size == len(train_labels)


def test_a_bug_keeps_its_traceback_and_bad_input_stays_one_line(tmp_path):
    """The command line shows HarnessError (bad input) as one line and any other exception, a
    ValueError from a bug included, with its traceback."""
    import os
    import subprocess
    import sys

    from harness.errors import HarnessError
    from harness.executors import DataNotOnWorker
    from harness.models import ModelResolutionError
    from harness.params import ParamError
    from harness.plugins import PluginError

    for error in (ConfigError, DataError, ParamError, PluginError, ModelResolutionError, DataNotOnWorker):
        assert issubclass(error, HarnessError), error
    driver = ("import sys, harness.plan\n"
              "from harness.errors import HarnessError\n"
              "def plan_run(*args, **kwargs):\n"
              "    raise {error}('{message}')\n"
              "harness.plan.plan_run = plan_run\n"
              "sys.argv = ['harness', 'run', '--methods', 'nb', '--results', {results!r}]\n"
              "from harness.cli import main\n"
              "main()\n")
    outcomes = {}
    for error, message in (("ValueError", "a bug, not bad input"), ("HarnessError", "bad input")):
        script = driver.format(error=error, message=message, results=str(tmp_path / "results"))
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env={**os.environ, "HARNESS_DISABLE_PLUGIN_AUTOLOAD": "1"})
        outcomes[message] = (done.returncode, done.stderr)
    code, stderr = outcomes["a bug, not bad input"]
    assert code == 1 and "Traceback (most recent call last)" in stderr and stderr.rstrip().endswith("ValueError: a bug, not bad input")
    code, stderr = outcomes["bad input"]
    assert (code, stderr) == (2, "error: bad input\n")
