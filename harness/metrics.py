"""Scores of a prediction against the test tags, as the book computes them.

Every F1 in the harness comes from here: scikit-learn's, with zero_division=0, over 0/1
indicator matrices of shape (n_texts, n_tags). A single-tag matrix (n, 1) is still scored as
multi-label (the tag is the positive class), not as scikit-learn's two-class "binary" target.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

Average = Literal["micro", "macro"]


def _indicator_args(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(y_true, y_pred, labels) for scikit-learn, one label per tag column in column order."""
    if y_true.shape[1] == 1:  # scikit-learn reads one column as binary labels: score class 1 only
        return y_true[:, 0], y_pred[:, 0], [1]
    return y_true, y_pred, list(range(y_true.shape[1]))


def f1(y_true: np.ndarray, y_pred: np.ndarray, average: Average) -> float:
    """Micro or macro F1 of (n, L) 0/1 matrices (zero_division=0; macro over all L tags)."""
    from sklearn.metrics import f1_score  # here, not at import: the CLI starts without scikit-learn

    true, pred, labels = _indicator_args(y_true, y_pred)
    return float(f1_score(true, pred, labels=labels, average=average, zero_division=0))


def f1_from_counts(true_positives: np.ndarray, n_true: np.ndarray, n_predicted: np.ndarray) -> np.ndarray:
    """The same F1 from counts, elementwise: 2·tp / (n_true + n_predicted), 0 where both are 0.

    For callers that score many predictions at once from counts (the kNN (k, m) grid); equal to
    ``f1`` on the matrices the counts come from (tests/test_metrics.py checks it).
    """
    denominator = np.asarray(n_true) + np.asarray(n_predicted)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, 2.0 * np.asarray(true_positives) / denominator, 0.0)


def score(y_true: np.ndarray, y_pred: np.ndarray, tags: list[str]) -> dict[str, Any]:
    """Micro and macro F1 plus per-tag precision, recall, F1 and support (zero_division=0)."""
    from sklearn.metrics import precision_recall_fscore_support

    true, pred, labels = _indicator_args(y_true, y_pred)
    # per tag by column position, so no tag name (e.g. "micro avg") can collide with an aggregate
    precision, recall, tag_f1, support = precision_recall_fscore_support(
        true, pred, labels=labels, average=None, zero_division=0
    )
    micro_precision, micro_recall, micro_f1, _ = precision_recall_fscore_support(
        true, pred, labels=labels, average="micro", zero_division=0
    )
    return {
        "micro_f1": float(micro_f1),
        "macro_f1": float(np.mean(tag_f1)),
        "micro_precision": float(micro_precision),
        "micro_recall": float(micro_recall),
        "per_tag": {
            tag: {
                "precision": float(precision[j]),
                "recall": float(recall[j]),
                "f1": float(tag_f1[j]),
                "support": int(support[j]),
            }
            for j, tag in enumerate(tags)
        },
    }
