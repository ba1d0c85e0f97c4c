"""Contrastive training of the sentence-transformer body on pairs (SetFit's first stage).

A plain loop over sentence-transformers' own ``CosineSimilarityLoss`` (the loss SetFit uses):
AdamW with linear warm-up and decay, batches of pairs in a seeded order. Not the
SentenceTransformerTrainer, and not the ``setfit`` library: both need the ``datasets`` package,
and installing ``setfit`` 1.2.0 here would also pull ``evaluate``, ``aiohttp`` and a newer
setuptools (checked with ``pip install --dry-run setfit``), changing installed versions.

Imported only from inside ``fit`` (it imports torch at module level).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from harness_setfit.pairs import Pairs


@dataclass(frozen=True)
class BodySettings:
    epochs: int
    batch_size: int
    learning_rate: float
    warmup_proportion: float
    seed: int


def train_body(model: Any, texts: list[str], pairs: Pairs, settings: BodySettings,
               report: Callable[[str], None], label: str) -> dict[str, Any]:
    """Train ``model`` (a SentenceTransformer) in place towards the pairs' cosine targets;
    return what the record keeps: pair and step counts, seconds, pairs/s, mean loss per epoch."""
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
    from transformers import get_linear_schedule_with_warmup

    if len(pairs) == 0:
        report(f"{label}: no contrastive pairs (one text or one tag set), the body is not trained")
        return {"pairs": 0, "steps": 0, "seconds": 0.0, "pairs_per_s": None, "loss_per_epoch": []}
    loss_fn = CosineSimilarityLoss(model)
    steps_per_epoch = math.ceil(len(pairs) / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
    schedule = get_linear_schedule_with_warmup(optimizer, math.ceil(settings.warmup_proportion * total_steps), total_steps)
    generator = torch.Generator().manual_seed(settings.seed)
    targets = torch.from_numpy(pairs.target)
    model.train()
    started = time.perf_counter()
    losses: list[float] = []
    step, next_report = 0, max(1, total_steps // 10)
    for epoch in range(settings.epochs):
        order = torch.randperm(len(pairs), generator=generator).numpy()
        epoch_loss = 0.0
        for start in range(0, len(order), settings.batch_size):
            rows = order[start:start + settings.batch_size]
            features = [_features(model, [texts[i] for i in side[rows]]) for side in (pairs.first, pairs.second)]
            loss = loss_fn(features, targets[rows].to(model.device))
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            epoch_loss += float(loss.detach()) * len(rows)
            step += 1
            if step >= next_report and step < total_steps:
                next_report += max(1, total_steps // 10)
                elapsed = time.perf_counter() - started
                report(f"{label}: pair training step {step}/{total_steps} (epoch {epoch + 1}/{settings.epochs}), "
                       f"{step * settings.batch_size / elapsed:.1f} pairs/s, ETA {elapsed / step * (total_steps - step):.0f}s")
        losses.append(round(epoch_loss / len(pairs), 5))
    model.eval()
    seconds = time.perf_counter() - started
    trained = len(pairs) * settings.epochs
    report(f"{label}: pair training done, {trained} pairs in {seconds:.0f}s ({trained / seconds:.1f} pairs/s)")
    return {"pairs": len(pairs), "steps": total_steps, "seconds": round(seconds, 2),
            "pairs_per_s": round(trained / seconds, 2), "loss_per_epoch": losses}


def _features(model: Any, texts: list[str]) -> dict[str, Any]:
    """Tokenised, padded batch on the model's device (non-tensor entries, such as the modality, kept)."""
    features = model.preprocess(texts)
    return {key: value.to(model.device) if isinstance(value, torch.Tensor) else value for key, value in features.items()}


def embed(model: Any, texts: list[str], batch_size: int) -> np.ndarray:
    """Sentence embeddings (len(texts), dim) as float32 from the trained body."""
    if not texts:
        return np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
    with torch.inference_mode():
        vectors = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)
