"""Uncertainty sampling on the selector's scores, measured against its own decision rule."""

from __future__ import annotations

import numpy as np

from harness import QueryContext, Selection, Strategy


def margins(scores: np.ndarray, thresholds: np.ndarray, task: str, combine: str = "min") -> np.ndarray:
    """How far each pool issue is from changing the selector's decision; smaller = less certain.

    Multiclass: the gap between the two highest class scores (margin sampling). Multi-label: each
    tag's distance to its own threshold, divided by the spread (standard deviation) of that tag's
    pool scores, so that tags scored on different scales (similarity scores, uncalibrated
    probabilities) weigh alike; then the ``min`` over tags (the issue's least certain tag) or the
    ``mean``. It is not the gap between the two highest tags, which says nothing about whether
    each tag of a multi-label issue is decided.
    """
    if task == "multiclass":
        if scores.shape[1] < 2:
            return np.zeros(len(scores))
        top_two = -np.sort(-scores, axis=1)[:, :2]
        return top_two[:, 0] - top_two[:, 1]
    spread = scores.std(axis=0)
    spread[spread == 0] = 1.0  # a tag scored alike everywhere: its raw distance
    distance = np.abs(scores - thresholds[None, :]) / spread[None, :]
    return distance.min(axis=1) if combine == "min" else distance.mean(axis=1)


def least_certain(values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """The positions of the ``n`` smallest values, ties broken at random (seeded)."""
    tie_break = rng.random(len(values))
    return np.lexsort((tie_break, values))[:n]


class Uncertainty(Strategy):
    """Uncertainty sampling (Lewis & Gale 1994, "A Sequential Algorithm for Training Text
    Classifiers", SIGIR): label the issues the selector is least sure of. For a multi-label task
    the issue's least certain tag decides, the minimum over tags of the distance to the selector's
    own threshold, as Brinker 2006 ("On Active Learning in Multi-label Classification") takes the
    smallest per-label margin; for a multiclass task, the top-two margin (Scheffer, Decomain &
    Wrobel 2001, "Active Hidden Markov Models for Information Extraction"). See ``margins``."""

    name = "uncertainty"
    needs_scores = True
    combine = "min"

    def select(self, n: int, context: QueryContext) -> Selection:
        assert context.scores is not None and context.thresholds is not None  # needs_scores
        values = margins(context.scores, context.thresholds, context.task, self.combine)
        picked = least_certain(values, n, context.rng)
        return Selection(picked, values[picked])


class UncertaintyMean(Uncertainty):
    """Uncertainty sampling as ``uncertainty``, the tags of a multi-label issue combined by their
    mean distance to the threshold rather than the minimum: the average aggregation that Esuli &
    Sebastiani 2009 ("Active Learning Strategies for Multi-Label Text Classification", ECIR)
    compare with the minimum and maximum. A multiclass task is scored as by ``uncertainty``."""

    name = "uncertainty_mean"
    combine = "mean"
