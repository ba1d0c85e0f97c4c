"""The method contract: what a plugin's method class provides and what the core checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from harness.hashing import stable_hash


class MethodParams(BaseModel):
    """Base for a method's parameters. Unknown names are rejected, so typos fail early."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


@dataclass
class LabeledTexts:
    """Texts with a 0/1 tag matrix whose columns follow ``tags``."""

    texts: list[str]
    labels: np.ndarray  # shape (n, len(tags)), dtype uint8
    tags: list[str]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class FitContext:
    """What the core hands a method besides the data."""

    seed: int
    tags: list[str]
    dataset: str
    fingerprint: str
    cache_dir: Path
    slice_name: str = "all"
    progress: Callable[[str], None] = field(default=lambda message: None)
    tag_descriptions: dict[str, str] = field(default_factory=dict)  # tag -> text for zero-shot hypotheses
    task: str = "multilabel"  # or "multiclass": one tag per text, decided by the argmax of the scores
    # where torch work runs: 'auto' (CUDA where available), 'cpu', 'cuda', 'cuda:N' or 'mps';
    # harness.devices.resolve_device turns it into a torch device string
    device: str = "auto"

    def cache_path(self, kind: str, *key_parts: Any) -> Path:
        """A stable path under the shared cache for an artifact keyed by ``key_parts``."""
        digest = stable_hash(list(key_parts))
        path = self.cache_dir / kind / digest
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


class Method:
    """Base class for a method. Subclasses set ``name``, ``version`` and ``Params``, define
    ``fit``, and ``predict`` (0/1 tags), the optional ``predict_scores`` (scores) or both.

    ``uses_labels = False`` marks a method that learns nothing from the training slice
    (zero-shot): it runs once per dataset and seed and is reported as a flat line.
    ``presets`` maps a preset name to parameter overrides on top of ``Params`` defaults.
    ``save`` and ``load`` (optional, both or neither: ``has_save``) keep a fitted method in a folder,
    for ``harness train`` and ``harness tag``.
    ``resources`` names what one cell needs on a worker, e.g. ``{"GPU": 1}``: the Dask executor
    runs the cell only on workers that offer it (``dask worker ... --resources GPU=1``).
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    uses_labels: ClassVar[bool] = True
    Params: ClassVar[type[MethodParams]] = MethodParams
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    resources: ClassVar[dict[str, float]] = {}

    def __init__(self, params: MethodParams | None = None) -> None:
        self.params = params if params is not None else self.Params()

    def fit(
        self,
        train: LabeledTexts,
        valid: LabeledTexts,
        unlabeled: list[str],
        context: FitContext,
    ) -> None:
        raise NotImplementedError

    def predict(self, texts: list[str]) -> np.ndarray:
        """Return a 0/1 matrix of shape (len(texts), number of tags)."""
        raise NotImplementedError

    predict_scores: Callable[[list[str]], np.ndarray] | None = None
    """Optional: define ``predict_scores(self, texts) -> np.ndarray`` to give scores, a float matrix
    of shape (len(texts), number of tags), higher = more likely. The core then chooses decision
    rules on valid (``--rule``), ranks with them and keeps them for ensembles; a method may define
    ``predict``, ``predict_scores`` or both (``has_own_predict``, ``has_scores``). None here, so
    that a subclass can also drop the scores of a method it extends by setting it to None."""

    def details(self) -> dict[str, Any]:
        """Choices made during fit worth keeping in the cell record (a tuned k, a threshold)."""
        return {}

    def usage(self) -> dict[str, float]:
        """What the cell cost outside this process, read after predict: for a model behind an API,
        ``requests``, ``prompt_tokens``, ``completion_tokens`` and, where priced, ``cost``. The
        record keeps it and the summary's cost table shows it."""
        return {}

    def save(self, folder: Path) -> None:
        """Optional: write what ``predict`` and ``predict_scores`` need after ``fit`` into ``folder``
        (it exists and is empty), so that ``load`` rebuilds the same fitted method. No pickles:
        scikit-learn parts through ``harness.toolkit.save_estimators`` (skops), arrays and JSON
        through ``save_arrays`` and ``save_json``, torch models through ``save_pretrained``
        (safetensors). The core writes the parameters and the cell beside it (``harness train``)."""
        raise NotImplementedError

    @classmethod
    def load(cls, folder: Path, params: MethodParams, context: FitContext) -> Method:
        """Optional, with ``save``: the fitted method saved in ``folder``. ``params`` are the ones it
        was fitted with; ``context`` is its fit's (seed, tags, task, dataset) on this machine (cache
        folder, device)."""
        raise NotImplementedError

    @classmethod
    def key_dependencies(cls, params: MethodParams) -> dict[str, Any]:
        """What a cell depends on beyond this method's name, version and parameters, e.g. the
        methods it wraps (``dependency_key`` of each). When not empty it goes into the cell key
        as ``dependencies``, so that a change there runs the cells again; empty (the default)
        leaves the key as it was before dependencies existed."""
        return {}


