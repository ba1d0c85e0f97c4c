"""One cell: fit a method on a training slice, score it on test, and build its record.

``run_cell`` never raises: a failing method fails its own cell only, and the record says why.
It writes nothing under the results folder: the record and the bytes of its arrays file go
back to the driver (``CellResult``), which writes both, so a worker needs no view of it.
"""

from __future__ import annotations

import functools
import json
import time
import traceback
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.cores import choose_openmp_waiting
from harness.datasets import load_dataset, train_slices
from harness.devices import describe_device
from harness.environment import environment
from harness.evaluation import evaluate_method
from harness.methods import FitContext, LabeledTexts, Method
from harness.plan import CellSpec
from harness.plugins import HarnessPluginManager, get_plugin_manager
from harness.predictions import encode_predictions, predictions_entry, predictions_path
from harness.records import CellRecord, DatasetInfo, MethodInfo, Metrics, PredictionsFile, SliceInfo, finished_now
from harness.seeding import seed_everything
from harness.splits import NO_SLICE, TrainSlice
from harness.trajectories import grow_trajectory, grow_with_fitted


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


def _base_record(spec: CellSpec) -> CellRecord:
    return CellRecord(
        key=spec.key,
        key_hash=spec.key_hash,
        status="failed",
        seed=spec.seed,
        method=MethodInfo(name=spec.method, label=spec.label, preset=spec.preset, params=spec.params,
                          strategy=spec.strategy if spec.trajectory else None, selector=spec.selector_label, base=spec.base_label),
        slice=SliceInfo(name=spec.slice_name),
        dataset=DatasetInfo(name=spec.dataset),
        environment=environment(),
    )


