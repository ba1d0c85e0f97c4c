"""Linear baselines: a linear model on TF-IDF features (``tfidf_linear``) and a linear probe on
frozen sentence embeddings (``embed_linear``). Both give per-tag scores, so the core's rules,
the ensembles and self_train can use them; scikit-learn and the encoders are imported only when
a method fits, so loading this plugin stays cheap."""

from __future__ import annotations

from harness import hookimpl
from harness_linear.embed import EmbedLinear, EmbedLinearParams
from harness_linear.tfidf import TfidfLinear, TfidfLinearParams

__all__ = ["EmbedLinear", "EmbedLinearParams", "TfidfLinear", "TfidfLinearParams"]


@hookimpl
def register_methods(register) -> None:
    register(TfidfLinear)
    register(EmbedLinear)
