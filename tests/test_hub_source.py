"""A Hugging Face Hub dataset as a source: a folder saved with save_to_disk, offline."""

from __future__ import annotations

import json

import pytest

from harness.datasets import Settings
from harness.driver import run_plan
from harness.plan import plan_run
from harness.plugins import make_plugin_manager
from harness.records import iter_records
from harness.sources import DataError
from harness.testing import TINY_DATASET, write_tiny_dataset

datasets = pytest.importorskip("datasets")


def _hub_config(cfg_dir, **source) -> None:
    config = json.loads((cfg_dir / f"{TINY_DATASET}.yaml").read_text())
    (cfg_dir / f"{TINY_DATASET}.yaml").write_text(json.dumps({**config, "source": source}))


def test_a_dataset_saved_to_disk_runs_and_its_revision_is_in_the_record(tmp_path):
    cfg_dir, data_dir = write_tiny_dataset(tmp_path)
    rows = [json.loads(line) for line in (data_dir / f"{TINY_DATASET}.jsonl").read_text().splitlines()]
    (data_dir / f"{TINY_DATASET}.jsonl").unlink()
    saved = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)})
    saved.save_to_disk(str(data_dir / "someone" / "tiny-issues"))
    _hub_config(cfg_dir, hf="someone/tiny-issues", revision="0123abc", split="train")
    settings = Settings(results_dir=str(tmp_path / "results"), cache_dir=str(tmp_path / "cache"),
                        data_dirs=(str(data_dir),), datasets_cfg_dirs=(str(cfg_dir),))
    pm = make_plugin_manager(autoload=False)
    summary = run_plan(pm, plan_run(pm, settings, "nb", [TINY_DATASET], [0], slices=[16]))
    assert summary["ok"] == 1
    (record,) = iter_records(tmp_path / "results")
    assert record.dataset.revision == "0123abc" and record.dataset.sizes["train"] > 16
    assert record.metrics.micro_f1 > 0.5  # the tiny set's words give its tags away


def test_a_dataset_dict_needs_a_split_when_it_has_several(tmp_path):
    cfg_dir, data_dir = write_tiny_dataset(tmp_path)
    part = datasets.Dataset.from_list([{"title": "a", "body": "b", "labels": ["bug"]}])
    datasets.DatasetDict({"train": part, "test": part}).save_to_disk(str(data_dir / "someone" / "two"))
    _hub_config(cfg_dir, hf="someone/two")
    settings = Settings(results_dir=str(tmp_path / "r"), cache_dir=str(tmp_path / "c"),
                        data_dirs=(str(data_dir),), datasets_cfg_dirs=(str(cfg_dir),))
    with pytest.raises(DataError, match="the dataset has splits train, test; set source.split"):
        plan_run(make_plugin_manager(autoload=False), settings, "nb", [TINY_DATASET], [0])


def test_offline_without_cache_or_folder_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    cfg_dir, data_dir = write_tiny_dataset(tmp_path)
    _hub_config(cfg_dir, hf="nobody/no-such-dataset-here", revision="0123abc")
    settings = Settings(results_dir=str(tmp_path / "r"), cache_dir=str(tmp_path / "c"),
                        data_dirs=(str(data_dir),), datasets_cfg_dirs=(str(cfg_dir),))
    with pytest.raises(DataError) as error:
        plan_run(make_plugin_manager(autoload=False), settings, "nb", [TINY_DATASET], [0])
    message = str(error.value)
    assert message.startswith(f"dataset '{TINY_DATASET}': Hugging Face dataset 'nobody/no-such-dataset-here' could not be read")
    assert f"DIR/nobody/no-such-dataset-here and pass --data-dir DIR" in message and "\n" not in message