def has_scores(method: Method | type[Method]) -> bool:
    """Whether a method (an instance or its class) defines ``predict_scores``."""
    return callable(getattr(method, "predict_scores", None))


def has_own_predict(method: Method | type[Method]) -> bool:
    """Whether a method (an instance or its class) defines its own ``predict``."""
    cls = method if isinstance(method, type) else type(method)
    return cls.predict is not Method.predict


def has_save(method: Method | type[Method]) -> bool:
    """Whether a method (an instance or its class) defines both ``save`` and ``load``."""
    cls = method if isinstance(method, type) else type(method)
    return cls.save is not Method.save and cls.load.__func__ is not Method.load.__func__  # type: ignore[attr-defined]


def params_hash(params: MethodParams) -> str:
    return stable_hash(params.model_dump(mode="json"))


def dependency_key(method_class: type[Method], params: MethodParams) -> dict[str, Any]:
    """A method another one wraps, as its cell key holds it: name, version, the parameters in
    full (preset and overrides applied) and, in turn, its own dependencies."""
    key: dict[str, Any] = {"method": method_class.name, "version": method_class.version,
                           "params": params.model_dump(mode="json")}
    nested = method_class.key_dependencies(params)
    if nested:
        key["dependencies"] = nested
    return key


class PredictionError(ValueError):
    """A method returned something that is not a valid prediction matrix."""


def validate_prediction(method_name: str, prediction: Any, n_texts: int, n_tags: int) -> np.ndarray:
    """Check a method's output and return it as a uint8 matrix, or raise PredictionError."""
    if hasattr(prediction, "toarray"):  # scipy sparse, as scikit-multilearn returns
        prediction = prediction.toarray()
    array = np.asarray(prediction)
    if array.shape != (n_texts, n_tags):
        raise PredictionError(
            f"method {method_name!r} predicted shape {array.shape}, expected ({n_texts}, {n_tags})"
        )
    if array.dtype.kind not in "biuf":
        raise PredictionError(
            f"method {method_name!r} predicted dtype {array.dtype}, expected 0/1 integers or booleans"
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise PredictionError(f"method {method_name!r} predicted NaN or infinite values")
    if not np.isin(array, (0, 1)).all():
        bad = array[~np.isin(array, (0, 1))].ravel()[:3].tolist()
        raise PredictionError(
            f"method {method_name!r} predicted values {bad}; expected only 0 and 1"
        )
    return array.astype(np.uint8)


def validate_scores(method_name: str, scores: Any, n_texts: int, n_tags: int) -> np.ndarray:
    """Check a method's score matrix and return it as float64, or raise PredictionError."""
    array = np.asarray(scores)
    if array.shape != (n_texts, n_tags):
        raise PredictionError(f"method {method_name!r} gave scores of shape {array.shape}, expected ({n_texts}, {n_tags})")
    if array.dtype.kind not in "biuf":
        raise PredictionError(f"method {method_name!r} gave scores of dtype {array.dtype}, expected numbers")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise PredictionError(f"method {method_name!r} gave NaN or infinite scores")
    return array
