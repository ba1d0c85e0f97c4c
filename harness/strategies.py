"""The query-strategy contract: which unlabeled issues to label next.

A strategy is a small class with ``name``, ``version`` (bump it to invalidate the trajectories
and cells built with it) and ``select(n, context) -> Selection``: ``n`` positions into the pool
it is shown, best first, each with the score behind its pick. It says what it needs:
``needs_scores`` (the selector's scores on the pool, and the threshold of its own rule for each
tag) and ``needs_texts`` (the texts, e.g. to embed them); the core gives only what is asked for.

``random`` is the core's own strategy and the default: a run with it uses the nested stratified
slices of ``harness.splits`` exactly as before, so its cells keep their keys. Any other
strategy grows a trajectory from the same first slice (``harness.trajectories``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from harness.hookspecs import hookimpl

RANDOM = "random"


@dataclass
class QueryContext:
    """What a strategy sees at one step. The pool is the training split outside the labeled set,
    its labels hidden; ``labeled_*`` describe the issues labeled so far."""

    pool_size: int
    task: str  # "multilabel" or "multiclass"
    seed: int  # the trajectory's seed: a strategy draws from ``rng`` only, so a step is reproducible
    rng: np.random.Generator
    cache_dir: Path  # the shared cache (embeddings of the texts live there)
    device: str = "auto"
    # needs_scores: the selector's (pool_size, n_tags) scores, higher = more likely, and the per-tag
    # threshold of its own decision rule on the same scale
    scores: np.ndarray | None = None
    thresholds: np.ndarray | None = None
    # needs_texts
    pool_texts: list[str] | None = None
    labeled_texts: list[str] | None = None
    progress: Callable[[str], None] = lambda message: None


@dataclass(frozen=True)
class Selection:
    """The picks of one step: positions into the pool, in the order they were chosen, and the
    score behind each (its meaning is the strategy's: a margin, a distance...)."""

    positions: np.ndarray
    scores: np.ndarray


class StrategyError(ValueError):
    """A strategy returned something that is not a valid selection."""


class Strategy:
    """Base class of a query strategy; subclasses set ``name`` and define ``select``."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    needs_scores: ClassVar[bool] = False
    needs_texts: ClassVar[bool] = False

    def select(self, n: int, context: QueryContext) -> Selection:
        raise NotImplementedError


def check_selection(strategy: str, selection: Selection, n: int, pool_size: int) -> np.ndarray:
    """The picked positions as int64, or StrategyError when they are not ``n`` distinct pool positions."""
    positions = np.asarray(selection.positions)
    scores = np.asarray(selection.scores)
    if positions.shape != (n,) or positions.dtype.kind not in "iu":
        raise StrategyError(f"strategy {strategy!r} picked positions of shape {positions.shape} and dtype "
                            f"{positions.dtype}, expected {n} integers")
    if scores.shape != (n,):
        raise StrategyError(f"strategy {strategy!r} gave {scores.shape} scores for {n} picks")
    if len(np.unique(positions)) != n or positions.min(initial=0) < 0 or positions.max(initial=0) >= pool_size:
        raise StrategyError(f"strategy {strategy!r} picked positions that are repeated or outside the pool of {pool_size}")
    return positions.astype(np.int64)


class RandomStrategy(Strategy):
    """Today's slices: nested samples of the train split drawn by iterative stratification
    (Sechidis, Tsoumakas & Vlahavas 2011, "On the Stratification of Multi-label Data", as
    scikit-multilearn implements it; Szymański & Kajdanowicz 2017), the book's way. In a run the
    core draws them (``harness.splits.nested_slices``) and ``select`` is not called; ``harness
    label-next`` calls it for a uniform random sample of the pool, seeded."""

    name = RANDOM

    def select(self, n: int, context: QueryContext) -> Selection:
        positions = context.rng.choice(context.pool_size, size=n, replace=False)
        return Selection(positions, np.zeros(n))


@hookimpl
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(RandomStrategy)
