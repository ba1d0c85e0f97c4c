"""``harness dataset new``: propose a dataset config for a data file (or a Hub dataset).

The rows are read with the harness's own readers (harness/sources.py), as ``run`` reads them.
The text fields are the string columns of free text with the longest values; the label column
is the one holding lists of names, GitHub label objects, names joined by ',' or '|', or one name
a row (which proposes ``task: multiclass``). Both can be named instead (``--text``, ``--labels``).
Bad input is one line naming the file and the column.
"""

from __future__ import annotations

import codecs
import csv
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError

from harness.config import DATASET_NAME, ConfigError, DatasetConfig, SourceConfig
from harness.errors import HarnessError, validation_problems
from harness.sources import COMPRESSIONS, Reader, file_format, open_bytes, read_hub, read_rows

# column names that say "labels": a string column is taken as labels only under such a name,
# so that e.g. an issue's 'state' (open/closed) is never proposed as its tags
LABEL_NAME = re.compile(r"label|tag|categor|class|topic|intent|target|kind|type", re.IGNORECASE)
SEPARATORS = (",", "|")
DELIMITERS = ",;\t|"
SAMPLE_BYTES = 1 << 20  # encoding and delimiter are judged on the first MiB
SAMPLE_ROWS = 2000  # column shapes are judged on the first rows

LabelShape = Literal["list", "objects", "separated", "single"]
SHAPE_WORDS = {
    "list": "lists of label names",
    "objects": "GitHub label objects (a 'name' each)",
    "separated": "label names joined by {separator!r}",
    "single": "one label a row: proposed as task multiclass",
}


class WizardError(HarnessError):
    """The data cannot be turned into a dataset config as it is."""


@dataclass(frozen=True)
class LabelColumn:
    field: str
    shape: LabelShape
    separator: str = ","

    def describe(self) -> str:
        return f"labels from {self.field!r}: " + SHAPE_WORDS[self.shape].format(separator=self.separator)


