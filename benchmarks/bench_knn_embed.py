"""knn_embed speed: embedding throughput, and the (k, m) grid from one search versus the
book's way (a fresh faiss search and a scikit-learn scoring for every (k, m) pair).

Run:  HF_HUB_OFFLINE=1 python benchmarks/bench_knn_embed.py --data-dir /work/shared/data

Uses the real mirror, MiniLM (max_length 128) and the seed-0 slices. The train and valid
vectors come from the shared embedding cache under --cache-dir (computed on first use), so
the grid is timed on the same vectors the harness uses. Exits 1 when the grid is less than
--min-speedup times faster or when the two ways pick different (k, m).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from harness.config import load_config
from harness.data import prepare
from harness.embeddings import EmbeddingCache, EncoderSpec, encode
from harness.splits import nested_slices
from harness_knn_embed.grid import cumulative_votes, grid_scores
from harness_knn_embed.search import ExactIndex


def grid_selection(index: ExactIndex, train_labels, valid_vectors, valid_labels, k_max: int) -> dict[str, tuple[int, int]]:
    """The plugin's way: one search of the largest k, cumulative votes, histogram F1."""
    scores = grid_scores(cumulative_votes(train_labels[index.nearest(valid_vectors, k_max)]), valid_labels)
    return {"micro": scores.best("micro"), "macro": scores.best("macro")}


def per_pair_selection(index: ExactIndex, train_labels, valid_vectors, valid_labels, k_max: int) -> dict[str, tuple[int, int]]:
    """The book's find_best_k_m: for every (k, m) a new search and a scikit-learn scoring."""
    micro = np.full((k_max, k_max), -np.inf)
    macro = np.full((k_max, k_max), -np.inf)
    for k in range(1, k_max + 1):
        for m in range(1, k + 1):
            votes = train_labels[index.nearest(valid_vectors, k)].sum(axis=1)
            predicted = (votes >= m).astype(np.uint8)
            micro[k - 1, m - 1] = f1_score(valid_labels, predicted, average="micro", zero_division=0)
            macro[k - 1, m - 1] = f1_score(valid_labels, predicted, average="macro", zero_division=0)
    best = lambda table: tuple(int(i) + 1 for i in np.unravel_index(table.argmax(), table.shape))  # noqa: E731
    return {"micro": best(micro), "macro": best(macro)}


def best_time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        tick = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - tick)
    return min(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("HARNESS_DATA_DIR", "/work/shared/data")))
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "harness-bench-cache")
    parser.add_argument("--throughput-texts", type=int, default=256, help="texts encoded (uncached) for texts/s")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--k-max", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="timings are the best of this many runs")
    parser.add_argument("--min-speedup", type=float, default=20.0)
    args = parser.parse_args()

    import torch

    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    dataset = prepare(load_config("github-issues-datasets"), [args.data_dir], args.cache_dir)
    spec = EncoderSpec()  # MiniLM, sentence-transformers pooling, max_length 128: the default preset

    # --- embedding throughput (no cache; the model is loaded by a warm-up batch first)
    texts = dataset.labeled("test").texts[: args.throughput_texts]
    encode(texts[:8], spec, batch_size=args.batch_size)
    tick = time.perf_counter()
    encode(texts, spec, batch_size=args.batch_size)
    seconds = time.perf_counter() - tick
    print(f"embedding: {len(texts)} issues, MiniLM max_length {spec.max_length}, batch {args.batch_size}: "
          f"{seconds:.1f} s, {len(texts) / seconds:.1f} texts/s")

    # --- (k, m) grid on the real vectors of every seed-0 slice
    cache = EmbeddingCache(args.cache_dir, spec)
    train, valid = dataset.labeled("train"), dataset.labeled("valid")
    tick = time.perf_counter()
    train_vectors, valid_vectors = cache.embed(train.texts), cache.embed(valid.texts)
    print(f"train+valid vectors: {len(train) + len(valid)} texts, {cache.forward_passes} encoded now, "
          f"{time.perf_counter() - tick:.1f} s (cache {cache.folder})")
    print(f"\n{'slice':>6} {'n':>4} {'k_max':>5} {'grid ms':>9} {'per pair ms':>12} {'speedup':>8}  selection micro / macro (k, m)")
    total_grid = total_pairs = 0.0
    all_same = True
    for train_slice in nested_slices(train.labels, list(dataset.config.slices), seed=0):
        rows = train_slice.positions
        index = ExactIndex(train_vectors[rows], metric="l2")
        labels, k_max = train.labels[rows], min(args.k_max, len(rows))
        call = (index, labels, valid_vectors, valid.labels, k_max)
        grid_s, fast = best_time(lambda: grid_selection(*call), args.repeats)
        pairs_s, slow = best_time(lambda: per_pair_selection(*call), args.repeats)
        same = fast == slow
        all_same &= same
        total_grid += grid_s
        total_pairs += pairs_s
        print(f"{train_slice.name:>6} {len(rows):>4} {k_max:>5} {grid_s * 1e3:>9.2f} {pairs_s * 1e3:>12.1f} "
              f"{pairs_s / grid_s:>7.0f}x  {fast['micro']} / {fast['macro']}"
              + ("" if same else f"  DIFFERENT per pair: {slow['micro']} / {slow['macro']}"))
    speedup = total_pairs / total_grid
    print(f"\nall slices: grid {total_grid * 1e3:.1f} ms, per pair {total_pairs * 1e3:.0f} ms, speedup {speedup:.0f}x "
          f"(target >= {args.min_speedup:.0f}x); selections {'identical' if all_same else 'DIFFER'}")
    return 0 if all_same and speedup >= args.min_speedup else 1


if __name__ == "__main__":
    sys.exit(main())
