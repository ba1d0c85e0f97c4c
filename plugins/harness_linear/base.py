"""What both linear methods share: a logistic-regression head per tag on features a subclass
computes, and the own rule, a threshold chosen on valid from the core's grid (multi-label) or
the argmax (multiclass), both the core's (``choose_own_threshold``, ``decide``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness import FitContext, LabeledTexts, Method
from harness.toolkit import LogisticHead, Task, choose_own_threshold, decide

DEFAULT_THRESHOLD = 0.5  # without a valid split to tune on, or for a multiclass task (unused there)


class LinearHeadMethod(Method):
    """Subclasses define ``prepare`` (fit what the features need on the slice and return the
    slice's features) and ``features`` (texts to features); their ``Params`` have ``C``,
    ``class_weight`` and ``threshold``."""

    def prepare(self, train: LabeledTexts, context: FitContext) -> Any:
        raise NotImplementedError

    def features(self, texts: list[str]) -> Any:
        raise NotImplementedError

    def feature_details(self) -> dict[str, Any]:
        return {}

    def fit(self, train: LabeledTexts, valid: LabeledTexts, unlabeled: list[str], context: FitContext) -> None:
        if len(train) == 0:
            raise ValueError(f"{self.name} needs at least one training issue; the training slice is empty")
        p = self.params
        self.task: Task = context.task  # type: ignore[assignment]
        features = self.prepare(train, context)
        class_weight = None if p.class_weight == "none" else "balanced"
        self.head = LogisticHead(self.task, p.C, class_weight, context.seed).fit(features, train.labels)
        tune = p.threshold is None  # a threshold given is kept; None: the grid's best on valid
        self.threshold, self.valid_f1 = choose_own_threshold(self.predict_scores(valid.texts), valid.labels, self.task,
                                                             tune=tune, default=DEFAULT_THRESHOLD if tune else p.threshold)

    def predict_scores(self, texts: list[str]) -> np.ndarray:
        """Each tag's logistic-regression probability (softmax over the tags for a multiclass task)."""
        return self.head.predict_proba(self.features(texts))

    def predict(self, texts: list[str]) -> np.ndarray:
        return decide(self.predict_scores(texts), self.task, self.threshold)

    def details(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "threshold": self.threshold,
            "valid_micro_f1": None if self.valid_f1 is None else self.valid_f1["micro"],
            "valid_macro_f1": None if self.valid_f1 is None else self.valid_f1["macro"],
            **self.feature_details(),
        }

