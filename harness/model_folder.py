"""``harness train``: fit one benchmark cell's method exactly as the run does and keep it in a
model folder; and reading such a folder back for ``harness tag``.

A model folder holds ``method/`` (what the method's ``save`` wrote), ``cell.npz`` (the cell's
stored arrays: valid and test scores and predictions) and ``manifest.json``: the versions that
made it, the method's parameters, the dataset's tags, task, fingerprint and text template, the
rules chosen on valid, and the cell's full record, so that the F1 to expect is written beside
the model. When the same cell is in a results folder, the manifest says whether its stored test
predictions are the ones this fit gave.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness import __version__
from harness.cell import run_cell
from harness.datasets import Settings, load_dataset
from harness.errors import HarnessError, unknown_name_message
from harness.methods import FitContext, Method, has_save
from harness.persistence import load_json, save_json
from harness.plan import CellSpec, plan_run
from harness.plugins import HarnessPluginManager
from harness.predictions import PredictionsError, decode_predictions, read_predictions
from harness.records import CellRecord, read_record
from harness.rules import RULES

FORMAT = 1  # the model folder's layout; a folder of another format is refused
MANIFEST = "manifest.json"
METHOD_DIR = "method"
CELL_ARRAYS = "cell.npz"


class ModelFolderError(HarnessError):
    """A model folder that cannot be written, or read back by this harness."""


@dataclass
class TrainRequest:
    """What ``harness train`` fits: one cell of ``harness run``."""

    dataset: str
    method: str
    slice_name: str = "all"
    seed: int = 0
    preset: str = "default"
    overrides: tuple[str, ...] = ()
    label: str | None = None
    device: str = "auto"
    unlabeled: list[str] | None = None


@dataclass
class Trained:
    folder: Path
    manifest: dict[str, Any]
    record: CellRecord


def plan_cell(pm: HarnessPluginManager, settings: Settings, request: TrainRequest) -> CellSpec:
    """The cell ``harness run`` would compute for this request (same key, same slice)."""
    plan = plan_run(pm, settings, [request.method], [request.dataset], [request.seed], [request.slice_name],
                    request.preset, list(request.overrides), request.label, device=request.device,
                    unlabeled=request.unlabeled)
    (spec,) = plan.cells  # one method, dataset, seed and slice ('none' for a method that uses no labels)
    return spec


def train(pm: HarnessPluginManager, settings: Settings, request: TrainRequest, out: Path, force: bool = False,
          progress: Callable[[str], None] = lambda message: None) -> Trained:
    """Fit the request's cell, save the fitted method and its manifest in ``out``; ModelFolderError
    (one line) when the method cannot be saved, ``out`` is taken or the cell fails."""
    spec = plan_cell(pm, settings, request)
    method_class = pm.registry.methods[spec.method]
    if not has_save(method_class):
        raise ModelFolderError(f"method {spec.method!r} defines no save and load, so harness train cannot keep it "
                               "(see the plugin docs: Method.save and Method.load)")
    check_output_folder(out, force)
    progress(f"training {spec.label} on {spec.dataset}, slice {spec.slice_name}, seed {spec.seed}")
    result = run_cell(spec, pm, progress, keep_method=True)
    record = result.record
    if not record.ok or result.method is None or result.predictions is None:
        raise ModelFolderError(f"the cell failed, nothing saved: {record.error}")
    in_results = _compare_with_results(spec, result.predictions)
    manifest = _manifest(spec, record, in_results, load_dataset(spec.dataset, spec.settings, pm.registry.readers).config)
    _write_folder(out, force, result.method, result.predictions, manifest)
    return Trained(out, manifest, record)


def check_output_folder(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ModelFolderError(f"--out {out}: a file, not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise ModelFolderError(f"--out {out}: the folder exists and is not empty; give --force to replace it")


def _compare_with_results(spec: CellSpec, arrays: bytes) -> dict[str, Any]:
    """Whether the results folder holds this cell, and if so whether its stored test predictions
    are the ones just computed."""
    found: dict[str, Any] = {"results": spec.settings.results_dir, "cell": None, "same_test_predictions": None}
    stored = read_record(spec.path())
    if stored is None:
        return found
    if stored.key_hash != spec.key_hash:
        found["cell"] = "another key (data, parameters or method version differ)"
        return found
    found["cell"] = "same key" if stored.ok else "same key, failed"
    if stored.ok and stored.predictions is not None:
        try:
            before = read_predictions(spec.path().parent / stored.predictions.file, stored.predictions.sha256)
        except PredictionsError as exc:
            found["cell"] = f"same key, arrays unreadable ({exc})"
            return found
        now = decode_predictions(arrays, CELL_ARRAYS)
        found["same_test_predictions"] = bool(np.array_equal(before["test_prediction"], now["test_prediction"]))
    return found


def _manifest(spec: CellSpec, record: CellRecord, in_results: dict[str, Any], config: Any) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "harness_version": __version__,
        "method": {
            "name": spec.method, "label": spec.label, "version": record.method.version, "preset": spec.preset,
            "params": spec.params, "plugin": record.method.plugin, "distribution": record.method.distribution,
            "distribution_version": record.method.distribution_version,
        },
        "dataset": {
            "name": spec.dataset, "fingerprint": record.dataset.fingerprint, "config_hash": record.dataset.config_hash,
            "task": record.dataset.task, "tags": list(record.dataset.tags), "text": config.text,
            "label_separator": config.labels.separator, "tag_descriptions": dict(config.labels.descriptions),
        },
        "slice": spec.slice_name, "seed": spec.seed,
        "rule": record.rule, "rules": record.rules,
        "expected_test_metrics": {rule: metrics.model_dump() for rule, metrics in (record.rule_metrics or {}).items()},
        "results": in_results,
        "record": record.to_json(),
    }


def _write_folder(out: Path, force: bool, method: Method, arrays: bytes, manifest: dict[str, Any]) -> None:
    """Everything in a temporary folder beside ``out``, then moved into place: a folder that is
    there is whole."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        (partial / METHOD_DIR).mkdir()
        method.save(partial / METHOD_DIR)
        (partial / CELL_ARRAYS).write_bytes(arrays)
        save_json(partial / MANIFEST, manifest)
        if out.exists():  # empty, or --force
            shutil.rmtree(out)
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


