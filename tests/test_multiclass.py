"""Single-label datasets (``task: multiclass``): one tag per row, argmax decisions, accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.config import load_config_file
from harness.data import prepare
from harness.methods import Method
from harness.predictions import read_predictions
from harness.datasets import Settings
from harness.driver import run_plan
from harness.plan import plan_run
from harness.records import iter_records
from harness.sources import DataError
from harness.testing import TINY_TAGS, single_method_pm

WORDS = {"bug": ["crash", "error", "traceback"], "docs": ["readme", "typo", "docstring"], "feature": ["add", "support", "request"]}
FILLER = ["the", "issue", "with", "dataset", "thanks", "when", "loading"]


def write_single_label_dataset(folder: Path, n: int = 90, extra_rows: list[dict] | None = None, task: str = "multiclass") -> Settings:
    """A dataset of issues with exactly one of three tags (plus a few unlabeled ones)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        tag = TINY_TAGS[i % 3]
        words = list(rng.choice(WORDS[tag], size=2)) + list(rng.choice(FILLER, size=5))
        rows.append({"title": f"issue {i}", "body": " ".join(rng.permutation(words)), "labels": [tag]})
    rows += [{"title": f"unlabeled {i}", "body": "hello there", "labels": []} for i in range(5)]
    rows += extra_rows or []
    cfg_dir, data_dir = folder / "datasets_cfg", folder / "data"
    cfg_dir.mkdir(parents=True)
    data_dir.mkdir(parents=True)
    (data_dir / "kinds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = {"name": "kinds", "task": task, "source": {"file": "kinds.jsonl"}, "text": "{title}\n\n{body}",
              "labels": {"field": "labels"}, "slices": [8, "all"]}
    (cfg_dir / "kinds.yaml").write_text(json.dumps(config), encoding="utf-8")
    return Settings(results_dir=str(folder / "results"), cache_dir=str(folder / "cache"),
                    data_dirs=(str(data_dir),), datasets_cfg_dirs=(str(cfg_dir),))


def test_a_row_with_several_tags_is_an_error_naming_the_row(tmp_path):
    settings = write_single_label_dataset(tmp_path, extra_rows=[{"title": "both", "body": "x", "labels": ["bug", "docs"]}])
    cfg = load_config_file(Path(settings.datasets_cfg_dirs[0]) / "kinds.yaml")
    with pytest.raises(DataError, match=r"kinds.jsonl: row 96: 2 tags \['bug', 'docs'\]; task 'multiclass' takes one tag per row"):
        prepare(cfg, [Path(settings.data_dirs[0])], tmp_path / "cache")


def test_the_task_is_hashed_only_when_it_is_not_the_default(tmp_path):
    settings = write_single_label_dataset(tmp_path)
    path = Path(settings.datasets_cfg_dirs[0]) / "kinds.yaml"
    multiclass = load_config_file(path)
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "task": "multilabel"}))
    explicit = load_config_file(path)
    path.write_text(json.dumps({key: value for key, value in raw.items() if key != "task"}))
    implicit = load_config_file(path)  # configs written before 'task' existed keep their cells
    assert implicit.task == "multilabel" and implicit.config_hash() == explicit.config_hash()
    assert multiclass.config_hash() != implicit.config_hash()


class FirstKeyword(Method):
    """Predict only: the first tag whose keyword the text has, else the first tag."""

    name = "first_keyword"

    def fit(self, train, valid, unlabeled, context) -> None:
        self.tags = list(train.tags)

    def predict(self, texts):
        prediction = np.zeros((len(texts), len(self.tags)), dtype=np.uint8)
        for i, text in enumerate(texts):
            hits = [j for j, tag in enumerate(self.tags) if set(WORDS[tag]) & set(text.split())]
            prediction[i, hits[0] if hits else 0] = 1
        return prediction


class EveryTag(FirstKeyword):
    name = "every_tag"

    def predict(self, texts):
        return np.ones((len(texts), len(self.tags)), dtype=np.uint8)


def test_methods_on_a_single_label_dataset_give_one_tag_per_issue(tmp_path):
    from harness.plugins import make_plugin_manager

    settings = write_single_label_dataset(tmp_path)
    pm = make_plugin_manager(autoload=False)
    assert run_plan(pm, plan_run(pm, settings, ["nb"], ["kinds"], [0, 1]))["failed"] == 0
    for method in (FirstKeyword, EveryTag):
        one = single_method_pm(method)
        run_plan(one, plan_run(one, settings, [method.name], ["kinds"], [0]))
    records = {(r.method.name, r.slice.name, r.seed): r for r in iter_records(Path(settings.results_dir))}
    assert len(records) == 2 * 2 + 2 + 2
    for (name, _, _), record in records.items():
        if name == "every_tag":  # predict-only, several tags per issue: the cell fails, saying why
            assert record.status == "failed" and "a multiclass task takes exactly one tag per text" in record.error
            continue
        assert record.status == "ok", record.error
        assert record.dataset.task == "multiclass"
        assert record.rule == ("argmax" if name == "nb" else "own")
        assert record.metrics.accuracy is not None and record.metrics.weighted_f1 is not None
        folder = Path(settings.results_dir) / "cells" / "kinds" / name
        arrays = read_predictions(folder / record.predictions.file, record.predictions.sha256)
        assert (arrays["test_prediction"].sum(axis=1) == 1).all()
        truth, predicted = arrays["test_labels"].argmax(axis=1), arrays["test_prediction"].argmax(axis=1)
        assert record.metrics.accuracy == pytest.approx(float((truth == predicted).mean()))
    assert records[("nb", "all", 0)].metrics.accuracy >= 0.9  # the keywords are easy to learn
