"""``harness tag``: a model folder's fitted method applied to new issues, in batches.

The issues come from a file (read with the harness's readers, each text built with the
dataset's template) or from a split of a dataset. Each output row holds the issue's id, the
tags under the chosen rule and, for a method with scores, every tag's score. The rules are the
ones the benchmark cell chose on valid, stored in the model folder: no threshold is tuned here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from harness.config import SourceConfig
from harness.data import render_texts
from harness.datasets import Settings, load_dataset
from harness.errors import HarnessError
from harness.methods import has_own_predict, has_scores, validate_prediction, validate_scores
from harness.model_folder import LoadedModel
from harness.rules import OWN, ChosenRules, argmax_predictions
from harness.sources import Reader, read_rows
from harness.store import write_atomic

OUTPUT_FORMATS = (".csv", ".jsonl")
ID_FIELDS = ("id", "number")  # looked for in this order when no id field is named
DEFAULT_BATCH_SIZE = 256
SPLITS = ("unlabeled", "train", "valid", "test")


class TagError(HarnessError):
    """Input or output that ``harness tag`` cannot use."""


@dataclass
class Issues:
    texts: list[str]
    ids: list[Any]
    id_field: str  # the column the ids came from, or "row" (1-based position in the file)


def read_issues(path: Path, template: str, readers: Mapping[str, Reader], id_field: str | None = None) -> Issues:
    """The issues of a jsonl, csv or parquet file (compressed or not), their texts built with
    ``template``; TagError or DataError in one line for a missing or empty file, a field the
    template names and the rows lack, or an id field that is not there."""
    if not path.is_file():
        raise TagError(f"--file {path}: no such file")
    frame = read_rows(path, SourceConfig(file=str(path)), readers)
    if len(frame) == 0:
        raise TagError(f"--file {path}: no rows; expected at least one issue")
    texts = render_texts(frame, template, str(path))
    if id_field is not None and id_field not in frame.columns:
        raise TagError(f"--id-field {id_field!r}: not a field of {path} (fields: {', '.join(map(str, frame.columns))})")
    chosen = id_field or next((name for name in ID_FIELDS if name in frame.columns), None)
    if chosen is None:
        return Issues(texts, list(range(1, len(frame) + 1)), "row")
    return Issues(texts, frame[chosen].tolist(), chosen)


def dataset_issues(name: str, split: str, settings: Settings, readers: Mapping[str, Reader]) -> Issues:
    """The issues of one split of a dataset, identified by their ``id`` field where the data has
    one, else by their row (1-based) among the rows its files hold."""
    if split not in SPLITS:
        raise TagError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    dataset = load_dataset(name, settings, readers)
    rows = dataset.split_rows[split]
    if len(rows) == 0:
        raise TagError(f"--datasets {name} --split {split}: the split has no issues")
    texts = [dataset.texts[i] for i in rows]
    if dataset.ids is not None:  # the data's own id field
        return Issues(texts, [dataset.ids[i] for i in rows], "id")
    return Issues(texts, (dataset.source_rows[rows] + 1).tolist(), "source_row")


def check_output(out: Path, force: bool) -> str:
    """The output's format from its suffix; TagError when it is neither, or exists without ``force``."""
    if out.suffix not in OUTPUT_FORMATS:
        raise TagError(f"--out {out}: expected a file ending in {' or '.join(OUTPUT_FORMATS)}")
    if out.exists() and not force:
        raise TagError(f"--out {out}: the file exists; give --force to overwrite it")
    if out.is_dir():
        raise TagError(f"--out {out}: a folder, not a file")
    return out.suffix


def resolve_rule(model: LoadedModel, rule: str | None) -> str:
    """The rule to tag with: the cell's default when none (or ``own`` for a method without its own
    rule) is asked for, else one the cell was scored under."""
    carried = model.carried_rules
    if rule is None or (rule == OWN and OWN not in carried):
        return carried[0]
    if rule not in carried:
        raise TagError(f"--rule {rule}: the model carries {', '.join(carried)} (its default: {carried[0]})")
    return rule


@dataclass
class Tagged:
    predictions: np.ndarray  # (n, tags) 0/1
    scores: np.ndarray | None  # (n, tags), None for a method without scores
    rule: str
    seconds: float

    @property
    def issues_per_second(self) -> float:
        return len(self.predictions) / self.seconds if self.seconds > 0 else float("inf")


def tag_texts(model: LoadedModel, texts: list[str], rule: str, batch_size: int = DEFAULT_BATCH_SIZE,
              progress: Callable[[str], None] = lambda message: None) -> Tagged:
    """Tags (and scores) of ``texts`` under ``rule`` (``resolve_rule``), ``batch_size`` at a time."""
    method, name, tags = model.method, model.manifest["method"]["name"], model.tags
    scored, own = has_scores(method), rule == OWN and has_own_predict(method)
    chosen = ChosenRules.from_record(model.manifest["rules"], tags) if rule not in (OWN, "argmax") else None
    predictions, scores = [], []
    started = time.perf_counter()
    for start in range(0, len(texts), batch_size):
        batch = texts[start:start + batch_size]
        batch_scores = validate_scores(name, method.predict_scores(batch), len(batch), len(tags)) if scored else None
        if own:
            predictions.append(validate_prediction(name, method.predict(batch), len(batch), len(tags)))
        elif rule == "argmax":
            predictions.append(argmax_predictions(batch_scores))
        else:
            predictions.append(chosen.apply(rule, batch_scores))
        if batch_scores is not None:
            scores.append(batch_scores)
        done, seconds = start + len(batch), time.perf_counter() - started
        progress(f"tagged {done}/{len(texts)} issues ({done / seconds:.1f} issues/s)" if seconds > 0
                 else f"tagged {done}/{len(texts)} issues")
    return Tagged(np.concatenate(predictions), np.concatenate(scores) if scores else None, rule,
                  time.perf_counter() - started)


def write_tags(out: Path, issues: Issues, tags: list[str], tagged: Tagged, separator: str = ",") -> None:
    """One row per issue: its id, its tags (joined by ``separator`` in a CSV file, a list in
    JSON lines) and, where the method gives them, one score per tag."""
    named = [[tag for tag, on in zip(tags, row) if on] for row in tagged.predictions]
    if out.suffix == ".jsonl":
        lines = []
        for i, row_tags in enumerate(named):
            row: dict[str, Any] = {issues.id_field: _plain(issues.ids[i]), "tags": row_tags}
            if tagged.scores is not None:
                row["scores"] = dict(zip(tags, tagged.scores[i].tolist()))
            lines.append(json.dumps(row, ensure_ascii=False))
        data = ("\n".join(lines) + "\n").encode("utf-8")
    else:
        columns: dict[str, Any] = {issues.id_field: issues.ids, "tags": [separator.join(t) for t in named]}
        if tagged.scores is not None:
            columns.update({f"score:{tag}": tagged.scores[:, j] for j, tag in enumerate(tags)})
        data = pd.DataFrame(columns).to_csv(index=False).encode("utf-8")
    write_atomic(out, lambda handle: handle.write(data))


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON can write."""
    return value.item() if isinstance(value, np.generic) else value
