"""The book's Naive Bayes baseline: bag of words + one multinomial NB per tag."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness import FitContext, LabeledTexts, Method, MethodParams, hookimpl


class NaiveBayesParams(MethodParams):
    alpha: float = 1.0  # MultinomialNB's additive smoothing (scikit-learn default)
    lowercase: bool = True  # CountVectorizer default
    ngram_max: int = 1  # CountVectorizer default: unigrams


class NaiveBayes(Method):
    """CountVectorizer() + BinaryRelevance(MultinomialNB()), as in the book's notebook."""

    name = "nb"
    version = "1"
    Params = NaiveBayesParams

    def fit(self, train: LabeledTexts, valid: LabeledTexts, unlabeled: list[str], context: FitContext) -> None:
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.naive_bayes import MultinomialNB
        from skmultilearn.problem_transform import BinaryRelevance

        self.vectorizer = CountVectorizer(lowercase=self.params.lowercase, ngram_range=(1, self.params.ngram_max))
        counts = self.vectorizer.fit_transform(train.texts)
        self.classifier = BinaryRelevance(classifier=MultinomialNB(alpha=self.params.alpha))
        self.classifier.fit(counts, train.labels)

    def predict(self, texts: list[str]) -> np.ndarray:
        return self.classifier.predict(self.vectorizer.transform(texts)).toarray()

    def save(self, folder: Path) -> None:
        from harness.toolkit import save_estimators

        save_estimators(folder / "naive_bayes.skops", {"vectorizer": self.vectorizer, "classifier": self.classifier})

    @classmethod
    def load(cls, folder: Path, params: MethodParams, context: FitContext) -> NaiveBayes:
        from harness.toolkit import load_estimators

        method = cls(params)
        parts = load_estimators(folder / "naive_bayes.skops")
        method.vectorizer, method.classifier = parts["vectorizer"], parts["classifier"]
        return method

    def predict_scores(self, texts: list[str]) -> np.ndarray:
        """Each tag's probability under its Naive Bayes model (0 or 1 for a tag whose training
        slice had one class only, as ``predict`` has it; BinaryRelevance's own predict_proba
        fails on such a tag)."""
        counts = self.vectorizer.transform(texts)
        columns = []
        for tag_classifier in self.classifier.classifiers_:
            classes = list(tag_classifier.classes_)
            if len(classes) == 1:
                columns.append(np.full(counts.shape[0], float(classes[0])))
            else:
                columns.append(tag_classifier.predict_proba(counts)[:, classes.index(1)])
        return np.column_stack(columns) if columns else np.zeros((counts.shape[0], 0))


@hookimpl
def register_methods(register) -> None:
    register(NaiveBayes)
