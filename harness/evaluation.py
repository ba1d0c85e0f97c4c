"""What a fitted method scores on test: under its own ``predict`` and under every decision rule
the core chooses on valid (harness/rules.py), plus ranking metrics and the arrays to store.

A method gives 0/1 tags (``predict``), scores (``predict_scores``, higher = more likely), or
both. The cell's default rule is ``own`` when the method predicts, and otherwise the rule on
scores that stands in for it (``threshold``; ``argmax`` for multiclass). Multiclass tasks
(one tag per text) decide by ``argmax`` of the scores; a method with ``predict`` only must
then give exactly one tag per text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from harness.methods import LabeledTexts, Method, PredictionError, has_own_predict, has_scores, validate_prediction, validate_scores
from harness.metrics import score
from harness.predictions import PredictionsError, read_predictions
from harness.records import CellRecord
from harness.rules import MULTILABEL_RULES, OWN, ChosenRules, argmax_predictions, choose_rules

Task = Literal["multilabel", "multiclass"]


def check_one_tag_per_row(method_name: str, prediction: np.ndarray) -> None:
    """A multiclass prediction gives each text exactly one tag."""
    counts = prediction.sum(axis=1)
    bad = np.flatnonzero(counts != 1)
    if len(bad):
        raise PredictionError(
            f"method {method_name!r} predicted {int(counts[bad[0]])} tags for test text {int(bad[0])} "
            f"({len(bad)} texts in all); a multiclass task takes exactly one tag per text"
        )


def task_metrics(labels: np.ndarray, prediction: np.ndarray, tags: list[str], task: Task) -> dict[str, Any]:
    """The F1 scores of ``harness.metrics.score``; multiclass adds accuracy and weighted F1."""
    metrics = score(labels, prediction, tags)
    if task == "multiclass":
        from sklearn.metrics import accuracy_score, f1_score

        metrics["accuracy"] = float(accuracy_score(labels, prediction))
        metrics["weighted_f1"] = float(
            f1_score(labels, prediction, labels=list(range(len(tags))), average="weighted", zero_division=0)
        )
    return metrics


def macro_average_precision(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Macro average precision over the tags that have a positive in ``labels`` (AP is
    undefined without one); None when no tag has."""
    from sklearn.metrics import average_precision_score

    present = labels.sum(axis=0) > 0
    return float(average_precision_score(labels[:, present], scores[:, present], average="macro")) if present.any() else None


def ranking_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    """Rule-free quality of the scores: macro average precision (``macro_average_precision``)
    and label ranking average precision."""
    from sklearn.metrics import label_ranking_average_precision_score

    lrap = float(label_ranking_average_precision_score(labels, scores)) if len(labels) else None
    return {"macro_average_precision": macro_average_precision(labels, scores), "label_ranking_average_precision": lrap}


@dataclass
class Evaluation:
    rule: str  # the cell's default rule; its metrics are the record's "metrics"
    rule_metrics: dict[str, dict[str, Any]]
    rules: dict[str, Any] | None  # the parameters chosen on valid, per rule
    ranking: dict[str, float | None] | None
    arrays: dict[str, np.ndarray]
    timings: dict[str, float] = field(default_factory=dict)


def evaluate_method(method: Method, method_name: str, valid: LabeledTexts, test: LabeledTexts, task: Task) -> Evaluation:
    """Predict and score the test split under every rule that applies to ``method``."""
    tags = list(test.tags)
    scored, predicts = has_scores(method), has_own_predict(method)
    if not (scored or predicts):
        raise TypeError(f"method {method_name!r} defines neither predict nor predict_scores")
    timings: dict[str, float] = {}
    predictions: dict[str, np.ndarray] = {}
    arrays: dict[str, np.ndarray] = {"tags": np.asarray(tags, dtype=str), "test_labels": test.labels}
    rules: dict[str, Any] | None = None
    ranking = None
    if predicts and not (task == "multiclass" and scored):
        tick = time.perf_counter()
        raw = method.predict(test.texts)
        timings["predict_s"] = time.perf_counter() - tick
        predictions[OWN] = validate_prediction(method_name, raw, len(test), len(tags))
        if task == "multiclass":
            check_one_tag_per_row(method_name, predictions[OWN])
    if scored:
        tick = time.perf_counter()
        valid_scores = validate_scores(method_name, method.predict_scores(valid.texts), len(valid), len(tags))
        test_scores = validate_scores(method_name, method.predict_scores(test.texts), len(test), len(tags))
        timings["scores_s"] = time.perf_counter() - tick
        rules, ranking = _rules_on_scores(valid_scores, test_scores, valid, test, task, predictions, arrays)
    return _evaluation(predictions, rules, ranking, arrays, timings, test, task)


