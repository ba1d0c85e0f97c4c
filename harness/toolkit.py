"""What plugins share, as a third party imports it: ``from harness.toolkit import cached_artifact``.

The method contract itself (``Method``, ``MethodParams``, ``FitContext``, ``LabeledTexts``,
``hookimpl``) comes from ``harness``; everything a method may use beside it is named here, and
these names are the toolkit's API: the modules they live in are internal and may change.

- the training engine (harness.training): tokenise once, a plain loop, predictions, precision;
- embeddings (harness.embeddings) and model resolution (harness.models), offline first;
- a logistic-regression head on fixed features (harness.linear_head);
- cached artifacts (harness.artifacts), atomic writes (harness.store), stable hashes (harness.hashing);
- a fitted method's parts saved without pickles, for ``save`` and ``load`` (harness.persistence);
- devices (harness.devices), threads per fit (harness.cores), seeding (harness.seeding);
- score checks (harness.methods), decision rules (harness.rules) and F1 (harness.metrics);
- for a method built on other registered methods: the plugin manager, their parameters and
  one-line errors (harness.plugins, harness.params, harness.errors).

Each name is imported from its module on first use (PEP 562), so a plugin's import costs what
the names it takes cost: the training engine brings torch, the others do not, and ``harness ls``
stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {  # name -> the internal module that defines it
    **dict.fromkeys(["build_folder", "cached_artifact"], "harness.artifacts"),
    **dict.fromkeys(["seed_everything"], "harness.seeding"),
    **dict.fromkeys(["fit_threads"], "harness.cores"),
    **dict.fromkeys(["resolve_device"], "harness.devices"),
    **dict.fromkeys(["EmbeddingCache", "EncoderParams", "EncoderSpec", "unit_rows"], "harness.embeddings"),
    **dict.fromkeys(["unknown_name_message"], "harness.errors"),
    **dict.fromkeys(["LogisticHead", "Task"], "harness.linear_head"),
    **dict.fromkeys(["stable_hash", "text_key"], "harness.hashing"),
    **dict.fromkeys(["PredictionError", "dependency_key", "has_own_predict", "has_save", "has_scores", "validate_scores"],
                    "harness.methods"),
    **dict.fromkeys(["f1", "f1_from_counts"], "harness.metrics"),
    **dict.fromkeys(["ModelResolutionError", "quiet_transformers", "resolve_causal_lm", "resolve_model"], "harness.models"),
    **dict.fromkeys(["DEFAULT_PRESET", "ParamError", "build_params"], "harness.params"),
    **dict.fromkeys(["SavedStateError", "load_arrays", "load_estimators", "load_json", "save_arrays", "save_estimators",
                     "save_json"], "harness.persistence"),
    **dict.fromkeys(["get_plugin_manager"], "harness.plugins"),
    **dict.fromkeys(["ChosenRules", "argmax_predictions", "best_grid_threshold", "best_threshold", "choose_own_threshold",
                     "choose_rules", "decide"], "harness.rules"),
    **dict.fromkeys(["write_json_atomic", "write_npy_atomic"], "harness.store"),
    **dict.fromkeys(["Batch", "Encoded", "OptimizerSettings", "Precision", "autocast", "choose_precision", "epoch_groups",
                     "freeze_word_embeddings", "fresh_model", "predict", "tokenize", "train"], "harness.training"),
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'harness.toolkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value  # found once; later look-ups do not come here
    return value


def __dir__() -> list[str]:
    return __all__
