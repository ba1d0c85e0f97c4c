"""The tfidf_logreg plugin: the harness's method contract plus its threshold rule."""

from __future__ import annotations

import numpy as np

from harness.testing import MethodContract, make_plugin_manager
from harness_tfidf_logreg import THRESHOLDS, TfidfLogReg


class TestTfidfLogRegContract(MethodContract):
    method_class = TfidfLogReg
    other_params = {"C": 1.0}
    min_micro_f1 = 0.8


def test_threshold_is_tuned_on_valid_unless_given(tiny_data, fit_context):
    train, valid, test = tiny_data
    tuned = TfidfLogReg()
    tuned.fit(train, valid, [], fit_context)
    assert tuned.details()["threshold"] in THRESHOLDS
    assert tuned.details()["vocabulary_size"] > 10

    strict = TfidfLogReg(TfidfLogReg.Params(threshold=0.99))
    strict.fit(train, valid, [], fit_context)
    assert strict.details()["threshold"] == 0.99
    assert strict.predict(test.texts).sum() < tuned.predict(test.texts).sum()


def test_a_tag_absent_from_train_is_never_predicted(tiny_data, fit_context):
    train, valid, test = tiny_data
    labels = train.labels.copy()
    labels[:, 1] = 0
    method = TfidfLogReg(TfidfLogReg.Params(threshold=0.5))
    method.fit(type(train)(train.texts, labels, train.tags), valid, [], fit_context)
    assert not np.asarray(method.predict(test.texts))[:, 1].any()


def test_installed_plugin_is_found_through_its_entry_point():
    pm = make_plugin_manager(autoload=True, builtins=False)
    assert pm.registry.methods.get("tfidf_logreg") is TfidfLogReg, (
        "not registered: run 'pip install -e examples/harness-tfidf-logreg' first"
    )
