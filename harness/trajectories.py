"""A query strategy's trajectory: from the seed's first stratified slice, the ordered picks of
each step, with the seconds each step's query and its selector's fit took.

The trajectory is a cached artifact of its own (one JSON file per (dataset, strategy, selector,
seed) under ``<cache>/trajectories``), grown one step at a time: each finished step is written
(atomically) before the next one starts, so a run killed mid-trajectory resumes from the last
finished step and recomputes none before it. A cell of size k trains on the trajectory's first
k issues (``Trajectory.positions``). Growing happens under the artifact's lock, so two cells (or
two runs) never compute the same step.

A step fits the selector on the issues labeled so far, scores the pool (the training split
outside them; their labels are never read) when the strategy needs scores, and asks the strategy
for the next batch. A cell whose method is its trajectory's selector hands its fitted method to
``grow_with_fitted``, so that the step from its size needs no second fit.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.datasets import Settings, load_dataset, train_slices
from harness.locks import artifact_lock
from harness.methods import FitContext, Method, has_own_predict, validate_prediction, validate_scores
from harness.plan import TrajectorySpec
from harness.plugins import HarnessPluginManager
from harness.records import safe_name
from harness.rules import choose_rules
from harness.seeding import seed_everything
from harness.store import write_json_atomic
from harness.strategies import QueryContext, check_selection


@dataclass
class Step:
    size: int  # the labeled-set size this step reaches
    picks: list[int]  # positions in the train split, in the order they were picked
    pick_scores: list[float]  # the score behind each pick (the strategy's)
    query_s: float  # scoring the pool and selecting
    fit_s: float  # fitting the selector on the issues labeled before the step (0 when a cell's fit was reused)
    reused_fit: bool = False


@dataclass
class Trajectory:
    key: dict[str, Any]
    start: list[int]  # the first slice: positions in the train split
    steps: list[Step] = field(default_factory=list)

    @property
    def reached(self) -> int:
        return self.steps[-1].size if self.steps else len(self.start)

    def positions(self, size: int) -> np.ndarray:
        """The first ``size`` issues labeled on this trajectory (the start, then the picks in order)."""
        taken = list(self.start)
        for step in self.steps:
            if len(taken) >= size:
                break
            taken += step.picks
        if len(taken) != size:
            raise ValueError(f"the trajectory has no prefix of {size} issues (it has reached {self.reached})")
        return np.asarray(taken, dtype=np.int64)

    def costs(self, size: int) -> dict[str, float]:
        """Seconds spent on the queries and the selector's fits that built the prefix of ``size``."""
        steps = [step for step in self.steps if step.size <= size]
        return {"query_s": sum(s.query_s for s in steps), "selector_fit_s": sum(s.fit_s for s in steps)}


def trajectory_path(spec: TrajectorySpec, cache_dir: Path) -> Path:
    return (Path(cache_dir) / "trajectories" / safe_name(spec.dataset)
            / f"{safe_name(spec.strategy)}_{spec.key_hash[:16]}_seed-{spec.seed}.json")


def read_trajectory(spec: TrajectorySpec, cache_dir: Path) -> Trajectory | None:
    """The stored trajectory of ``spec``; None when there is none or it was built under another key."""
    try:
        raw = json.loads(trajectory_path(spec, cache_dir).read_text(encoding="utf-8"))
        if raw.get("key") != spec.key:
            return None
        return Trajectory(raw["key"], [int(p) for p in raw["start"]], [Step(**step) for step in raw["steps"]])
    except (FileNotFoundError, ValueError, KeyError, TypeError):  # missing or unreadable: grown afresh
        return None


def _write(trajectory: Trajectory, path: Path) -> None:
    write_json_atomic(path, {"key": trajectory.key, "start": trajectory.start,
                             "steps": [asdict(step) for step in trajectory.steps]})


def grow_trajectory(spec: TrajectorySpec, size: int, settings: Settings, pm: HarnessPluginManager, device: str = "auto",
                    progress: Callable[[str], None] = lambda message: None) -> Trajectory:
    """The trajectory of ``spec``, grown (and stored step by step) until it has a prefix of ``size``."""
    return _grow(spec, size, settings, pm, device, progress, None)


def grow_with_fitted(spec: TrajectorySpec, size: int, method: Method, settings: Settings, pm: HarnessPluginManager,
                     device: str = "auto", progress: Callable[[str], None] = lambda message: None) -> None:
    """Take the step from ``size`` with ``method``, the selector already fitted on the trajectory's
    first ``size`` issues, when that step is the next one missing; otherwise do nothing."""
    if size not in spec.sizes or size == spec.sizes[-1]:
        return
    following = spec.sizes[spec.sizes.index(size) + 1]
    _grow(spec, following, settings, pm, device, progress, (size, method))


def _grow(spec: TrajectorySpec, size: int, settings: Settings, pm: HarnessPluginManager, device: str,
          progress: Callable[[str], None], fitted: tuple[int, Method] | None) -> Trajectory:
    if size not in spec.sizes:
        raise ValueError(f"trajectory sizes {list(spec.sizes)} do not include {size}")
    path = trajectory_path(spec, Path(settings.cache_dir))
    found = read_trajectory(spec, Path(settings.cache_dir))
    if found is not None and found.reached >= size:
        return found
    path.parent.mkdir(parents=True, exist_ok=True)
    with artifact_lock(path):
        trajectory = read_trajectory(spec, Path(settings.cache_dir))  # another process may have grown it meanwhile
        if trajectory is None:
            start = train_slices(spec.dataset, settings, pm.registry.readers, spec.slice_sizes, spec.seed)[spec.start]
            trajectory = Trajectory(spec.key, [int(p) for p in start.positions])
        while trajectory.reached < size:
            reuse = fitted[1] if fitted is not None and fitted[0] == trajectory.reached else None
            trajectory.steps.append(_step(spec, trajectory, settings, pm, device, progress, reuse))
            _write(trajectory, path)  # a finished step survives a kill of the next one
        return trajectory


