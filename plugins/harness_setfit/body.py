"""Contrastive training of the sentence-transformer body on pairs (SetFit's first stage), on the
core's training engine (``harness.training``).

The loss is SetFit's: the cosine similarity of a pair's two embeddings, pulled towards the pair's
target by mean squared error (sentence-transformers' ``CosineSimilarityLoss``). AdamW with linear
warm-up and decay, batches of pairs in a seeded order; both texts of every pair of a batch go
through the body in one forward pass. Not the ``setfit`` library: it needs the ``datasets``
package, and installing ``setfit`` 1.2.0 here would also pull ``evaluate``, ``aiohttp`` and a
newer setuptools (checked with ``pip install --dry-run setfit``), changing installed versions.

Imported only from inside ``fit`` (it imports torch at module level).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from harness.toolkit import Batch, Encoded, OptimizerSettings, predict, train
from harness_setfit.pairs import Pairs

WEIGHT_DECAY = 0.01  # sentence-transformers' and SetFit's default (not on biases and norms)


@dataclass(frozen=True)
class BodySettings:
    epochs: int
    batch_size: int
    learning_rate: float
    warmup_proportion: float
    seed: int


def _embeddings(model: Any, batch: Batch) -> torch.Tensor:
    return model({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})["sentence_embedding"]


def _pair_loss(model: Any, batch: Batch) -> torch.Tensor:
    vectors = _embeddings(model, batch).float()
    half = len(vectors) // 2  # first texts, then their partners
    similarity = torch.nn.functional.cosine_similarity(vectors[:half], vectors[half:])
    return torch.nn.functional.mse_loss(similarity, batch["target"])


def train_body(model: Any, texts: Encoded, pairs: Pairs, settings: BodySettings,
               report: Callable[[str], None], label: str) -> dict[str, Any]:
    """Train ``model`` (a SentenceTransformer) in place towards the pairs' cosine targets;
    return what the record keeps: pair and step counts, seconds, pairs/s, mean loss per epoch."""
    if len(pairs) == 0:
        report(f"{label}: no contrastive pairs (one text or one tag set), the body is not trained")
        return {"pairs": 0, "steps": 0, "seconds": 0.0, "pairs_per_s": None, "loss_per_epoch": []}
    steps_per_epoch = math.ceil(len(pairs) / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    rng = np.random.default_rng(settings.seed)
    chosen = [order[start:start + settings.batch_size]
              for order in (rng.permutation(len(pairs)) for _ in range(settings.epochs))
              for start in range(0, len(pairs), settings.batch_size)]
    groups = [np.concatenate([pairs.first[rows], pairs.second[rows]]) for rows in chosen]
    batches = texts.batches(groups, {"target": [pairs.target[rows] for rows in chosen]})
    optimizer = OptimizerSettings(learning_rate=settings.learning_rate, weight_decay=WEIGHT_DECAY, schedule="linear",
                                  warmup_steps=math.ceil(settings.warmup_proportion * total_steps))
    trained = train(model, batches, _pair_loss, optimizer, total_steps, steps_per_epoch, "fp32",
                    progress=report, label=f"{label}: pair training")
    pairs_trained = len(pairs) * settings.epochs
    report(f"{label}: pair training done, {pairs_trained} pairs in {trained.seconds:.0f}s "
           f"({pairs_trained / max(trained.seconds, 1e-9):.1f} pairs/s)")
    return {"pairs": len(pairs), "steps": total_steps, "seconds": trained.seconds,
            "pairs_per_s": round(pairs_trained / max(trained.seconds, 1e-9), 2), "loss_per_epoch": trained.loss_per_epoch}


def embed(model: Any, texts: Encoded, batch_size: int) -> np.ndarray:
    """Sentence embeddings (len(texts), dim) as float32 from the trained body."""
    if not len(texts):
        return np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
    return predict(model, texts, batch_size, "fp32", _embeddings).cpu().numpy()
