"""Pytest fixtures for harness and plugin authors (loaded through the ``pytest11`` entry point)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.methods import FitContext, LabeledTexts
from harness.plugins import HarnessPluginManager, make_plugin_manager

TINY_TAGS = ["bug", "docs", "feature"]
_WORDS = {
    "bug": ["crash", "error", "traceback", "fails", "broken"],
    "docs": ["readme", "typo", "documentation", "example", "docstring"],
    "feature": ["support", "add", "option", "request", "new"],
}


def tiny_multilabel(n: int = 60, seed: int = 0) -> LabeledTexts:
    """A small multi-label set whose tags are learnable from their words."""
    rng = np.random.default_rng(seed)
    texts, labels = [], np.zeros((n, len(TINY_TAGS)), dtype=np.uint8)
    for i in range(n):
        chosen = [j for j in range(len(TINY_TAGS)) if rng.random() < 0.4] or [int(rng.integers(len(TINY_TAGS)))]
        words = ["the", "issue", "with", "dataset"]
        for j in chosen:
            labels[i, j] = 1
            words += list(rng.choice(_WORDS[TINY_TAGS[j]], size=3))
        rng.shuffle(words)
        texts.append(" ".join(words))
    return LabeledTexts(texts, labels, list(TINY_TAGS))


@pytest.fixture
def harness_pm() -> HarnessPluginManager:
    """A fresh plugin manager with the built-ins and no entry-point autoload."""
    return make_plugin_manager(autoload=False)


@pytest.fixture
def tiny_data() -> tuple[LabeledTexts, LabeledTexts, LabeledTexts]:
    """(train, valid, test) of the tiny multi-label set."""
    data = tiny_multilabel(90)
    parts = [slice(0, 50), slice(50, 70), slice(70, 90)]
    return tuple(LabeledTexts(data.texts[p], data.labels[p], data.tags) for p in parts)  # type: ignore[return-value]


@pytest.fixture
def fit_context(tmp_path) -> FitContext:
    return FitContext(seed=0, tags=list(TINY_TAGS), dataset="tiny", fingerprint="tiny", cache_dir=tmp_path / "cache")