def evaluate_scores(valid_scores: np.ndarray, test_scores: np.ndarray, valid: LabeledTexts, test: LabeledTexts,
                    task: Task) -> Evaluation:
    """Score stored (valid, test) score matrices as ``evaluate_method`` scores a method that gives
    scores only: every rule chosen on valid, the default rule ``threshold`` (``argmax`` for
    multiclass). For scores that no method object gives, e.g. an ensemble of stored cells."""
    predictions: dict[str, np.ndarray] = {}
    arrays: dict[str, np.ndarray] = {"tags": np.asarray(list(test.tags), dtype=str), "test_labels": test.labels}
    rules, ranking = _rules_on_scores(valid_scores, test_scores, valid, test, task, predictions, arrays)
    return _evaluation(predictions, rules, ranking, arrays, {}, test, task)


def _rules_on_scores(valid_scores: np.ndarray, test_scores: np.ndarray, valid: LabeledTexts, test: LabeledTexts,
                     task: Task, predictions: dict[str, np.ndarray],
                     arrays: dict[str, np.ndarray]) -> tuple[dict[str, Any] | None, dict[str, float | None]]:
    """Add the test predictions of every rule on scores to ``predictions`` and the score arrays to
    ``arrays``; returns (the rules chosen on valid, the ranking metrics)."""
    arrays.update(valid_scores=valid_scores, test_scores=test_scores, valid_labels=valid.labels)
    ranking = ranking_metrics(test.labels, test_scores)
    if task == "multiclass":
        predictions["argmax"] = argmax_predictions(test_scores)
        return None, ranking
    chosen = choose_rules(valid_scores, valid.labels, list(test.tags))
    predictions.update({rule: chosen.apply(rule, test_scores) for rule in MULTILABEL_RULES})
    return chosen.as_record(), ranking


def _evaluation(predictions: dict[str, np.ndarray], rules: dict[str, Any] | None, ranking: dict[str, float | None] | None,
                arrays: dict[str, np.ndarray], timings: dict[str, float], test: LabeledTexts, task: Task) -> Evaluation:
    default = OWN if OWN in predictions else ("argmax" if task == "multiclass" else "threshold")
    arrays["test_prediction"] = predictions[default]
    tags = list(test.tags)
    rule_metrics = {rule: task_metrics(test.labels, prediction, tags, task) for rule, prediction in predictions.items()}
    return Evaluation(default, rule_metrics, rules, ranking, arrays, timings)


def prediction_under_rule(record: CellRecord, record_path: Path, rule: str) -> tuple[str, list[str], np.ndarray, np.ndarray]:
    """(rule used, tags, test labels, 0/1 test prediction) of an ok cell under ``rule``, from its
    stored arrays. A rule that does not apply to the cell gives its default rule's prediction.
    Raises PredictionsError when the arrays are missing (a record without any: ``record_path``
    is named) or fail their checksum."""
    if record.predictions is None:
        raise PredictionsError(f"{record_path}: the record has no stored predictions (written before they were stored)")
    arrays = read_predictions(record_path.parent / record.predictions.file, record.predictions.sha256)
    tags = arrays["tags"].tolist()
    if rule == record.rule or rule not in (record.rule_metrics or {}):
        return record.rule, tags, arrays["test_labels"], arrays["test_prediction"]
    if rule == "argmax":
        return rule, tags, arrays["test_labels"], argmax_predictions(arrays["test_scores"])
    return rule, tags, arrays["test_labels"], ChosenRules.from_record(record.rules, tags).apply(rule, arrays["test_scores"])


def metrics_under_rule(record: CellRecord, record_path: Path, rule: str) -> tuple[str, dict[str, Any]]:
    """(rule used, test metrics) of an ok cell under ``rule``, recomputed from its stored arrays.

    A rule that does not apply to the cell (a method without scores, a record written before
    rules existed) gives the cell's default rule and the record's own metrics. Raises
    PredictionsError when the stored arrays are missing or fail their checksum.
    """
    if rule == record.rule or rule not in (record.rule_metrics or {}) or record.predictions is None:
        return record.rule, record.metrics.model_dump()
    used, tags, labels, prediction = prediction_under_rule(record, record_path, rule)
    return used, task_metrics(labels, prediction, tags, record.dataset.task)
