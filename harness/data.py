"""From raw rows to a prepared dataset: texts, tag matrix, and the fixed train/valid/test split."""

from __future__ import annotations

import hashlib
import math
import numbers
import string
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness.config import DatasetConfig, RowFilter
from harness.methods import LabeledTexts
from harness.sources import BUILTIN_READERS, DataError, Reader, locate, read_hub, read_rows
from harness.splits import iterative_split, numpy_global_seed

SPLITS = ("train", "valid", "test")


class DataWarning(UserWarning):
    """The data is usable but reads in a way the user may not expect."""


@dataclass
class PreparedDataset:
    """A dataset ready for cells. Row order of each split is the order the split produced."""

    name: str
    config: DatasetConfig
    tags: list[str]
    texts: list[str]
    labels: np.ndarray  # (n_rows, n_tags) uint8 over all rows
    split_rows: dict[str, np.ndarray]  # train/valid/test/unlabeled -> row positions
    fingerprint: str
    rows_read: int = 0  # before filters and duplicate removal
    dropped: dict[str, Any] = field(default_factory=dict)  # what build_frame dropped: see its docstring
    # per row: its position in the data as read (0-based, before filters), its ``id`` field where the
    # data has one, and the raw values of the text template's fields (``harness label-next`` writes them)
    source_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ids: list[Any] | None = None
    fields: dict[str, list[Any]] = field(default_factory=dict)

    def labeled(self, split: str, positions: np.ndarray | None = None) -> LabeledTexts:
        rows = self.split_rows[split] if positions is None else self.split_rows[split][positions]
        return LabeledTexts([self.texts[i] for i in rows], self.labels[rows], list(self.tags))

    @property
    def unlabeled_texts(self) -> list[str]:
        return [self.texts[i] for i in self.split_rows["unlabeled"]]

    def unlabeled_pool(self, sources: Sequence[str], slice_positions: np.ndarray | None) -> list[str]:
        """The texts of the unlabeled pool a fit receives, with no label: the rows without tags
        (``unlabeled_rows``) and/or the training issues outside the slice (``rest_of_train``;
        ``slice_positions`` are positions in the train split, None for no slice). Valid and test
        rows are in neither, so they never enter it."""
        rows: list[int] = []
        if "unlabeled_rows" in sources:
            rows += self.split_rows["unlabeled"].tolist()
        if "rest_of_train" in sources:
            outside = np.ones(len(self.split_rows["train"]), dtype=bool)
            if slice_positions is not None:
                outside[slice_positions] = False
            rows += self.split_rows["train"][outside].tolist()
        return [self.texts[i] for i in rows]

    def sizes(self) -> dict[str, int]:
        return {split: int(len(rows)) for split, rows in self.split_rows.items()}


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(isinstance(value, float) and math.isnan(value))
    except TypeError:
        return False


def _apply_filter(frame: pd.DataFrame, rule: RowFilter, name: str) -> pd.DataFrame:
    if rule.field not in frame.columns:
        raise DataError(f"{name}: filter field {rule.field!r} not found (fields: {', '.join(map(str, frame.columns))})")
    column = frame[rule.field]
    if rule.is_null is not None:
        mask = column.map(_is_null) == rule.is_null
    elif rule.equals is not None:
        mask = column == rule.equals
    else:
        mask = column != rule.not_equals
    return frame[mask.to_numpy(dtype=bool)]


def render_texts(frame: pd.DataFrame, template: str, name: str) -> list[str]:
    """Each row's text from the template; DataError naming the fields the rows lack."""
    fields = [field for _, field, _, _ in string.Formatter().parse(template) if field]
    missing = [field for field in fields if field not in frame.columns]
    if missing:
        raise DataError(
            f"{name}: text template {template!r} names field(s) {missing} that the rows lack "
            f"(fields: {', '.join(map(str, frame.columns))})"
        )
    columns = {field: frame[field].tolist() for field in set(fields)}
    texts = []
    for i in range(len(frame)):
        values = {f: ("" if _is_null(columns[f][i]) else str(columns[f][i])) for f in columns}
        texts.append(template.format_map(values))
    return texts