@dataclass
class Proposal:
    """A proposed config (YAML-ready) and what was detected, one line each."""

    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    data_dir: Path | None = None  # a folder `run` must be given (--data-dir) to find the file

    def yaml(self) -> str:
        header = "".join(f"# {note}\n" for note in [
            f"Proposed by `harness dataset new`; edit freely. `harness dataset show {self.config['name']}` "
            "profiles it again.", *self.notes])
        return header + yaml.dump(self.config, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


class _Dumper(yaml.SafeDumper):
    """Writes a string holding a newline (the text template) in double quotes, "{title}\\n\\n{body}"."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if "\n" in value else None)


_Dumper.add_representer(str, _string)


# ------------------------------------------------------------------ reading


def sniff_csv(path: Path, readers: Mapping[str, Reader]) -> tuple[str, str]:
    """(encoding, delimiter) of a CSV file, judged on its first MiB: UTF-8 when it decodes so,
    else charset-normalizer's best guess; the delimiter by csv.Sniffer among , ; tab |."""
    from charset_normalizer import from_bytes

    source = SourceConfig(file=str(path))
    stream, name = open_bytes(path, source)
    _, compression = file_format(name, source, list(readers))
    with stream:
        opened = COMPRESSIONS[compression](stream) if compression else stream
        with opened:
            sample = opened.read(SAMPLE_BYTES)
    try:  # final=False: a character cut at the sample's end is no error
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(sample, final=False)
        encoding = "utf-8-sig" if sample.startswith(codecs.BOM_UTF8) else "utf-8"
    except UnicodeDecodeError:
        guess = from_bytes(sample).best()
        if guess is None:
            raise WizardError(f"{path}: cannot tell the text encoding; name it with --encoding (e.g. latin-1)") from None
        encoding, text = guess.encoding, str(guess)
    try:
        delimiter = csv.Sniffer().sniff(text[:SAMPLE_BYTES // 16], delimiters=DELIMITERS).delimiter
    except csv.Error:  # one column, or too irregular a sample: the CSV default
        delimiter = ","
    return encoding, delimiter


def read_file(path: Path, readers: Mapping[str, Reader], encoding: str | None = None,
              delimiter: str | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows of ``path`` and the source fields (beyond ``file``) needed to read it again."""
    if not path.is_file():
        raise WizardError(f"--file {path}: no such file")
    source_fields: dict[str, Any] = {}
    fmt, _ = file_format(str(path), SourceConfig(file=str(path)), list(readers))
    try:
        if fmt == "csv":
            sniffed_encoding, sniffed_delimiter = sniff_csv(path, readers)
            encoding, delimiter = encoding or sniffed_encoding, delimiter or sniffed_delimiter
        if encoding and encoding not in ("utf-8", "utf8"):
            source_fields["encoding"] = encoding
        if delimiter and delimiter != ",":
            source_fields["delimiter"] = delimiter
        source = SourceConfig(file=str(path), **source_fields)
        return read_rows(path, source, readers), source_fields
    except ValidationError as exc:
        raise WizardError(f"{path}: {validation_problems(exc)}") from None
    except OSError as exc:  # unreadable (permissions), or a folder named like a file
        raise WizardError(f"{path}: cannot be read: {exc.strerror or exc}") from None


# ------------------------------------------------------------------ detecting


def _values(frame: pd.DataFrame, column: str) -> list[Any]:
    """The column's first non-null values."""
    values = []
    for value in frame[column].head(SAMPLE_ROWS).tolist():
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        values.append(value)
    return values


def _kind(value: Any) -> str:
    return type(value).__name__


def _shape(values: list[Any]) -> LabelShape | str | None:
    """'list', 'objects' or 'string' for a column whose values all have that shape, None for an
    empty column, else the name of the first value's type that is none of them."""
    if not values:
        return None
    if all(isinstance(v, (list, tuple, np.ndarray)) for v in values):
        items = [item for v in values for item in v]
        if all(isinstance(item, dict) and isinstance(item.get("name"), str) for item in items):
            return "objects" if items else None
        if all(isinstance(item, str) for item in items):
            return "list" if items else None
        odd = next(item for item in items if not isinstance(item, str))
        return f"list of {_kind(odd)}"
    if all(isinstance(v, str) for v in values):
        return "string"
    return _kind(next(v for v in values if not isinstance(v, str)))


def _string_labels(column: str, values: list[str]) -> LabelColumn | None:
    """A string column read as labels: joined names when a separator shows and the names repeat,
    one name a row when few distinct values repeat; None when it looks like text."""
    for separator in SEPARATORS:
        # one joined value suffices: in most multi-label data few rows carry several tags
        if any(separator in v for v in values):
            names = [part.strip() for v in values for part in v.split(separator) if part.strip()]
            if names and len(set(names)) <= max(2, len(names) // 2) and np.mean([len(n) for n in names]) <= 40:
                return LabelColumn(column, "separated", separator)
    distinct = set(values)
    if 2 <= len(distinct) <= max(2, len(values) // 3) and np.mean([len(v) for v in values]) <= 40:
        return LabelColumn(column, "single")
    return None


def detect_labels(frame: pd.DataFrame, name: str, requested: str | None = None) -> LabelColumn:
    """The label column (``requested``, or the one found) and the shape of its values."""
    columns = ", ".join(map(str, frame.columns))
    expected = ("expected label names: lists of strings, label objects with a 'name', names joined by ',' or '|', "
                "or one name a row")
    if requested is not None:
        if requested not in frame.columns:
            raise WizardError(f"{name}: --labels {requested!r}: no such column (columns: {columns})")
        values = _values(frame, requested)
        shape = _shape(values)
        if shape is None:
            raise WizardError(f"{name}: column {requested!r} holds no labels (every value is empty); {expected}")
        if shape in ("list", "objects"):
            return LabelColumn(requested, shape)
        if shape != "string":
            raise WizardError(f"{name}: column {requested!r} holds {shape} values (e.g. {values[0]!r}); {expected}")
        found = _string_labels(requested, values)
        return found or LabelColumn(requested, "single")
    candidates: list[tuple[bool, LabelColumn]] = []
    odd: list[str] = []  # columns named like labels whose values cannot be labels
    for column in map(str, frame.columns):
        values = _values(frame, column)
        shape = _shape(values)
        labelish = bool(LABEL_NAME.search(column))
        if shape in ("list", "objects"):
            candidates.append((labelish, LabelColumn(column, shape)))
        elif shape == "string" and labelish and (found := _string_labels(column, values)):
            candidates.append((labelish, found))
        elif shape not in (None, "string") and labelish:
            odd.append(f"column {column!r} holds {shape} values (e.g. {values[0]!r})")
    if not candidates and odd:
        raise WizardError(f"{name}: {'; '.join(odd)}; {expected}")
    if not candidates:
        raise WizardError(f"{name}: no label column found (columns: {columns}); {expected}, in a column named like "
                          "'labels' or 'tags'; name it with --labels COLUMN")
    # a column named like labels first, then lists before strings; ties keep the file's order
    rank = {"objects": 0, "list": 0, "separated": 1, "single": 2}
    return min(candidates, key=lambda c: (not c[0], rank[c[1].shape]))[1]


def _is_free_text(values: list[Any]) -> bool:
    """Strings that mostly differ and mostly hold several words: titles and bodies, not ids,
    URLs, dates or states."""
    if not values or not all(isinstance(v, str) for v in values):
        return False
    return len(set(values)) >= 0.5 * len(values) and np.mean([" " in v.strip() for v in values]) >= 0.5


def detect_text(frame: pd.DataFrame, name: str, label_field: str, requested: list[str] | None = None) -> list[str]:
    """The text columns (``requested``, or the two free-text columns with the longest values,
    in the file's order)."""
    columns = ", ".join(map(str, frame.columns))
    if requested:
        for column in requested:
            if column not in frame.columns:
                raise WizardError(f"{name}: --text {column!r}: no such column (columns: {columns})")
            values = _values(frame, column)
            if values and not all(isinstance(v, (str, int, float)) for v in values):
                odd = next(v for v in values if not isinstance(v, (str, int, float)))
                raise WizardError(f"{name}: column {column!r} holds {_kind(odd)} values (e.g. {odd!r}); expected text")
        return list(requested)
    lengths = {
        column: float(np.mean([len(v) for v in values]))
        for column in map(str, frame.columns)
        if column != label_field and _is_free_text(values := _values(frame, column))
    }
    if not lengths:
        raise WizardError(f"{name}: no text column found (columns: {columns}); expected string columns of free "
                          "text (titles, bodies); name them with --text title,body")
    longest = sorted(lengths, key=lambda column: -lengths[column])[:2]
    return [column for column in map(str, frame.columns) if column in longest]


# ------------------------------------------------------------------ proposing


def _template(columns: list[str]) -> str:
    return "\n\n".join("{" + column + "}" for column in columns)


def propose(
    name: str,
    readers: Mapping[str, Reader],
    file: Path | None = None,
    hf: str | None = None,
    hf_split: str | None = None,
    text: list[str] | None = None,
    labels: str | None = None,
    task: str | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    search_dirs: list[Path] | None = None,
) -> Proposal:
    """Read the data and propose its config (validated, not yet written)."""
    if not DATASET_NAME.fullmatch(name):
        raise WizardError(f"dataset name {name!r}: use letters, digits, '-', '_' and '.', starting with a letter or digit")
    if (file is None) == (hf is None):
        raise WizardError("give the data as --file PATH or --hf OWNER/NAME (one of them)")
    data_dir = None
    if file is not None:
        frame, source_fields = read_file(file, readers, encoding, delimiter)
        where = str(file)
        # run finds the file through its data folders, the current one included
        relative = Path(os.path.relpath(file.resolve(), Path.cwd()))
        if relative.parts and relative.parts[0] != "..":
            source = {"file": relative.as_posix(), **source_fields}
        else:
            source, data_dir = {"file": file.name, **source_fields}, file.resolve().parent
    else:
        source = {"hf": hf, **({"split": hf_split} if hf_split else {})}
        frame, where = read_hub(name, SourceConfig(**source), list(search_dirs or []))
    if frame.empty:
        raise WizardError(f"{where}: no rows")
    label_column = detect_labels(frame, where, labels)
    text_columns = detect_text(frame, where, label_column.field, text)
    chosen_task = task or ("multiclass" if label_column.shape == "single" else "multilabel")
    labels_cfg: dict[str, Any] = {"field": label_column.field}
    if label_column.shape == "separated" and label_column.separator != ",":
        labels_cfg["separator"] = label_column.separator
    config: dict[str, Any] = {"name": name, "description": f"{name}: proposed from {Path(where).name}"}
    if chosen_task != "multilabel":
        config["task"] = chosen_task
    config |= {"source": source, "text": _template(text_columns), "labels": labels_cfg}
    try:
        DatasetConfig.model_validate(config)
    except ValidationError as exc:
        raise WizardError(f"{where}: the proposed config does not validate: {validation_problems(exc)}") from None
    how = "named with --text" if text else "the free-text columns with the longest values"
    notes = [f"text from {', '.join(text_columns)} ({how})",
             label_column.describe() + (" (named with --labels)" if labels else "")]
    if "encoding" in source or "delimiter" in source:
        notes.append("CSV read as " + ", ".join(f"{k} {source[k]!r}" for k in ("encoding", "delimiter") if k in source))
    return Proposal(config, notes, data_dir)


def write_proposal(proposal: Proposal, cfg_dir: Path, force: bool = False) -> Path:
    """Write ``NAME.yaml`` into ``cfg_dir``; an existing file is kept unless ``force``."""
    path = cfg_dir / f"{proposal.config['name']}.yaml"
    if path.exists() and not force:
        raise ConfigError(f"{path}: already exists; pass --force to replace it, or choose another name")
    try:
        cfg_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(proposal.yaml(), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the config: {exc.strerror}") from None
    return path
