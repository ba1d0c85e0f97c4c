"""``tfidf_linear``: TF-IDF features and one logistic regression per tag (softmax for a
multiclass task), with balanced class weights.

The baseline a practitioner tries first. Word n-grams by default; ``features: word+char`` adds
character n-grams within word boundaries. docs/methods.md has what each choice measured (a
linear SVM in place of the logistic regressions was measured too, and left out: no better F1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from harness import FitContext, LabeledTexts, MethodParams

from harness_linear.base import LinearHeadMethod


class TfidfLinearParams(MethodParams):
    features: Literal["word", "word+char"] = "word"
    ngram_max: int = Field(2, ge=1)  # word n-grams from 1 to ngram_max
    char_ngrams: tuple[int, int] = (2, 5)  # character n-gram lengths, for features: word+char
    min_df: int = Field(1, ge=1)  # ignore n-grams seen in fewer training texts
    sublinear_tf: bool = True  # 1 + log(tf): long issue bodies do not drown short ones
    C: float = Field(10.0, gt=0)  # inverse L2 regularisation strength of each logistic regression
    class_weight: Literal["balanced", "none"] = "balanced"  # up-weight each tag's rare positives
    threshold: float | None = Field(None, gt=0, lt=1)  # multi-label: score above which a tag is predicted; None = tune on valid


class TfidfLinear(LinearHeadMethod):
    """TF-IDF + a logistic regression per tag; the own rule's threshold is chosen on valid."""

    name = "tfidf_linear"
    version = "1"
    Params = TfidfLinearParams
    presets = {"default": {}, "mpnet": {}, "book": {}}  # no model: the same everywhere
    params: TfidfLinearParams

    def prepare(self, train: LabeledTexts, context: FitContext) -> Any:
        self.vectorizer = _vectorizer(self.params)
        return self.vectorizer.fit_transform(train.texts)

    def features(self, texts: list[str]) -> Any:
        return self.vectorizer.transform(texts)

    def feature_details(self) -> dict[str, Any]:
        return {"features": len(self.vectorizer.get_feature_names_out())}

    def save_features(self, folder: Path) -> None:
        from harness.toolkit import save_estimators

        save_estimators(folder / "vectorizer.skops", self.vectorizer)

    def load_features(self, folder: Path, context: FitContext) -> None:
        from harness.toolkit import load_estimators

        self.vectorizer = load_estimators(folder / "vectorizer.skops")


def _vectorizer(p: TfidfLinearParams) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    words = TfidfVectorizer(ngram_range=(1, p.ngram_max), min_df=p.min_df, sublinear_tf=p.sublinear_tf)
    if p.features == "word":
        return words
    characters = TfidfVectorizer(analyzer="char_wb", ngram_range=p.char_ngrams, min_df=p.min_df, sublinear_tf=p.sublinear_tf)
    return FeatureUnion([("word", words), ("char", characters)])
