"""Decision rules owned by the core: turn a method's score matrix into 0/1 tags.

Every rule's parameters are chosen on the valid split's scores and tags, never on test, so
that all methods with scores are compared under the same rule, tuned the same way:

- ``threshold``: one threshold for every tag, the one with the best valid micro F1;
- ``per_tag``: one threshold per tag, each the best for that tag's valid F1; a tag with no
  positive in valid, or whose valid scores no cut separates (F1 0 at every cut), has nothing
  to tune on and falls back to the global threshold;
- ``top_k``: the k highest-scored tags of each text, k with the best valid micro F1;
- ``argmax`` (multiclass): the highest-scored tag of each text, nothing to choose.

``own`` (the method's own ``predict``) is not a rule on scores; see harness/evaluation.py.
A method whose own rule is a threshold on a coarse grid (setfit, finetune) takes it from
``best_grid_threshold`` here rather than keeping its own copy of the search; ``decide`` applies
such a rule (argmax for a multiclass task) and ``choose_own_threshold`` chooses it on valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from harness.metrics import f1, f1_from_counts

OWN = "own"
MULTILABEL_RULES = ("threshold", "per_tag", "top_k")  # chosen on valid scores
MULTICLASS_RULES = ("argmax",)
RULES = (OWN, *MULTILABEL_RULES, *MULTICLASS_RULES)
# Round thresholds for a method's own rule: 0.05, 0.10, ..., 0.95.
THRESHOLD_GRID = tuple(float(t) for t in np.round(np.arange(0.05, 0.951, 0.05), 2))


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold t (predict ``score >= t``) with the best F1 over these scores, and that F1.

    Every cut between two distinct sorted scores is tried; t is the midpoint of the gap, so a
    test score a little off the valid ones falls on the side its neighbours did. Among equal
    F1s the highest threshold wins. Tagging every text is not a candidate: F1 rewards it for a
    rare tag whose scores separate nothing (2p / (1 + p) > 0 at prevalence p), which is of no
    use to anyone. Without a positive or a usable cut, t lies above every score and F1 is 0.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], labels[order]
    # a cut may only fall where the score changes (tied texts are predicted together), and
    # never below the lowest score
    cuts = np.flatnonzero(ranked[:-1] > ranked[1:])
    if len(cuts) == 0 or not hits.any():
        return (float(np.nextafter(ranked[0], np.inf)) if len(ranked) else 0.0), 0.0
    # F1 from integer counts, so that equal F1s compare equal and ties break the same way
    # everywhere (scikit-learn's precision_recall_curve gives rounded precision and recall)
    true_positives = np.cumsum(hits)
    cut_f1 = 2 * true_positives[cuts] / (cuts + 1 + int(hits.sum()))
    best = int(cuts[int(np.argmax(cut_f1))])
    low, high = ranked[best + 1], ranked[best]
    threshold = low + (high - low) / 2
    if not threshold > low:  # adjacent floats: no midpoint between them
        threshold = high
    return float(threshold), float(cut_f1.max())


def best_grid_threshold(scores: np.ndarray, labels: np.ndarray, grid: Sequence[float] = THRESHOLD_GRID) -> tuple[float, float]:
    """The grid threshold t (predict ``score > t``) with the best micro F1 over these (n, L)
    scores, the smallest t on ties, and that F1.

    Unlike ``best_threshold``, the candidates are fixed round numbers, so a method's own rule
    reads the same from run to run (e.g. 0.35) and does not follow single valid scores. Every
    candidate is scored in one pass from integer counts (``f1_from_counts``), not one F1 call
    per candidate: a fine-tuning run searches after every evaluation.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)
    hits = np.asarray(labels).reshape(len(scores), -1).astype(bool)
    candidates = np.asarray(grid, dtype=np.float64)
    predicted = scores[None, :, :] > candidates[:, None, None]  # (candidates, n, L)
    true_positives = (predicted & hits[None]).sum(axis=(1, 2))
    micro = f1_from_counts(true_positives, int(hits.sum()), predicted.sum(axis=(1, 2)))
    best = int(np.argmax(micro))  # the first, so the smallest threshold, among equal counts' F1s
    return float(candidates[best]), float(micro[best])


def top_k_predictions(scores: np.ndarray, k: int) -> np.ndarray:
    """1 for the k highest scores of each row (ties broken by tag order), else 0."""
    prediction = np.zeros(scores.shape, dtype=np.uint8)
    if scores.size == 0 or k <= 0:
        return prediction
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    np.put_along_axis(prediction, top, 1, axis=1)
    return prediction


