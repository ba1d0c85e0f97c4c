"""The two fine-tuning methods, their parameters and presets.

``finetune``: the pretrained encoder fine-tuned as a multi-label classifier on the slice.
``adapt_finetune``: the same, starting from the encoder after masked-LM training on the
dataset's unlabeled pool (domain adaptation, trained once and cached).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from harness import FitContext, LabeledTexts, Method, MethodParams
from harness.toolkit import stable_hash

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class FineTuneParams(MethodParams):
    """Defaults are the offline, CPU-sized ``default`` preset (see the README for its cost)."""

    model: str = DEFAULT_MODEL  # hub name, alias or local folder (harness.models.resolve_model)
    max_length: int = Field(64, ge=8, le=4096)  # tokens kept per text
    epochs: int = Field(5, ge=1)
    # small slices have few steps per epoch: they get more epochs until this many optimizer steps
    min_steps: int = Field(300, ge=0)
    # evaluate (and keep the best checkpoint) every epoch, or every k epochs so that long runs
    # evaluate at most this often; None: every epoch, whatever the count. An evaluation on valid
    # costs as much as several CPU steps (docs/training.md)
    max_evaluations: int | None = Field(10, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    lr_scheduler: Literal["constant", "linear", "cosine"] = "constant"
    batch_size: int = Field(4, ge=1)
    eval_batch_size: int = Field(32, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    threshold: float = Field(0.5, gt=0, lt=1)  # a tag is predicted when its sigmoid score exceeds this
    tune_threshold: bool = True  # instead pick the threshold with the best valid micro F1 per epoch
    seed: int | None = None  # training seed; None = the cell's seed
    # bf16 = bfloat16 autocast (mixed precision); auto = bf16 on a GPU that has it, and on a CPU
    # only where a measured probe finds it faster than fp32 (harness.training.choose_precision)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # the input word embeddings (half of MiniLM's parameters) stay as pretrained when the slice has
    # at most this many texts (0: never): a CPU step is faster without their update and slices up to
    # 128 issues kept their F1; on the full split one seed could not rule out a loss (docs/training.md)
    freeze_word_embeddings_up_to: int = Field(128, ge=0)


BOOK_FINETUNE = {
    "model": "bert-base-uncased",
    "max_length": 128,
    "epochs": 20,
    "min_steps": 0,
    "max_evaluations": None,
    "learning_rate": 3e-5,
    "lr_scheduler": "constant",
    "batch_size": 4,
    "eval_batch_size": 32,
    "weight_decay": 0.0,
    "threshold": 0.5,
    "tune_threshold": False,
    "seed": 42,
    "precision": "fp32",
    "freeze_word_embeddings_up_to": 0,
}


class AdaptFineTuneParams(FineTuneParams):
    da_epochs: int = Field(1, ge=1)
    da_batch_size: int = Field(32, ge=1)
    da_learning_rate: float = Field(5e-5, gt=0)
    da_max_length: int = Field(64, ge=8, le=4096)
    da_max_texts: int | None = Field(2000, ge=1)  # MLM training texts sampled from the pool; None = all
    da_eval_texts: int = Field(200, ge=1)  # held-out pool texts for the MLM loss before/after
    mlm_probability: float = Field(0.15, gt=0, lt=1)
    da_seed: int = 42  # fixed, not the cell's seed: one adapted model serves every slice and seed


BOOK_ADAPT = {
    **BOOK_FINETUNE,
    "da_epochs": 16,
    "da_batch_size": 32,
    "da_learning_rate": 5e-5,
    "da_max_length": 128,
    "da_max_texts": None,
    "mlm_probability": 0.15,
}


class FineTune(Method):
    """Fine-tune a pretrained encoder on the slice; keep the epoch with the best valid micro F1."""

    name = "finetune"
    # 2: the training engine (harness.training) instead of transformers' Trainer;
    # 3: epochs no longer rounded up to whole evaluation periods (the last epoch is evaluated anyway)
    version = "3"
    Params = FineTuneParams
    presets = {"default": {}, "book": BOOK_FINETUNE}

    def fit(self, train: LabeledTexts, valid: LabeledTexts, unlabeled: list[str], context: FitContext) -> None:
        from harness.toolkit import choose_precision, resolve_device

        from .classifier import ClassifierSettings, fine_tune
        from .runtime import local_model_folder, prepare_torch

        p = self.params
        self._stage_s: dict[str, float] = {}
        seed = p.seed if p.seed is not None else context.seed
        prepare_torch(seed)
        self._device = resolve_device(context.device)
        self._precision = choose_precision(p.precision, self._device, context.cache_dir)
        base_folder = local_model_folder(p.model)
        start_folder = self._start_from(base_folder, unlabeled, context)
        prepare_torch(seed)  # the classifier head is drawn the same whether adaptation ran or not
        settings = ClassifierSettings(
            max_length=p.max_length, epochs=p.epochs, min_steps=p.min_steps, max_evaluations=p.max_evaluations,
            learning_rate=p.learning_rate, lr_scheduler=p.lr_scheduler,
            batch_size=p.batch_size, eval_batch_size=p.eval_batch_size, weight_decay=p.weight_decay,
            threshold=p.threshold, tune_threshold=p.tune_threshold, precision=self._precision,
            freeze_word_embeddings_up_to=p.freeze_word_embeddings_up_to, device=self._device,
        )
        tick = time.perf_counter()
        self._fitted = fine_tune(start_folder, train, valid, settings, seed, context.progress,
                                 label=f"{self.name} slice {context.slice_name}")
        self._stage_s["fine_tune_s"] = round(time.perf_counter() - tick, 2)

    def _start_from(self, base_folder: str, unlabeled: list[str], context: FitContext) -> str:
        """The folder fine-tuning starts from: the pretrained model itself."""
        return base_folder

    def save(self, folder: Path) -> None:
        """The fine-tuned model and its tokenizer as transformers saves them (safetensors), and
        the threshold, precision and training history beside them."""
        from harness.toolkit import save_json

        fitted = self._fitted
        fitted.model.save_pretrained(folder / "model")
        fitted.tokenizer.save_pretrained(folder / "model")
        history = {field.name: getattr(fitted, field.name) for field in dataclasses.fields(fitted)
                   if field.name not in ("model", "tokenizer")}
        save_json(folder / "fine_tuned.json", {**history, "precision": self._precision, "stage_s": self._stage_s})

    @classmethod
    def load(cls, folder: Path, params: MethodParams, context: FitContext) -> FineTune:
        from transformers import AutoModelForSequenceClassification

        from harness.toolkit import load_json, resolve_device

        from .classifier import FineTuned
        from .runtime import saved_model, tokenizer_for

        method = cls(params)
        saved = load_json(folder / "fine_tuned.json")
        method._device = resolve_device(context.device)
        method._precision, method._stage_s = saved.pop("precision"), saved.pop("stage_s")
        model_folder = str(folder / "model")
        method._fitted = FineTuned(saved_model(AutoModelForSequenceClassification, model_folder, method._device),
                                   tokenizer_for(model_folder), **saved)
        return method

    def predict(self, texts: list[str]) -> np.ndarray:
        return (self.predict_scores(texts) > self._fitted.threshold).astype(np.uint8)

    def predict_scores(self, texts: list[str]) -> np.ndarray:
        """Each tag's sigmoid probability: the scores ``predict`` thresholds."""
        from .classifier import predict_probabilities

        fitted = self._fitted
        if not texts:
            return np.zeros((0, fitted.model.config.num_labels), dtype=np.float64)
        tick = time.perf_counter()
        scores = predict_probabilities(fitted.model, fitted.tokenizer, texts, self.params.max_length,
                                       self.params.eval_batch_size, self._precision, self._device)
        # the core calls this for valid and test (and predict for test): the stage is all of them
        self._stage_s["predict_s"] = self._stage_s.get("predict_s", 0.0) + time.perf_counter() - tick
        return scores

    def details(self) -> dict[str, Any]:
        fitted = self._fitted
        return {
            "best_epoch": fitted.best_epoch,
            "epochs_trained": fitted.epochs_trained,
            "evaluated_every_epochs": fitted.evaluated_every,
            "threshold": fitted.threshold,
            "precision": self._precision,
            "device": self._device,
            "frozen_parameters": fitted.frozen_parameters,
            "train_s": fitted.train_s,
            "valid_micro_f1_per_evaluation": [row["valid_micro_f1"] for row in fitted.epochs],
            "epochs": fitted.epochs,
            "stage_s": {stage: round(seconds, 2) for stage, seconds in self._stage_s.items()},
        }


