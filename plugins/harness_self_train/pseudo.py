"""Choosing pseudo-labels among scored unlabeled texts (plain NumPy, no model).

A (text, tag) pair is a confident positive when its score reaches the tag's threshold, chosen
on the valid split by the core's ``per_tag`` rule (harness.rules). Each tag takes at most its
quota of texts, the most confident first; quotas keep the tag balance of the labeled slice. A
chosen text carries the whole row of decisions (every tag at its threshold), so that it is a
negative example for the tags it falls below. On a single-label (multiclass) dataset a text is
a candidate for its highest-scored tag only, and carries that one tag.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.toolkit import argmax_predictions


@dataclass(frozen=True)
class PseudoLabels:
    positions: np.ndarray  # ascending positions in the scored pool
    labels: np.ndarray  # (len(positions), tags) uint8

    def __len__(self) -> int:
        return len(self.positions)

    def per_tag(self, tags: list[str]) -> dict[str, int]:
        """Positive pseudo-labels of each tag."""
        counts = self.labels.sum(axis=0) if len(self) else np.zeros(len(tags), dtype=int)
        return {tag: int(count) for tag, count in zip(tags, counts)}


def tag_quotas(slice_labels: np.ndarray, per_tag: int) -> np.ndarray:
    """How many texts each tag may take: ``per_tag`` for the slice's most frequent tag, the others
    in proportion to their count in the slice (rounded up, so a tag seen once still gets one);
    0 for a tag the slice never shows, which nothing taught the model to recognise."""
    counts = np.asarray(slice_labels).sum(axis=0).astype(np.float64)
    if counts.size == 0 or counts.max() == 0:
        return np.zeros(counts.shape, dtype=np.int64)
    return np.ceil(per_tag * counts / counts.max()).astype(np.int64)


def select_pseudo_labels(scores: np.ndarray, thresholds: np.ndarray, quotas: np.ndarray,
                         multiclass: bool = False) -> PseudoLabels:
    """The confident texts of ``scores`` (pool texts x tags), at most ``quotas[j]`` per tag,
    highest score first (ties by position); with ``multiclass``, one tag per text."""
    decisions = scores >= np.asarray(thresholds)[None, :]
    if multiclass:  # only the text's highest-scored tag, where it clears that tag's threshold
        decisions &= argmax_predictions(scores).astype(bool)
    chosen: set[int] = set()
    for j, quota in enumerate(quotas):
        rows = np.flatnonzero(decisions[:, j])
        ranked = rows[np.argsort(-scores[rows, j], kind="stable")]
        chosen.update(ranked[: int(quota)].tolist())
    positions = np.asarray(sorted(chosen), dtype=np.int64)
    return PseudoLabels(positions, decisions[positions].astype(np.uint8))
