"""Fine-tune a pretrained encoder as a multi-label classifier on the core's training engine
(``harness.training``).

One epoch = one pass over the training slice, in length-grouped batches. A slice too small to
give ``min_steps`` optimizer steps in ``epochs`` epochs gets more epochs (see
``training_schedule``). Every epoch, or every k epochs when there are more than
``max_evaluations`` of them, and the last epoch end with an evaluation on valid; the weights of
the evaluation with the best valid micro F1 (the first one on ties) are kept in memory and put
back at the end. Nothing is written to disk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification

from harness import LabeledTexts
from harness.toolkit import (
    OptimizerSettings,
    Precision,
    best_grid_threshold,
    epoch_groups,
    f1,
    freeze_word_embeddings,
    predict,
    tokenize,
    train,
)

from .runtime import explain_out_of_memory, fresh_pretrained_model, tokenizer_for


@dataclass
class ClassifierSettings:
    """The fine-tuning hyper-parameters (a view of the method's parameters)."""

    max_length: int
    epochs: int
    min_steps: int
    max_evaluations: int | None
    learning_rate: float
    lr_scheduler: str
    batch_size: int
    eval_batch_size: int
    weight_decay: float
    threshold: float
    tune_threshold: bool
    precision: Precision
    freeze_word_embeddings_up_to: int  # slices of at most this many texts keep the pretrained word embeddings
    device: str


@dataclass
class FineTuned:
    """A fine-tuned classifier, its decision threshold and what happened per evaluation."""

    model: Any
    tokenizer: Any
    threshold: float
    best_epoch: int
    epochs_trained: int
    evaluated_every: int  # epochs between evaluations
    train_s: float
    frozen_parameters: int
    epochs: list[dict[str, float]] = field(default_factory=list)  # one row per evaluation


def decide(probabilities: np.ndarray, labels: np.ndarray, threshold: float, tune: bool) -> tuple[float, float, float]:
    """(threshold, micro F1, macro F1) on valid: the given threshold, or the grid's best micro F1."""
    if tune:
        threshold, _ = best_grid_threshold(probabilities, labels)
    predicted = (probabilities > threshold).astype(np.uint8)
    return float(threshold), f1(labels, predicted, "micro"), f1(labels, predicted, "macro")


def training_schedule(n_texts: int, settings: ClassifierSettings) -> tuple[int, int, int]:
    """(epochs to train, epochs between evaluations, optimizer steps per epoch) for ``n_texts``.

    Epochs grow until ``min_steps`` steps. Evaluations come every ``every`` epochs and after the
    last epoch (``harness.training.train`` always evaluates the last step), at most
    ``max_evaluations`` in all.
    """
    steps_per_epoch = max(1, math.ceil(n_texts / settings.batch_size))
    epochs = max(settings.epochs, math.ceil(settings.min_steps / steps_per_epoch))
    every = 1 if settings.max_evaluations is None else math.ceil(epochs / settings.max_evaluations)
    return epochs, every, steps_per_epoch


def _logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def _loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    # in fp32 whatever the autocast: BCE on bf16 logits loses the small differences that matter late
    return torch.nn.functional.binary_cross_entropy_with_logits(_logits(model, batch).float(), batch["labels"])


def fine_tune(
    model_folder: str,
    train_texts: LabeledTexts,
    valid: LabeledTexts,
    settings: ClassifierSettings,
    seed: int,
    report: Callable[[str], None],
    label: str,
) -> FineTuned:
    """Fine-tune ``model_folder`` on ``train_texts``, keeping the epoch with the best valid micro F1."""
    tokenizer = tokenizer_for(model_folder)
    tags = list(train_texts.tags)
    # the cell's seed was set before this, so the new classifier head is drawn from it
    model = fresh_pretrained_model(
        AutoModelForSequenceClassification, model_folder, settings.device, num_labels=len(tags),
        problem_type="multi_label_classification",
        id2label=dict(enumerate(tags)), label2id={tag: i for i, tag in enumerate(tags)},
    )
    frozen = freeze_word_embeddings(model) if len(train_texts) <= settings.freeze_word_embeddings_up_to else 0
    epochs, every, steps_per_epoch = training_schedule(len(train_texts), settings)
    total_steps = epochs * steps_per_epoch
    hint = (f"lower batch_size (now {settings.batch_size}), eval_batch_size (now {settings.eval_batch_size}) "
            f"or max_length (now {settings.max_length})")
    with explain_out_of_memory(f"fine-tuning {model_folder}", hint):
        encoded = tokenize(tokenizer, train_texts.texts, settings.max_length, settings.device)
        groups = epoch_groups(encoded.lengths, settings.batch_size, total_steps, seed)
        targets = train_texts.labels.astype(np.float32)
        batches = encoded.batches(groups, {"labels": [targets[rows] for rows in groups]})
        evaluate = None
        if len(valid):
            valid_encoded = tokenize(tokenizer, valid.texts, settings.max_length, settings.device)

            def evaluate() -> dict[str, Any]:
                scores = torch.sigmoid(predict(model, valid_encoded, settings.eval_batch_size, settings.precision, _logits))
                threshold, micro, macro = decide(scores.double().cpu().numpy(), valid.labels, settings.threshold,
                                                 settings.tune_threshold)
                return {"score": micro, "valid_micro_f1": micro, "valid_macro_f1": macro, "threshold": threshold}

        optimizer = OptimizerSettings(learning_rate=settings.learning_rate, weight_decay=settings.weight_decay,
                                      schedule=settings.lr_scheduler)  # type: ignore[arg-type]
        trained = train(model, batches, _loss, optimizer, total_steps, steps_per_epoch, settings.precision,
                        evaluate, every * steps_per_epoch, report, label)
    history = [
        {"epoch": row["epoch"], "step": row["step"], "train_loss": trained.loss_per_epoch[row["epoch"] - 1],
         "valid_micro_f1": row["valid_micro_f1"], "valid_macro_f1": row["valid_macro_f1"], "threshold": row["threshold"]}
        for row in trained.evaluations
    ]
    best = trained.best or {"epoch": epochs, "threshold": settings.threshold}  # no valid: the last weights
    return FineTuned(model, tokenizer, threshold=float(best["threshold"]), best_epoch=int(best["epoch"]),
                     epochs_trained=epochs, evaluated_every=every, train_s=trained.seconds,
                     frozen_parameters=frozen, epochs=history)


def predict_probabilities(model: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int,
                          precision: Precision, device: str) -> np.ndarray:
    """Sigmoid scores (len(texts), n_tags), in the order of ``texts``."""
    hint = f"lower eval_batch_size (now {batch_size}) or max_length (now {max_length})"
    with explain_out_of_memory("predicting", hint):
        encoded = tokenize(tokenizer, texts, max_length, device)
        return torch.sigmoid(predict(model, encoded, batch_size, precision, _logits)).double().cpu().numpy()
