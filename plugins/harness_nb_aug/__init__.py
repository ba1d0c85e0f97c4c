"""The book's "Naive Bayes + augmentation": the nb baseline trained on the training slice plus
augmented copies of each issue (same tags), shuffled.

Augmenters come from nlpaug and are chosen by name (several at once: each adds its own copies):
``synonym`` (WordNet, offline), ``random_swap``, ``random_delete``, ``contextual`` (masked-LM
substitution, the book's choice) and ``back_translation`` (needs two translation models).
Augmented texts are cached per text (see text_cache.py), so nested slices, other seeds' shared
issues and reruns do not augment again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, field_validator

from harness import FitContext, LabeledTexts, hookimpl
from harness_nb import NaiveBayes, NaiveBayesParams
from harness_nb_aug.augmenters import AugmenterKind, AugmenterSpec, Runtime, augment
from harness_nb_aug.text_cache import AugmentedTextCache


class NaiveBayesAugParams(NaiveBayesParams):
    augmenters: list[AugmenterKind] = Field(default_factory=lambda: ["synonym"], min_length=1)
    transformations_per_example: int = Field(1, ge=1)  # augmented copies of each issue, per augmenter
    aug_p: float = Field(0.3, gt=0, le=1)  # fraction of an issue's words changed (nlpaug's default)
    aug_min: int = Field(1, ge=0)
    aug_max: int | None = Field(10, ge=1)  # at most this many words changed per issue (nlpaug's default)
    augment_seed: int | None = None  # None: the cell's seed; the book seeds once (transformers.set_seed(3))
    shuffle_seed: int = 42  # the book shuffles the enlarged slice with seed 42
    contextual_model: str = "distilbert-base-uncased"
    contextual_top_k: int = Field(100, ge=1)  # candidates per masked word (nlpaug's default)
    translate_model: str = "facebook/wmt19-en-de"
    translate_back_model: str = "facebook/wmt19-de-en"
    translation_max_length: int = Field(300, ge=1)  # nlpaug's default
    batch_size: int = Field(32, ge=1)  # texts per model call (contextual, back_translation)

    @field_validator("augmenters")
    @classmethod
    def _distinct(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError(f"each augmenter may be named once, got {names}")
        return names


def augmenter_spec(kind: str, params: NaiveBayesAugParams) -> AugmenterSpec:
    """The settings that matter for ``kind`` only, so e.g. a new contextual_model leaves the
    synonym cache valid."""
    if kind == "back_translation":
        return AugmenterSpec(kind, translate_model=params.translate_model,
                             translate_back_model=params.translate_back_model, max_length=params.translation_max_length)
    contextual = kind == "contextual"
    return AugmenterSpec(kind, aug_p=params.aug_p, aug_min=params.aug_min, aug_max=params.aug_max,
                         model=params.contextual_model if contextual else None,
                         top_k=params.contextual_top_k if contextual else None)


class NaiveBayesAugmented(NaiveBayes):
    """nb on the training slice plus augmented copies (the book's ``augment_text`` + shuffle)."""

    name = "nb_aug"
    version = "1"
    Params = NaiveBayesAugParams
    presets = {
        "default": {"augmenters": ["synonym"]},
        "book": {"augmenters": ["contextual"], "contextual_model": "distilbert-base-uncased", "augment_seed": 3,
                 "transformations_per_example": 1, "shuffle_seed": 42},
    }

    def fit(self, train: LabeledTexts, valid: LabeledTexts, unlabeled: list[str], context: FitContext) -> None:
        super().fit(self.augmented_slice(train, context), valid, unlabeled, context)

    def augmented_slice(self, train: LabeledTexts, context: FitContext) -> LabeledTexts:
        """Each issue followed by its augmented copies (same tags), shuffled with shuffle_seed."""
        params = self.params
        seed = params.augment_seed if params.augment_seed is not None else context.seed
        runtime = Runtime(device=context.device, batch_size=params.batch_size)
        copies: list[list[str]] = [[] for _ in train.texts]
        augmented_now = 0
        for kind in params.augmenters:
            spec = augmenter_spec(kind, params)
            path = context.cache_path("augmented_texts", spec.key(), seed)
            cache = AugmentedTextCache(path.with_name(path.name + ".json"), {**spec.key(), "seed": seed})
            for copy in range(params.transformations_per_example):
                def augment_copy(todo: list[str], kind: str = kind, spec=spec, copy: int = copy) -> list[str]:
                    context.progress(f"nb_aug: {kind} augmentation of {len(todo)} texts (copy {copy + 1})")
                    return augment(spec, todo, seed, copy, context.cache_dir / "nltk_data", runtime)

                augmented_now += cache.ensure(train.texts, copy, augment_copy)
            for i, text in enumerate(train.texts):
                copies[i] += [cache.get(text, copy) for copy in range(params.transformations_per_example)]

        texts, rows = [], []
        for i, text in enumerate(train.texts):
            texts += [text, *copies[i]]
            rows += [i] * (1 + len(copies[i]))
        # the book: Dataset.shuffle(seed=42), i.e. numpy default_rng(42).permutation
        order = np.random.default_rng(params.shuffle_seed).permutation(len(texts))
        n_copies = sum(len(c) for c in copies)
        self._details = {
            "augment_seed": seed,
            "augmented_copies": n_copies,
            "augmented_now": augmented_now,  # 0 when every copy came from the cache
            "changed_copies_fraction": round(
                sum(new != text for text, cs in zip(train.texts, copies) for new in cs) / max(n_copies, 1), 4),
        }
        return LabeledTexts([texts[j] for j in order], train.labels[np.asarray(rows)[order]], list(train.tags))

    def details(self) -> dict[str, Any]:
        return dict(self._details)


@hookimpl
def register_methods(register) -> None:
    register(NaiveBayesAugmented)
