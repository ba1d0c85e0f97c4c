"""The augmenters nb_aug can use, built once per process, and seeded per text.

Every augmented text is a function of (text, augmenter setting, seed, copy number) only: the
word-by-word augmenters reseed Python's and numpy's generators before each text, the batched
ones draw from generators seeded by the text itself (see contextual.py). So a text gets the same
augmented copies whichever slice or batch it comes in, and copies can be cached per text.
"""

from __future__ import annotations

import contextlib
import functools
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np

from harness.toolkit import resolve_device, stable_hash, text_key
from harness_nb_aug.resources import MissingResourceError, penn_pos_tags, require_module, use_offline_wordnet

AugmenterKind = Literal["synonym", "random_swap", "random_delete", "contextual", "back_translation"]
MODEL_KINDS = ("contextual", "back_translation")  # need torch and a model; augmented in batches

NLPAUG_HINT = "pip install nlpaug==1.1.11 (or pip install 'fewlabels-harness[aug]')"
# nlpaug's name for the model families its contextual augmenter handles, by transformers model_type
CONTEXTUAL_FAMILIES = {"bert": "bert", "distilbert": "bert", "roberta": "roberta", "bart": "bart"}

# Bump to invalidate cached augmented texts when the way they are drawn changes.
SEEDING_VERSION = 1


@dataclass(frozen=True)
class AugmenterSpec:
    """Everything that changes an augmented text (batch size and device do not)."""

    kind: AugmenterKind
    aug_p: float | None = None  # fraction of the words changed
    aug_min: int | None = None
    aug_max: int | None = None
    model: str | None = None  # contextual: the masked-LM
    top_k: int | None = None  # contextual: candidates per masked word
    translate_model: str | None = None  # back_translation: out of English ...
    translate_back_model: str | None = None  # ... and back
    max_length: int | None = None  # back_translation: longest generated text, in tokens

    def key(self) -> dict[str, Any]:
        return {**asdict(self), "seeding_version": SEEDING_VERSION}


@dataclass(frozen=True)
class Runtime:
    """How to run the model augmenters: no effect on their output."""

    device: str = "auto"  # harness.devices: resolved only by the augmenters that run a model
    batch_size: int = 32


def augment(spec: AugmenterSpec, texts: list[str], seed: int, copy: int, nltk_data_dir: Path,
            runtime: Runtime = Runtime()) -> list[str]:
    """One augmented copy of each text; copy number ``copy`` (0, 1, ...) under ``seed``."""
    if not texts:
        return []
    seed_parts = (seed, stable_hash(spec.key()), copy)
    if spec.kind == "synonym":
        use_offline_wordnet(nltk_data_dir)  # before nlpaug's WordNet reader would try a download
    augmenter = build_augmenter(spec, runtime.device)
    with _global_generators_restored():
        if spec.kind in MODEL_KINDS:
            augmenter.model.batch_size = runtime.batch_size  # texts per model call
            return _augment_in_batches(augmenter, texts, seed_parts, runtime.batch_size)
        return [_augment_one(augmenter, text, seed_parts) for text in texts]


def _augment_one(augmenter: Any, text: str, seed_parts: tuple[Any, ...]) -> str:
    text_seed = int(stable_hash([*seed_parts, text_key(text)]), 16)
    random.seed(text_seed)
    np.random.seed(text_seed % 2**32)
    result = augmenter.augment(text)
    return result[0] if result else text  # nlpaug returns [] for an empty text


def _augment_in_batches(augmenter: Any, texts: list[str], seed_parts: tuple[Any, ...], batch_size: int) -> list[str]:
    import torch

    if hasattr(augmenter, "seed_parts"):  # contextual: per-text draws (see contextual.py)
        augmenter.seed_parts = seed_parts
    # the models here decode deterministically; seeded all the same, in case one samples
    torch.manual_seed(int(stable_hash(list(seed_parts)), 16) % 2**63)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths batched: less padding
    augmented = list(texts)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        results = augmenter.augment([texts[i] for i in rows])
        for row, result in zip(rows, results):
            augmented[row] = result
    return augmented


@contextlib.contextmanager
def _global_generators_restored() -> Iterator[None]:
    """Leave Python's, numpy's and torch's global generators as the caller had them."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    torch = sys.modules.get("torch")
    forked = torch.random.fork_rng(devices=[]) if torch is not None else contextlib.nullcontext()
    try:
        with forked:
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


# ---------------------------------------------------------------- building (once per process)

@functools.lru_cache(maxsize=None)
def build_augmenter(spec: AugmenterSpec, device: str) -> Any:
    """The nlpaug augmenter for ``spec``, built once per process (so its model loads once)."""
    require_module("nlpaug", NLPAUG_HINT, f"augmenter {spec.kind!r}")
    builders: dict[str, Callable[[AugmenterSpec, str], Any]] = {
        "synonym": _synonym, "random_swap": _random_word, "random_delete": _random_word,
        "contextual": _contextual, "back_translation": _back_translation,
    }
    return builders[spec.kind](spec, device)


def _synonym(spec: AugmenterSpec, device: str) -> Any:
    require_module("textblob", "pip install textblob (or pip install 'fewlabels-harness[aug]')",
                   "synonym augmentation (part-of-speech tags)")
    from nlpaug.augmenter.word import SynonymAug

    augmenter = SynonymAug(aug_src="wordnet", aug_p=spec.aug_p, aug_min=spec.aug_min, aug_max=spec.aug_max)
    augmenter.model.pos_tag = penn_pos_tags  # instead of nltk.pos_tag, whose model needs a download
    return augmenter


def _random_word(spec: AugmenterSpec, device: str) -> Any:
    from nlpaug.augmenter.word import RandomWordAug

    action = spec.kind.removeprefix("random_")
    return RandomWordAug(action=action, aug_p=spec.aug_p, aug_min=spec.aug_min, aug_max=spec.aug_max)


def _contextual(spec: AugmenterSpec, device: str) -> Any:
    from harness.toolkit import resolve_model

    require_module("transformers", "pip install transformers torch (or pip install 'fewlabels-harness[transformers]')",
                   "contextual augmentation")
    path = resolve_model(spec.model, parameter="contextual_model")
    from transformers import AutoConfig

    model_type = AutoConfig.from_pretrained(path).model_type
    family = CONTEXTUAL_FAMILIES.get(model_type)
    if family is None:
        raise MissingResourceError(
            f"contextual_model {spec.model!r} is a {model_type!r} model; nlpaug's contextual augmenter handles "
            f"masked-LMs of type {', '.join(sorted(CONTEXTUAL_FAMILIES))}"
        )
    from harness_nb_aug.contextual import SeededContextualWordEmbsAug

    return SeededContextualWordEmbsAug(
        model_path=path, model_type=family, action="substitute", top_k=spec.top_k, aug_p=spec.aug_p,
        aug_min=spec.aug_min, aug_max=spec.aug_max, device=resolve_device(device),
        use_custom_api=False,  # nlpaug's own BERT wrapper breaks with transformers 5
    )


def _back_translation(spec: AugmenterSpec, device: str) -> Any:
    from harness.toolkit import resolve_model

    require_module("transformers", "pip install transformers torch sentencepiece", "back-translation")
    forward = resolve_model(spec.translate_model, parameter="translate_model")
    back = resolve_model(spec.translate_back_model, parameter="translate_back_model")
    from nlpaug.augmenter.word import BackTranslationAug

    return BackTranslationAug(from_model_name=forward, to_model_name=back, device=resolve_device(device),
                              max_length=spec.max_length)
