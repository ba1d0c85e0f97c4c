"""The book's Naive Bayes baseline: bag of words + one multinomial NB per tag."""

from __future__ import annotations

import numpy as np

from harness import hookimpl
from harness.methods import FitContext, LabeledTexts, Method, MethodParams


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

    def predict_scores(self, texts: list[str]) -> np.ndarray:
        """Each tag's probability under its Naive Bayes model."""
        return self.classifier.predict_proba(self.vectorizer.transform(texts)).toarray()


@hookimpl
def register_methods(register) -> None:
    register(NaiveBayes)