def _raw_label_names(value: Any, row_number: int, field: str, name: str, separator: str = ",") -> tuple[list[str], bool]:
    """The label names of one row, and whether any was an integer id."""
    if _is_null(value):
        return [], False
    if isinstance(value, str):  # a CSV cell: names joined by the separator, or a single name
        return [part.strip() for part in value.split(separator) if part.strip()], False
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise DataError(f"{name}: row {row_number}: field {field!r} should be a list of labels, got {type(value).__name__}")
    names, integers = [], False
    for item in value:
        if isinstance(item, dict):
            if "name" not in item:
                raise DataError(f"{name}: row {row_number}: label object in {field!r} has no 'name'")
            item = item["name"]
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, numbers.Integral) and not isinstance(item, (bool, np.bool_)):
            names.append(str(item))  # a class id; build_frame says so once
            integers = True
        else:
            raise DataError(
                f"{name}: row {row_number}: label {item!r} in {field!r} is a {type(item).__name__}; expected a "
                "label name: a string (or an integer id), or an object with a 'name'"
            )
    return names, integers


def build_frame(cfg: DatasetConfig, raw: pd.DataFrame, name: str) -> tuple[pd.DataFrame, list[str]]:
    """Apply filters, render texts, map labels, drop duplicate texts and tags rarer than
    ``labels.min_count``. Returns (frame, tags); ``frame.attrs["dropped"]`` counts the rows
    filtered out and the duplicates dropped, and names the rare tags dropped (for the profile)."""
    rows_read = len(raw)
    raw = raw.reset_index(drop=True)  # the index then holds each row's position in the data as read
    for rule in cfg.filters:
        raw = _apply_filter(raw, rule, name)
    filtered_out = rows_read - len(raw)
    field = cfg.labels.field
    if field not in raw.columns:
        raise DataError(f"{name}: label field {field!r} not found (fields: {', '.join(map(str, raw.columns))})")
    label_map = cfg.labels.map
    tag_lists = []
    numeric_row = None
    for number, value in enumerate(raw[field].tolist(), start=1):
        names, integers = _raw_label_names(value, number, field, name, cfg.labels.separator)
        if integers and numeric_row is None:
            numeric_row = number
        mapped = list(dict.fromkeys([label_map[n] for n in names if n in label_map] if label_map is not None else names))
        if cfg.task == "multiclass" and len(mapped) > 1:
            raise DataError(f"{name}: row {number}: {len(mapped)} tags {mapped}; task 'multiclass' takes one tag per row")
        tag_lists.append(mapped)
    if numeric_row is not None:
        warnings.warn(
            f"{name}: label field {field!r} holds integers (first in row {numeric_row}); they are used as tag "
            "names written in digits; map them to names with labels.map if they are ids", DataWarning, stacklevel=2,
        )
    frame = pd.DataFrame({"text": render_texts(raw, cfg.text, name), "tags": tag_lists,
                          "__row__": raw.index.to_numpy()})
    for template_field in dict.fromkeys(f for _, f, _, _ in string.Formatter().parse(cfg.text) if f):
        frame[f"__field__{template_field}"] = raw[template_field].to_numpy()
    if "id" in raw.columns:
        frame["__id__"] = raw["id"].to_numpy()
    if cfg.split.method == "column":
        column = cfg.split.column
        if column not in raw.columns:
            raise DataError(f"{name}: split column {column!r} not found (fields: {', '.join(map(str, raw.columns))})")
        split_of = {value: split for split, value in cfg.split.column_values.items()}
        frame["__split__"] = [split_of.get(str(mark), "unlabeled") for mark in raw[column].tolist()]
    elif cfg.split.method == "files":
        frame["__split__"] = raw["__split__"].to_numpy()
    before = len(frame)
    if cfg.drop_duplicate_texts:
        frame = frame.drop_duplicates(subset="text")
    frame = frame.reset_index(drop=True)
    tags = sorted(set(label_map.values())) if label_map is not None else sorted({t for ts in tag_lists for t in ts})
    rare: list[str] = []
    if cfg.labels.min_count is not None:
        counts = pd.Series([t for ts in frame["tags"] for t in ts], dtype=object).value_counts()
        rare = [tag for tag in tags if counts.get(tag, 0) < cfg.labels.min_count]
        frame["tags"] = [[t for t in ts if t not in rare] for ts in frame["tags"]]
        tags = [tag for tag in tags if tag not in rare]
    frame.attrs["dropped"] = {"filtered": filtered_out, "duplicates": before - len(frame), "rare_tags": rare}
    return frame, tags


def _tag_matrix(tag_lists: list[list[str]], tags: list[str]) -> np.ndarray:
    column = {tag: j for j, tag in enumerate(tags)}
    matrix = np.zeros((len(tag_lists), len(tags)), dtype=np.uint8)
    for i, row in enumerate(tag_lists):
        for tag in row:
            matrix[i, column[tag]] = 1
    return matrix


