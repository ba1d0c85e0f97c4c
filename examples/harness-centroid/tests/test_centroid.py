"""The centroid plugin: the harness's method contract plus what its scores mean."""

from __future__ import annotations

import numpy as np

from harness.testing import MethodContract, make_plugin_manager
from harness_centroid import Centroid


class TestCentroidContract(MethodContract):
    method_class = Centroid
    other_params = {"ngram_max": 2}
    min_micro_f1 = 0.8


def test_an_issue_scores_highest_for_the_tags_of_its_twin(tiny_data, fit_context):
    train, valid, _ = tiny_data
    method = Centroid()
    method.fit(train, valid, [], fit_context)
    scores = method.predict_scores(train.texts)
    assert ((0 <= scores) & (scores <= 1 + 1e-9)).all()
    # on average a training issue is closer to the centroids of its own tags than to the others
    assert scores[train.labels == 1].mean() > scores[train.labels == 0].mean() + 0.1


def test_a_tag_absent_from_train_scores_zero(tiny_data, fit_context):
    train, valid, test = tiny_data
    labels = train.labels.copy()
    labels[:, 1] = 0
    method = Centroid()
    method.fit(type(train)(train.texts, labels, train.tags), valid, [], fit_context)
    assert not np.asarray(method.predict_scores(test.texts))[:, 1].any()


def test_installed_plugin_is_found_through_its_entry_point():
    pm = make_plugin_manager(autoload=True, builtins=False)
    assert pm.registry.methods.get("centroid") is Centroid, (
        "not registered: run 'pip install -e examples/harness-centroid' first"
    )
