"""The (k, m) vote grid of the kNN lookup, from ONE neighbour search of the largest k.

A tag is predicted for a query when at least m of its k nearest training issues carry it.
Votes for every k come from a cumulative sum over the neighbour axis, and the F1 of every
threshold m from histograms of those votes, so the whole grid costs one search plus a few
numpy passes instead of one search and one scoring per (k, m) pair.

F1 is the harness's (scikit-learn's, zero_division=0), computed from counts with
``harness.metrics.f1_from_counts``: micro over the summed counts, macro as the plain mean over
all tags, including tags absent from the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from harness.toolkit import f1_from_counts

Average = Literal["micro", "macro"]


def cumulative_votes(neighbour_labels: np.ndarray) -> np.ndarray:
    """(n, K, L) tags of the K nearest neighbours, nearest first -> (n, K, L) votes where
    ``[:, k - 1, :]`` counts the tag among the k nearest."""
    return np.cumsum(neighbour_labels, axis=1, dtype=np.int32)


def vote_predictions(votes: np.ndarray, m: int) -> np.ndarray:
    """(n, L) votes among the k nearest -> 0/1 predictions of 'at least m votes'."""
    return (votes >= m).astype(np.uint8)


@dataclass(frozen=True)
class GridScores:
    """F1 of every (k, m) pair; index ``[k - 1, m - 1]``, NaN where m > k."""

    micro: np.ndarray  # (K, K)
    macro: np.ndarray  # (K, K)

    def best(self, average: Average = "micro") -> tuple[int, int]:
        """The (k, m) with the highest F1; ties go to the smallest k, then the smallest m
        (the first maximum in row-major order, as the book's ``argmax`` picks)."""
        table = self.micro if average == "micro" else self.macro
        flat = np.where(np.isnan(table), -np.inf, table).argmax()
        k_index, m_index = np.unravel_index(flat, table.shape)
        return int(k_index) + 1, int(m_index) + 1


def grid_scores(votes: np.ndarray, y_true: np.ndarray) -> GridScores:
    """Micro and macro F1 of every (k, m), k, m in 1..K, from cumulative votes (n, K, L)."""
    n, k_max, n_tags = votes.shape
    if y_true.shape != (n, n_tags):
        raise ValueError(f"y_true has shape {y_true.shape}, expected ({n}, {n_tags}) to match the votes")
    positive = np.broadcast_to(y_true.astype(bool)[:, None, :], votes.shape)
    # one histogram bin per (k, tag, vote count), split by whether the tag is really there
    bins = (np.arange(k_max)[None, :, None] * n_tags + np.arange(n_tags)[None, None, :]) * (k_max + 1) + votes
    size = k_max * n_tags * (k_max + 1)
    pos_hist = np.bincount(bins[positive], minlength=size).reshape(k_max, n_tags, k_max + 1)
    neg_hist = np.bincount(bins[~positive], minlength=size).reshape(k_max, n_tags, k_max + 1)
    # rows with at least m votes: reversed cumulative sum over the vote count; keep m = 1..K
    true_pos = np.cumsum(pos_hist[..., ::-1], axis=-1)[..., ::-1][..., 1:]  # (K, L, K)
    false_pos = np.cumsum(neg_hist[..., ::-1], axis=-1)[..., ::-1][..., 1:]
    n_true = y_true.sum(axis=0).astype(np.int64)  # (L,)
    n_pred = true_pos + false_pos
    per_tag = f1_from_counts(true_pos, n_true[None, :, None], n_pred)
    micro = f1_from_counts(true_pos.sum(axis=1), n_true.sum(), n_pred.sum(axis=1))
    macro = per_tag.mean(axis=1)
    invalid = np.arange(k_max)[None, :] > np.arange(k_max)[:, None]  # m > k
    micro[invalid] = np.nan
    macro[invalid] = np.nan
    return GridScores(micro=micro, macro=macro)
