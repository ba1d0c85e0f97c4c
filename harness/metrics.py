"""Scores of a prediction against the test tags, as the book computes them."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import classification_report


def score(y_true: np.ndarray, y_pred: np.ndarray, tags: list[str]) -> dict[str, Any]:
    """Micro and macro F1 plus per-tag precision, recall, F1 and support (zero_division=0)."""
    report = classification_report(
        y_true, y_pred, labels=list(range(len(tags))), target_names=tags, zero_division=0, output_dict=True
    )
    return {
        "micro_f1": float(report["micro avg"]["f1-score"]),
        "macro_f1": float(report["macro avg"]["f1-score"]),
        "micro_precision": float(report["micro avg"]["precision"]),
        "micro_recall": float(report["micro avg"]["recall"]),
        "per_tag": {
            tag: {
                "precision": float(report[tag]["precision"]),
                "recall": float(report[tag]["recall"]),
                "f1": float(report[tag]["f1-score"]),
                "support": int(report[tag]["support"]),
            }
            for tag in tags
        },
    }
