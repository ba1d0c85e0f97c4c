"""Plan cells, run them (skipping those already on disk), and write one record per cell.

A cell is (dataset, method variant, training slice, seed). ``run_cell`` turns a plain-data
``CellSpec`` into a record and never raises: a failing method fails its own cell only.
The driver (``run_plan``) is the only writer of records and the only caller of lifecycle hooks;
an executor (harness/executors.py) decides where ``run_cell`` runs. Before a cell starts, the
driver takes the cell's lock under ``<results>/.locks`` and looks at its record again, so two
runs on one results folder never compute (or write) the same cell at the same time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import random
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from harness.config import available_configs, load_config, unknown_name_message
from harness.data import PreparedDataset, prepare
from harness.environment import environment
from harness.locks import FileLock
from harness.evaluation import evaluate_method
from harness.methods import FitContext, LabeledTexts, Method, params_hash, stable_hash
from harness.params import DEFAULT_PRESET, build_params, parse_overrides, variant_label
from harness.plugins import HarnessPluginManager, get_plugin_manager
from harness.predictions import predictions_path, write_predictions
from harness.progress import Progress
from harness.splits import NO_SLICE, TrainSlice, nested_slices
from harness.store import CELLS_DIR, SCHEMA_VERSION, read_record, record_path, write_json_atomic

LOCKS_DIR = ".locks"


@dataclass(frozen=True)
class Settings:
    """Where things are. Plain data, so a cell spec can travel to another process."""

    results_dir: str
    cache_dir: str
    data_dirs: tuple[str, ...] = ()
    datasets_cfg_dirs: tuple[str, ...] = ()


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

    @property
    def key_hash(self) -> str:
        return stable_hash(self.key)

    def path(self) -> Path:
        return record_path(Path(self.settings.results_dir), self.dataset, self.label, self.slice_name, self.seed)

    def lock_path(self) -> Path:
        """The lock a run holds while it computes this cell: the record's path under ``.locks``."""
        results = Path(self.settings.results_dir)
        relative = self.path().relative_to(results / CELLS_DIR)
        return (results / LOCKS_DIR / relative).with_suffix(".lock")


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


# ---------------------------------------------------------------- datasets and slices (memoised per process)

@functools.lru_cache(maxsize=8)
def load_dataset(name: str, settings: Settings) -> PreparedDataset:
    from harness.sources import data_dirs

    cfg = load_config(name, [Path(d) for d in settings.datasets_cfg_dirs])
    pm = get_plugin_manager()
    return prepare(cfg, data_dirs(map(Path, settings.data_dirs)), Path(settings.cache_dir), pm.registry.loaders)


@functools.lru_cache(maxsize=64)
def train_slices(name: str, settings: Settings, sizes: tuple[int | str, ...], seed: int) -> dict[str, TrainSlice]:
    dataset = load_dataset(name, settings)
    train_labels = dataset.labels[dataset.split_rows["train"]]
    return {s.name: s for s in nested_slices(train_labels, list(sizes), seed)}


# ---------------------------------------------------------------- planning

def resolve_method_names(requested: str | Iterable[str], known: list[str]) -> list[str]:
    names = known if requested == "all" else [n.strip() for n in (requested.split(",") if isinstance(requested, str) else requested) if n.strip()]
    if "all" in names:
        names = known
    for name in names:
        if name not in known:
            raise ValueError(unknown_name_message("method", name, known))
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
) -> RunPlan:
    """Every cell of the run, each marked to do or to skip (already on disk with the same key)."""
    registry = pm.registry
    method_names = resolve_method_names(methods, sorted(registry.methods))
    parsed = parse_overrides(overrides or [], sorted(registry.methods))
    known_datasets = list(available_configs([Path(d) for d in settings.datasets_cfg_dirs]))
    for name in datasets:
        if name not in known_datasets:
            raise ValueError(unknown_name_message("dataset", name, known_datasets))
    cells: list[CellSpec] = []
    for dataset_name in datasets:
        dataset = load_dataset(dataset_name, settings)
        wanted = list(slices) if slices else list(dataset.config.slices)
        grow_from = tuple(_slice_sizes(dataset.config.slices, wanted))
        for method_name in method_names:
            method_class = registry.methods[method_name]
            params = build_params(method_class, preset, parsed.get(method_name, {}))
            variant = variant_label(method_class, params, preset, label, bool(parsed.get(method_name)))
            for seed in seeds:
                seed_slices = train_slices(dataset_name, settings, grow_from, seed)
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
                    cells.append(
                        CellSpec(settings, dataset_name, method_name, variant, params.model_dump(mode="json"),
                                 slice_name, seed, grow_from, key, dict(method_class.resources), preset)
                    )
    plan = RunPlan(cells, list(datasets), method_names, list(seeds), preset, retry_failed)
    for spec in cells:
        (plan.skipped if is_done(spec, retry_failed) else plan.todo).append(spec)
    return plan


