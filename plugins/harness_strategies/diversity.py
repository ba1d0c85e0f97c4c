"""Strategies on sentence embeddings of the texts (MiniLM, the shared embedding cache)."""

from __future__ import annotations

import numpy as np

from harness import QueryContext, Selection, Strategy
from harness_strategies.uncertainty import least_certain, margins


def embed(texts: list[str], context: QueryContext) -> np.ndarray:
    """Unit-length MiniLM vectors of ``texts``, read from (or added to) the shared cache."""
    from harness.toolkit import EmbeddingCache, EncoderSpec, unit_rows

    cache = EmbeddingCache(context.cache_dir, EncoderSpec())
    return unit_rows(cache.embed(texts, device=context.device, progress=context.progress)).astype(np.float64)


def greedy_coreset(pool: np.ndarray, labeled: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """k-center greedy: ``n`` times, the pool vector farthest from every labeled or picked one.
    Returns the picks and each one's distance when it was picked."""
    nearest = _distances(pool, labeled).min(axis=1) if len(labeled) else np.full(len(pool), np.inf)
    picks, gaps = [], []
    for _ in range(n):
        # with nothing labeled, every distance is inf: argmax takes the first, a fixed start
        pick = int(np.argmax(nearest))
        picks.append(pick)
        gaps.append(float(nearest[pick]))
        nearest = np.minimum(nearest, _distances(pool, pool[pick:pick + 1])[:, 0])
        nearest[pick] = -np.inf  # never picked twice
    return np.asarray(picks, dtype=np.int64), np.asarray(gaps)


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


class Diversity(Strategy):
    """Greedy core-set selection (Sener & Savarese 2018, "Active Learning for Convolutional Neural
    Networks: A Core-Set Approach", ICLR; the k-center greedy of its Algorithm 1) on the texts'
    MiniLM embeddings: each pick is the pool issue farthest from every issue labeled or picked so
    far. It uses no labels and no selector scores, so it also serves as a cold start; the score
    behind a pick is that distance."""

    name = "diversity"
    needs_texts = True

    def select(self, n: int, context: QueryContext) -> Selection:
        assert context.pool_texts is not None and context.labeled_texts is not None  # needs_texts
        vectors = embed(context.labeled_texts + context.pool_texts, context)
        labeled, pool = vectors[:len(context.labeled_texts)], vectors[len(context.labeled_texts):]
        picks, gaps = greedy_coreset(pool, labeled, n)
        return Selection(picks, gaps)


class Hybrid(Strategy):
    """Uncertainty within diversity clusters, after Zhdanov 2019 ("Diverse mini-batch Active
    Learning", arXiv:1901.05954): keep the ``prefilter`` x n least certain pool issues (``margins``,
    the minimum over tags), cluster their MiniLM embeddings into n groups with k-means, and take
    the least certain issue of each group, so that one batch does not spend its labels on n
    near-copies of one confusing issue. (Zhdanov takes the issue nearest each weighted centroid;
    the least certain member keeps the pick's score a margin.) The score is that margin."""

    name = "hybrid"
    needs_scores = True
    needs_texts = True
    prefilter = 10

    def select(self, n: int, context: QueryContext) -> Selection:
        from sklearn.cluster import KMeans

        assert context.scores is not None and context.thresholds is not None and context.pool_texts is not None
        values = margins(context.scores, context.thresholds, context.task)
        candidates = least_certain(values, min(context.pool_size, self.prefilter * n), context.rng)
        if len(candidates) <= n:
            return Selection(candidates[:n], values[candidates[:n]])
        vectors = embed([context.pool_texts[i] for i in candidates], context)
        groups = KMeans(n_clusters=n, n_init=3, random_state=int(context.rng.integers(2**31))).fit_predict(vectors)
        picks = []
        for group in range(n):
            members = candidates[groups == group]
            # candidates are ordered least certain first: a group's first member is its pick
            if len(members):
                picks.append(int(members[0]))
        # k-means may leave a group empty: fill up with the least certain candidates not yet taken
        taken = set(picks)
        rest = [int(c) for c in candidates if int(c) not in taken]
        chosen = np.asarray(sorted(picks, key=lambda p: values[p]) + rest[:n - len(picks)], dtype=np.int64)
        return Selection(chosen, values[chosen])
