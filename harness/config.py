"""Dataset configuration files (``*.yaml``), validated with pydantic.

The built-in configs ship inside the package (``harness/datasets_cfg``), so a wheel has them."""

from __future__ import annotations

import codecs
import os
import re
import string
import warnings
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import HarnessError, unknown_name_message, validation_problems
from harness.hashing import stable_hash

BUILTIN_CFG_DIR = Path(__file__).resolve().parent / "datasets_cfg"
# where `harness dataset new` writes a config, searched by default so that `run` finds it
USER_CFG_DIR = Path("datasets_cfg")
# What the unlabeled pool a method's fit receives is made of: the rows that carry no tag, and
# the training issues outside the cell's slice (texts only: their labels are hidden).
UNLABELED_SOURCES = ("unlabeled_rows", "rest_of_train")
DEFAULT_UNLABELED = ("unlabeled_rows",)
UnlabeledSource = Literal["unlabeled_rows", "rest_of_train"]
DATASETS_CFG_ENV = "HARNESS_DATASETS_CFG"
# a dataset's name is its config file's name: it names folders and appears in commands
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class ConfigError(HarnessError):
    """A dataset configuration is missing, malformed or invalid."""


class ConfigWarning(UserWarning):
    """A dataset configuration is usable but says something that is ignored."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Strict):
    """Where the rows come from: a local file name, a URL, one file per predefined split, or a
    Hugging Face Hub dataset."""

    file: str | None = None
    files: dict[Literal["train", "valid", "test", "unlabeled"], str] | None = None
    sha256: str | None = Field(None, description="checksum of the local file (or of each of 'files')")
    url: str | None = None
    url_sha256: str | None = Field(None, description="checksum of the downloaded file")
    hf: str | None = Field(None, description="Hugging Face Hub dataset 'owner/name', read with the datasets library")
    revision: str | None = Field(None, description="the Hub dataset's commit (or tag) to read; pin it")
    config: str | None = Field(None, description="the Hub dataset's configuration (subset) name")
    split: str | None = Field(None, description="the Hub dataset's split to read (default: its only split)")
    member: str | None = Field(None, description="file inside a zip archive")
    format: str | None = Field(None, description="jsonl, csv, parquet or a plugin's format, optionally compressed (csv.gz); default: from the file name")
    encoding: str = "utf-8"
    encoding_errors: Literal["strict", "replace"] = "strict"
    delimiter: str | None = Field(None, min_length=1, max_length=1, description="a CSV file's field separator (default ',')")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        """An unknown codec fails here, naming the field, not in the reader with a LookupError."""
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"unknown text encoding {encoding!r}; expected a Python codec name, e.g. utf-8, latin-1, cp1252") from None
        return encoding

    @model_validator(mode="after")
    def _needs_a_place(self) -> "SourceConfig":
        if not (self.file or self.files or self.url or self.hf):
            raise ValueError("source needs at least one of 'file', 'files', 'url' or 'hf'")
        if self.hf and (self.file or self.files or self.url):
            raise ValueError("source takes 'hf' (a Hub dataset) or files, not both")
        if self.file and self.files:
            raise ValueError("source takes 'file' or 'files', not both")
        return self


_SOURCE_FIELDS_ADDED_LATER = ("hf", "revision", "config", "split", "delimiter")
# label options added later, with the value that leaves a config's hash as it was before them
_LABEL_DEFAULTS_ADDED_LATER = {"separator": ",", "min_count": None}


class LabelsConfig(_Strict):
    field: str = Field(description="row field holding a list of label names or of objects with a 'name', "
                             "or a string of names joined by 'separator'")
    separator: str = Field(",", min_length=1, description="what joins several label names in one string value")
    min_count: int | None = Field(None, ge=1, description="drop tags with fewer labeled rows than this (after the map "
                                                         "and duplicate removal); rows left with no tag are unlabeled")
    map: dict[str, str] | None = Field(None, description="raw label -> tag; other labels are dropped")
    descriptions: dict[str, str] = Field(default_factory=dict, description="tag -> text used by zero-shot")


class RowFilter(_Strict):
    field: str
    equals: str | int | float | bool | None = None
    not_equals: str | int | float | bool | None = None
    is_null: bool | None = None

    @model_validator(mode="after")
    def _one_condition(self) -> "RowFilter":
        given = [self.equals is not None, self.not_equals is not None, self.is_null is not None]
        if sum(given) != 1:
            raise ValueError("a filter takes exactly one of 'equals', 'not_equals', 'is_null'")
        return self


class SplitConfig(_Strict):
    method: Literal["iterative", "column", "files"] = "iterative"
    split_seed: int = 0
    test_size: float = Field(0.5, gt=0, lt=1, description="share of labeled rows kept out of train")
    valid_share: float = Field(0.5, gt=0, lt=1, description="share of the held-out rows that go to valid")
    carve_valid: float = Field(0.25, gt=0, lt=1, description="share of a predefined train split carved out as valid when none is given")
    column: str | None = None
    column_values: dict[Literal["train", "valid", "test"], str] = Field(
        default_factory=lambda: {"train": "train", "valid": "valid", "test": "test"}
    )

    @model_validator(mode="after")
    def _column_named(self) -> "SplitConfig":
        if self.method == "column" and not self.column:
            raise ValueError("split method 'column' needs 'column'")
        return self


class DatasetConfig(_Strict):
    name: str
    description: str = ""
    task: Literal["multilabel", "multiclass"] = Field(
        "multilabel", description="multiclass: every labeled row has exactly one tag, decided by argmax of scores"
    )
    source: SourceConfig
    text: str = Field(description="template over row fields, e.g. '{title}\\n\\n{body}'")
    labels: LabelsConfig
    filters: list[RowFilter] = Field(default_factory=list)
    drop_duplicate_texts: bool = True
    split: SplitConfig = Field(default_factory=SplitConfig)
    slices: list[int | Literal["all"]] = Field(
        default_factory=lambda: [8, 16, 32, 64, 128, "all"],
        description="training slice sizes: positive integers or 'all'",
    )
    unlabeled: list[UnlabeledSource] = Field(
        default_factory=lambda: list(DEFAULT_UNLABELED),
        description="the unlabeled pool: unlabeled_rows (rows without tags), rest_of_train (the training "
                    "issues outside the slice, labels hidden), both, or [] for none",
    )

    @field_validator("unlabeled", mode="before")
    @classmethod
    def _unlabeled_sources(cls, value: object) -> object:
        """One name or a list of names, none twice."""
        return parse_unlabeled(value)

    @field_validator("slices", mode="before")
    @classmethod
    def _slice_sizes(cls, slices: object) -> object:
        """Positive integers or 'all', at least one, none twice (a YAML true is not the size 1)."""
        if not isinstance(slices, list) or not slices:
            raise ValueError("expected a non-empty list of slice sizes: positive integers or 'all', e.g. [8, 16, all]")
        for size in slices:
            if size != "all" and not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
                raise ValueError(f"slice size {size!r} is neither a positive integer nor 'all'")
            if slices.count(size) > 1:
                raise ValueError(f"slice size {size!r} is listed twice")
        return slices

    @field_validator("text")
    @classmethod
    def _template_renders(cls, text: str) -> str:
        """Catch a broken template when the config loads, not when the data is read."""
        try:
            parsed = [(field, conversion) for _, field, _, conversion in string.Formatter().parse(text) if field is not None]
        except ValueError as exc:
            raise ValueError(f"not a valid template ({exc}); name fields as {{title}}, write a brace as {{{{ or }}}}") from None
        for field, conversion in parsed:
            if not field or field.isdigit():
                raise ValueError("template fields need a row field's name, e.g. {title}; {} and {0} name none")
            if conversion not in (None, "r", "s", "a"):
                raise ValueError(f"template field {field!r} has conversion !{conversion}; only !r, !s and !a exist")
        try:
            text.format_map(_BlankFields())
        except (ValueError, LookupError, AttributeError, TypeError) as exc:
            raise ValueError(f"template cannot be rendered: {exc}") from None
        return text

    @model_validator(mode="after")
    def _files_go_with_split_files(self) -> "DatasetConfig":
        if (self.split.method == "files") != bool(self.source.files):
            raise ValueError("source 'files' (one file per split) and split method 'files' go together")
        return self

    def config_hash(self) -> str:
        # descriptions feed zero-shot only; changing them does not change the data
        dumped = self.model_dump(mode="json", exclude={"description"})
        for field in _SOURCE_FIELDS_ADDED_LATER:  # unset, they leave the hash (and old cell keys) as it was
            if dumped["source"][field] is None:
                del dumped["source"][field]
        for field, default in _LABEL_DEFAULTS_ADDED_LATER.items():
            if dumped["labels"][field] == default:
                del dumped["labels"][field]
        if self.task == "multilabel":  # the default task, too, leaves the hash of older configs as it was
            del dumped["task"]
        if tuple(self.unlabeled) == DEFAULT_UNLABELED:  # and so does the default pool
            del dumped["unlabeled"]
        return stable_hash(dumped)


def parse_unlabeled(value: object) -> list[str]:
    """The pool's sources from a config's ``unlabeled`` or ``--unlabeled``: a name, a
    comma-separated string or a list of names ('none' or [] for no pool); ValueError with one
    line naming what is expected."""
    expected = f"{' and/or '.join(UNLABELED_SOURCES)} (a name or a list), or none"
    if isinstance(value, str):
        items = [] if value.strip() == "none" else [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise HarnessError(f"{value!r} is not a pool source; expected {expected}")
    for item in items:
        if item not in UNLABELED_SOURCES:
            raise HarnessError(f"{item!r} is not a pool source; expected {expected}")
        if items.count(item) > 1:
            raise HarnessError(f"{item!r} is listed twice; expected {expected}")
    return items


class _BlankFields(dict):
    """Every field an empty string: a trial rendering of a text template."""

    def __missing__(self, key: str) -> str:
        return ""


def config_dirs(extra: list[Path] | None = None) -> list[Path]:
    """Folders searched for dataset configs: user folders first, then ./datasets_cfg, then the built-ins."""
    dirs = list(extra or [])
    env = os.environ.get(DATASETS_CFG_ENV)
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs += [USER_CFG_DIR, BUILTIN_CFG_DIR]
    return dirs


def load_config_file(path: Path) -> DatasetConfig:
    if not DATASET_NAME.fullmatch(path.stem):
        raise ConfigError(
            f"{path}: {path.stem!r} is not a usable dataset name (the file name without .yaml): "
            "use letters, digits, '-', '_' and '.', starting with a letter or digit"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of fields, got {type(raw).__name__}")
    if "name" in raw and raw["name"] != path.stem:
        warnings.warn(
            f"{path}: field 'name' is {raw['name']!r} but a dataset is named by its file: this one is "
            f"{path.stem!r} (rename the file or drop the field)",
            ConfigWarning, stacklevel=2,
        )
    raw["name"] = path.stem
    try:
        return DatasetConfig.model_validate(raw)
    except ValidationError as exc:
        problems = validation_problems(exc)
        raise ConfigError(f"{path}: {problems}") from None


def available_configs(extra_dirs: list[Path] | None = None) -> dict[str, Path]:
    """Dataset name -> config file; a user folder's config shadows a built-in of the same name."""
    found: dict[str, Path] = {}
    for folder in config_dirs(extra_dirs):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.y*ml")):
            found.setdefault(path.stem, path)
    return found


def load_config(name: str, extra_dirs: list[Path] | None = None) -> DatasetConfig:
    configs = available_configs(extra_dirs)
    if name not in configs:
        raise ConfigError(unknown_name_message("dataset", name, list(configs)))
    return load_config_file(configs[name])
