"""Is a method significantly worse than the best one? A paired bootstrap over test issues.

For one column of a wide table (a dataset, a slice, a decision rule), every method's stored
0/1 test predictions are rescored on the same resamples of test issues (drawn with
replacement), so the two methods of a comparison always see the same issues. The statistic is
the one the table shows: F1 averaged over the seeds both methods share. When every seed was
scored on the same test issues (the split depends on the dataset config, not on the slice
seed), one set of resamples serves all seeds; otherwise each seed is resampled on its own and
the per-seed differences are averaged. A method is significantly worse when at most ``alpha``
of the resampled mean differences (best minus it) are <= 0 (a one-sided percentile test).

F1 of every resample comes from counts (resample weights times per-issue counts), in one
matrix product per method and seed; ``harness.metrics.f1_from_counts`` gives it the same
definition as every other F1 in the harness.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from harness.hashing import stable_hash
from harness.metrics import f1_from_counts

METRICS = ("micro_f1", "macro_f1")
Verdict = Literal["best", "tied", "worse", "untested"]
PairVerdict = Literal["better", "worse", "tied", "untested"]
# method -> seed -> (test labels, 0/1 test prediction), both (n_issues, n_tags)
ColumnPredictions = Mapping[str, Mapping[int, tuple[np.ndarray, np.ndarray]]]


@dataclass(frozen=True)
class BootstrapSettings:
    resamples: int = 1000
    alpha: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if self.resamples < 1:
            raise ValueError(f"--bootstrap-resamples {self.resamples}: expected a positive number of resamples")
        if not 0 < self.alpha < 1:
            raise ValueError(f"--alpha {self.alpha}: expected a level between 0 and 1, e.g. 0.05")


@dataclass(frozen=True)
class Comparison:
    """A method against the column's best: the verdict and its one-sided p-value (None untested)."""

    verdict: Verdict
    p_value: float | None = None
    shared_seeds: int = 0


def resample_weights(n_issues: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n_issues): how often each issue is drawn in each resample of n_issues draws."""
    return rng.multinomial(n_issues, np.full(n_issues, 1.0 / n_issues), size=resamples).astype(np.float64)


def resampled_f1(labels: np.ndarray, prediction: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Micro and macro F1 of ``prediction`` on every resample (a row of ``weights``)."""
    truth, guess = labels.astype(np.float64), prediction.astype(np.float64)
    true_positives = weights @ (truth * guess)  # (resamples, n_tags)
    n_true, n_predicted = weights @ truth, weights @ guess
    return {
        "micro_f1": f1_from_counts(true_positives.sum(axis=1), n_true.sum(axis=1), n_predicted.sum(axis=1)),
        "macro_f1": f1_from_counts(true_positives, n_true, n_predicted).mean(axis=1),
    }


def _same_test_issues(column: ColumnPredictions) -> bool:
    """Whether every cell of the column was scored on the same test labels (same issues)."""
    first = None
    for per_seed in column.values():
        for labels, _ in per_seed.values():
            if first is None:
                first = labels
            elif labels.shape != first.shape or not np.array_equal(labels, first):
                return False
    return True


def column_resamples(column: ColumnPredictions, settings: BootstrapSettings, column_key: str) -> dict[str, dict[int, dict[str, np.ndarray]]]:
    """method -> seed -> metric -> F1 on each resample; the resamples depend only on the
    settings' seed, the column's key and the test set, never on the order of the columns."""
    seeds = sorted({seed for per_seed in column.values() for seed in per_seed})
    stream = int(stable_hash(column_key, length=15), 16)
    weights: dict[int, np.ndarray] = {}
    if _same_test_issues(column):
        n_issues = next(labels.shape[0] for per_seed in column.values() for labels, _ in per_seed.values())
        shared = resample_weights(n_issues, settings.resamples, np.random.default_rng([settings.seed, stream]))
        weights = {seed: shared for seed in seeds}
    else:
        for seed in seeds:
            n_issues = next(per_seed[seed][0].shape[0] for per_seed in column.values() if seed in per_seed)
            rng = np.random.default_rng([settings.seed, stream, seed])
            weights[seed] = resample_weights(n_issues, settings.resamples, rng)
    return {
        method: {seed: resampled_f1(labels, prediction, weights[seed]) for seed, (labels, prediction) in per_seed.items()}
        for method, per_seed in column.items()
    }


def compare_to_best(
    resampled: Mapping[str, Mapping[int, Mapping[str, np.ndarray]]], best: str, metric: str, alpha: float
) -> dict[str, Comparison]:
    """Each method of the column against ``best`` on ``metric``, over the seeds both share."""
    comparisons = {best: Comparison("best", None, len(resampled.get(best, {})))}
    for method, per_seed in resampled.items():
        if method == best:
            continue
        shared = sorted(set(per_seed) & set(resampled.get(best, {})))
        if not shared:
            comparisons[method] = Comparison("untested")
            continue
        difference = np.mean([resampled[best][seed][metric] - per_seed[seed][metric] for seed in shared], axis=0)
        p_value = float(np.mean(difference <= 0))
        comparisons[method] = Comparison("worse" if p_value <= alpha else "tied", p_value, len(shared))
    return comparisons


@dataclass(frozen=True)
class PairedGain:
    """A method against a baseline it is paired with (a query strategy against random): the
    verdict of the two one-sided tests and their p-values (None untested)."""

    verdict: PairVerdict
    p_better: float | None = None
    p_worse: float | None = None
    shared_seeds: int = 0


def compare_pair(
    resampled: Mapping[str, Mapping[int, Mapping[str, np.ndarray]]], method: str, baseline: str, metric: str, alpha: float
) -> PairedGain:
    """``method`` against ``baseline`` on ``metric`` over the seeds both share: significantly
    better when at most ``alpha`` of the resampled mean differences (method minus baseline) are
    <= 0, significantly worse when at most ``alpha`` are >= 0, else tied."""
    shared = sorted(set(resampled.get(method, {})) & set(resampled.get(baseline, {})))
    if not shared:
        return PairedGain("untested")
    difference = np.mean([resampled[method][seed][metric] - resampled[baseline][seed][metric] for seed in shared], axis=0)
    p_better, p_worse = float(np.mean(difference <= 0)), float(np.mean(difference >= 0))
    verdict: PairVerdict = "better" if p_better <= alpha else "worse" if p_worse <= alpha else "tied"
    return PairedGain(verdict, p_better, p_worse, len(shared))
