"""Seeded contrastive pairs from a labeled slice, SetFit's way.

Every pass over the slice ("iteration") gives each text one positive partner (a text that shares
a tag with it) and one negative partner (a text that shares none), so positives and negatives
stay balanced whatever the tag frequencies. A text carrying no tag counts as carrying a tag of
its own, "none of these": two untagged issues are a positive pair, an untagged and a tagged issue
a negative one (SetFit's multi-label rule alone has no partner for them). Multiclass labels are
the one-hot case of the same rule: positive = same class.

The target of a pair is 1 or 0 (``binary``, SetFit's CosineSimilarityLoss labels), or the Jaccard
overlap of the two tag sets (``jaccard``): a pair sharing one of three tags is pulled less close
than a pair with identical tags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

PairTarget = Literal["binary", "jaccard"]


@dataclass(frozen=True)
class Pairs:
    """Row positions of the two texts of each pair and the cosine similarity to train towards."""

    first: np.ndarray  # (n_pairs,) int
    second: np.ndarray  # (n_pairs,) int
    target: np.ndarray  # (n_pairs,) float32 in [0, 1]

    def __len__(self) -> int:
        return len(self.first)


def with_none_tag(labels: np.ndarray) -> np.ndarray:
    """The 0/1 tag matrix plus a last column set on rows that carry no tag."""
    labels = np.asarray(labels, dtype=np.uint8)
    return np.hstack([labels, (labels.sum(axis=1) == 0).astype(np.uint8)[:, None]])


def pair_budget(n_texts: int, iterations: int, max_pairs: int | None) -> int:
    """SetFit's count, 2 pairs per text per iteration, capped by ``max_pairs``."""
    wanted = 2 * iterations * n_texts
    return wanted if max_pairs is None else min(wanted, max_pairs)


def contrastive_pairs(labels: np.ndarray, n_pairs: int, seed: int, target: PairTarget = "binary") -> Pairs:
    """``n_pairs`` pairs (fewer only when the slice has no pair of some kind at all), drawn with ``seed``.

    Texts are visited in a fresh random order on every iteration, so a budget smaller than a
    full iteration still spreads over the slice.
    """
    tags = with_none_tag(labels).astype(np.int32)
    shared = tags @ tags.T  # shared[i, j] = number of tags i and j have in common
    np.fill_diagonal(shared, -1)  # a text is never its own partner
    positives = [np.flatnonzero(row > 0) for row in shared]
    negatives = [np.flatnonzero(row == 0) for row in shared]
    rng = np.random.default_rng(seed)
    first: list[int] = []
    second: list[int] = []
    while len(first) < n_pairs:
        before = len(first)
        for i in rng.permutation(len(tags)):
            for partners in (positives[i], negatives[i]):
                if len(partners) and len(first) < n_pairs:
                    first.append(int(i))
                    second.append(int(rng.choice(partners)))
        if len(first) == before:  # a single text: no pair can be drawn
            break
    a, b = np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
    return Pairs(a, b, pair_targets(tags, a, b, target))


def pair_targets(tags: np.ndarray, first: np.ndarray, second: np.ndarray, target: PairTarget) -> np.ndarray:
    """Cosine targets for pairs over a tag matrix that already has the "none" column."""
    common = (tags[first] & tags[second]).sum(axis=1)
    if target == "binary":
        return (common > 0).astype(np.float32)
    union = (tags[first] | tags[second]).sum(axis=1)
    return (common / np.maximum(union, 1)).astype(np.float32)
