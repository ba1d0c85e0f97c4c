"""The unlabeled pool (``unlabeled:`` in a dataset config, ``--unlabeled`` on run): what it is made
of, that it is in the cell key, and that no label of a pool issue, and no valid or test issue,
ever reaches a method through it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from harness.cell import run_cell
from harness.config import ConfigError, DatasetConfig, load_config_file
from harness.datasets import Settings, load_dataset, train_slices
from harness.methods import Method
from harness.plan import plan_run
from harness.plugins import get_plugin_manager
from harness.testing import single_method_pm, write_tiny_dataset


class Spy(Method):
    """Keeps everything its fit receives, and predicts nothing."""

    name = "spy"
    seen: list[dict] = []

    def fit(self, train, valid, unlabeled, context):
        Spy.seen.append({"train_texts": list(train.texts), "train_labels": train.labels.copy(),
                         "valid_texts": list(valid.texts), "valid_labels": valid.labels.copy(),
                         "unlabeled": list(unlabeled)})
        self.n_tags = len(context.tags)

    def predict(self, texts):
        return np.zeros((len(texts), self.n_tags), dtype=np.uint8)


@pytest.fixture
def no_unlabeled_rows(tmp_path):
    """Settings for the tiny dataset written without a single row lacking tags."""
    cfg_dir, data_dir = write_tiny_dataset(tmp_path, n=120, n_unlabeled=0)
    return Settings(results_dir=str(tmp_path / "results"), cache_dir=str(tmp_path / "cache"),
                    data_dirs=(str(data_dir),), datasets_cfg_dirs=(str(cfg_dir),))


def _spec(pm, settings, unlabeled, method="spy", overrides=None):
    plan = plan_run(pm, settings, [method], ["tiny"], [0], [16], overrides=overrides, unlabeled=unlabeled)
    (spec,) = [s for s in plan.cells if s.slice_name == "16"]
    return spec


def test_rest_of_train_is_the_train_split_outside_the_slice_with_no_label(no_unlabeled_rows):
    pm = single_method_pm(Spy)
    dataset = load_dataset("tiny", no_unlabeled_rows, pm.registry.readers)
    assert len(dataset.split_rows["unlabeled"]) == 0
    Spy.seen.clear()
    record = run_cell(_spec(pm, no_unlabeled_rows, ["rest_of_train"]), pm).record
    assert record.ok, record.error
    (seen,) = Spy.seen
    train_texts = set(dataset.labeled("train").texts)
    pool = seen["unlabeled"]
    assert pool and set(pool) <= train_texts
    assert len(pool) + len(seen["train_texts"]) == len(train_texts)  # every train issue, once
    assert not set(pool) & set(seen["train_texts"])  # no slice issue (whose labels the method has)
    for split in ("valid", "test"):
        assert not set(pool) & set(dataset.labeled(split).texts)
    assert record.dataset.unlabeled == ["rest_of_train"] and record.dataset.pool_size == len(pool)


def test_no_label_of_a_pool_issue_reaches_the_method(no_unlabeled_rows, monkeypatch):
    """Flip every label of the pool's issues after the split: the fit receives the very same
    data, so nothing it gets depends on those labels."""
    import harness.cell

    pm = single_method_pm(Spy)
    spec = _spec(pm, no_unlabeled_rows, ["rest_of_train"])
    dataset = load_dataset("tiny", no_unlabeled_rows, pm.registry.readers)
    positions = train_slices("tiny", no_unlabeled_rows, pm.registry.readers, spec.slice_sizes, 0)["16"].positions
    pool_rows = np.setdiff1d(dataset.split_rows["train"], dataset.split_rows["train"][positions])
    flipped = dataset.labels.copy()
    flipped[pool_rows] = 1 - flipped[pool_rows]
    Spy.seen.clear()
    run_cell(spec, pm)
    monkeypatch.setattr(harness.cell, "load_dataset", lambda *args: dataclasses.replace(dataset, labels=flipped))
    run_cell(spec, pm)
    first, second = Spy.seen
    assert first["unlabeled"] == second["unlabeled"] and first["train_texts"] == second["train_texts"]
    for name in ("train_labels", "valid_labels"):
        np.testing.assert_array_equal(first[name], second[name])


def test_the_pool_sources_combine_and_default_to_rows_without_tags(tmp_path):
    cfg_dir, data_dir = write_tiny_dataset(tmp_path, n=120, n_unlabeled=20)
    settings = Settings(results_dir=str(tmp_path / "results"), cache_dir=str(tmp_path / "cache"),
                        data_dirs=(str(data_dir),), datasets_cfg_dirs=(str(cfg_dir),))
    pm = single_method_pm(Spy)
    sizes = {}
    for unlabeled in (None, ["rest_of_train"], ["unlabeled_rows", "rest_of_train"], []):
        Spy.seen.clear()
        assert run_cell(_spec(pm, settings, unlabeled), pm).record.ok
        sizes[str(unlabeled)] = len(Spy.seen[0]["unlabeled"])
    assert sizes["None"] == 20
    assert sizes["['unlabeled_rows', 'rest_of_train']"] == 20 + sizes["['rest_of_train']"]
    assert sizes["[]"] == 0


def test_the_cell_key_holds_the_pool_and_older_keys_stay(no_unlabeled_rows):
    pm = single_method_pm(Spy)
    default = _spec(pm, no_unlabeled_rows, None)
    assert "unlabeled" not in default.key  # cells computed before the option keep their keys
    assert _spec(pm, no_unlabeled_rows, ["unlabeled_rows"]).key_hash == default.key_hash
    rest = _spec(pm, no_unlabeled_rows, ["rest_of_train"])
    assert rest.key["unlabeled"] == ["rest_of_train"] and rest.key_hash != default.key_hash
    # a pool other than the dataset's is a variant, reported beside the method's own rows
    assert (default.label, rest.label) == ("spy", "spy@pool-rest_of_train")
    assert _spec(pm, no_unlabeled_rows, []).label == "spy@pool-none"


def test_the_dataset_option_sets_the_pool_and_the_config_hash(tmp_path):
    base = {"name": "toy", "source": {"file": "toy.jsonl"}, "text": "{title}", "labels": {"field": "labels"}}
    plain = DatasetConfig.model_validate(base)
    assert plain.unlabeled == ["unlabeled_rows"]
    assert DatasetConfig.model_validate({**base, "unlabeled": ["unlabeled_rows"]}).config_hash() == plain.config_hash()
    rest = DatasetConfig.model_validate({**base, "unlabeled": "rest_of_train"})
    assert rest.unlabeled == ["rest_of_train"] and rest.config_hash() != plain.config_hash()


@pytest.mark.parametrize("value, message", [
    ("rest_of_trian", "'rest_of_trian' is not a pool source"),
    (["rest_of_train", "rest_of_train"], "listed twice"),
    (3, "3 is not a pool source"),
])
def test_a_bad_pool_source_is_one_line_naming_the_file(tmp_path, value, message):
    path = tmp_path / "toy.yaml"
    path.write_text(json.dumps({"source": {"file": "toy.jsonl"}, "text": "{title}", "labels": {"field": "labels"},
                                "unlabeled": value}))
    with pytest.raises(ConfigError, match=message) as caught:
        load_config_file(path)
    assert str(path) in str(caught.value) and "unlabeled" in str(caught.value) and "\n" not in str(caught.value)


def test_run_refuses_a_bad_unlabeled_option_in_one_line(no_unlabeled_rows):
    from click.testing import CliRunner

    from harness.cli import cli

    result = CliRunner().invoke(cli, ["run", "--methods", "nb", "--datasets", "tiny", "--unlabeled", "train",
                                      "--datasets-cfg", no_unlabeled_rows.datasets_cfg_dirs[0],
                                      "--results", no_unlabeled_rows.results_dir])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--unlabeled 'train': 'train' is not a pool source" in result.output


def test_self_train_gets_a_pool_from_the_rest_of_train(no_unlabeled_rows):
    pm = get_plugin_manager()
    overrides = ["self_train.base=nb"]
    without = run_cell(_spec(pm, no_unlabeled_rows, None, "self_train", overrides), pm).record
    with_pool = run_cell(_spec(pm, no_unlabeled_rows, ["rest_of_train"], "self_train", overrides), pm).record
    assert without.ok and with_pool.ok, (without.error, with_pool.error)
    assert without.details["pool_texts"] == 0 and without.details["stop"] == "empty pool"
    assert with_pool.details["pool_texts"] == with_pool.dataset.pool_size > 0


def test_the_mirror_pool_holds_no_valid_or_test_issue(mirror_dir, tmp_path):
    settings = Settings(results_dir=str(tmp_path / "results"), cache_dir=str(tmp_path / "cache"), data_dirs=(str(mirror_dir),))
    readers = get_plugin_manager().registry.readers
    dataset = load_dataset("github-issues-datasets", settings, readers)
    positions = train_slices("github-issues-datasets", settings, readers, (8, 16, 32, 64, 128, "all"), 1)["64"].positions
    pool = set(dataset.unlabeled_pool(["unlabeled_rows", "rest_of_train"], positions))
    assert len(pool) > 5000
    for split in ("valid", "test"):
        assert not pool & set(dataset.labeled(split).texts)
    assert not pool & set(dataset.labeled("train", positions).texts)


def test_a_dataset_config_can_make_rest_of_train_its_pool(no_unlabeled_rows):
    cfg_path = f"{no_unlabeled_rows.datasets_cfg_dirs[0]}/tiny.yaml"
    with open(cfg_path, encoding="utf-8") as handle:
        config = json.load(handle)
    with open(cfg_path, "w", encoding="utf-8") as handle:
        json.dump({**config, "unlabeled": "rest_of_train"}, handle)
    pm = single_method_pm(Spy)
    spec = _spec(pm, no_unlabeled_rows, None)
    assert spec.label == "spy" and spec.key["unlabeled"] == ["rest_of_train"]
    Spy.seen.clear()
    assert run_cell(spec, pm).record.ok and len(Spy.seen[0]["unlabeled"]) > 0
