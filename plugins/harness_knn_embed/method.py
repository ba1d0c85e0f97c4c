"""kNN tagging over cached sentence embeddings: the book's "embeddings as a lookup table"."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from harness import FitContext, LabeledTexts, Method, MethodParams
from harness.toolkit import EmbeddingCache, EncoderParams

from harness_knn_embed.grid import cumulative_votes, grid_scores, vote_predictions
from harness_knn_embed.search import ExactIndex

class KnnEmbedParams(EncoderParams):
    # lookup (the encoder's parameters come from EncoderParams)
    metric: Literal["l2", "ip"] = "l2"  # exact L2, or inner product on unit vectors (cosine)
    k_max: int = Field(16, ge=1)  # k and m are chosen in 1..k_max, m <= k
    select_by: Literal["micro", "macro"] = "micro"  # valid F1 average that picks (k, m)


class KnnEmbed(Method):
    """Predict a tag when at least m of the k nearest training issues carry it; (k, m) is
    chosen on the valid split for each slice from one search of the largest k."""

    name = "knn_embed"
    version = "1"
    Params = KnnEmbedParams
    presets = {
        "default": {},
        "book": {"model": "miguelvictor/python-gpt2-large", "pooling": "mean", "max_length": 128, "batch_size": 16},
    }
    params: KnnEmbedParams

    def fit(self, train: LabeledTexts, valid: LabeledTexts, unlabeled: list[str], context: FitContext) -> None:
        if len(train) == 0:
            raise ValueError("knn_embed needs at least one training issue; the training slice is empty")
        if len(valid) == 0:
            raise ValueError("knn_embed chooses k and m on the valid split, which is empty")
        p = self.params
        self._open_cache(context)
        vectors = self._embed(train.texts + valid.texts)
        self.train_vectors, self.train_labels = vectors[: len(train)], train.labels
        self.index = ExactIndex(self.train_vectors, metric=p.metric)
        # a slice smaller than k_max: every train issue is a neighbour at k = len(train)
        self.k_searched = min(p.k_max, len(train))
        neighbours = self.index.nearest(vectors[len(train):], self.k_searched)
        scores = grid_scores(cumulative_votes(train.labels[neighbours]), valid.labels)
        self.k, self.m = scores.best(p.select_by)
        self.valid_f1 = {
            "micro": float(scores.micro[self.k - 1, self.m - 1]),
            "macro": float(scores.macro[self.k - 1, self.m - 1]),
        }

    def _open_cache(self, context: FitContext) -> None:
        self.cache = EmbeddingCache(context.cache_dir, self.params.spec())
        self.progress, self.device = context.progress, context.device

    def save(self, folder: Path) -> None:
        """The training issues' vectors and tags (the lookup table) and the chosen (k, m)."""
        from harness.toolkit import save_arrays, save_json

        save_arrays(folder / "neighbours.npz", vectors=self.train_vectors, labels=self.train_labels)
        save_json(folder / "votes.json", {"k": self.k, "m": self.m, "k_searched": self.k_searched, "valid_f1": self.valid_f1})

    @classmethod
    def load(cls, folder: Path, params: MethodParams, context: FitContext) -> KnnEmbed:
        from harness.toolkit import load_arrays, load_json

        method = cls(params)
        method._open_cache(context)
        stored, votes = load_arrays(folder / "neighbours.npz"), load_json(folder / "votes.json")
        method.train_vectors, method.train_labels = stored["vectors"], stored["labels"]
        method.index = ExactIndex(method.train_vectors, metric=method.params.metric)
        method.k, method.m, method.k_searched, method.valid_f1 = votes["k"], votes["m"], votes["k_searched"], votes["valid_f1"]
        return method

    def predict(self, texts: list[str]) -> np.ndarray:
        return vote_predictions(self._votes(texts), self.m)

    def predict_scores(self, texts: list[str]) -> np.ndarray:
        """Each tag's vote share among the k nearest training issues."""
        return self._votes(texts) / self.k

    def _votes(self, texts: list[str]) -> np.ndarray:
        """(len(texts), tags) count of each tag among the k nearest training issues."""
        if not texts:
            return np.zeros((0, self.train_labels.shape[1]), dtype=np.int64)
        neighbours = self.index.nearest(self._embed(texts), self.k)
        return self.train_labels[neighbours].sum(axis=1)

    def details(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "m": self.m,
            "k_searched": self.k_searched,
            "select_by": self.params.select_by,
            "valid_micro_f1": self.valid_f1["micro"],
            "valid_macro_f1": self.valid_f1["macro"],
            "texts_encoded": self.cache.forward_passes,  # 0 when every vector came from the cache
        }

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self.cache.embed(texts, batch_size=self.params.batch_size, device=self.device, progress=self.progress)
