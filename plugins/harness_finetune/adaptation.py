"""Domain adaptation: continue masked-LM training of the base model on the unlabeled pool.

The adapted model is trained once per (unlabeled pool, base model, adaptation settings) and
saved with ``save_pretrained`` (safetensors) in the shared cache; every slice and seed loads
it from there. A lock file serialises concurrent trainers (other worker processes) and the
model is written to a temporary folder that is renamed into place only when complete, so a
reader never sees half a model.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from transformers import AutoModelForMaskedLM

from harness.toolkit import (
    Batch,
    OptimizerSettings,
    Precision,
    autocast,
    build_folder,
    cached_artifact,
    epoch_groups,
    quiet_transformers,
    tokenize,
    train,
)

from .runtime import explain_out_of_memory, fresh_pretrained_model, tokenizer_for

INFO_FILE = "adaptation.json"
HELD_OUT_BATCH = 32


@dataclasses.dataclass(frozen=True)
class AdaptationSettings:
    """What determines the adapted model (all of it goes into the cache key)."""

    epochs: int
    batch_size: int
    learning_rate: float
    max_length: int
    max_texts: int | None  # MLM training texts sampled from the pool; None = all of it
    eval_texts: int  # held-out pool texts on which the MLM loss is measured before and after
    mlm_probability: float
    seed: int
    precision: Precision


def split_pool(texts: list[str], settings: AdaptationSettings) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts) drawn from the unlabeled pool with ``settings.seed``."""
    pool = [t for t in texts if t.strip()]
    order = np.random.default_rng(settings.seed).permutation(len(pool))
    held_out = [pool[i] for i in order[: settings.eval_texts]]
    rest = order[settings.eval_texts:]
    if settings.max_texts is not None:
        rest = rest[: settings.max_texts]
    return [pool[i] for i in rest], held_out


def adapted_model(
    base_folder: str,
    cache_path: Path,
    unlabeled: list[str],
    settings: AdaptationSettings,
    device: str,
    report: Callable[[str], None],
) -> tuple[str, dict[str, Any]]:
    """The folder of the adapted model at ``cache_path`` (trained now if missing) and its record.

    The record says whether this call trained it (``reused`` False) or found it in the cache.
    """
    info_path = cache_path / INFO_FILE

    def load() -> dict[str, Any] | None:
        return json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else None

    def fill(staging: Path) -> dict[str, Any]:
        info = _train(base_folder, unlabeled, settings, device, staging, report)
        (staging / INFO_FILE).write_text(json.dumps(info, indent=1), encoding="utf-8")
        return info

    info, trained = cached_artifact(cache_path, load, lambda: build_folder(cache_path, fill))
    return str(cache_path), {**info, "reused": not trained}


