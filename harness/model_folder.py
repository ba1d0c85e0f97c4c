"""``harness train``: fit one benchmark cell's method exactly as the run does and keep it in a
model folder (or an ensemble's members, weighed on valid as ``harness report --ensemble`` weighs
them); and reading such a folder back for ``harness tag``.

A model folder holds ``method/`` (what the method's ``save`` wrote), ``cell.npz`` (the cell's
stored arrays: valid and test scores and predictions) and ``manifest.json``: the versions that
made it, the method's parameters, the dataset's tags, task, fingerprint and text template, the
rules chosen on valid, and the cell's full record, so that the F1 to expect is written beside
the model. When the same cell is in a results folder, the manifest says whether its stored test
predictions are the ones this fit gave.
"""

from __future__ import annotations

import dataclasses
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
from harness.ensembles import ENSEMBLE_VERSION, EnsembleSpec, build_derived, comparable_scores, ensemble_scores
from harness.ensembles import Member as EnsembleMember
from harness.records import CellRecord, read_record, record_path, write_record
from harness.rules import RULES

FORMAT = 1  # the model folder's layout; a folder of another format is refused
MANIFEST = "manifest.json"
METHOD_DIR = "method"
CELL_ARRAYS = "cell.npz"
MEMBERS_DIR = "members"  # an ensemble's members, each a model folder
ENSEMBLE = "ensemble"  # the method name of an ensemble's manifest


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
    spec = _savable_cell(pm, settings, request)
    check_output_folder(out, force)
    method, record, arrays = _fit(pm, spec, progress)
    manifest = _manifest(spec, record, _compare_with_results(spec, arrays), _config(pm, spec))
    _write_folder(out, force, lambda folder: _fill_method_folder(folder, method, arrays, manifest))
    return Trained(out, manifest, record)


def _savable_cell(pm: HarnessPluginManager, settings: Settings, request: TrainRequest) -> CellSpec:
    spec = plan_cell(pm, settings, request)
    if not has_save(pm.registry.methods[spec.method]):
        raise ModelFolderError(f"method {spec.method!r} defines no save and load, so harness train cannot keep it "
                               "(see the plugin docs: Method.save and Method.load)")
    return spec


def _fit(pm: HarnessPluginManager, spec: CellSpec, progress: Callable[[str], None]) -> tuple[Method, CellRecord, bytes]:
    progress(f"training {spec.label} on {spec.dataset}, slice {spec.slice_name}, seed {spec.seed}")
    result = run_cell(spec, pm, progress, keep_method=True)
    if not result.record.ok or result.method is None or result.predictions is None:
        raise ModelFolderError(f"the cell of {spec.label} failed, nothing saved: {result.record.error}")
    return result.method, result.record, result.predictions


def _config(pm: HarnessPluginManager, spec: CellSpec) -> Any:
    return load_dataset(spec.dataset, spec.settings, pm.registry.readers).config


def _fill_method_folder(folder: Path, method: Method, arrays: bytes, manifest: dict[str, Any]) -> None:
    (folder / METHOD_DIR).mkdir()
    method.save(folder / METHOD_DIR)
    (folder / CELL_ARRAYS).write_bytes(arrays)
    save_json(folder / MANIFEST, manifest)


def train_ensemble(pm: HarnessPluginManager, settings: Settings, ensemble: EnsembleSpec, request: TrainRequest,
                   out: Path, force: bool = False, progress: Callable[[str], None] = lambda message: None) -> Trained:
    """Fit every member's cell as ``train`` does, weigh them on valid exactly as ``harness report
    --ensemble`` does (``harness.ensembles.build_derived``), and save the members (each a model
    folder under ``members/``) with the ensemble's weights, scaling and rules."""
    specs = [_savable_cell(pm, settings, dataclasses.replace(request, method=member)) for member in ensemble.members]
    check_output_folder(out, force)
    fitted = [_fit(pm, spec, progress) for spec in specs]
    with tempfile.TemporaryDirectory() as scratch:  # build_derived reads the members' records and arrays from files
        members = []
        for spec, (_, record, arrays) in zip(specs, fitted):
            path = Path(scratch) / spec.method / "cell.json"  # a folder each: the arrays' file names may agree
            write_record(path, record)
            (path.parent / record.predictions.file).write_bytes(arrays)
            members.append(EnsembleMember(spec.method, record, path))
        derived_path = Path(scratch) / "ensemble.json"
        derived = build_derived(ensemble, members, derived_path)
        arrays = (derived_path.parent / derived.predictions.file).read_bytes()
    spec = specs[0]
    manifest = _manifest(spec, derived, _compare_derived(settings, derived, arrays), _config(pm, spec))
    manifest["method"] = {"name": ENSEMBLE, "label": ensemble.label, "version": ENSEMBLE_VERSION,
                          "members": list(ensemble.members), "scaling": ensemble.scaling,
                          "weights": derived.derived.weights}

    def fill(folder: Path) -> None:
        for member_spec, (method, record, member_arrays) in zip(specs, fitted):
            member_folder = folder / MEMBERS_DIR / member_spec.method
            member_folder.mkdir(parents=True)
            member_manifest = _manifest(member_spec, record, {"results": None, "cell": None, "same_test_predictions": None},
                                        _config(pm, member_spec))
            _fill_method_folder(member_folder, method, member_arrays, member_manifest)
        (folder / CELL_ARRAYS).write_bytes(arrays)
        save_json(folder / MANIFEST, manifest)

    _write_folder(out, force, fill)
    return Trained(out, manifest, derived)


