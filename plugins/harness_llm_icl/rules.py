"""The method's own decision rule on its scores: one threshold chosen on valid by micro F1
(multi-label); multi-class takes the core's argmax rule (harness.rules.argmax_predictions)."""

from __future__ import annotations

import numpy as np


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold t (predict score >= t) with the highest valid micro F1, and that F1.

    Every distinct score is a candidate cut (equal scores fall on the same side); t is placed
    halfway to the next lower score. Ties in F1 go to the higher threshold (fewer tags).
    """
    flat = scores.ravel().astype(np.float64)
    truth = labels.ravel().astype(bool)
    if flat.size == 0:
        raise ValueError("choosing a threshold needs at least one valid text")
    order = np.argsort(-flat, kind="stable")
    ordered, hits = flat[order], truth[order]
    f1 = 2 * np.cumsum(hits) / (truth.sum() + np.arange(1, flat.size + 1))
    f1[:-1][ordered[1:] == ordered[:-1]] = -1.0  # not a cut: the next score is equal
    best = int(np.argmax(f1))
    if f1[best] <= 0:  # no cut finds a true tag: predict nothing
        return float(ordered[0] + 1.0), 0.0
    below = ordered[best + 1] if best + 1 < flat.size else ordered[best] - 1.0
    return float((ordered[best] + below) / 2), float(f1[best])


def micro_f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    """2·tp / (true tags + predicted tags), 0 when both are 0 (scikit-learn's zero_division=0)."""
    total = int(labels.astype(bool).sum() + predicted.astype(bool).sum())
    return float(2 * (labels.astype(bool) & predicted.astype(bool)).sum() / total) if total else 0.0


def apply_threshold(scores: np.ndarray, threshold: float) -> np.ndarray:
    return (scores >= threshold).astype(np.uint8)
