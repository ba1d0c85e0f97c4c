"""A logistic-regression head on fixed feature vectors (SetFit's second stage, a linear probe on
frozen embeddings, TF-IDF features). The own decision rule such methods share, and the choice of
its threshold on valid, are ``decide`` and ``choose_own_threshold`` in ``harness.rules``.

Multi-label: one logistic regression per tag (one-vs-rest), probabilities per tag. A tag that
every or no training text carries gets that constant probability (logistic regression needs both
classes). Multiclass: one softmax (multinomial) logistic regression, probabilities summing to 1,
classes absent from the slice at 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from harness.persistence import load_estimators, load_json, save_estimators, save_json

Task = Literal["multilabel", "multiclass"]


class LogisticHead:
    def __init__(self, task: Task, c: float, class_weight: str | None, seed: int) -> None:
        self.task = task
        self.c = c
        self.class_weight = class_weight
        self.seed = seed

    def _regression(self) -> Any:
        from sklearn.linear_model import LogisticRegression  # scikit-learn only once a head is fitted

        return LogisticRegression(C=self.c, class_weight=self.class_weight, max_iter=1000, random_state=self.seed)

    def fit(self, vectors: np.ndarray, labels: np.ndarray) -> LogisticHead:
        self.n_tags = labels.shape[1]
        n_rows = vectors.shape[0]  # a dense array or a scipy sparse matrix
        if self.task == "multiclass":
            classes = labels.argmax(axis=1)
            self.models = [self._regression().fit(vectors, classes)] if len(set(classes)) > 1 else []
            self.constant_class = int(classes[0]) if len(classes) else 0
            return self
        self.models = []
        for column in labels.T:
            self.models.append(self._regression().fit(vectors, column) if 0 < column.sum() < n_rows else float(column.mean()))
        return self

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        """(number of vectors, n_tags) probabilities."""
        scores = np.zeros((vectors.shape[0], self.n_tags), dtype=np.float64)
        if vectors.shape[0] == 0:  # scikit-learn refuses an empty batch
            return scores
        if self.task == "multiclass":
            if self.models:
                (model,) = self.models
                scores[:, model.classes_] = model.predict_proba(vectors)
            else:
                scores[:, self.constant_class] = 1.0
            return scores
        for tag, model in enumerate(self.models):
            scores[:, tag] = model if isinstance(model, float) else model.predict_proba(vectors)[:, 1]
        return scores

    def save(self, folder: Path) -> None:
        """The fitted regressions (skops) and the head's settings (JSON) in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        save_estimators(folder / "regressions.skops", self.models)
        save_json(folder / "head.json", {"task": self.task, "c": self.c, "class_weight": self.class_weight, "seed": self.seed,
                                         "n_tags": self.n_tags, "constant_class": getattr(self, "constant_class", None)})

    @classmethod
    def load(cls, folder: Path) -> LogisticHead:
        settings = load_json(folder / "head.json")
        head = cls(settings["task"], settings["c"], settings["class_weight"], settings["seed"])
        head.n_tags, head.models = settings["n_tags"], load_estimators(folder / "regressions.skops")
        if settings["constant_class"] is not None:
            head.constant_class = settings["constant_class"]
        return head
