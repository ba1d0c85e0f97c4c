"""The one F1 of the harness: right for one tag, for any tag name, and the same from counts."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics import f1, f1_from_counts, score


def test_a_single_tag_is_scored_as_multilabel_not_binary():
    # a one-tag dataset: every labeled test row carries the tag; scikit-learn would read the
    # (n, 1) matrix as binary classes and score class 0, giving 0.0 for a perfect prediction
    y_true = np.ones((6, 1), dtype=np.uint8)
    assert score(y_true, y_true, ["bug"])["micro_f1"] == 1.0
    y_pred = np.array([[1], [1], [1], [0], [0], [0]], dtype=np.uint8)
    scores = score(y_true, y_pred, ["bug"])
    assert scores["micro_f1"] == scores["macro_f1"] == pytest.approx(2 * 3 / (6 + 3))
    assert scores["per_tag"]["bug"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 6}
    assert f1(y_true, y_pred, "micro") == pytest.approx(2 / 3)
    nothing = np.zeros((3, 1), dtype=np.uint8)
    assert score(nothing, nothing, ["bug"])["micro_f1"] == 0.0  # zero_division=0


@pytest.mark.parametrize("names", [["micro avg", "b"], ["a", "macro avg"], ["weighted avg", "samples avg"]])
def test_tag_names_never_collide_with_the_aggregates(names):
    y_true = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.uint8)
    y_pred = np.array([[1, 0], [0, 0], [1, 0]], dtype=np.uint8)
    scores = score(y_true, y_pred, names)
    assert scores["per_tag"][names[0]] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert scores["per_tag"][names[1]] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert scores["micro_f1"] == pytest.approx(2 * 2 / (4 + 2))
    assert scores["macro_f1"] == pytest.approx(0.5)


@pytest.mark.parametrize("n_tags", [1, 2, 5])
def test_f1_of_matrices_and_of_counts_agree_with_the_record(n_tags):
    rng = np.random.default_rng(n_tags)
    y_true = (rng.random((30, n_tags)) < 0.3).astype(np.uint8)
    y_pred = (rng.random((30, n_tags)) < 0.3).astype(np.uint8)
    y_true[:, -1] = y_pred[:, -1] = 0  # a tag absent from both counts as F1 0, as zero_division=0
    recorded = score(y_true, y_pred, [f"t{i}" for i in range(n_tags)])
    true_pos = (y_true & y_pred).sum(axis=0)
    per_tag = f1_from_counts(true_pos, y_true.sum(axis=0), y_pred.sum(axis=0))
    micro = f1_from_counts(true_pos.sum(), y_true.sum(), y_pred.sum())
    assert f1(y_true, y_pred, "micro") == pytest.approx(recorded["micro_f1"]) == pytest.approx(float(micro))
    assert f1(y_true, y_pred, "macro") == pytest.approx(recorded["macro_f1"]) == pytest.approx(float(per_tag.mean()))
    assert per_tag.tolist() == pytest.approx([recorded["per_tag"][f"t{i}"]["f1"] for i in range(n_tags)])