@dataclass(frozen=True)
class ChosenRules:
    """The parameters of every multi-label rule, as chosen on valid."""

    threshold: float
    per_tag: tuple[float, ...]
    per_tag_fallback: tuple[str, ...]  # tags with nothing to tune on in valid: they use ``threshold``
    top_k: int
    tags: tuple[str, ...]

    def apply(self, rule: str, scores: np.ndarray) -> np.ndarray:
        """0/1 tags of ``scores`` under ``rule``."""
        if rule == "threshold":
            return (scores >= self.threshold).astype(np.uint8)
        if rule == "per_tag":
            return (scores >= np.asarray(self.per_tag)[None, :]).astype(np.uint8)
        if rule == "top_k":
            return top_k_predictions(scores, self.top_k)
        raise ValueError(f"{rule!r} is not a multi-label rule on scores (known: {', '.join(MULTILABEL_RULES)})")

    def as_record(self) -> dict[str, Any]:
        return {
            "threshold": {"threshold": self.threshold},
            "per_tag": {
                "thresholds": dict(zip(self.tags, self.per_tag)),
                "fallback_tags": list(self.per_tag_fallback),
            },
            "top_k": {"k": self.top_k},
        }

    @classmethod
    def from_record(cls, rules: dict[str, Any], tags: list[str]) -> ChosenRules:
        """The rules a cell record stores (``record["rules"]``), for its tags in order."""
        thresholds = rules["per_tag"]["thresholds"]
        return cls(
            threshold=float(rules["threshold"]["threshold"]),
            per_tag=tuple(float(thresholds[tag]) for tag in tags),
            per_tag_fallback=tuple(rules["per_tag"]["fallback_tags"]),
            top_k=int(rules["top_k"]["k"]),
            tags=tuple(tags),
        )


def argmax_predictions(scores: np.ndarray) -> np.ndarray:
    """The multiclass rule: 1 for the highest-scored tag of each row (the first among ties)."""
    return top_k_predictions(scores, 1)


def decide(scores: np.ndarray, task: str, threshold: float) -> np.ndarray:
    """0/1 predictions: argmax for multiclass, ``score > threshold`` per tag for multi-label."""
    if task == "multiclass":
        predicted = np.zeros(scores.shape, dtype=np.uint8)
        if len(scores):
            predicted[np.arange(len(scores)), scores.argmax(axis=1)] = 1
        return predicted
    return (scores > threshold).astype(np.uint8)


def choose_own_threshold(valid_scores: np.ndarray, valid_labels: np.ndarray, task: str, tune: bool,
                         default: float) -> tuple[float, dict[str, float] | None]:
    """The threshold of a method's own rule ``decide``: on a multi-label task with ``tune``, the
    grid threshold with the best valid micro F1 (``best_grid_threshold``), else ``default``; and
    that rule's valid micro and macro F1 (None without a valid split)."""
    if len(valid_scores) == 0:
        return default, None
    threshold = best_grid_threshold(valid_scores, valid_labels)[0] if tune and task == "multilabel" else default
    decisions = decide(valid_scores, task, threshold)
    return threshold, {average: f1(valid_labels, decisions, average) for average in ("micro", "macro")}


def choose_rules(valid_scores: np.ndarray, valid_labels: np.ndarray, tags: list[str]) -> ChosenRules:
    """Choose the threshold, per-tag thresholds and k on the valid split (scores and tags)."""
    threshold, _ = best_threshold(valid_scores, valid_labels)
    per_tag, fallback = [], []
    for j, tag in enumerate(tags):
        tag_threshold, tag_f1 = best_threshold(valid_scores[:, j], valid_labels[:, j])
        if tag_f1 > 0:
            per_tag.append(tag_threshold)
        else:  # no positive, or scores that separate none: the global threshold is the sanest guess
            per_tag.append(threshold)
            fallback.append(tag)
    f1_by_k = [f1(valid_labels, top_k_predictions(valid_scores, k), "micro") for k in range(1, len(tags) + 1)]
    top_k = int(np.argmax(f1_by_k)) + 1 if f1_by_k else 1  # the smallest of the best ks
    return ChosenRules(threshold, tuple(per_tag), tuple(fallback), top_k, tuple(tags))
