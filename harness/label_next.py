"""``harness label-next``: which of your unlabeled issues to label next.

The method is fitted as the ``all`` cell fits it: on every issue of the train split, with the
valid split for its rules. The strategy then picks among the dataset's issues without labels
(the ``unlabeled`` rows), and the picks are written to a CSV file with what the user needs to
label them: the row's id, the text fields and the scores behind the pick.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from harness.datasets import Settings, load_dataset
from harness.errors import HarnessError, unknown_name_message
from harness.methods import FitContext, has_own_predict, has_scores, validate_prediction, validate_scores
from harness.params import DEFAULT_PRESET, build_params, parse_overrides
from harness.plugins import HarnessPluginManager
from harness.seeding import seed_everything
from harness.strategies import QueryContext, check_selection
from harness.trajectories import own_thresholds


@dataclass(frozen=True)
class NextBatch:
    path: Path
    picked: int
    pool: int
    labeled: int


def label_next(pm: HarnessPluginManager, settings: Settings, dataset_name: str, method_name: str, strategy_name: str,
               n: int, out: Path, seed: int = 0, preset: str = DEFAULT_PRESET, overrides: list[str] | None = None,
               device: str = "auto", progress: Callable[[str], None] = lambda message: None) -> NextBatch:
    """Fit ``method_name`` on the labeled issues of ``dataset_name``, pick ``n`` of its unlabeled
    issues with ``strategy_name`` and write them to ``out`` (CSV), most useful first."""
    registry = pm.registry
    if method_name not in registry.methods:
        raise HarnessError("--method: " + unknown_name_message("method", method_name, sorted(registry.methods)))
    if strategy_name not in registry.strategies:
        raise HarnessError("--strategy: " + unknown_name_message("strategy", strategy_name, sorted(registry.strategies)))
    if n < 1:
        raise HarnessError(f"--n {n}: expected a positive number of issues")
    method_class, strategy_class = registry.methods[method_name], registry.strategies[strategy_name]
    if strategy_class.needs_scores and not has_scores(method_class):
        raise HarnessError(f"strategy {strategy_name!r} picks by scores, but method {method_name!r} has no predict_scores; "
                           "choose a method with scores (e.g. nb or knn_embed) or a strategy that needs none")
    params = build_params(method_class, preset, parse_overrides(overrides or [], sorted(registry.methods)).get(method_name, {}))
    dataset = load_dataset(dataset_name, settings, registry.readers)
    pool_rows = dataset.split_rows["unlabeled"]
    if len(pool_rows) == 0:
        raise HarnessError(f"dataset {dataset_name!r} has no issues without labels to choose from")
    if n > len(pool_rows):
        raise HarnessError(f"--n {n}: dataset {dataset_name!r} has only {len(pool_rows)} issues without labels")
    pool_texts = [dataset.texts[i] for i in pool_rows]
    train, valid = dataset.labeled("train"), dataset.labeled("valid")
    task = dataset.config.task
    context = QueryContext(pool_size=len(pool_rows), task=task, seed=seed, rng=np.random.default_rng(seed),
                           cache_dir=Path(settings.cache_dir), device=device, progress=progress)
    method = method_class(params)
    fit_context = FitContext(seed=seed, tags=list(dataset.tags), dataset=dataset_name, fingerprint=dataset.fingerprint,
                             cache_dir=Path(settings.cache_dir), slice_name="all", progress=progress,
                             tag_descriptions=dict(dataset.config.labels.descriptions), task=task, device=device)
    seed_everything(seed)
    progress(f"fitting {method_name} on {len(train)} labeled issues")
    method.fit(train, valid, pool_texts, fit_context)
    scores = predicted = None  # written beside each pick, whatever the strategy reads
    if has_scores(method):
        scores = validate_scores(method_name, method.predict_scores(pool_texts), len(pool_texts), len(dataset.tags))
    if has_own_predict(method):
        predicted = validate_prediction(method_name, method.predict(pool_texts), len(pool_texts), len(dataset.tags))
    if strategy_class.needs_scores:
        assert scores is not None  # checked above
        context.scores = scores
        context.thresholds = own_thresholds(method, method_name, scores, pool_texts, valid, task)
    if strategy_class.needs_texts:
        context.pool_texts, context.labeled_texts = pool_texts, train.texts
    selection = strategy_class().select(n, context)
    picked = check_selection(strategy_name, selection, n, len(pool_rows))
    _write(out, dataset, pool_rows[picked], np.asarray(selection.scores), picked, scores, predicted)
    return NextBatch(out, n, len(pool_rows), len(train))


def _write(out: Path, dataset, rows: np.ndarray, pick_scores: np.ndarray, picked: np.ndarray,
           scores: np.ndarray | None, predicted: np.ndarray | None) -> None:
    """One line per pick: its rank, id, text fields, the strategy's score, the predicted tags and
    each tag's score."""
    header = ["rank", "id", *dataset.fields, "strategy_score", "predicted"]
    header += [f"score:{tag}" for tag in dataset.tags] if scores is not None else []
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for rank, (row, pool_position, pick_score) in enumerate(zip(rows, picked, pick_scores), start=1):
            # the data's own id where it has one, else the row's number in the file (1 = first data row)
            row_id = dataset.ids[row] if dataset.ids is not None else int(dataset.source_rows[row]) + 1
            tags = [] if predicted is None else [t for t, on in zip(dataset.tags, predicted[pool_position]) if on]
            line = [rank, row_id, *(_cell(values[row]) for values in dataset.fields.values()), f"{pick_score:.6g}",
                    ",".join(tags)]
            line += [f"{value:.6g}" for value in scores[pool_position]] if scores is not None else []
            writer.writerow(line)


def _cell(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
