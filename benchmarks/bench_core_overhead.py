"""Harness overhead: nb over all slices and 5 seeds, through the harness vs a bare scikit-learn loop.

Both do the same fits on the same slices of the mirror; the harness also prepares the dataset,
plans cells, writes one JSON record per cell and computes per-tag metrics. Target: <= 1.5x.

    python benchmarks/bench_core_overhead.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import f1_score
from sklearn.naive_bayes import MultinomialNB
from skmultilearn.problem_transform import BinaryRelevance

from harness.plugins import make_plugin_manager
from harness.datasets import Settings, load_dataset, train_slices
from harness.driver import run_plan
from harness.plan import plan_run

SEEDS = [0, 1, 2, 3, 4]
DATASET = "github-issues-datasets"


def bare_loop(settings: Settings) -> tuple[float, list[float]]:
    """The same fits, by hand, on slices computed beforehand (not timed)."""
    readers = make_plugin_manager(autoload=False, builtins=False).registry.readers
    dataset = load_dataset(DATASET, settings, readers)
    sizes = tuple(dataset.config.slices)
    work = [(dataset.labeled("train", s.positions)) for seed in SEEDS for s in train_slices(DATASET, settings, readers, sizes, seed).values()]
    test = dataset.labeled("test")
    start = time.perf_counter()
    scores = []
    for train in work:
        vectorizer = CountVectorizer()
        classifier = BinaryRelevance(classifier=MultinomialNB())
        classifier.fit(vectorizer.fit_transform(train.texts), train.labels)
        predicted = classifier.predict(vectorizer.transform(test.texts))
        scores.append(f1_score(test.labels, predicted, average="micro", zero_division=0))
    return time.perf_counter() - start, scores


def through_harness(settings: Settings) -> tuple[float, float, list[float]]:
    pm = make_plugin_manager(autoload=False)
    start = time.perf_counter()
    plan = plan_run(pm, settings, "nb", [DATASET], SEEDS)  # prepares the dataset and slices
    planned = time.perf_counter()
    run_plan(pm, plan)
    end = time.perf_counter()
    from harness.records import iter_records

    records = sorted(iter_records(Path(settings.results_dir)), key=lambda r: (r.seed, r.slice.actual_n))
    return end - start, end - planned, [r.metrics.micro_f1 for r in records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(results_dir=f"{tmp}/results", cache_dir=f"{tmp}/cache", data_dirs=(args.data_dir,))
        harness_total, harness_cells, harness_scores = through_harness(settings)
        load_dataset.cache_clear()
        train_slices.cache_clear()
        bare, bare_scores = bare_loop(settings)
    cells = len(bare_scores)
    print(f"nb, {DATASET}, {cells} cells (6 slices x {len(SEEDS)} seeds)")
    print(f"bare scikit-learn loop        : {bare:6.2f} s")
    print(f"harness, cells only           : {harness_cells:6.2f} s  ({harness_cells / bare:.2f}x)")
    print(f"harness, with data prep+plan  : {harness_total:6.2f} s  ({harness_total / bare:.2f}x)")
    same = sorted(round(s, 10) for s in bare_scores) == sorted(round(s, 10) for s in harness_scores)
    print(f"identical micro F1 in both    : {same}")


if __name__ == "__main__":
    main()