def is_done(spec: CellSpec, retry_failed: bool = False) -> bool:
    """Whether the cell's record on disk matches its key (and is ok, when failed cells are retried)."""
    existing = read_record(spec.path())
    return existing is not None and existing.get("key_hash") == spec.key_hash and (
        existing.get("status") == "ok" or not retry_failed
    )


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


# ---------------------------------------------------------------- one cell

def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:  # seed torch only when a method already imported it
        sys.modules["torch"].manual_seed(seed)


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def _distribution_of(module_name: str) -> tuple[str | None, str | None]:
    """The installed distribution (and its version) that provides a plugin's module."""
    top = module_name.split(".")[0]
    dists = _packages_distributions().get(top)
    if not dists:
        return None, None
    return dists[0], metadata.version(dists[0])


def _base_record(spec: CellSpec) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "key": spec.key,
        "key_hash": spec.key_hash,
        "status": "failed",
        "seed": spec.seed,
        "method": {"name": spec.method, "label": spec.label, "preset": spec.preset, "params": spec.params},
        "slice": {"name": spec.slice_name},
        "dataset": {"name": spec.dataset},
        "environment": environment(),
    }


def _finished_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def failed_record(spec: CellSpec, error: str, seconds: float) -> dict[str, Any]:
    """The record of a cell that failed outside ``run_cell`` (timed out, its worker died)."""
    record = _base_record(spec)
    record.update(error=error, timings={"total_s": seconds}, finished_at=_finished_now())
    return record


