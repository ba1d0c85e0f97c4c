"""The cell record: one typed, versioned JSON file per cell, and where it lives.

Every reader of records (report, publish, status, progress, lifecycle hooks) goes through
``CellRecord``; records written by older schemas are migrated on read, so published results
stay readable. A file that is not a valid record (not JSON, a list, a string where the metrics
should be, no dataset...) is reported in one line and treated as missing: ``run`` computes the
cell again and the other commands go on without it.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import validation_problems
from harness.store import json_bytes, write_atomic

SCHEMA_VERSION = 2
CELLS_DIR = "cells"
LOCKS_DIR = ".locks"  # <results>/.locks mirrors <results>/cells: the lock a run holds on each cell


class InvalidRecordWarning(UserWarning):
    """A file under ``cells/`` is not a valid cell record; it counts as missing."""


class _Part(BaseModel):
    # extra="allow": a newer harness or a plugin may add fields; they survive a read and a write
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class MethodInfo(_Part):
    name: str
    label: str  # the name reported: METHOD, or METHOD@VARIANT for other parameters
    preset: str
    params: dict[str, Any]
    version: str | None = None
    plugin: str | None = None
    distribution: str | None = None
    distribution_version: str | None = None
    # a query strategy other than random (harness/strategies.py): the cell trained on a prefix of its
    # trajectory, whose picks the selector's scores guided; ``base`` labels the same variant under random slices
    strategy: str | None = None
    selector: str | None = None
    base: str | None = None


class SliceInfo(_Part):
    name: str
    nominal: int | str | None = None
    actual_n: int = 0
    index_hash: str | None = None


class DatasetInfo(_Part):
    name: str
    config_hash: str | None = None
    fingerprint: str | None = None
    sizes: dict[str, int] | None = None
    tags: list[str] | None = None
    revision: str | None = None  # the Hub revision a `source: {hf: ...}` dataset was read at (v2)
    task: Literal["multilabel", "multiclass"] = "multilabel"
    unlabeled: list[str] | None = None  # what the cell's unlabeled pool was made of (harness.config)
    pool_size: int | None = None  # the texts in it


class Metrics(_Part):
    micro_f1: float
    macro_f1: float
    accuracy: float | None = None  # multiclass tasks only
    weighted_f1: float | None = None  # multiclass tasks only


class PredictionsFile(_Part):
    """The cell's stored arrays (harness/predictions.py), beside its record."""

    file: str
    sha256: str


class DerivedMember(_Part):
    """A member cell of a derived record: its method label, key hash and stored arrays' sha256."""

    label: str
    key_hash: str
    predictions_sha256: str


class Derived(_Part):
    """What a derived record (no method fitted: harness/ensembles.py) was made from."""

    kind: Literal["ensemble"] = "ensemble"
    name: str  # the ensemble's name; its rows are reported as ``ensemble-NAME``
    scaling: str  # how member scores were made comparable: rank, or calibrated on valid
    members: list[DerivedMember]
    weights: dict[str, float]  # member label -> weight, chosen on valid


class CellRecord(_Part):
    """What one cell produced: its key, status, method, slice, dataset, metrics and timings."""

    schema_version: Literal[2] = SCHEMA_VERSION
    key: dict[str, Any]
    key_hash: str
    status: Literal["ok", "failed"]
    seed: int
    method: MethodInfo
    slice: SliceInfo
    dataset: DatasetInfo
    environment: dict[str, Any] = Field(default_factory=dict)
    metrics: Metrics | None = None  # under the cell's default rule, ``rule``
    # decision rules (harness/evaluation.py); absent in records written before them
    rule: str = "own"
    rule_metrics: dict[str, Metrics] | None = None  # every rule that applies -> test metrics
    rules: dict[str, Any] | None = None  # the thresholds and k chosen on valid
    ranking: dict[str, float | None] | None = None  # rule-free: macro average precision, LRAP
    predictions: PredictionsFile | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    derived: Derived | None = None  # set on a record combined from other cells' stored arrays
    error: str | None = None
    traceback: str | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    # the process's peak resident memory while the cell ran (Linux; None where not measured)
    peak_rss_mb: float | None = None
    usage: dict[str, float] = Field(default_factory=dict)  # cost outside the process: Method.usage()
    finished_at: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def migrate(raw: dict[str, Any]) -> dict[str, Any]:
    """A record of an older schema, brought to the current one (a new dict; ``raw`` is kept).

    v1 -> v2: ``dataset.revision`` added (None: v1 read no Hub datasets).
    """
    version = raw.get("schema_version")
    if version == 1:
        raw = {**raw, "schema_version": 2}
        if isinstance(raw.get("dataset"), dict):
            raw["dataset"] = {"revision": None, **raw["dataset"]}
    return raw


def parse_record(raw: Any) -> CellRecord:
    """Validate (and migrate) a record read from JSON; raises ValueError with one line."""
    if not isinstance(raw, dict):
        raise ValueError(f"expected a JSON object, got a JSON {type(raw).__name__}")
    try:
        return CellRecord.model_validate(migrate(raw))
    except ValidationError as exc:
        raise ValueError(validation_problems(exc)) from None


def read_record(path: Path) -> CellRecord | None:
    """The record at ``path``; None when there is none, or (with a one-line warning) when the
    file is not a valid record: such a cell counts as missing."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return decode_record(path, data)


def decode_record(path: Path, data: bytes) -> CellRecord | None:
    """The record in ``data``, the bytes of the file at ``path``; None, with a one-line warning
    that names ``path``, when they are not a valid record."""
    try:  # decoded here, so that bytes that are not UTF-8 are reported like any invalid record
        return parse_record(json.loads(data.decode("utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        reason = f"not JSON ({exc})"
    except ValueError as exc:
        reason = str(exc)
    warnings.warn(f"{path}: not a valid cell record ({reason}); treated as missing", InvalidRecordWarning, stacklevel=3)
    return None


def finished_now() -> str:
    """A record's ``finished_at``: now, in UTC, to the second."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_record(path: Path, record: CellRecord) -> bytes:
    """Write ``record`` at ``path`` atomically; returns the bytes written."""
    data = json_bytes(record.to_json())
    write_atomic(path, lambda handle: handle.write(data))
    return data


def safe_name(part: str) -> str:
    """A file-name-safe version of a dataset, method or slice name: never empty, no separator,
    no leading dot, so no name ('..' included) can make a path leave the results folder."""
    safe = "".join(c if c.isalnum() or c in "-_.@+" else "_" for c in part)
    return "_" + safe[1:] if safe.startswith(".") else safe or "_"


def record_path(results_dir: Path, dataset: str, method_label: str, slice_name: str, seed: int) -> Path:
    return results_dir / CELLS_DIR / safe_name(dataset) / safe_name(method_label) / f"slice-{safe_name(slice_name)}_seed-{seed}.json"


def lock_path(results_dir: Path, record: Path) -> Path:
    """The lock a run holds while it computes the cell whose record is ``record``."""
    relative = record.relative_to(results_dir / CELLS_DIR)
    return (results_dir / LOCKS_DIR / relative).with_suffix(".lock")


def record_files(results_dir: Path) -> list[Path]:
    """The cell record files under ``results_dir``, in a stable order."""
    return sorted((results_dir / CELLS_DIR).glob("*/*/*.json"))


def iter_records(results_dir: Path) -> Iterator[CellRecord]:
    """The valid records under ``results_dir`` (invalid ones are warned about and skipped)."""
    for path in record_files(results_dir):
        record = read_record(path)
        if record is not None:
            yield record
