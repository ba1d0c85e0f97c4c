"""Embedding zero-shot scores: cosine similarity between a text and each tag's hypothesis.

Both sides go through the core embedding cache, so issue vectors are shared with every other
method that embeds the same texts with the same encoder setting (kNN lookup, for one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from harness.toolkit import EmbeddingCache, EncoderSpec, unit_rows

DEFAULT_MAX_LENGTH = EncoderSpec().max_length  # the core encoder's default, so its cache is shared


def embedding_scores(
    texts: list[str],
    hypotheses: list[str],
    model: str,
    cache_dir: Path,
    max_length: int | None = None,
    batch_size: int = 32,
    device: str = "auto",
    progress: Callable[[str], None] = lambda message: None,
) -> np.ndarray:
    """(len(texts), len(hypotheses)) float32 cosine similarities."""
    spec = EncoderSpec(model=model, max_length=max_length or DEFAULT_MAX_LENGTH)
    cache = EmbeddingCache(cache_dir, spec)
    text_vectors = cache.embed(texts, batch_size=batch_size, device=device, progress=progress)
    hypothesis_vectors = cache.embed(hypotheses, batch_size=batch_size, device=device, progress=progress)
    return (unit_rows(text_vectors) @ unit_rows(hypothesis_vectors).T).astype(np.float32)
