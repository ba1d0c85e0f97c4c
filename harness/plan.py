"""Planning a run: every cell it asks for (a ``CellSpec``, plain data), and which are done.

A cell is (dataset, method variant, training slice, seed). Its key holds everything that
changes its result; a record on disk with the same key hash means the cell is done.

Under a query strategy other than ``random`` (harness/strategies.py), a cell trains on a prefix
of that strategy's trajectory (``TrajectorySpec``, grown by harness/trajectories.py) instead of a
nested slice; its first slice and ``all`` are the random cells themselves, shared.
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
from harness.methods import dependency_key, has_scores, params_hash
from harness.params import DEFAULT_PRESET, build_params, parse_overrides, variant_label
from harness.plugins import HarnessPluginManager
from harness.predictions import PredictionsError, checked_bytes
from harness.records import InvalidRecordWarning, lock_path, read_record, record_path
from harness.splits import NO_SLICE, TrainSlice
from harness.strategies import RANDOM


@dataclass(frozen=True)
class TrajectorySpec:
    """(dataset, strategy, selector, seed): the ordered picks of a strategy from the seed's first
    stratified slice, one step per size of ``sizes`` (the first is the start), guided by the
    selector's scores. Plain data, like a cell spec; its artifact lives in the cache."""

    dataset: str
    strategy: str
    selector: str | None  # the selector method's name; None for a strategy that reads no scores
    selector_params: dict[str, Any]
    seed: int
    names: tuple[str, ...]  # the slices it reaches, in order; names[0] is the shared first slice
    # how many issues each of them holds: as many as the nested slice of that name (the stratified
    # split may take one or two more than its nominal size), so that each slice is paired with
    # random's at an equal number of labels
    sizes: tuple[int, ...]
    slice_sizes: tuple[int | str, ...]  # the nested slices the first one is taken from
    key: dict[str, Any]

    @property
    def key_hash(self) -> str:
        return stable_hash(self.key)

    @property
    def start(self) -> str:
        return self.names[0]

    def size_of(self, slice_name: str) -> int:
        return self.sizes[self.names.index(slice_name)]


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
    # a strategy other than random: the trajectory whose prefix is the training slice; None for random
    trajectory: TrajectorySpec | None = None
    base_label: str | None = None  # with a trajectory: the label of the same variant under random slices
    selector_label: str | None = None  # with a trajectory that reads scores: the label of the method whose scores guide it

    @property
    def key_hash(self) -> str:
        return stable_hash(self.key)

    @property
    def strategy(self) -> str:
        return self.trajectory.strategy if self.trajectory else RANDOM

    def path(self) -> Path:
        return record_path(Path(self.settings.results_dir), self.dataset, folder_label(self.label), self.slice_name,
                           self.seed)

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


def strategy_label(variant: str, strategy: str, selector: str | None) -> str:
    """How a strategy's cells are reported: ``nb · uncertainty``, with the selector when it is
    another method: ``nb · uncertainty (knn_embed)``."""
    return f"{variant} · {strategy}" + (f" ({selector})" if selector else "")


def folder_label(label: str) -> str:
    """The folder of a label's records: a strategy label's ``·`` and brackets spelt out, so that
    ``nb · uncertainty (knn_embed)`` is stored under ``nb+uncertainty+by-knn_embed``."""
    return label.replace(" · ", "+").replace(" (", "+by-").removesuffix(")")


