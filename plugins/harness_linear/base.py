"""What both linear methods share: a logistic-regression head per tag on features a subclass
computes, and the own rule, a threshold chosen on valid from the core's grid (multi-label) or
the argmax (multiclass), both the core's (``choose_own_threshold``, ``decide``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness import FitContext, LabeledTexts, Method, MethodParams
from harness.toolkit import LogisticHead, Task, choose_own_threshold, decide

DEFAULT_THRESHOLD = 0.5  # without a valid split to tune on, or for a multiclass task (unused there)


class LinearHeadMethod(Method):
    """Subclasses define ``prepare`` (fit what the features need on the slice and return the
    slice's features), ``features`` (texts to features) and, to be saved, ``save_features`` and
    ``load_features`` (what ``prepare`` fitted); their ``Params`` have ``C``, ``class_weight``
    and ``threshold``."""

    def prepare(self, train: LabeledTexts, context: FitContext) -> Any:
        raise NotImplementedError

    def features(self, texts: list[str]) -> Any:
        raise NotImplementedError

    def feature_details(self) -> dict[str, Any]:
        return {}

    def save_features(self, folder: Path) -> None:
        raise NotImplementedError

    def load_features(self, folder: Path, context: FitContext) -> None:
        raise NotImplementedError

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

    def save(self, folder: Path) -> None:
        from harness.toolkit import save_json

        self.head.save(folder / "head")
        save_json(folder / "own_rule.json", {"task": self.task, "threshold": self.threshold, "valid_f1": self.valid_f1})
        self.save_features(folder)

    @classmethod
    def load(cls, folder: Path, params: MethodParams, context: FitContext) -> LinearHeadMethod:
        from harness.toolkit import load_json

        method = cls(params)
        method.head = LogisticHead.load(folder / "head")
        rule = load_json(folder / "own_rule.json")
        method.task, method.threshold, method.valid_f1 = rule["task"], rule["threshold"], rule["valid_f1"]
        method.load_features(folder, context)
        return method

    def details(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "threshold": self.threshold,
            "valid_micro_f1": None if self.valid_f1 is None else self.valid_f1["micro"],
            "valid_macro_f1": None if self.valid_f1 is None else self.valid_f1["macro"],
            **self.feature_details(),
        }

