"""``embed_linear``: a linear probe on frozen sentence embeddings. One logistic regression per tag
(softmax for a multiclass task) on the vectors the shared embedding cache holds, the same ones
knn_embed looks up: SetFit without its contrastive step, the baseline SetFit's paper ablates
against. Its cost is one embedding pass per text, shared with every other method on that encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from harness import FitContext, LabeledTexts
from harness.toolkit import EmbeddingCache, EncoderParams

from harness_linear.base import LinearHeadMethod

MPNET = "sentence-transformers/all-mpnet-base-v2"


class EmbedLinearParams(EncoderParams):
    # the head (the encoder's parameters come from EncoderParams)
    C: float = Field(1.0, gt=0)  # inverse L2 regularisation strength of each logistic regression
    class_weight: Literal["balanced", "none"] = "balanced"  # up-weight each tag's rare positives
    threshold: float | None = Field(None, gt=0, lt=1)  # multi-label: probability above which a tag is predicted; None = tune on valid


class EmbedLinear(LinearHeadMethod):
    """Logistic regression per tag on frozen sentence embeddings; threshold chosen on valid."""

    name = "embed_linear"
    version = "1"
    Params = EmbedLinearParams
    presets = {"default": {}, "mpnet": {"model": MPNET}, "book": {"model": MPNET}}
    params: EmbedLinearParams

    def prepare(self, train: LabeledTexts, context: FitContext) -> np.ndarray:
        self._open_cache(context)
        return self.features(train.texts)

    def save_features(self, folder: Path) -> None:
        """Nothing: the encoder is named by the parameters, and the head is all that was fitted."""

    def load_features(self, folder: Path, context: FitContext) -> None:
        self._open_cache(context)

    def _open_cache(self, context: FitContext) -> None:
        self.cache = EmbeddingCache(context.cache_dir, self.params.spec())
        self.device, self.progress = context.device, context.progress

    def features(self, texts: list[str]) -> np.ndarray:
        if not texts:  # the encoder's width is unknown without a text; the head needs none
            return np.zeros((0, 0), dtype=np.float32)
        return self.cache.embed(texts, batch_size=self.params.batch_size, device=self.device, progress=self.progress)

    def feature_details(self) -> dict[str, Any]:
        return {"texts_encoded": self.cache.forward_passes}  # 0 when every vector came from the cache
