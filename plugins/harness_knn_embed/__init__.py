"""knn_embed: tag an issue with the tags most of its nearest labeled issues carry.

Embeddings come from the core's shared cache (harness.embeddings); faiss, torch and the
encoders are imported only when a method fits, so loading this plugin stays cheap.
"""

from __future__ import annotations

from harness import hookimpl
from harness_knn_embed.method import KnnEmbed, KnnEmbedParams

__all__ = ["KnnEmbed", "KnnEmbedParams"]


@hookimpl
def register_methods(register) -> None:
    register(KnnEmbed)