def _train(base_folder: str, unlabeled: list[str], settings: AdaptationSettings, device: str, out: Path,
           report: Callable[[str], None]) -> dict[str, Any]:
    started = time.perf_counter()
    train_texts, held_out = split_pool(unlabeled, settings)
    if not train_texts or not held_out:
        raise ValueError(
            f"adapt_finetune: the unlabeled pool has {len(train_texts) + len(held_out)} non-empty texts; domain "
            f"adaptation needs more than da_eval_texts={settings.eval_texts} of them"
        )
    tokenizer = tokenizer_for(base_folder)
    torch.manual_seed(settings.seed)  # a checkpoint without an MLM head gets a fresh one, drawn from this seed
    model = fresh_pretrained_model(AutoModelForMaskedLM, base_folder, device)
    masker = Masker(tokenizer, settings.mlm_probability, settings.seed, device)
    # Fixed masks for the held-out loss, so that "before" and "after" score the very same task.
    held_out_encoded = tokenize(tokenizer, held_out, settings.max_length, device, special_tokens_mask=True)
    groups = [np.arange(i, min(i + HELD_OUT_BATCH, len(held_out))) for i in range(0, len(held_out), HELD_OUT_BATCH)]
    held_out_batches = [masker(batch) for batch in held_out_encoded.batches(groups)]
    hint = f"lower da_batch_size (now {settings.batch_size}) or da_max_length (now {settings.max_length})"
    with explain_out_of_memory(f"adapting {base_folder} to the unlabeled texts", hint):
        loss_before = masked_lm_loss(model, held_out_batches, settings.precision)
        encoded = tokenize(tokenizer, train_texts, settings.max_length, device, special_tokens_mask=True)
        steps_per_epoch = -(-len(encoded) // settings.batch_size)
        total_steps = settings.epochs * steps_per_epoch
        batches = (masker(batch) for batch in encoded.batches(
            epoch_groups(encoded.lengths, settings.batch_size, total_steps, settings.seed)))
        # linear decay from the learning rate, no warm-up: the schedule the book's Trainer used
        optimizer = OptimizerSettings(learning_rate=settings.learning_rate, schedule="linear")
        trained = train(model, batches, _mlm_loss, optimizer, total_steps, steps_per_epoch, settings.precision,
                        progress=report, label="domain adaptation")
        loss_after = masked_lm_loss(model, held_out_batches, settings.precision)
    with quiet_transformers():
        model.save_pretrained(out)  # safetensors
        tokenizer.save_pretrained(out)
    return {
        "base_model": base_folder,
        "settings": dataclasses.asdict(settings),
        "device": device,
        "train_texts": len(train_texts),
        "held_out_texts": len(held_out),
        "mlm_loss_before": loss_before,
        "mlm_loss_after": loss_after,
        "train_loss_per_epoch": trained.loss_per_epoch,
        "train_s": trained.seconds,
        "wall_s": round(time.perf_counter() - started, 2),
    }


class Masker:
    """BERT's masking, on the device: of the non-special tokens, each is chosen with
    ``probability``; a chosen token becomes the mask token (80%), a random token (10%) or stays
    (10%), and only chosen tokens are predicted. Seeded, so a run masks the same way every time."""

    def __init__(self, tokenizer: Any, probability: float, seed: int, device: str) -> None:
        if tokenizer.mask_token_id is None:
            raise ValueError(f"adapt_finetune: the tokenizer of {tokenizer.name_or_path!r} has no mask token")
        self.mask_id, self.vocabulary = tokenizer.mask_token_id, len(tokenizer)
        self.probability = probability
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def __call__(self, batch: Batch) -> Batch:
        ids = batch["input_ids"]
        maskable = (batch["special_tokens_mask"] == 0) & (batch["attention_mask"] == 1)
        chosen = self._draw(ids, self.probability) & maskable
        to_mask = self._draw(ids, 0.8) & chosen
        to_random = self._draw(ids, 0.5) & chosen & ~to_mask
        random_ids = torch.randint(self.vocabulary, ids.shape, generator=self.generator, device=ids.device)
        masked = torch.where(to_mask, torch.full_like(ids, self.mask_id), torch.where(to_random, random_ids, ids))
        return {"input_ids": masked, "attention_mask": batch["attention_mask"],
                "labels": torch.where(chosen, ids, torch.full_like(ids, -100))}

    def _draw(self, like: torch.Tensor, probability: float) -> torch.Tensor:
        return torch.rand(like.shape, generator=self.generator, device=like.device) < probability


def _mlm_loss(model: Any, batch: Batch) -> torch.Tensor:
    return model(**batch).loss


def masked_lm_loss(model: Any, batches: list[Batch], precision: Precision) -> float:
    """Mean cross-entropy per masked token over ``batches``."""
    model.eval()
    device = next(model.parameters()).device
    total = torch.zeros((), device=device)
    count = torch.zeros((), device=device, dtype=torch.long)
    with torch.inference_mode(), autocast(device.type, precision):
        for batch in batches:
            masked = (batch["labels"] != -100).sum()
            loss = model(**batch).loss.float()
            total += torch.nan_to_num(loss) * masked  # a batch without a masked token has a NaN mean
            count += masked
    return float(total / count.clamp(min=1))