def _reset_peak_rss() -> bool:
    """Start the process's peak resident memory afresh (Linux: writing 5 to clear_refs resets
    VmHWM), so that the peak read after the cell is the cell's; False where that cannot be done."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


@dataclass
class CellResult:
    """A computed cell as it travels back to the driver: its record and the bytes of the arrays
    file the record names (``record.predictions``; None when the cell failed)."""

    record: CellRecord
    predictions: bytes | None = None
    method: Method | None = None  # the fitted method, only when run_cell is asked to keep it (harness train)


def failed_result(spec: CellSpec, error: str, seconds: float) -> CellResult:
    """The result of a cell that failed outside ``run_cell`` (timed out, its worker died)."""
    record = _base_record(spec)
    record.error = error
    record.timings = {"total_s": seconds}
    record.finished_at = finished_now()
    return CellResult(record)


def run_cell(spec: CellSpec, pm: HarnessPluginManager | None = None, progress: Callable[[str], None] | None = None,
             keep_method: bool = False) -> CellResult:
    """Fit and score one cell. Returns its record and arrays; failures are recorded, never raised.

    ``pm`` defaults to this process's plugin manager (a worker process builds its own).
    ``keep_method`` returns the fitted method too, for ``harness train`` to save.
    """
    pm = pm or get_plugin_manager()
    choose_openmp_waiting()  # before any fit loads torch; once per process
    started = time.perf_counter()
    measures_memory = _reset_peak_rss()
    record = _base_record(spec)
    say = progress or (lambda message: None)
    blob: bytes | None = None
    fitted: Method | None = None
    timings: dict[str, float] = {}
    try:
        registry = pm.registry
        if spec.method not in registry.methods:  # e.g. a worker process, which rebuilds the plugin manager
            raise LookupError(
                f"method {spec.method!r} is not registered in this process; worker processes load plugins from "
                f"DEFAULT_PLUGINS, $HARNESS_PLUGINS and entry points, not those registered in the driver only"
            )
        method_class: type[Method] = registry.methods[spec.method]
        distribution, dist_version = _distribution_of(method_class.__module__)
        record.method.version = method_class.version
        record.method.plugin = registry.methods.origins[spec.method]
        record.method.distribution, record.method.distribution_version = distribution, dist_version
        dataset = load_dataset(spec.dataset, spec.settings, registry.readers)
        record.dataset = DatasetInfo(
            name=spec.dataset, config_hash=dataset.config.config_hash(), fingerprint=dataset.fingerprint,
            sizes=dataset.sizes(), tags=dataset.tags, revision=dataset.config.source.revision, task=dataset.config.task,
        )
        slice_positions = None
        if spec.slice_name == NO_SLICE:
            train = LabeledTexts([], np.zeros((0, len(dataset.tags)), dtype=np.uint8), list(dataset.tags))
            record.slice = SliceInfo(name=spec.slice_name, nominal=None, actual_n=0, index_hash=None)
        else:
            if spec.trajectory is None:
                train_slice = train_slices(spec.dataset, spec.settings, registry.readers, spec.slice_sizes, spec.seed)[spec.slice_name]
            else:  # the trajectory's prefix, grown first where it is not yet that long
                size = spec.trajectory.size_of(spec.slice_name)
                trajectory = grow_trajectory(spec.trajectory, size, spec.settings, pm, spec.device, say)
                train_slice = TrainSlice(spec.slice_name, int(spec.slice_name), trajectory.positions(size))
                timings.update(trajectory.costs(size))
            train = dataset.labeled("train", train_slice.positions)
            slice_positions = train_slice.positions
            record.slice = SliceInfo(name=spec.slice_name, nominal=train_slice.nominal, actual_n=train_slice.size,
                                     index_hash=train_slice.index_hash())
        method = method_class(method_class.Params.model_validate(spec.params))
        context = FitContext(
            seed=spec.seed, tags=list(dataset.tags), dataset=spec.dataset, fingerprint=dataset.fingerprint,
            cache_dir=Path(spec.settings.cache_dir), slice_name=spec.slice_name,
            progress=say,
            tag_descriptions=dict(dataset.config.labels.descriptions), task=dataset.config.task,
            device=spec.device,
        )
        valid, test = dataset.labeled("valid"), dataset.labeled("test")
        unlabeled = dataset.unlabeled_pool(spec.unlabeled, slice_positions)
        record.dataset.unlabeled, record.dataset.pool_size = list(spec.unlabeled), len(unlabeled)
        seed_everything(spec.seed)
        tick = time.perf_counter()
        method.fit(train, valid, unlabeled, context)
        timings["fit_s"] = time.perf_counter() - tick
        evaluation = evaluate_method(method, spec.method, valid, test, dataset.config.task)
        timings.update(evaluation.timings)
        record.rule = evaluation.rule
        record.rule_metrics = {rule: Metrics.model_validate(m) for rule, m in evaluation.rule_metrics.items()}
        record.metrics = record.rule_metrics[evaluation.rule]
        record.rules, record.ranking = evaluation.rules, evaluation.ranking
        blob = encode_predictions(evaluation.arrays)
        record.predictions = PredictionsFile.model_validate(predictions_entry(predictions_path(spec.path()), blob))
        record.details = _json_details(spec.method, method.details())
        record.usage = method.usage()
        if spec.trajectory is not None and spec.trajectory.selector and spec.selector_label == spec.base_label:
            # the method is its trajectory's selector: its fit takes the next step, not a second fit
            grow_with_fitted(spec.trajectory, spec.trajectory.size_of(spec.slice_name), method, spec.settings, pm,
                             spec.device, say)
        record.status = "ok"
        fitted = method if keep_method else None
    except Exception as exc:  # the cell fails, the run goes on
        record.error = f"{type(exc).__name__}: {exc}"
        record.traceback = traceback.format_exc()
        record.predictions, blob = None, None
    timings["total_s"] = time.perf_counter() - started
    record.timings = timings
    record.environment = {**record.environment, **describe_device(spec.device)}
    record.peak_rss_mb = _peak_rss_mb() if measures_memory else None
    record.finished_at = finished_now()
    return CellResult(record, blob, fitted)


def _json_details(method_name: str, details: dict[str, Any]) -> dict[str, Any]:
    """Details must survive the JSON record; a numpy scalar would otherwise crash the driver."""
    try:
        json.dumps(details)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"method {method_name!r}: details() must return JSON-serialisable values ({exc})") from None
    return details
