"""The built-in query strategies beside the core's ``random``: uncertainty (two ways of combining
the tags of a multi-label issue), diversity on the cached sentence embeddings, and a hybrid of
the two. numpy only at import; scikit-learn and the encoder load when a strategy selects."""

from __future__ import annotations

from harness import hookimpl
from harness_strategies.diversity import Diversity, Hybrid
from harness_strategies.uncertainty import Uncertainty, UncertaintyMean

__all__ = ["Diversity", "Hybrid", "Uncertainty", "UncertaintyMean"]


@hookimpl
def register_strategies(register) -> None:
    register(Uncertainty)
    register(UncertaintyMean)
    register(Diversity)
    register(Hybrid)
