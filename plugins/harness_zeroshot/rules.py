"""Turning a (texts, tags) score matrix into 0/1 tags: top-k or a threshold, chosen on valid.

The candidates are the book's: top-k for k = 1..4, and "score >= t" for t = 0.01..1.00 in
steps of 0.01. F1 is the harness's own (``harness.metrics.f1``: scikit-learn's, zero_division=0),
the metric cells are reported with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from harness.toolkit import f1

TOP_KS = (1, 2, 3, 4)
THRESHOLDS = tuple(float(t) for t in np.round(np.linspace(0.01, 1.0, 100), 2))
SelectBy = Literal["micro", "macro"]


@dataclass(frozen=True)
class DecisionRule:
    """``top_k``: the k highest-scoring tags of each text; ``threshold``: every tag scoring >= value."""

    kind: Literal["top_k", "threshold"]
    value: float

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """(n, L) scores -> (n, L) uint8 predictions."""
        if self.kind == "threshold":
            return (scores >= self.value).astype(np.uint8)
        k = min(int(self.value), scores.shape[1])
        # a stable sort of the negated scores: ties go to the tag listed first
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        prediction = np.zeros(scores.shape, dtype=np.uint8)
        np.put_along_axis(prediction, top, 1, axis=1)
        return prediction

    def as_dict(self) -> dict[str, Any]:
        """``{"kind": "top_k", "k": 1}`` or ``{"kind": "threshold", "threshold": 0.42}``."""
        if self.kind == "top_k":
            return {"kind": "top_k", "k": int(self.value)}
        return {"kind": "threshold", "threshold": self.value}


def candidate_rules(n_tags: int) -> list[DecisionRule]:
    """Top-k rules first (k up to the number of tags), then thresholds in ascending order."""
    return [DecisionRule("top_k", k) for k in TOP_KS if k <= n_tags] + [DecisionRule("threshold", t) for t in THRESHOLDS]


@dataclass(frozen=True)
class RuleChoice:
    rule: DecisionRule
    valid_f1: float
    best_top_k: tuple[DecisionRule, float]
    best_threshold: tuple[DecisionRule, float]

    def to_json(self) -> dict[str, Any]:
        """Every rule as [kind, value] and every F1 unrounded, for a saved method (``from_json``)."""
        return {"rule": [self.rule.kind, self.rule.value], "valid_f1": self.valid_f1,
                "best_top_k": [self.best_top_k[0].kind, self.best_top_k[0].value, self.best_top_k[1]],
                "best_threshold": [self.best_threshold[0].kind, self.best_threshold[0].value, self.best_threshold[1]]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RuleChoice:
        def rule_and_f1(kind: str, value: float, f1_value: float) -> tuple[DecisionRule, float]:
            return DecisionRule(kind, value), f1_value  # type: ignore[arg-type]

        return cls(DecisionRule(*data["rule"]), data["valid_f1"], rule_and_f1(*data["best_top_k"]),
                   rule_and_f1(*data["best_threshold"]))


def choose_rule(scores: np.ndarray, labels: np.ndarray, select_by: SelectBy = "micro") -> RuleChoice:
    """The candidate rule with the highest F1 on (scores, labels); ties go to the earlier
    candidate (smaller k, top-k before thresholds, lower threshold)."""
    if scores.shape != labels.shape:
        raise ValueError(f"scores have shape {scores.shape} but labels have shape {labels.shape}")
    if len(scores) == 0:
        raise ValueError("choosing a decision rule needs at least one valid text")
    results = [(rule, f1(labels, rule.apply(scores), select_by)) for rule in candidate_rules(scores.shape[1])]

    def first_best(kind: str) -> tuple[DecisionRule, float]:
        # max() returns the first maximal item, which is the tie-break documented above
        return max((r for r in results if r[0].kind == kind), key=lambda r: r[1])

    best_rule, best_f1 = max(results, key=lambda r: r[1])
    return RuleChoice(best_rule, best_f1, first_best("top_k"), first_best("threshold"))
