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
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    PrinterCallback,
    Trainer,
    TrainingArguments,
)

from harness.artifacts import build_folder, cached_artifact
from harness.models import quiet_transformers

from .runtime import ProgressReporter, explain_out_of_memory, load_pretrained

INFO_FILE = "adaptation.json"


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
    bf16: bool


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
    report: Callable[[str], None],
) -> tuple[str, dict[str, Any]]:
    """The folder of the adapted model at ``cache_path`` (trained now if missing) and its record.

    The record says whether this call trained it (``reused`` False) or found it in the cache.
    """
    info_path = cache_path / INFO_FILE

    def load() -> dict[str, Any] | None:
        return json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else None

    def fill(staging: Path) -> dict[str, Any]:
        info = _train(base_folder, unlabeled, settings, staging, report)
        (staging / INFO_FILE).write_text(json.dumps(info, indent=1), encoding="utf-8")
        return info

    info, trained = cached_artifact(cache_path, load, lambda: build_folder(cache_path, fill))
    return str(cache_path), {**info, "reused": not trained}


def _train(base_folder: str, unlabeled: list[str], settings: AdaptationSettings, out: Path,
           report: Callable[[str], None]) -> dict[str, Any]:
    started = time.perf_counter()
    train_texts, held_out = split_pool(unlabeled, settings)
    if not train_texts or not held_out:
        raise ValueError(
            f"adapt_finetune: the unlabeled pool has {len(train_texts) + len(held_out)} non-empty texts; domain "
            f"adaptation needs more than da_eval_texts={settings.eval_texts} of them"
        )
    tokenizer = load_pretrained(AutoTokenizer, base_folder)
    model = load_pretrained(AutoModelForMaskedLM, base_folder)  # a checkpoint without an MLM head gets a fresh one
    train_features = _tokenize(tokenizer, train_texts, settings.max_length)
    # Fixed masks for the held-out loss, so that "before" and "after" score the very same task.
    held_out_batches = _masked_batches(tokenizer, held_out, settings)
    hint = (f"lower da_batch_size (now {settings.batch_size}) or da_max_length (now {settings.max_length})")
    with explain_out_of_memory(f"adapting {base_folder} to the unlabeled texts", hint):
        loss_before = masked_lm_loss(model, held_out_batches, settings.bf16)
        tick = time.perf_counter()
        log_history = _train_mlm(model, tokenizer, train_features, settings, report)
        train_s = time.perf_counter() - tick
        loss_after = masked_lm_loss(model, held_out_batches, settings.bf16)
    with quiet_transformers():
        model.save_pretrained(out)  # safetensors
        tokenizer.save_pretrained(out)
    return {
        "base_model": base_folder,
        "settings": dataclasses.asdict(settings),
        "train_texts": len(train_texts),
        "held_out_texts": len(held_out),
        "mlm_loss_before": loss_before,
        "mlm_loss_after": loss_after,
        "train_loss_per_epoch": [e["loss"] for e in log_history if "loss" in e],
        "train_s": round(train_s, 2),
        "wall_s": round(time.perf_counter() - started, 2),
    }


def _tokenize(tokenizer: Any, texts: list[str], max_length: int) -> list[dict[str, list[int]]]:
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, return_special_tokens_mask=True)
    return [{key: encoded[key][i] for key in encoded.keys()} for i in range(len(texts))]


def _masked_batches(tokenizer: Any, texts: list[str], settings: AdaptationSettings) -> list[dict[str, torch.Tensor]]:
    features = _tokenize(tokenizer, texts, settings.max_length)
    features.sort(key=lambda f: len(f["input_ids"]))  # batches of similar length pad little
    collate = DataCollatorForLanguageModeling(tokenizer, mlm_probability=settings.mlm_probability, seed=settings.seed)
    size = 32
    return [collate(features[i:i + size]) for i in range(0, len(features), size)]


def masked_lm_loss(model: Any, batches: list[dict[str, torch.Tensor]], bf16: bool) -> float:
    """Mean cross-entropy per masked token over ``batches``."""
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode(), torch.autocast(device_type=model.device.type, dtype=torch.bfloat16, enabled=bf16):
        for batch in batches:
            masked = int((batch["labels"] != -100).sum())
            if masked:
                loss = model(**{k: v.to(model.device) for k, v in batch.items()}).loss
                total += float(loss) * masked
                count += masked
    return total / max(count, 1)


class _Features(torch.utils.data.Dataset):
    def __init__(self, features: list[dict[str, list[int]]]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.features[index]


def _train_mlm(model: Any, tokenizer: Any, features: list[dict[str, list[int]]], settings: AdaptationSettings,
               report: Callable[[str], None]) -> list[dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="harness-adapt-") as scratch, quiet_transformers():
        args = TrainingArguments(
            output_dir=scratch,
            num_train_epochs=settings.epochs,
            learning_rate=settings.learning_rate,  # linear decay, the Trainer default the book used
            per_device_train_batch_size=settings.batch_size,
            weight_decay=0.0,
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="epoch",
            train_sampling_strategy="group_by_length",
            bf16=settings.bf16,
            use_cpu=not torch.cuda.is_available(),  # the Trainer refuses bf16 on CPU otherwise
            seed=settings.seed,
            data_seed=settings.seed,
            report_to="none",
            push_to_hub=False,
            disable_tqdm=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
        )
        collate = DataCollatorForLanguageModeling(tokenizer, mlm_probability=settings.mlm_probability, seed=settings.seed)
        trainer = Trainer(model=model, args=args, train_dataset=_Features(features), data_collator=collate,
                          processing_class=tokenizer, callbacks=[ProgressReporter(report, "domain adaptation")])
        trainer.remove_callback(PrinterCallback)  # progress goes through ``report`` instead
        trainer.train()
    return trainer.state.log_history