# ------------------------------------------------------------------ reading a model folder back


@dataclass
class LoadedModel:
    folder: Path
    manifest: dict[str, Any]
    method: Method

    @property
    def tags(self) -> list[str]:
        return list(self.manifest["dataset"]["tags"])

    @property
    def task(self) -> str:
        return self.manifest["dataset"]["task"]

    @property
    def carried_rules(self) -> list[str]:
        """The rules the cell was scored under: its default first."""
        scored = [rule for rule in RULES if rule in self.manifest["expected_test_metrics"]]
        return [self.manifest["rule"], *[rule for rule in scored if rule != self.manifest["rule"]]]

    def cell_arrays(self) -> dict[str, np.ndarray]:
        return decode_predictions((self.folder / CELL_ARRAYS).read_bytes(), self.folder / CELL_ARRAYS)


def read_manifest(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise ModelFolderError(f"--model {folder}: not a folder; expected one written by harness train")
    if not (folder / MANIFEST).is_file():
        raise ModelFolderError(f"--model {folder}: no {MANIFEST}; expected a folder written by harness train")
    manifest = load_json(folder / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ModelFolderError(f"--model {folder}: model folder format {found!r} (harness "
                               f"{manifest.get('harness_version') if isinstance(manifest, dict) else '?'}); "
                               f"this harness ({__version__}) reads format {FORMAT}: train it again")
    return manifest


def load_model(folder: Path, pm: HarnessPluginManager, cache_dir: Path, device: str = "auto",
               progress: Callable[[str], None] = lambda message: None) -> LoadedModel:
    """The fitted method of a model folder, checked against the installed method's version."""
    manifest = read_manifest(folder)
    saved = manifest["method"]
    methods = pm.registry.methods
    if saved["name"] not in methods:
        raise ModelFolderError(f"--model {folder}: " + unknown_name_message("method", saved["name"], sorted(methods))
                               + "; install the plugin that registers it")
    method_class = methods[saved["name"]]
    if method_class.version != saved["version"]:
        raise ModelFolderError(f"--model {folder}: saved by method {saved['name']!r} version {saved['version']}, "
                               f"but the installed one is version {method_class.version}: train it again")
    if not has_save(method_class):
        raise ModelFolderError(f"--model {folder}: the installed method {saved['name']!r} defines no load")
    dataset = manifest["dataset"]
    context = FitContext(
        seed=manifest["seed"], tags=list(dataset["tags"]), dataset=dataset["name"], fingerprint=dataset["fingerprint"],
        cache_dir=cache_dir, slice_name=manifest["slice"], progress=progress,
        tag_descriptions=dict(dataset["tag_descriptions"]), task=dataset["task"], device=device,
    )
    try:
        params = method_class.Params.model_validate(saved["params"])
        method = method_class.load(folder / METHOD_DIR, params, context)
    except HarnessError:
        raise
    except Exception as exc:  # a plugin's load may fail in its own ways: one line, naming the folder
        raise ModelFolderError(f"--model {folder}: cannot load the saved {saved['name']}: "
                               f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
    return LoadedModel(folder, manifest, method)

