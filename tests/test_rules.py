"""Decision rules chosen on valid scores, ranking metrics, and the evaluation of a fitted method."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score

from harness.evaluation import check_one_tag_per_row, evaluate_method, ranking_metrics
from harness.methods import LabeledTexts, Method, PredictionError
from harness.rules import (
    THRESHOLD_GRID,
    ChosenRules,
    argmax_predictions,
    best_grid_threshold,
    best_threshold,
    choose_rules,
    top_k_predictions,
)

TAGS = ["a", "b", "c"]


class FixedScores(Method):
    """Scores looked up by text: the test decides what every split's scores are."""

    name = "fixed"
    table: dict[str, list[float]] = {}

    def fit(self, train, valid, unlabeled, context) -> None:
        pass

    def predict_scores(self, texts: list[str]) -> np.ndarray:
        return np.array([self.table[t] for t in texts], dtype=float)


def _split(prefix: str, scores: np.ndarray, labels: np.ndarray) -> tuple[LabeledTexts, dict[str, list[float]]]:
    texts = [f"{prefix}{i}" for i in range(len(scores))]
    return LabeledTexts(texts, labels.astype(np.uint8), list(TAGS[: labels.shape[1]])), dict(zip(texts, scores.tolist()))


def test_best_threshold_matches_a_brute_force_search():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = np.round(rng.random(40), 1)  # rounded: ties must be predicted together
        labels = (rng.random(40) < 0.3).astype(int)
        threshold, f1 = best_threshold(scores, labels)
        # every threshold but the lowest score, which would tag every text
        brute = max(f1_score(labels, scores >= t, zero_division=0) for t in np.unique(scores)[1:])
        assert f1 == pytest.approx(brute)
        assert f1_score(labels, scores >= threshold, zero_division=0) == pytest.approx(brute)
        assert threshold > scores.min()
    # scores that separate nothing give no cut, rather than 'tag every text' for F1 2p/(1+p)
    assert best_threshold(np.full(10, 0.3), np.eye(10)[0]) == (pytest.approx(0.3), 0.0)
    assert best_threshold(np.full(10, 0.3), np.eye(10)[0])[0] > 0.3


def test_best_grid_threshold_is_the_smallest_grid_value_with_the_best_micro_f1():
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.uint8)
    scores = np.array([[0.3, 0.1], [0.1, 0.32], [0.4, 0.35], [0.2, 0.05]])
    assert best_grid_threshold(scores, labels) == (0.2, 1.0)  # 0.20 and 0.25 both separate; 0.20 first
    rng = np.random.default_rng(3)
    for _ in range(20):
        labels = (rng.random((40, 5)) < 0.3).astype(np.uint8)
        scores = rng.random((40, 5))
        brute = [(f1_score(labels, (scores > t).astype(np.uint8), average="micro", zero_division=0), -t) for t in THRESHOLD_GRID]
        best_f1, minus_t = max(brute)
        assert best_grid_threshold(scores, labels) == (-minus_t, best_f1)


def test_best_grid_threshold_scores_a_single_tag_as_that_tag_not_as_two_classes():
    # scikit-learn reads one column as binary labels; F1 must be the tag's, not micro over {0, 1}
    labels = np.array([[1], [1], [0], [0], [0], [0], [0], [0], [0], [0]], dtype=np.uint8)
    scores = np.array([[0.9], [0.0], [0.0], [0.0], [0.0], [0.0], [0.0], [0.0], [0.0], [0.0]])
    assert best_grid_threshold(scores, labels) == (0.05, 2 / 3)


def test_threshold_is_chosen_on_valid_never_on_test():
    # tag a: valid positives score 0.6 and above, test positives 0.4 to 0.9, so the threshold
    # test labels would pick (0.35) is not the one valid picks (0.55); tag b scores 0 everywhere
    valid_scores = np.array([[0.9, 0], [0.8, 0], [0.6, 0], [0.5, 0], [0.2, 0], [0.1, 0]])
    valid_labels = np.array([[1, 0], [1, 0], [1, 0], [0, 0], [0, 0], [0, 0]])
    test_scores = np.array([[0.9, 0], [0.5, 0], [0.4, 0], [0.3, 0], [0.2, 0]])
    test_labels = np.array([[1, 0], [1, 0], [1, 0], [0, 0], [0, 0]])
    valid, valid_table = _split("v", valid_scores, valid_labels)
    test, test_table = _split("t", test_scores, test_labels)
    FixedScores.table = {**valid_table, **test_table}
    evaluation = evaluate_method(FixedScores(), "fixed", valid, test, "multilabel")
    assert evaluation.rules["threshold"]["threshold"] == pytest.approx(0.55)
    assert evaluation.rules["per_tag"]["thresholds"]["a"] == pytest.approx(0.55)
    assert best_threshold(test_scores[:, 0], test_labels[:, 0])[0] == pytest.approx(0.35)  # what test would pick
    # test is scored with valid's threshold: only the 0.9 positive is found
    for rule in ("threshold", "per_tag"):
        assert evaluation.rule_metrics[rule]["micro_f1"] == pytest.approx(f1_score(test_labels[:, 0], test_scores[:, 0] >= 0.55))
        assert evaluation.rule_metrics[rule]["micro_f1"] == pytest.approx(0.5)
    assert evaluation.rule == "threshold"  # no predict: the global threshold stands in for 'own'


