"""Nearest centroid: each tag's score is the cosine similarity between an issue's TF-IDF vector
and the mean vector of the training issues that carry the tag (Rocchio's classifier).

The smallest method worth showing: it defines ``predict_scores`` and no ``predict``, so the
harness chooses every decision rule on the valid split (its ``own`` rule is then the core's
``threshold`` rule), and the ensembles and self_train can use its scores like any other.
"""

from __future__ import annotations

import numpy as np

from harness import FitContext, LabeledTexts, Method, MethodParams, hookimpl


class CentroidParams(MethodParams):
    ngram_max: int = 1  # word n-grams from 1 to ngram_max
    sublinear_tf: bool = True  # 1 + log(tf): long issue bodies do not drown short ones


class Centroid(Method):
    """TfidfVectorizer + one unit-length centroid per tag; scores are cosine similarities."""

    name = "centroid"
    version = "1"
    Params = CentroidParams
    presets = {"default": {}, "book": {}}  # no model: the same settings everywhere

    def fit(self, train: LabeledTexts, valid: LabeledTexts, unlabeled: list[str], context: FitContext) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.preprocessing import normalize

        self.vectorizer = TfidfVectorizer(ngram_range=(1, self.params.ngram_max), sublinear_tf=self.params.sublinear_tf)
        features = self.vectorizer.fit_transform(train.texts)  # rows of unit length
        # a tag no training issue carries gets a zero centroid: similarity 0 to every issue
        sums = np.asarray(train.labels.T.astype(np.float64) @ features)
        self.centroids = normalize(sums)

    def predict_scores(self, texts: list[str]) -> np.ndarray:
        """Cosine similarity of each text to each tag's centroid, in [0, 1]."""
        return np.asarray(self.vectorizer.transform(texts) @ self.centroids.T)

    def save(self, folder: Path) -> None:
        from harness.toolkit import save_arrays, save_estimators

        save_estimators(folder / "vectorizer.skops", self.vectorizer)  # skops: no pickle
        save_arrays(folder / "centroids.npz", centroids=self.centroids)

    @classmethod
    def load(cls, folder: Path, params: MethodParams, context: FitContext) -> "Centroid":
        from harness.toolkit import load_arrays, load_estimators

        method = cls(params)
        method.vectorizer = load_estimators(folder / "vectorizer.skops")
        method.centroids = load_arrays(folder / "centroids.npz")["centroids"]
        return method

    def details(self) -> dict:
        return {"vocabulary_size": len(self.vectorizer.vocabulary_)}


@hookimpl
def register_methods(register) -> None:
    register(Centroid)
