"""Fine-tune a pretrained encoder as a multi-label classifier with transformers' Trainer.

One epoch = one pass over the training slice. A slice too small to give ``min_steps`` optimizer
steps in ``epochs`` epochs gets more epochs (see ``training_schedule``). Every epoch, or every k
epochs when there are more than ``max_evaluations`` of them, ends with an evaluation on valid;
the weights of the evaluation with the best valid micro F1 (the first one on ties) are copied in
memory (``KeepBestWeights``) and loaded at the end. Nothing is written to disk: the Trainer saves
no checkpoints. Each split is tokenised once; batches are padded to their longest text, training
batches group texts of similar length (``group_by_length``) and valid is sorted by length.

Why the Trainer and not a plain torch loop: it keeps the optimiser, schedule, gradient clipping,
bf16 autocast and length-grouped sampling of the runs the published scores came from, so the same
seed trains the same trajectory; only where the best epoch's weights are kept changed.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    PrinterCallback,
    AutoTokenizer,
    DataCollatorWithPadding,
    EvalPrediction,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from harness.methods import LabeledTexts
from harness.metrics import f1
from harness.models import quiet_transformers
from harness.rules import best_grid_threshold

from .runtime import ProgressReporter, explain_out_of_memory, load_pretrained


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
    bf16: bool


@dataclass
class FineTuned:
    """A fine-tuned classifier, its decision threshold and what happened per epoch."""

    model: Any
    tokenizer: Any
    threshold: float
    best_epoch: int
    epochs_trained: int
    evaluated_every: int  # epochs between evaluations
    epochs: list[dict[str, float]] = field(default_factory=list)  # one row per evaluation


class EncodedTexts(torch.utils.data.Dataset):
    """Tokenised texts (unpadded; the collator pads per batch), with float labels if given.

    ``by_length`` sorts them shortest first, so that consecutive batches pad little (for
    evaluation, where the order of the rows does not matter).
    """

    def __init__(self, tokenizer: Any, texts: list[str], max_length: int, labels: np.ndarray | None = None,
                 by_length: bool = False) -> None:
        self.features = [dict(f) for f in _tokenize(tokenizer, texts, max_length)]
        if labels is not None:
            for feature, row in zip(self.features, labels):
                feature["labels"] = row.astype(np.float32).tolist()  # BCE loss wants floats
        if by_length:
            self.features.sort(key=lambda feature: len(feature["input_ids"]))

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.features[index]


def _tokenize(tokenizer: Any, texts: list[str], max_length: int) -> list[dict[str, list[int]]]:
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    return [{key: encoded[key][i] for key in encoded.keys()} for i in range(len(texts))]


def decide(probabilities: np.ndarray, labels: np.ndarray, threshold: float, tune: bool) -> tuple[float, float, float]:
    """(threshold, micro F1, macro F1) on valid: the given threshold, or the grid's best micro F1."""
    if tune:
        threshold, _ = best_grid_threshold(probabilities, labels)
    predicted = (probabilities > threshold).astype(np.uint8)
    return float(threshold), f1(labels, predicted, "micro"), f1(labels, predicted, "macro")


