"""Exact nearest-neighbour search with faiss (imported on first use: it is an optional extra)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Literal

import numpy as np

from harness.toolkit import unit_rows

Metric = Literal["l2", "ip"]


@contextmanager
def single_threaded(faiss) -> Iterator[None]:
    """Search on one OpenMP thread, then restore the setting. The searches here are small
    (valid or test issues against a training slice), and faiss' OpenMP threads spin-wait when
    the cores are shared with other cells or processes: on 2 busy cores a 410 x 818 search took
    a median of 48 ms on two threads and 15 ms on one."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class ExactIndex:
    """A flat faiss index over the training vectors: exact L2, or inner product on unit rows
    (cosine similarity)."""

    def __init__(self, vectors: np.ndarray, metric: Metric = "l2") -> None:
        import faiss

        if metric not in ("l2", "ip"):
            raise ValueError(f"metric {metric!r}: expected 'l2' or 'ip'")
        self.metric = metric
        vectors = self._prepare(vectors)
        self.index = faiss.IndexFlatL2(vectors.shape[1]) if metric == "l2" else faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(vectors)

    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        return unit_rows(vectors) if self.metric == "ip" else vectors

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def nearest(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Row positions of the ``k`` nearest training vectors per query, nearest first: (n, k)."""
        if not 1 <= k <= len(self):
            raise ValueError(f"k={k}: expected 1..{len(self)} (the number of indexed vectors)")
        import faiss

        with single_threaded(faiss):
            _, positions = self.index.search(self._prepare(queries), k)
        return positions