def _compare_derived(settings: Settings, derived: CellRecord, arrays: bytes) -> dict[str, Any]:
    """As ``_compare_with_results``, for the ensemble's derived cell in the results folder."""
    path = record_path(Path(settings.results_dir), derived.dataset.name, derived.method.label, derived.slice.name,
                       derived.seed)
    return _compare_stored(settings.results_dir, path, derived.key_hash, arrays)


def check_output_folder(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ModelFolderError(f"--out {out}: a file, not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise ModelFolderError(f"--out {out}: the folder exists and is not empty; give --force to replace it")


def _compare_with_results(spec: CellSpec, arrays: bytes) -> dict[str, Any]:
    """Whether the results folder holds this cell, and if so whether its stored test predictions
    are the ones just computed."""
    return _compare_stored(spec.settings.results_dir, spec.path(), spec.key_hash, arrays)


def _compare_stored(results_dir: str, path: Path, key_hash: str, arrays: bytes) -> dict[str, Any]:
    found: dict[str, Any] = {"results": results_dir, "cell": None, "same_test_predictions": None}
    stored = read_record(path)
    if stored is None:
        return found
    if stored.key_hash != key_hash:
        found["cell"] = "another key (data, parameters or method version differ)"
        return found
    found["cell"] = "same key" if stored.ok else "same key, failed"
    if stored.ok and stored.predictions is not None:
        try:
            before = read_predictions(path.parent / stored.predictions.file, stored.predictions.sha256)
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


def _write_folder(out: Path, force: bool, fill: Callable[[Path], None]) -> None:
    """``fill`` writes everything into a temporary folder beside ``out``, which is then moved into
    place: a folder that is there is whole."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        fill(partial)
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


class SavedEnsemble:
    """An ensemble of loaded members that scores new texts as the derived cell scored test: each
    member's scores mapped with what its valid scores fitted (``comparable_scores``), then the
    weighted mean; a single kept member's own scores."""

    def __init__(self, members: list[LoadedModel], weights: list[float], scaling: str) -> None:
        self.members, self.weights, self.scaling = members, np.asarray(weights, dtype=np.float64), scaling
        self.valid = [member.cell_arrays() for member in members]

    def predict_scores(self, texts: list[str]) -> np.ndarray:
        scores = [member.method.predict_scores(texts) for member in self.members]
        mapped = [comparable_scores(arrays["valid_scores"], member_scores, arrays["valid_labels"], self.scaling)[1]
                  for arrays, member_scores in zip(self.valid, scores)]
        return ensemble_scores(scores, mapped, self.weights)


def load_model(folder: Path, pm: HarnessPluginManager, cache_dir: Path, device: str = "auto",
               progress: Callable[[str], None] = lambda message: None) -> LoadedModel:
    """The fitted method of a model folder, checked against the installed method's version."""
    manifest = read_manifest(folder)
    saved = manifest["method"]
    if saved["name"] == ENSEMBLE:
        if saved["version"] != ENSEMBLE_VERSION:
            raise ModelFolderError(f"--model {folder}: an ensemble of version {saved['version']}; this harness combines "
                                   f"members as version {ENSEMBLE_VERSION}: train it again")
        members = [load_model(folder / MEMBERS_DIR / name, pm, cache_dir, device, progress) for name in saved["members"]]
        weights = [saved["weights"][name] for name in saved["members"]]
        return LoadedModel(folder, manifest, SavedEnsemble(members, weights, saved["scaling"]))  # type: ignore[arg-type]
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

