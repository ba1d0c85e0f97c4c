"""Planning a run: every cell it asks for (a ``CellSpec``, plain data), and which are done.

A cell is (dataset, method variant, training slice, seed). Its key holds everything that
changes its result; a record on disk with the same key hash means the cell is done.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from harness.config import DEFAULT_UNLABELED, available_configs
from harness.datasets import Settings, load_dataset, train_slices
from harness.errors import HarnessError, unknown_name_message
from harness.hashing import stable_hash
from harness.methods import params_hash
from harness.params import DEFAULT_PRESET, build_params, parse_overrides, variant_label
from harness.plugins import HarnessPluginManager
from harness.predictions import PredictionsError, checked_bytes
from harness.records import InvalidRecordWarning, lock_path, read_record, record_path
from harness.splits import NO_SLICE, TrainSlice


@dataclass(frozen=True)
class CellSpec:
    settings: Settings
    dataset: str
    method: str
    label: str
    params: dict[str, Any]
    slice_name: str
    seed: int
    slice_sizes: tuple[int | str, ...]  # the full list the nested slices are grown from
    key: dict[str, Any]
    resources: dict[str, float] = field(default_factory=dict)  # Method.resources, for the Dask executor
    preset: str = DEFAULT_PRESET
    device: str = "auto"  # where its torch work runs (harness.devices); not part of the key
    unlabeled: tuple[str, ...] = DEFAULT_UNLABELED  # what the unlabeled pool is made of (harness.config)

    @property
    def key_hash(self) -> str:
        return stable_hash(self.key)

    def path(self) -> Path:
        return record_path(Path(self.settings.results_dir), self.dataset, self.label, self.slice_name, self.seed)

    def lock_path(self) -> Path:
        """The lock a run holds while it computes this cell: the record's path under ``.locks``."""
        return lock_path(Path(self.settings.results_dir), self.path())


@dataclass
class RunPlan:
    cells: list[CellSpec]
    datasets: list[str]
    methods: list[str]
    seeds: list[int]
    preset: str
    retry_failed: bool = False
    todo: list[CellSpec] = field(default_factory=list)
    skipped: list[CellSpec] = field(default_factory=list)


def resolve_method_names(requested: str | Iterable[str], known: list[str]) -> list[str]:
    names = known if requested == "all" else [n.strip() for n in (requested.split(",") if isinstance(requested, str) else requested) if n.strip()]
    if "all" in names:
        names = known
    for name in names:
        if name not in known:
            raise HarnessError(unknown_name_message("method", name, known))
    return list(dict.fromkeys(names))


def plan_run(
    pm: HarnessPluginManager,
    settings: Settings,
    methods: str | list[str],
    datasets: list[str],
    seeds: list[int],
    slices: list[int | str] | None = None,
    preset: str = DEFAULT_PRESET,
    overrides: list[str] | None = None,
    label: str | None = None,
    retry_failed: bool = False,
    device: str = "auto",
    method_devices: dict[str, str] | None = None,
    unlabeled: list[str] | None = None,
) -> RunPlan:
    """Every cell of the run, each marked to do or to skip (already on disk with the same key).

    ``device`` is where the run's torch work goes; ``method_devices`` overrides it per method.
    ``unlabeled`` (the pool's sources) overrides each dataset config's ``unlabeled``.
    """
    registry = pm.registry
    method_names = resolve_method_names(methods, sorted(registry.methods))
    method_devices = method_devices or {}
    for name in method_devices:
        if name not in registry.methods:
            raise HarnessError("--device: " + unknown_name_message("method", name, sorted(registry.methods)))
    parsed = parse_overrides(overrides or [], sorted(registry.methods))
    known_datasets = list(available_configs([Path(d) for d in settings.datasets_cfg_dirs]))
    for name in datasets:
        if name not in known_datasets:
            raise HarnessError(unknown_name_message("dataset", name, known_datasets))
    cells: list[CellSpec] = []
    for dataset_name in datasets:
        dataset = load_dataset(dataset_name, settings, registry.readers)
        wanted = list(slices) if slices else list(dataset.config.slices)
        grow_from = tuple(_slice_sizes(dataset.config.slices, wanted))
        pool = tuple(dataset.config.unlabeled if unlabeled is None else unlabeled)
        for method_name in method_names:
            method_class = registry.methods[method_name]
            params = build_params(method_class, preset, parsed.get(method_name, {}))
            variant = variant_label(method_class, params, preset, label, bool(parsed.get(method_name)))
            if pool != tuple(dataset.config.unlabeled):  # --unlabeled made a variant: its rows sit beside the others
                variant += ("+" if "@" in variant else "@") + "pool-" + ("+".join(pool) or "none")
            dependencies = method_class.key_dependencies(params)
            for seed in seeds:
                seed_slices = train_slices(dataset_name, settings, registry.readers, grow_from, seed)
                names = [NO_SLICE] if not method_class.uses_labels else _selected(seed_slices, wanted)
                for slice_name in names:
                    train_slice = seed_slices.get(slice_name)
                    key = {
                        "dataset": dataset_name,
                        "config_hash": dataset.config.config_hash(),
                        "fingerprint": dataset.fingerprint,
                        "method": method_name,
                        "method_version": method_class.version,
                        "params_hash": params_hash(params),
                        "slice": slice_name,
                        "slice_index_hash": train_slice.index_hash() if train_slice else None,
                        "seed": seed,
                    }
                    if pool != DEFAULT_UNLABELED:  # only then: the keys of cells on disk stay as they were
                        key["unlabeled"] = list(pool)
                    if dependencies:  # likewise: keys of methods that wrap none stay as they were
                        key["dependencies"] = dependencies
                    cells.append(
                        CellSpec(settings, dataset_name, method_name, variant, params.model_dump(mode="json"),
                                 slice_name, seed, grow_from, key, dict(method_class.resources), preset,
                                 method_devices.get(method_name, device), pool)
                    )
    plan = RunPlan(cells, list(datasets), method_names, list(seeds), preset, retry_failed)
    for spec in cells:
        (plan.skipped if is_done(spec, retry_failed) else plan.todo).append(spec)
    return plan


def is_done(spec: CellSpec, retry_failed: bool = False) -> bool:
    """Whether the cell's record on disk matches its key (and is ok, when failed cells are retried)
    and the arrays it names are intact: a cell whose arrays were changed or cut short counts as
    missing, as a malformed record does, so that this run rewrites them."""
    existing = read_record(spec.path())
    if existing is None or existing.key_hash != spec.key_hash or not (existing.ok or not retry_failed):
        return False
    if existing.predictions is not None:
        try:
            checked_bytes(spec.path().parent / existing.predictions.file, existing.predictions.sha256)
        except PredictionsError as exc:
            warnings.warn(f"{exc}; the cell counts as missing and runs again", InvalidRecordWarning, stacklevel=2)
            return False
    return True


def _slice_sizes(config_sizes: list[int | str], wanted: list[int | str]) -> list[int | str]:
    """Grow from the config's sizes plus any extra requested ones, so slices stay nested."""
    numbers = sorted({int(s) for s in [*config_sizes, *wanted] if s != "all"})
    return [*numbers, "all"]


def _selected(seed_slices: dict[str, TrainSlice], wanted: list[int | str]) -> list[str]:
    names = []
    for size in wanted:
        name = str(size)
        names.append(name if name in seed_slices else "all")  # clamped to 'all' by nested_slices
    return list(dict.fromkeys(names))
