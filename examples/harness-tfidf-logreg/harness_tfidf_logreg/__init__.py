"""TF-IDF + one-vs-rest logistic regression, with a decision threshold tuned on the valid split.

A strong classical baseline that the book does not have. With few labels, a logistic
regression's probabilities for rare tags rarely pass 0.5, so the threshold shared by all tags
is chosen on the valid split (micro F1), as the book does for its zero-shot threshold.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from harness import FitContext, LabeledTexts, Method, MethodParams, hookimpl

THRESHOLDS = np.round(np.linspace(0.05, 0.95, 19), 2)  # candidates tried on the valid split


class TfidfLogRegParams(MethodParams):
    ngram_max: int = 2  # word n-grams from 1 to ngram_max
    min_df: int = 1  # ignore n-grams seen in fewer training texts
    sublinear_tf: bool = True  # 1 + log(tf): long issue bodies do not drown short ones
    C: float = 10.0  # inverse L2 regularisation strength of each logistic regression
    class_weight: Literal["balanced"] | None = "balanced"  # up-weight each tag's rare positives
    threshold: float | None = None  # probability for a tag; None = tune on the valid split


class TfidfLogReg(Method):
    """TfidfVectorizer + OneVsRestClassifier(LogisticRegression), threshold tuned on valid."""

    name = "tfidf_logreg"
    version = "1"
    Params = TfidfLogRegParams
    presets = {"default": {}, "book": {}}  # the book has no such method: same settings

    def fit(self, train: LabeledTexts, valid: LabeledTexts, unlabeled: list[str], context: FitContext) -> None:
        import warnings

        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier

        p = self.params
        self.vectorizer = TfidfVectorizer(ngram_range=(1, p.ngram_max), min_df=p.min_df, sublinear_tf=p.sublinear_tf)
        features = self.vectorizer.fit_transform(train.texts)
        self.classifier = OneVsRestClassifier(
            LogisticRegression(C=p.C, class_weight=p.class_weight, max_iter=2000, random_state=context.seed)
        )
        with warnings.catch_warnings():
            # small slices often lack every positive of a tag: scikit-learn then predicts a
            # constant for it and says so; that is expected here
            warnings.filterwarnings("ignore", message="Label not .* is present in all training examples")
            self.classifier.fit(features, train.labels)
        self.threshold = p.threshold if p.threshold is not None else self._tune_threshold(valid)

    def _probabilities(self, texts: list[str]) -> np.ndarray:
        return self.classifier.predict_proba(self.vectorizer.transform(texts))

    def _tune_threshold(self, valid: LabeledTexts) -> float:
        from sklearn.metrics import f1_score

        probabilities = self._probabilities(valid.texts)
        scores = [f1_score(valid.labels, probabilities >= t, average="micro", zero_division=0) for t in THRESHOLDS]
        return float(THRESHOLDS[int(np.argmax(scores))])  # the lowest of the best ones

    def predict(self, texts: list[str]) -> np.ndarray:
        return (self._probabilities(texts) >= self.threshold).astype(np.uint8)

    def predict_scores(self, texts: list[str]) -> np.ndarray:
        """Each tag's logistic-regression probability (the core may choose its own rule on them)."""
        return self._probabilities(texts)

    def details(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "vocabulary_size": len(self.vectorizer.vocabulary_)}


@hookimpl
def register_methods(register) -> None:
    register(TfidfLogReg)