def run_cell(spec: CellSpec, pm: HarnessPluginManager | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fit and score one cell. Returns its record; failures are recorded, never raised."""
    pm = pm or get_plugin_manager()
    started = time.perf_counter()
    record = _base_record(spec)
    timings: dict[str, float] = {}
    try:
        if spec.method not in pm.registry.methods:  # e.g. a worker process, which rebuilds the plugin manager
            raise LookupError(
                f"method {spec.method!r} is not registered in this process; worker processes load plugins from "
                f"DEFAULT_PLUGINS, $HARNESS_PLUGINS and entry points, not those registered in the driver only"
            )
        method_class: type[Method] = pm.registry.methods[spec.method]
        plugin = pm.registry.method_plugins[spec.method]
        distribution, dist_version = _distribution_of(method_class.__module__)
        record["method"].update(
            version=method_class.version, plugin=plugin, distribution=distribution, distribution_version=dist_version
        )
        dataset = load_dataset(spec.dataset, spec.settings)
        record["dataset"].update(
            config_hash=dataset.config.config_hash(), fingerprint=dataset.fingerprint, sizes=dataset.sizes(), tags=dataset.tags,
            task=dataset.config.task,
        )
        if spec.slice_name == NO_SLICE:
            train = LabeledTexts([], np.zeros((0, len(dataset.tags)), dtype=np.uint8), list(dataset.tags))
            record["slice"].update(nominal=None, actual_n=0, index_hash=None)
        else:
            train_slice = train_slices(spec.dataset, spec.settings, spec.slice_sizes, spec.seed)[spec.slice_name]
            train = dataset.labeled("train", train_slice.positions)
            record["slice"].update(nominal=train_slice.nominal, actual_n=train_slice.size, index_hash=train_slice.index_hash())
        method = method_class(method_class.Params.model_validate(spec.params))
        context = FitContext(
            seed=spec.seed, tags=list(dataset.tags), dataset=spec.dataset, fingerprint=dataset.fingerprint,
            cache_dir=Path(spec.settings.cache_dir), slice_name=spec.slice_name,
            progress=progress or (lambda message: None),
            tag_descriptions=dict(dataset.config.labels.descriptions),
        )
        valid, test = dataset.labeled("valid"), dataset.labeled("test")
        _seed_everything(spec.seed)
        tick = time.perf_counter()
        method.fit(train, valid, dataset.unlabeled_texts, context)
        timings["fit_s"] = time.perf_counter() - tick
        evaluation = evaluate_method(method, spec.method, valid, test, dataset.config.task)
        timings.update(evaluation.timings)
        record.update(evaluation.record_fields())
        record["predictions"] = write_predictions(predictions_path(spec.path()), evaluation.arrays)
        record["details"] = _json_details(spec.method, method.details())
        record["status"] = "ok"
    except Exception as exc:  # the cell fails, the run goes on
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()
    timings["total_s"] = time.perf_counter() - started
    record["timings"] = timings
    record["finished_at"] = _finished_now()
    return record


def _json_details(method_name: str, details: dict[str, Any]) -> dict[str, Any]:
    """Details must survive the JSON record; a numpy scalar would otherwise crash the driver."""
    try:
        json.dumps(details)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"method {method_name!r}: details() must return JSON-serialisable values ({exc})") from None
    return details


# ---------------------------------------------------------------- the driver

class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run; ``summary`` counts what finished (and was written) before."""

    def __init__(self, summary: dict[str, int]) -> None:
        super().__init__("run interrupted")
        self.summary = summary


class _StopOnCtrlC:
    """First Ctrl-C: take no new cell, let the ones in flight finish. Second Ctrl-C: stop now."""

    def __init__(self, progress: Progress) -> None:
        self.requested = False
        self._progress = progress
        self._previous: Any = None

    def __enter__(self) -> _StopOnCtrlC:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self._progress.mode == "human":
            # os.write, not the display: the signal may come while the display holds its lock
            os.write(sys.stderr.fileno(), b"\nstopping: no new cells; waiting for the cells in flight "
                                          b"(Ctrl-C again to abandon them)\n")

    def __exit__(self, *exc_info: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def run_plan(
    pm: HarnessPluginManager,
    plan: RunPlan,
    executor: Any = None,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Run the plan's to-do cells on ``executor`` (serial by default) and write their records.

    Returns counts: planned, skipped (done before, or taken by another run meanwhile), ok and
    failed. On Ctrl-C, raises ``RunInterrupted`` once the cells in flight are written.
    """
    from harness.executors import SerialExecutor  # executors import this module

    executor = executor or SerialExecutor()
    progress = progress or Progress(mode="quiet")
    pm.hook.before_run(plan=plan)
    summary = {"planned": len(plan.cells), "skipped": len(plan.skipped), "ok": 0, "failed": 0}
    claims: dict[Path, FileLock] = {}  # record path -> the lock this run holds on the cell

    def cells_to_start(stop: _StopOnCtrlC) -> Iterator[CellSpec]:
        """The to-do cells, each locked for this run at the moment an executor takes it."""
        for spec in plan.todo:
            if stop.requested:
                return
            lock = FileLock(spec.lock_path())
            if not lock.acquire(blocking=False):  # another run is computing it
                summary["skipped"] += 1
                progress.cell_elsewhere(spec)
                continue
            if is_done(spec, plan.retry_failed):  # another run finished it since planning
                lock.release()
                summary["skipped"] += 1
                progress.cell_elsewhere(spec)
                continue
            claims[spec.path()] = lock
            yield spec

    cell_fn = functools.partial(run_cell, pm=pm) if executor.name == "serial" else run_cell
    progress.run_started(len(plan.todo), len(plan.skipped))
    try:
        with _StopOnCtrlC(progress) as stop, contextlib.closing(
            executor.map(cell_fn, cells_to_start(stop), on_message=progress.message)
        ) as finished:
            for spec, record in finished:
                write_json_atomic(spec.path(), record)
                claims.pop(spec.path()).release()
                summary[record["status"]] += 1
                progress.cell_finished(spec, record)
                pm.hook.after_cell(record=record)
                if record["status"] != "ok":
                    pm.hook.on_cell_error(record=record)
    except KeyboardInterrupt as exc:
        progress.run_finished({**summary, "interrupted": True})
        raise RunInterrupted(summary) from exc
    finally:
        for lock in claims.values():  # cells abandoned in flight
            lock.release()
    if stop.requested:
        progress.run_finished({**summary, "interrupted": True})
        raise RunInterrupted(summary)
    progress.run_finished(summary)
    pm.hook.after_run(summary=summary)
    return summary
