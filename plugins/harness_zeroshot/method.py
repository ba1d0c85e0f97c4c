"""The ``zeroshot`` method: tag issues without training labels, from (text, tag) scores.

Every (text, tag) pair gets a score from an NLI model (``backend: nli``) or from the cosine
similarity of sentence embeddings (``backend: embedding``); a top-k or threshold rule chosen
on the valid split turns scores into tags. Score matrices are cached on disk per split, so
every seed and rerun after the first costs a file read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from harness import FitContext, LabeledTexts, Method, MethodParams
from harness.toolkit import cached_artifact, load_arrays, load_json, save_arrays, save_json, stable_hash, text_key, write_npy_atomic

from harness_zeroshot.rules import RuleChoice, SelectBy, choose_rule

SCORES_VERSION = "1"  # bump when the scoring maths changes, to invalidate cached score matrices


class ZeroShotParams(MethodParams):
    backend: Literal["nli", "embedding"] = "embedding"
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    template: str = Field("This example is {}.", description="hypothesis text; {} is replaced by the tag")
    use_descriptions: bool = Field(True, description="fill the template with the dataset's tag descriptions where given")
    max_length: int | None = Field(
        None, gt=0,
        description="tokens per input; None: nli uses the tokenizer's limit (as the pipeline), embedding the core encoder's 128",
    )
    batch_size: int = Field(32, gt=0, description="texts per embedding batch; at most this many pairs per NLI batch")
    batch_tokens: int = Field(2048, gt=0, description="at most this many padded tokens per NLI batch")
    select_by: SelectBy = "micro"
    calibrate: Literal["none", "center"] = Field(
        "none",
        description="center: subtract each tag's mean score over the valid texts (no labels used), "
        "so that hypotheses close to every issue stop winning everywhere",
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="nli forward passes: fp32 gives the transformers pipeline's scores; bf16 (autocast) is faster "
        "on GPUs and bf16-capable CPUs, with scores a little off (see benchmarks/bench_zeroshot.py)",
    )

    @field_validator("template")
    @classmethod
    def _has_a_slot(cls, template: str) -> str:
        try:
            filled = template.format("\0")
        except (IndexError, KeyError, ValueError):
            filled = ""
        if "\0" not in filled:
            raise ValueError(f"template {template!r} needs one '{{}}' where the tag goes, e.g. 'This example is {{}}.'")
        return template


def hypotheses_for(tags: list[str], template: str, descriptions: dict[str, str]) -> list[str]:
    """One hypothesis per tag: the template filled with the tag's description, or its name."""
    unknown = sorted(set(descriptions) - set(tags))
    if unknown:
        raise ValueError(f"labels.descriptions names {unknown}, which are not tags of the dataset (tags: {tags})")
    return [template.format(descriptions.get(tag, tag)) for tag in tags]


class ZeroShot(Method):
    """The book's zero-shot step: score each (issue, tag) pair, then top-k or a threshold."""

    name = "zeroshot"
    version = "2"
    uses_labels = False
    Params = ZeroShotParams
    presets = {
        "default": {"backend": "embedding", "model": "sentence-transformers/all-MiniLM-L6-v2", "calibrate": "center"},
        "book": {"backend": "nli", "model": "facebook/bart-large-mnli", "template": "This example is {}."},
    }

    def fit(self, train: LabeledTexts, valid: LabeledTexts, unlabeled: list[str], context: FitContext) -> None:
        self.context = context
        descriptions = context.tag_descriptions if self.params.use_descriptions else {}
        self.hypotheses = hypotheses_for(list(context.tags), self.params.template, descriptions)
        self.score_sources: dict[str, str] = {}  # split -> "computed" or "cache", for the record
        valid_scores = self.scores(valid.texts, split="valid")
        # the offset comes from valid texts alone, never from their labels
        self.offset = valid_scores.mean(axis=0) if self.params.calibrate == "center" else np.zeros(len(context.tags))
        self.choice: RuleChoice = choose_rule(valid_scores - self.offset, valid.labels, self.params.select_by)

    def save(self, folder: Path) -> None:
        """The hypotheses, the calibration offset and the rule chosen on valid: the model is named
        by the parameters and learns nothing."""
        save_json(folder / "rule.json", {"hypotheses": self.hypotheses, "choice": self.choice.to_json()})
        save_arrays(folder / "calibration.npz", offset=self.offset)

    @classmethod
    def load(cls, folder: Path, params: MethodParams, context: FitContext) -> ZeroShot:
        method = cls(params)
        saved = load_json(folder / "rule.json")
        method.context, method.hypotheses, method.score_sources = context, saved["hypotheses"], {}
        method.choice = RuleChoice.from_json(saved["choice"])
        method.offset = load_arrays(folder / "calibration.npz")["offset"]
        return method

    def predict(self, texts: list[str]) -> np.ndarray:
        return self.choice.rule.apply(self.predict_scores(texts))

    def predict_scores(self, texts: list[str]) -> np.ndarray:
        """The (text, tag) scores the rule is applied to (calibrated when ``calibrate`` says so)."""
        return self.scores(texts, split="test") - self.offset

    def details(self) -> dict[str, Any]:
        top_k, top_k_f1 = self.choice.best_top_k
        threshold, threshold_f1 = self.choice.best_threshold
        return {
            "rule": self.choice.rule.as_dict(),
            f"valid_{self.params.select_by}_f1": round(self.choice.valid_f1, 5),
            "best_top_k": {**top_k.as_dict(), "valid_f1": round(top_k_f1, 5)},
            "best_threshold": {**threshold.as_dict(), "valid_f1": round(threshold_f1, 5)},
            "hypotheses": self.hypotheses,
            "calibration_offset": [round(float(v), 5) for v in self.offset],
            "scores": self.score_sources,
        }

    def scores(self, texts: list[str], split: str) -> np.ndarray:
        """(len(texts), tags) scores, read from the cache or computed and stored there."""
        p = self.params
        path = self.context.cache_path(
            "zeroshot_scores", SCORES_VERSION, self.context.fingerprint, p.backend, p.model, self.hypotheses,
            p.max_length, p.precision if p.backend == "nli" else None, stable_hash([text_key(t) for t in texts]),
        ).with_suffix(".npy")
        def compute() -> np.ndarray:
            scores = self._compute(texts)
            write_npy_atomic(path, scores)
            return scores

        # one process scores, concurrent cells of other seeds wait and then read its matrix
        scores, computed = cached_artifact(path, lambda: self._cached(path, len(texts)), compute)
        self.score_sources[split] = "computed" if computed else "cache"
        return scores

    def _cached(self, path: Path, n_texts: int) -> np.ndarray | None:
        if not path.exists():
            return None
        cached = np.load(path)
        return cached if cached.shape == (n_texts, len(self.hypotheses)) else None

    def _compute(self, texts: list[str]) -> np.ndarray:
        p = self.params
        if not texts:
            return np.zeros((0, len(self.hypotheses)), dtype=np.float32)
        common = dict(max_length=p.max_length, batch_size=p.batch_size, device=self.context.device,
                      progress=self.context.progress)
        if p.backend == "nli":
            from harness_zeroshot.nli import nli_scores

            return nli_scores(texts, self.hypotheses, p.model, batch_tokens=p.batch_tokens, precision=p.precision, **common)
        from harness_zeroshot.embedding import embedding_scores

        return embedding_scores(texts, self.hypotheses, p.model, self.context.cache_dir, **common)