def _fingerprint(texts: list[str], labels: np.ndarray, split_rows: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", errors="surrogatepass"))
        digest.update(b"\x00")
    digest.update(labels.tobytes())
    for split in sorted(split_rows):
        digest.update(split.encode())
        digest.update(np.asarray(split_rows[split], dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


MIN_LABELED_ROWS = 4


def _assign_splits(cfg: DatasetConfig, frame: pd.DataFrame, labels: np.ndarray, name: str) -> dict[str, np.ndarray]:
    is_labeled = labels.sum(axis=1) > 0
    labeled_rows = np.flatnonzero(is_labeled)
    unlabeled_rows = np.flatnonzero(~is_labeled)
    if len(labeled_rows) == 0:
        raise DataError(
            f"{name}: no row carries a tag after the label map; check labels.field ({cfg.labels.field!r}) and labels.map"
        )
    split = cfg.split
    if split.method == "iterative":
        if len(labeled_rows) < MIN_LABELED_ROWS:
            raise DataError(
                f"{name}: {len(labeled_rows)} labeled rows; the train/valid/test split needs at least {MIN_LABELED_ROWS}"
            )
        # The book: train vs the rest, then the rest into valid and test, seed set once before both.
        try:
            with numpy_global_seed(split.split_seed):
                train_pos, rest_pos = iterative_split(labels[labeled_rows], split.test_size)
                rest = labeled_rows[rest_pos]
                valid_pos, test_pos = iterative_split(labels[rest], 1 - split.valid_share)
        except ValueError as exc:  # scikit-learn refuses splits of too few rows
            raise DataError(f"{name}: {len(labeled_rows)} labeled rows are too few for the train/valid/test split ({exc})") from None
        return _checked(
            {"train": labeled_rows[train_pos], "valid": rest[valid_pos], "test": rest[test_pos], "unlabeled": unlabeled_rows},
            name,
        )
    # predefined splits (a column or one file per split), marked in build_frame
    parts = frame["__split__"].to_numpy()
    rows = {part: np.flatnonzero((parts == part) & is_labeled) for part in SPLITS}
    if len(rows["valid"]) == 0:  # carve valid out of train the same way the book carves it
        train = rows["train"]
        if len(train) < 2:
            raise DataError(f"{name}: {len(train)} labeled train rows; carving a valid split needs at least 2")
        with numpy_global_seed(split.split_seed):
            keep, carved = iterative_split(labels[train], split.carve_valid)
        rows["train"], rows["valid"] = train[keep], train[carved]
    rows["unlabeled"] = np.flatnonzero(~is_labeled | (parts == "unlabeled"))
    return _checked(rows, name)


def _checked(rows: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    empty = [split for split in SPLITS if len(rows[split]) == 0]
    if empty:
        raise DataError(f"{name}: split(s) {empty} came out empty; the dataset has too few labeled rows")
    return rows


def prepare(
    cfg: DatasetConfig,
    search_dirs: list[Path],
    cache_dir: Path,
    readers: Mapping[str, Reader] = BUILTIN_READERS,
) -> PreparedDataset:
    """Load, clean and split a dataset as its config says; ``readers`` maps file formats to
    readers (a plugin manager's ``registry.readers``; by default the built-in ones)."""
    if cfg.source.hf:
        raw, name = read_hub(cfg.name, cfg.source, search_dirs)
    else:
        paths = locate(cfg, search_dirs, cache_dir)
        frames = []
        for part, path in paths.items():
            frame = read_rows(path, cfg.source, readers)
            if part:
                frame["__split__"] = part
            frames.append(frame)
        raw = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        name = " + ".join(str(p) for p in paths.values())
    frame, tags = build_frame(cfg, raw, name)
    dropped = frame.attrs["dropped"]
    labels = _tag_matrix(frame["tags"].tolist(), tags)
    texts = frame["text"].tolist()
    split_rows = _assign_splits(cfg, frame, labels, name)
    return PreparedDataset(
        name=cfg.name,
        config=cfg,
        tags=tags,
        texts=texts,
        labels=labels,
        split_rows=split_rows,
        fingerprint=_fingerprint(texts, labels, split_rows),
        rows_read=len(raw),
        dropped=dropped,
        source_rows=frame["__row__"].to_numpy(),
        ids=frame["__id__"].tolist() if "__id__" in frame else None,
        fields={column.removeprefix("__field__"): frame[column].tolist() for column in frame if column.startswith("__field__")},
    )
