"""Cells end to end: the book's NB figures, resume, failing methods, variants, records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness import hookimpl
from harness.methods import Method, MethodParams
from harness.params import ParamError
from harness.plugins import make_plugin_manager
from harness.datasets import Settings
from harness.driver import run_plan
from harness.plan import plan_run

# ../shared/data/README.md: Naive Bayes on the mirror with the book's protocol, seed 0
REFERENCE_NB = {
    "8": (6, 0.52195, 0.14516), "16": (12, 0.50294, 0.15847), "32": (30, 0.53066, 0.18086),
    "64": (61, 0.61965, 0.20975), "128": (127, 0.63625, 0.25122), "all": (818, 0.71981, 0.32852),
}


class Raises(Method):
    name = "raises"

    def fit(self, train, valid, unlabeled, context):
        raise RuntimeError("boom")


class WrongShape(Method):
    name = "wrong_shape"

    def fit(self, train, valid, unlabeled, context):
        self.n_tags = len(context.tags)

    def predict(self, texts):
        return np.zeros((len(texts), self.n_tags + 1), dtype=int)


class MajorityParams(MethodParams):
    min_share: float = 0.5


class Majority(Method):
    """Predicts the tags carried by at least min_share of the valid split: uses no training labels."""

    name = "majority"
    uses_labels = False
    Params = MajorityParams

    def fit(self, train, valid, unlabeled, context):
        assert len(train) == 0
        self.row = (valid.labels.mean(axis=0) >= self.params.min_share).astype(np.uint8)

    def predict(self, texts):
        return np.tile(self.row, (len(texts), 1))


class TestMethods:
    @hookimpl
    def register_methods(self, register):
        for method in (Raises, WrongShape, Majority):
            register(method)


@pytest.fixture
def pm():
    pm = make_plugin_manager(autoload=False)
    pm.register_module(TestMethods(), name="test_methods")
    return pm


@pytest.fixture
def settings(tmp_path, mirror_dir):
    return Settings(results_dir=str(tmp_path / "results"), cache_dir=str(tmp_path / "cache"), data_dirs=(str(mirror_dir),))


def _records(settings):
    from harness.records import iter_records
    from pathlib import Path

    return list(iter_records(Path(settings.results_dir)))


def test_nb_reproduces_the_reference_table(pm, settings):
    plan = plan_run(pm, settings, "nb", ["github-issues-datasets"], [0])
    summary = run_plan(pm, plan)
    assert summary == {"planned": 6, "skipped": 0, "ok": 6, "failed": 0}
    by_slice = {r.slice.name: r for r in _records(settings)}
    for name, (n, micro, macro) in REFERENCE_NB.items():
        record = by_slice[name]
        assert record.slice.actual_n == n
        # the reference is printed to 5 decimals: agreement to 4 decimals
        assert record.metrics.micro_f1 == pytest.approx(micro, abs=5e-5)
        assert record.metrics.macro_f1 == pytest.approx(macro, abs=5e-5)


def test_record_holds_what_design_md_asks_for(pm, settings):
    run_plan(pm, plan_run(pm, settings, "nb", ["github-issues-datasets"], [0], slices=[8]))
    (record,) = _records(settings)
    assert record.status == "ok" and record.schema_version == 2
    assert record.method.name == "nb" and record.method.plugin == "harness_nb"
    assert record.method.distribution == "fewlabels-harness"
    assert record.dataset.sizes == {"train": 818, "valid": 410, "test": 413, "unlabeled": 5546}
    assert len(record.dataset.fingerprint) == 16 and len(record.slice.index_hash) == 16
    assert set(record.metrics.per_tag) == set(record.dataset.tags)
    assert {"fit_s", "predict_s", "total_s"} <= set(record.timings)
    assert record.environment["packages"]["scikit-learn"]


def test_second_run_computes_nothing(pm, settings):
    first = plan_run(pm, settings, "nb", ["github-issues-datasets"], [0, 1], slices=[8, 16])
    run_plan(pm, first)
    again = plan_run(pm, settings, "nb", ["github-issues-datasets"], [0, 1], slices=[8, 16])
    assert len(again.todo) == 0 and len(again.skipped) == 4
    assert run_plan(pm, again) == {"planned": 4, "skipped": 4, "ok": 0, "failed": 0}


def test_failing_methods_fail_their_cells_and_the_run_goes_on(pm, settings):
    plan = plan_run(pm, settings, "raises,wrong_shape,nb", ["github-issues-datasets"], [0], slices=[8])
    summary = run_plan(pm, plan)
    assert summary["ok"] == 1 and summary["failed"] == 2
    errors = {r.method.name: r.error for r in _records(settings)}
    assert errors["raises"] == "RuntimeError: boom"
    assert errors["wrong_shape"] == "PredictionError: method 'wrong_shape' predicted shape (413, 12), expected (413, 11)"
    # failed cells are kept, not retried, unless asked
    assert len(plan_run(pm, settings, "raises", ["github-issues-datasets"], [0], slices=[8]).todo) == 0
    assert len(plan_run(pm, settings, "raises", ["github-issues-datasets"], [0], slices=[8], retry_failed=True).todo) == 1


def test_label_free_method_runs_once_per_seed(pm, settings):
    plan = plan_run(pm, settings, "majority", ["github-issues-datasets"], [0, 1])
    assert [c.slice_name for c in plan.cells] == ["none", "none"]


def test_parameter_overrides_make_a_labelled_variant(pm, settings):
    plan = plan_run(pm, settings, "nb", ["github-issues-datasets"], [0], slices=[8], overrides=["nb.alpha=0.1"])
    assert plan.cells[0].label.startswith("nb@") and plan.cells[0].params["alpha"] == 0.1
    named = plan_run(pm, settings, "nb", ["github-issues-datasets"], [0], slices=[8], overrides=["nb.alpha=0.1"], label="smooth")
    assert named.cells[0].label == "nb@smooth"
    assert named.cells[0].key_hash != plan_run(pm, settings, "nb", ["github-issues-datasets"], [0], slices=[8]).cells[0].key_hash


@pytest.mark.parametrize(
    "override, message",
    [
        ("nb.alfa=1", r"nb\.alfa: Extra inputs are not permitted"),
        ("nb.alpha=abc", r"nb\.alpha: Input should be a valid number"),
        ("nbb.alpha=1", r"unknown method 'nbb'; did you mean 'nb'\?"),
        ("nb-alpha", r"expected METHOD\.PARAM=VALUE"),
    ],
)
def test_bad_overrides(pm, settings, override, message):
    with pytest.raises(ParamError, match=message):
        plan_run(pm, settings, "nb", ["github-issues-datasets"], [0], overrides=[override])


def test_unknown_method_suggests_a_name(pm, settings):
    with pytest.raises(ValueError, match=r"unknown method 'nv'; did you mean 'nb'\?"):
        plan_run(pm, settings, "nv", ["github-issues-datasets"], [0])


def test_records_are_complete_json(pm, settings):
    run_plan(pm, plan_run(pm, settings, "nb", ["github-issues-datasets"], [0], slices=[8, 16]))
    from pathlib import Path

    files = list((Path(settings.results_dir) / "cells").rglob("*"))
    assert not [f for f in files if f.name.endswith(".tmp")]
    for path in (f for f in files if f.suffix == ".json"):
        json.loads(path.read_text())