class AdaptFineTune(FineTune):
    """Masked-LM training on the unlabeled pool first (once per dataset), then fine-tune."""

    name = "adapt_finetune"
    version = "3"  # 2: the training engine, masking on the device; 3: as finetune's 3
    Params = AdaptFineTuneParams
    presets = {"default": {}, "book": BOOK_ADAPT}

    def _start_from(self, base_folder: str, unlabeled: list[str], context: FitContext) -> str:
        from .adaptation import AdaptationSettings, adapted_model

        p = self.params
        settings = AdaptationSettings(
            epochs=p.da_epochs, batch_size=p.da_batch_size, learning_rate=p.da_learning_rate,
            max_length=p.da_max_length, max_texts=p.da_max_texts, eval_texts=p.da_eval_texts,
            mlm_probability=p.mlm_probability, seed=p.da_seed, precision=self._precision,
        )
        cache_path = context.cache_path(
            "adapted_lm", context.fingerprint, p.model, stable_hash(unlabeled), stable_hash(dataclasses.asdict(settings))
        )
        tick = time.perf_counter()
        folder, self._adaptation = adapted_model(base_folder, cache_path, unlabeled, settings, self._device,
                                                 context.progress)
        self._stage_s["adapt_lm_s"] = round(time.perf_counter() - tick, 2)
        return folder

    def details(self) -> dict[str, Any]:
        return {**super().details(), "adaptation": self._adaptation}
