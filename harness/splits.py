"""Iterative stratification exactly as the book uses it, and the nested training slices.

scikit-multilearn's ``iterative_train_test_split`` takes no random_state: it draws from
NumPy's global generator. The book seeds that generator with ``np.random.seed``; we do the
same inside ``numpy_global_seed`` and restore the previous state afterwards, so callers'
randomness is untouched.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from skmultilearn.model_selection import iterative_train_test_split

from harness.hashing import stable_hash


NO_SLICE = "none"  # the slice name of methods that use no training labels (zero-shot)


def slice_order(name: str) -> float:
    """Where a slice sorts: by its size, 'all' last, 'none' first."""
    if name == NO_SLICE:  # a label-free method with no sliced cells beside it
        return -1.0
    return float("inf") if name == "all" else float(name)


@contextmanager
def numpy_global_seed(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def iterative_split(labels: np.ndarray, test_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Split row positions 0..n-1 into (kept, taken) with ``test_size`` of them taken.

    Uses the global NumPy generator, so call it inside ``numpy_global_seed``. The order of the
    positions is the order scikit-multilearn returns (the book keeps that order).
    """
    positions = np.arange(len(labels))[:, None]  # skmultilearn wants a 2-D numpy array
    kept, _, taken, _ = iterative_train_test_split(positions, np.asarray(labels), test_size)
    return kept[:, 0], taken[:, 0]


@dataclass(frozen=True)
class TrainSlice:
    """A nested training slice: positions into the train split."""

    name: str  # the nominal size ("8") or "all"
    nominal: int | None  # None for "all"
    positions: np.ndarray

    @property
    def size(self) -> int:
        return int(len(self.positions))

    def index_hash(self) -> str:
        return stable_hash(sorted(int(p) for p in self.positions))


def nested_slices(train_labels: np.ndarray, sizes: list[int | str], seed: int) -> list[TrainSlice]:
    """Grow nested slices from the train split as the book does, seeded by ``seed``.

    Each step splits off (k - last_k) / len(pool) of the remaining pool. Sizes at or beyond the
    train split are clamped to "all" with a warning. Seed 0 reproduces the book's slices.
    """
    n_train = len(train_labels)
    wanted = sorted({int(s) for s in sizes if s != "all"})
    too_big = [k for k in wanted if k >= n_train]
    if too_big:
        warnings.warn(
            f"slice size(s) {too_big} are not smaller than the train split ({n_train} rows); using 'all' instead",
            stacklevel=2,
        )
    wanted = [k for k in wanted if k < n_train]
    slices: list[TrainSlice] = []
    # scikit-multilearn's stratifier is random only in tie breaks, so reseeding alone gives the
    # same slices for every seed. Seed 0 keeps the book's pool order (its exact slices); any
    # other seed shuffles the pool first, so seeds really draw different issues.
    pool = np.arange(n_train) if seed == 0 else np.random.default_rng(seed).permutation(n_train)
    pool_labels = np.asarray(train_labels)[pool]
    taken = np.empty(0, dtype=int)
    last_k = 0
    with numpy_global_seed(seed):
        for k in wanted:
            keep_pos, new_pos = iterative_split(pool_labels, (k - last_k) / len(pool_labels))
            taken = np.concatenate([taken, pool[new_pos]])
            pool, pool_labels = pool[keep_pos], pool_labels[keep_pos]
            last_k = k
            slices.append(TrainSlice(str(k), k, taken.copy()))
    if "all" in sizes or too_big:
        slices.append(TrainSlice("all", None, np.arange(n_train)))
    return slices