def training_schedule(n_texts: int, settings: ClassifierSettings) -> tuple[int, int, int]:
    """(epochs to train, epochs between evaluations, optimizer steps per epoch) for ``n_texts``.

    Epochs grow until ``min_steps`` steps, then round up to a whole number of evaluation periods
    so that the last epoch is evaluated too.
    """
    steps_per_epoch = max(1, math.ceil(n_texts / settings.batch_size))
    epochs = max(settings.epochs, math.ceil(settings.min_steps / steps_per_epoch))
    every = 1 if settings.max_evaluations is None else math.ceil(epochs / settings.max_evaluations)
    return math.ceil(epochs / every) * every, every, steps_per_epoch


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def fine_tune(
    model_folder: str,
    train: LabeledTexts,
    valid: LabeledTexts,
    settings: ClassifierSettings,
    seed: int,
    report: Callable[[str], None],
    label: str,
) -> FineTuned:
    """Fine-tune ``model_folder`` on ``train``, keeping the epoch with the best valid micro F1."""
    tokenizer = load_pretrained(AutoTokenizer, model_folder)
    tags = list(train.tags)
    # transformers.set_seed(seed) ran before this, so the new classifier head is seeded
    model = load_pretrained(
        AutoModelForSequenceClassification, model_folder, num_labels=len(tags),
        problem_type="multi_label_classification",
        id2label=dict(enumerate(tags)), label2id={tag: i for i, tag in enumerate(tags)},
    )
    train_data = EncodedTexts(tokenizer, train.texts, settings.max_length, train.labels)
    valid_data = EncodedTexts(tokenizer, valid.texts, settings.max_length, valid.labels, by_length=True)

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        threshold, micro, macro = decide(
            _sigmoid(np.asarray(logits)), np.asarray(prediction.label_ids), settings.threshold, settings.tune_threshold
        )
        return {"micro_f1": micro, "macro_f1": macro, "threshold": threshold}

    hint = (f"lower batch_size (now {settings.batch_size}), eval_batch_size (now {settings.eval_batch_size}) "
            f"or max_length (now {settings.max_length})")
    epochs, every, steps_per_epoch = training_schedule(len(train_data), settings)
    period = {"eval_strategy": "epoch"} if every == 1 else {"eval_strategy": "steps", "eval_steps": every * steps_per_epoch}
    keep_best = KeepBestWeights("eval_micro_f1")
    # the Trainer needs an output folder; with save_strategy "no" it stays empty
    with tempfile.TemporaryDirectory(prefix="harness-finetune-") as scratch, quiet_transformers():
        args = TrainingArguments(
            output_dir=scratch,
            num_train_epochs=epochs,
            learning_rate=settings.learning_rate,
            lr_scheduler_type=settings.lr_scheduler,
            per_device_train_batch_size=settings.batch_size,
            per_device_eval_batch_size=settings.eval_batch_size,
            weight_decay=settings.weight_decay,
            **period,
            save_strategy="no",  # the best weights are kept in memory by KeepBestWeights
            logging_strategy="epoch",
            train_sampling_strategy="group_by_length",
            bf16=settings.bf16,
            use_cpu=not torch.cuda.is_available(),  # the Trainer refuses bf16 on CPU otherwise
            seed=seed,
            data_seed=seed,
            report_to="none",
            push_to_hub=False,
            disable_tqdm=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
        )
        trainer = Trainer(
            model=model, args=args, train_dataset=train_data, eval_dataset=valid_data,
            processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=compute_metrics, callbacks=[ProgressReporter(report, label), keep_best],
        )
        trainer.remove_callback(PrinterCallback)  # progress goes through ``report`` instead
        with explain_out_of_memory(f"fine-tuning {model_folder}", hint):
            trainer.train()
    keep_best.restore(model)
    history = _epoch_history(trainer.state.log_history)
    best = next(e for e in history if e["step"] == keep_best.step)
    model.eval()
    return FineTuned(model, tokenizer, threshold=float(best["threshold"]), best_epoch=int(best["epoch"]),
                     epochs_trained=epochs, evaluated_every=every, epochs=history)


class KeepBestWeights(TrainerCallback):
    """Copies the model's weights in memory at every evaluation that beats the best so far on
    ``metric`` (strictly: the first best on ties); ``restore`` loads them back into the model."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.best: float | None = None
        self.step: int | None = None
        self.weights: dict[str, torch.Tensor] | None = None

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    model: Any = None, **kwargs: Any) -> None:
        value = (metrics or {}).get(self.metric)
        if value is not None and (self.best is None or value > self.best):
            self.best, self.step = value, state.global_step
            self.weights = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}

    def restore(self, model: Any) -> None:
        if self.weights is None:
            raise RuntimeError(f"no evaluation reported {self.metric}: there are no best weights to restore")
        model.load_state_dict(self.weights)
        self.weights = None  # free the copy


def _epoch_history(log_history: list[dict[str, float]]) -> list[dict[str, float]]:
    """One row per evaluation: its epoch, the epoch's train loss, valid micro/macro F1 and the threshold used."""
    losses = {round(entry["epoch"]): entry["loss"] for entry in log_history if "loss" in entry}
    rows = []
    for entry in log_history:
        if "eval_micro_f1" in entry:
            epoch = round(entry["epoch"])
            rows.append({
                "epoch": epoch,
                "step": entry["step"],
                "train_loss": float(losses.get(epoch, float("nan"))),
                "valid_micro_f1": float(entry["eval_micro_f1"]),
                "valid_macro_f1": float(entry["eval_macro_f1"]),
                "threshold": float(entry["eval_threshold"]),
            })
    return rows


def predict_probabilities(model: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int, bf16: bool) -> np.ndarray:
    """Sigmoid scores (len(texts), n_tags), in the order of ``texts``.

    Texts are batched by length so that dynamic padding pads little.
    """
    features = _tokenize(tokenizer, texts, max_length)
    order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")
    scores = np.zeros((len(texts), model.config.num_labels), dtype=np.float64)
    collate = DataCollatorWithPadding(tokenizer)
    hint = f"lower eval_batch_size (now {batch_size}) or max_length (now {max_length})"
    with explain_out_of_memory("predicting", hint), torch.inference_mode(), torch.autocast(
        device_type=model.device.type, dtype=torch.bfloat16, enabled=bf16
    ):
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = {k: v.to(model.device) for k, v in collate([features[i] for i in rows]).items()}
            scores[rows] = _sigmoid(model(**batch).logits.float().cpu().numpy())
    return scores