def _step(spec: TrajectorySpec, trajectory: Trajectory, settings: Settings, pm: HarnessPluginManager, device: str,
          progress: Callable[[str], None], fitted: Method | None) -> Step:
    """The next step of ``trajectory``: fit the selector (unless ``fitted``), score the pool, select."""
    registry = pm.registry
    strategy_class = registry.strategies[spec.strategy]
    dataset = load_dataset(spec.dataset, settings, registry.readers)
    labeled = trajectory.positions(trajectory.reached)
    following = spec.sizes[spec.sizes.index(trajectory.reached) + 1]
    n_train = len(dataset.split_rows["train"])
    pool = np.setdiff1d(np.arange(n_train), labeled)  # ascending: a pool position means the same issue every time
    task = dataset.config.task
    train_texts = dataset.labeled("train").texts
    pool_texts = [train_texts[p] for p in pool]
    fit_s = 0.0
    context = QueryContext(pool_size=len(pool), task=task, seed=spec.seed,
                           rng=np.random.default_rng([spec.seed, following]), cache_dir=Path(settings.cache_dir),
                           device=device, progress=progress)
    progress(f"{spec.strategy}: choosing issues {trajectory.reached + 1}-{following} from a pool of {len(pool)}")
    tick = time.perf_counter()
    if strategy_class.needs_scores:
        method = fitted
        if method is None:
            method, fit_s = _fit_selector(spec, labeled, dataset, settings, pm, device, progress)
            tick = time.perf_counter()
        name = str(spec.selector)
        context.scores = validate_scores(name, method.predict_scores(pool_texts), len(pool), len(dataset.tags))
        context.thresholds = own_thresholds(method, name, context.scores, pool_texts, dataset.labeled("valid"), task)
    if strategy_class.needs_texts:
        context.pool_texts, context.labeled_texts = pool_texts, [train_texts[p] for p in labeled]
    n = following - trajectory.reached
    selection = strategy_class().select(n, context)
    picked = check_selection(spec.strategy, selection, n, len(pool))
    query_s = time.perf_counter() - tick
    return Step(following, [int(p) for p in pool[picked]], [float(s) for s in np.asarray(selection.scores)], query_s,
                fit_s, reused_fit=strategy_class.needs_scores and fitted is not None)


def _fit_selector(spec: TrajectorySpec, labeled: np.ndarray, dataset: Any, settings: Settings,
                  pm: HarnessPluginManager, device: str, progress: Callable[[str], None]) -> tuple[Method, float]:
    """The selector fitted on the labeled issues as a cell would fit it (same seed, same pool)."""
    assert spec.selector is not None  # a strategy that needs scores has a selector (harness.plan)
    method_class = pm.registry.methods[spec.selector]
    method = method_class(method_class.Params.model_validate(spec.selector_params))
    context = FitContext(
        seed=spec.seed, tags=list(dataset.tags), dataset=spec.dataset, fingerprint=dataset.fingerprint,
        cache_dir=Path(settings.cache_dir), slice_name=str(len(labeled)), progress=progress,
        tag_descriptions=dict(dataset.config.labels.descriptions), task=dataset.config.task, device=device,
    )
    seed_everything(spec.seed)
    tick = time.perf_counter()
    method.fit(dataset.labeled("train", labeled), dataset.labeled("valid"),
               dataset.unlabeled_pool(dataset.config.unlabeled, labeled), context)
    return method, time.perf_counter() - tick


def own_thresholds(method: Method, name: str, scores: np.ndarray, texts: list[str], valid: Any, task: str) -> np.ndarray:
    """Each tag's threshold of the method's own decision on the scale of its scores: the threshold
    it reports (``details()["threshold"]``), else the midpoint between the highest score it
    predicts 0 and the lowest it predicts 1 on ``texts``; a tag it decides one way for every text,
    and a method with scores only, take the per-tag threshold chosen on valid (``per_tag`` rule)."""
    n_tags = scores.shape[1]
    if task == "multiclass":  # margin sampling compares the top two scores; no threshold
        return np.zeros(n_tags)
    reported = method.details().get("threshold")
    if isinstance(reported, (int, float)):
        return np.full(n_tags, float(reported))
    thresholds = np.full(n_tags, np.nan)
    if has_own_predict(method):
        predicted = validate_prediction(name, method.predict(texts), len(texts), n_tags).astype(bool)
        for j in range(n_tags):
            on, off = scores[predicted[:, j], j], scores[~predicted[:, j], j]
            if len(on) and len(off):
                thresholds[j] = (off.max() + on.min()) / 2
    if np.isnan(thresholds).any():
        valid_scores = validate_scores(name, method.predict_scores(valid.texts), len(valid), n_tags)
        chosen = np.asarray(choose_rules(valid_scores, valid.labels, list(valid.tags)).per_tag)
        thresholds = np.where(np.isnan(thresholds), chosen, thresholds)
    return thresholds