def test_per_tag_thresholds_and_the_fallback_for_a_tag_absent_from_valid():
    valid_scores = np.array([[0.9, 0.3, 0.7, 0.0], [0.2, 0.35, 0.6, 0.0], [0.1, 0.1, 0.5, 0.0], [0.8, 0.05, 0.4, 0.0]])
    # tag c is never positive; tag d is, but its scores are all tied (a tag never seen in training)
    valid_labels = np.array([[1, 1, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    chosen = choose_rules(valid_scores, valid_labels, [*TAGS, "d"])
    assert chosen.per_tag_fallback == ("c", "d")
    assert chosen.per_tag[2] == chosen.per_tag[3] == chosen.threshold  # the fallback is the global threshold
    assert chosen.per_tag[0] == pytest.approx(0.5)  # between 0.8 (positive) and 0.2
    assert chosen.per_tag[1] == pytest.approx(0.2)  # between 0.3 (positive) and 0.1
    assert chosen.apply("per_tag", valid_scores)[:, :2].tolist() == valid_labels[:, :2].tolist()
    assert not chosen.apply("per_tag", valid_scores)[:, 3].any()  # d is not put on every text
    # the record form gives back the same rules
    again = ChosenRules.from_record(chosen.as_record(), [*TAGS, "d"])
    assert again == chosen


def test_top_k_is_chosen_on_valid_micro_f1():
    rng = np.random.default_rng(1)
    scores = rng.random((30, 3))
    labels = top_k_predictions(scores, 2)  # every row's two best tags are its tags
    assert choose_rules(scores, labels, TAGS).top_k == 2
    assert top_k_predictions(np.array([[0.5, 0.5, 0.1]]), 1).tolist() == [[1, 0, 0]]  # ties: tag order


def test_multiclass_argmax_and_the_one_tag_check():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.5, 0.0]])
    assert argmax_predictions(scores).tolist() == [[0, 1, 0], [1, 0, 0]]
    check_one_tag_per_row("m", argmax_predictions(scores))
    with pytest.raises(PredictionError, match=r"predicted 2 tags for test text 1 \(1 texts in all\)"):
        check_one_tag_per_row("m", np.array([[0, 1, 0], [1, 1, 0]]))


class TwoTagsEach(Method):
    name = "two_tags"

    def fit(self, train, valid, unlabeled, context) -> None:
        pass

    def predict(self, texts):
        return np.tile([1, 1, 0], (len(texts), 1))


def test_a_predict_only_method_must_give_one_tag_per_multiclass_text():
    labels = np.eye(3, dtype=np.uint8)
    split = LabeledTexts(["x", "y", "z"], labels, TAGS)
    with pytest.raises(PredictionError, match="a multiclass task takes exactly one tag per text"):
        evaluate_method(TwoTagsEach(), "two_tags", split, split, "multiclass")
    evaluation = evaluate_method(TwoTagsEach(), "two_tags", split, split, "multilabel")  # fine when multi-label
    assert evaluation.rule == "own" and evaluation.rules is None and evaluation.ranking is None


def test_multiclass_scores_decide_by_argmax_and_report_accuracy():
    valid_scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
    test_scores = np.array([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.0, 0.2, 0.8], [0.3, 0.4, 0.3]])
    test_labels = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]])
    valid, valid_table = _split("v", valid_scores, np.eye(3))
    test, test_table = _split("t", test_scores, test_labels)
    FixedScores.table = {**valid_table, **test_table}
    evaluation = evaluate_method(FixedScores(), "fixed", valid, test, "multiclass")
    assert evaluation.rule == "argmax" and set(evaluation.rule_metrics) == {"argmax"}
    assert evaluation.arrays["test_prediction"].sum(axis=1).tolist() == [1, 1, 1, 1]
    metrics = evaluation.rule_metrics["argmax"]
    truth, predicted = test_labels.argmax(axis=1), test_scores.argmax(axis=1)
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))
    assert metrics["weighted_f1"] == pytest.approx(f1_score(truth, predicted, average="weighted"))


def _lrap_by_definition(labels: np.ndarray, scores: np.ndarray) -> float:
    """Label ranking average precision written out from its definition (ties count as ranked above)."""
    per_row = []
    for truth, row in zip(labels, scores):
        relevant = np.flatnonzero(truth)
        if len(relevant) in (0, len(truth)):
            per_row.append(1.0)
            continue
        precisions = []
        for j in relevant:
            rank = (row >= row[j]).sum()
            precisions.append((row[relevant] >= row[j]).sum() / rank)
        per_row.append(np.mean(precisions))
    return float(np.mean(per_row))


def test_ranking_metrics_against_scikit_learn():
    rng = np.random.default_rng(2)
    scores = np.round(rng.random((50, 4)), 2)
    labels = (rng.random((50, 4)) < 0.3).astype(np.uint8)
    labels[:, 3] = 0  # a tag absent from test: its average precision is undefined and left out
    labels[labels.sum(axis=1) == 0, 0] = 1  # every labeled issue has a tag
    metrics = ranking_metrics(labels, scores)
    per_tag = [average_precision_score(labels[:, j], scores[:, j]) for j in range(3)]
    assert metrics["macro_average_precision"] == pytest.approx(np.mean(per_tag))
    assert metrics["label_ranking_average_precision"] == pytest.approx(_lrap_by_definition(labels, scores))
    perfect = ranking_metrics(labels[:, :3], labels[:, :3] + 0.1 * scores[:, :3])
    assert perfect["macro_average_precision"] == pytest.approx(1.0)
    assert perfect["label_ranking_average_precision"] == pytest.approx(1.0)
