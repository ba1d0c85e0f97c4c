"""The ``setfit`` method, its parameters and presets."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from harness import FitContext, LabeledTexts, Method, MethodParams
from harness.toolkit import Task, decide, fit_threads, quiet_transformers

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MPNET = "sentence-transformers/all-mpnet-base-v2"


class SetFitParams(MethodParams):
    """Defaults are the offline, CPU-sized ``default`` preset (see the README for the trade-off)."""

    model: str = DEFAULT_MODEL  # hub name, alias or local folder (harness.models.resolve_model)
    # pairs: 2 per text per iteration (SetFit's num_iterations), at most max_pairs (None: no cap)
    num_iterations: int = Field(20, ge=1)
    # 640: the best macro F1 of 160/320/640 pairs and 64/128 tokens within 12 minutes a seed (README)
    max_pairs: int | None = Field(640, ge=1)
    pair_target: Literal["binary", "jaccard"] = "binary"  # cosine target of a pair (see pairs.py)
    epochs: int = Field(1, ge=1)  # passes over the pairs
    batch_size: int = Field(16, ge=1)  # pairs per optimizer step
    max_length: int | None = Field(64, ge=8, le=4096)  # tokens kept per text; None: the model's own limit
    body_learning_rate: float = Field(2e-5, gt=0)
    warmup_proportion: float = Field(0.1, ge=0, lt=1)
    # head: logistic regression on the embeddings (one-vs-rest for multi-label, softmax for multiclass)
    head: Literal["logistic"] = "logistic"
    head_c: float = Field(1.0, gt=0)  # inverse regularisation strength of the head
    # balanced: rare tags weigh as much as frequent ones (measured: macro F1 up at every slice, see README)
    head_class_weight: Literal["none", "balanced"] = "balanced"
    threshold: float = Field(0.5, gt=0, lt=1)  # multi-label: a tag is predicted when its probability exceeds this
    tune_threshold: bool = True  # instead pick the threshold with the best valid micro F1
    eval_batch_size: int = Field(64, ge=1)
    seed: int | None = None  # pair drawing and training seed; None = the cell's seed


# SetFit's published setting (paper and library defaults) on its default body.
MPNET_PRESET = {
    "model": MPNET, "num_iterations": 20, "max_pairs": None, "epochs": 1, "batch_size": 16,
    "max_length": None, "body_learning_rate": 2e-5, "warmup_proportion": 0.1, "head_class_weight": "none",
}


class SetFit(Method):
    """Contrastive fine-tuning of a sentence-transformer on pairs from the slice, then a
    logistic-regression head; the decision threshold is tuned on valid (multi-label)."""

    name = "setfit"
    version = "2"  # 2: the training engine (one forward pass per batch of pairs, texts tokenised once)
    Params = SetFitParams
    presets = {"default": {}, "mpnet": MPNET_PRESET, "book": MPNET_PRESET}
    params: SetFitParams

    def fit(self, train: LabeledTexts, valid: LabeledTexts, unlabeled: list[str], context: FitContext) -> None:
        import torch
        import transformers

        from harness.toolkit import LogisticHead, choose_own_threshold, resolve_device
        from harness_setfit.body import BodySettings, embed, train_body
        from harness_setfit.pairs import contrastive_pairs, pair_budget

        if len(train) == 0:
            raise ValueError("setfit needs at least one training issue; the training slice is empty")
        p = self.params
        # the core's task type (issue 13 adds multiclass datasets); multi-label until it says otherwise
        self.task: Task = context.task  # type: ignore[assignment]
        seed = p.seed if p.seed is not None else context.seed
        label = f"{self.name} slice {context.slice_name}"
        stages: dict[str, float] = {}
        tick = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal tick
            now = time.perf_counter()
            stages[f"{stage}_s"] = round(now - tick, 2)
            tick = now

        torch.set_num_threads(fit_threads())
        self.device = resolve_device(context.device)
        self.model = _fresh_body(p.model, self.device, p.max_length)
        # the fitted model's probabilities per list of texts: the core asks for test twice (predict,
        # then predict_scores) and for valid after fit did, and embedding them is a fifth of a cell
        self._scored: dict[tuple[str, ...], np.ndarray] = {}
        lap("load")
        pairs = contrastive_pairs(train.labels, pair_budget(len(train), p.num_iterations, p.max_pairs), seed, p.pair_target)
        lap("pairs")
        context.progress(f"{label}: {len(pairs)} pairs from {len(train)} issues "
                         f"({float(pairs.target.mean()) if len(pairs) else 0:.2f} mean target)")
        transformers.set_seed(seed)  # dropout masks during pair training
        settings = BodySettings(epochs=p.epochs, batch_size=p.batch_size, learning_rate=p.body_learning_rate,
                                warmup_proportion=p.warmup_proportion, seed=seed)
        train_texts = self._tokenize(train.texts)
        self.body_stats = train_body(self.model, train_texts, pairs, settings, context.progress, label)
        lap("body")
        context.progress(f"{label}: fitting the {p.head} head on {len(train)} embeddings")
        vectors = embed(self.model, train_texts, p.eval_batch_size)
        self.head = LogisticHead(self.task, p.head_c, None if p.head_class_weight == "none" else "balanced", seed)
        self.head.fit(vectors, train.labels)
        lap("head")
        self.threshold, self.valid_f1 = choose_own_threshold(self._probabilities(valid.texts), valid.labels, self.task,
                                                             tune=p.tune_threshold, default=p.threshold)
        lap("valid")
        self.stages = stages
        shown = f", valid micro F1 {self.valid_f1['micro']:.4f}" if self.valid_f1 else ""
        context.progress(f"{label}: head fitted, threshold {self.threshold:g}{shown}")

    def predict_scores(self, texts: list[str]) -> np.ndarray:
        """Per-tag probabilities (len(texts), n_tags): one-vs-rest (multi-label) or softmax (multiclass)."""
        return self._probabilities(texts)

    def _probabilities(self, texts: list[str]) -> np.ndarray:
        # fit tunes its threshold through this, not the public predict_scores a subclass may change
        from harness_setfit.body import embed

        if not texts:
            return np.zeros((0, self.head.n_tags), dtype=np.float64)
        key = tuple(texts)
        if key not in self._scored:
            if len(self._scored) == 2:  # valid and test; a third list replaces the oldest
                del self._scored[next(iter(self._scored))]
            self._scored[key] = self.head.predict_proba(embed(self.model, self._tokenize(texts), self.params.eval_batch_size))
        return self._scored[key].copy()  # a copy: a caller may change its scores in place

    def _tokenize(self, texts: list[str]) -> Any:
        from harness.toolkit import tokenize

        return tokenize(self.model.tokenizer, texts, self.model.max_seq_length, self.device)

    def save(self, folder: Path) -> None:
        """The trained body as sentence-transformers saves it (safetensors weights, tokenizer,
        config), the head, and the own rule's threshold."""
        from harness.toolkit import save_json

        self.model.save(str(folder / "body"))
        self.head.save(folder / "head")
        save_json(folder / "own_rule.json", {"task": self.task, "threshold": self.threshold, "valid_f1": self.valid_f1})

    @classmethod
    def load(cls, folder: Path, params: MethodParams, context: FitContext) -> SetFit:
        from harness.toolkit import LogisticHead, load_json, resolve_device

        method = cls(params)
        method.device = resolve_device(context.device)
        method.model = _read_body(str(folder / "body"), method.device)
        method.head = LogisticHead.load(folder / "head")
        rule = load_json(folder / "own_rule.json")
        method.task, method.threshold, method.valid_f1 = rule["task"], rule["threshold"], rule["valid_f1"]
        method._scored = {}
        return method

    def predict(self, texts: list[str]) -> np.ndarray:
        """The method's own rule: argmax (multiclass) or the valid-tuned threshold (multi-label)."""
        return decide(self.predict_scores(texts), self.task, self.threshold)

    def details(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "threshold": self.threshold,
            "valid_micro_f1": None if self.valid_f1 is None else self.valid_f1["micro"],
            "valid_macro_f1": None if self.valid_f1 is None else self.valid_f1["macro"],
            "pair_training": self.body_stats,
            "device": self.device,
            "stage_s": dict(self.stages),
        }


_bodies: dict[tuple[str, str], Any] = {}  # the pretrained body per (folder, device), read once per process


def _fresh_body(name: str, device: str, max_length: int | None) -> Any:
    """A fresh SentenceTransformer (trained in place, so a copy of the one read from disk)."""
    from harness.toolkit import resolve_model

    folder = resolve_model(name, parameter="model")
    if (folder, device) not in _bodies:
        _bodies[folder, device] = _read_body(folder, device)
    model = copy.deepcopy(_bodies[folder, device])
    if max_length is not None:
        model.max_seq_length = max_length
    return model


def _read_body(folder: str, device: str) -> Any:
    """A SentenceTransformer read from ``folder``; ModelResolutionError in one line."""
    from sentence_transformers import SentenceTransformer

    from harness.toolkit import ModelResolutionError

    try:
        with quiet_transformers():
            return SentenceTransformer(folder, device=device)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelResolutionError(f"cannot load {folder!r} (parameter 'model') as a sentence-transformer: {exc}".splitlines()[0]) from exc