def resolve_strategy_names(requested: str | Iterable[str], known: list[str]) -> list[str]:
    names = [n.strip() for n in (requested.split(",") if isinstance(requested, str) else requested) if n.strip()]
    for name in names:
        if name not in known:
            raise HarnessError("--strategies: " + unknown_name_message("strategy", name, known))
    return list(dict.fromkeys(names)) or [RANDOM]


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
    strategies: str | list[str] = RANDOM,
    selector: str | None = None,
) -> RunPlan:
    """Every cell of the run, each marked to do or to skip (already on disk with the same key).

    ``device`` is where the run's torch work goes; ``method_devices`` overrides it per method.
    ``unlabeled`` (the pool's sources) overrides each dataset config's ``unlabeled``.
    ``strategies`` are the query strategies (``random``, the nested slices, by default) and
    ``selector`` the method whose scores guide the picks of the others (None: the evaluated method).
    """
    registry = pm.registry
    method_names = resolve_method_names(methods, sorted(registry.methods))
    strategy_names = resolve_strategy_names(strategies, sorted(registry.strategies))
    if selector is not None and selector not in registry.methods:
        raise HarnessError("--selector: " + unknown_name_message("method", selector, sorted(registry.methods)))
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
            other = selector if selector not in (None, method_name) else None  # a selector apart from the method
            guide_name = other or method_name
            guide_class = registry.methods[guide_name]
            guide_params = params if other is None else build_params(guide_class, preset, parsed.get(guide_name, {}))
            for strategy_name in strategy_names if method_class.uses_labels else [RANDOM]:
                strategy_class = registry.strategies[strategy_name]
                if strategy_name != RANDOM and strategy_class.needs_scores and not has_scores(guide_class):
                    raise HarnessError(
                        f"strategy {strategy_name!r} picks by the selector's scores, but method {guide_name!r} has no "
                        "predict_scores; pass --selector with a method that has scores (e.g. knn_embed or nb)")
            for seed in seeds:
                seed_slices = train_slices(dataset_name, settings, registry.readers, grow_from, seed)
                names = [NO_SLICE] if not method_class.uses_labels else _selected(seed_slices, wanted)
                for strategy_name in strategy_names if method_class.uses_labels else [RANDOM]:
                    trajectory = None if strategy_name == RANDOM else _trajectory(
                        dataset_name, dataset, strategy_name, registry.strategies[strategy_name], guide_class,
                        guide_params, seed, grow_from, seed_slices)
                    for slice_name in names:
                        shared = trajectory is None or slice_name in (trajectory.start, "all")
                        cells.append(_cell(settings, dataset, method_class, params, variant, slice_name, seed, grow_from,
                                           seed_slices, pool, dependencies, preset,
                                           method_devices.get(method_name, device),
                                           None if shared else trajectory, other))
    cells = list({spec.path(): spec for spec in cells}.values())  # a shared cell is planned once
    plan = RunPlan(cells, list(datasets), method_names, list(seeds), preset, retry_failed)
    for spec in cells:
        (plan.skipped if is_done(spec, retry_failed) else plan.todo).append(spec)
    return plan


def _trajectory(dataset_name: str, dataset: Any, strategy: str, strategy_class: type, guide_class: type,
                guide_params: Any, seed: int, grow_from: tuple[int | str, ...],
                seed_slices: dict[str, TrainSlice]) -> TrajectorySpec | None:
    """The trajectory of ``strategy`` for one seed: it starts from the seed's smallest nested
    slice and steps through the larger sizes below the train split (None without two of them).
    A strategy that reads no scores has no selector: one trajectory serves every method."""
    names = tuple(name for name in seed_slices if name != "all")
    if len(names) < 2:
        return None
    sizes = tuple(seed_slices[name].size for name in names)
    key = {
        "dataset": dataset_name,
        "config_hash": dataset.config.config_hash(),
        "fingerprint": dataset.fingerprint,
        "strategy": strategy,
        "strategy_version": strategy_class.version,
        "selector": dependency_key(guide_class, guide_params) if strategy_class.needs_scores else None,
        "seed": seed,
        "start_index_hash": seed_slices[names[0]].index_hash(),
        "sizes": list(sizes),
    }
    selector = (guide_class.name, guide_params.model_dump(mode="json")) if strategy_class.needs_scores else (None, {})
    return TrajectorySpec(dataset_name, strategy, *selector, seed, names, sizes, grow_from, key)


def _cell(settings: Settings, dataset: Any, method_class: type, params: Any, variant: str, slice_name: str, seed: int,
          grow_from: tuple[int | str, ...], seed_slices: dict[str, TrainSlice], pool: tuple[str, ...],
          dependencies: dict[str, Any], preset: str, device: str, trajectory: TrajectorySpec | None,
          selector: str | None) -> CellSpec:
    """One cell; under a trajectory its slice is the trajectory's prefix of that size."""
    train_slice = seed_slices.get(slice_name)
    key = {
        "dataset": dataset.name,
        "config_hash": dataset.config.config_hash(),
        "fingerprint": dataset.fingerprint,
        "method": method_class.name,
        "method_version": method_class.version,
        "params_hash": params_hash(params),
        "slice": slice_name,
        "slice_index_hash": train_slice.index_hash() if train_slice and trajectory is None else None,
        "seed": seed,
    }
    if pool != DEFAULT_UNLABELED:  # only then: the keys of cells on disk stay as they were
        key["unlabeled"] = list(pool)
    if dependencies:  # likewise: keys of methods that wrap none stay as they were
        key["dependencies"] = dependencies
    label = variant
    label, guide = variant, None
    if trajectory is not None:  # and likewise: random cells keep their keys; the slice is the trajectory's prefix
        selector = selector if trajectory.selector else None
        guide = (selector or variant) if trajectory.selector else None
        key.update(strategy=trajectory.strategy, selector=guide and (selector or "self"), trajectory=trajectory.key_hash)
        label = strategy_label(variant, trajectory.strategy, selector)
    return CellSpec(settings, dataset.name, method_class.name, label, params.model_dump(mode="json"), slice_name, seed,
                    grow_from, key, dict(method_class.resources), preset, device, pool, trajectory,
                    variant if trajectory else None, guide)


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
