"""The ``self_train`` method, its parameters and presets.

Self-training on the unlabeled pool around any registered method that gives scores (the
"base", looked up by name in the plugin registry): fit it on the slice, score the pool, take
confident pseudo-labels (per-tag thresholds chosen on valid by the core's ``per_tag`` rule),
refit on the slice plus them, and keep the round with the best valid F1.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from harness import FitContext, LabeledTexts, Method, MethodParams
from harness.toolkit import dependency_key, unknown_name_message

# the measured choice (README, self_train): with nb as the base no self-training round ever beat
# round 0 on valid in 18 cells; with knn_embed rounds helped at 32, 128 and all issues
DEFAULT_BASE = "knn_embed"


def registered_methods() -> Mapping[str, type[Method]]:
    """The methods of this process's plugin manager (a worker rebuilds the same one)."""
    from harness.toolkit import get_plugin_manager

    return get_plugin_manager().registry.methods


def resolve_method(role: str, name: str, preset: str, overrides: dict[str, Any]) -> tuple[type[Method], MethodParams]:
    """The registered class named ``name`` and its parameters (``preset`` then ``overrides``);
    ValueError with one line when it is unknown, gives no scores or rejects a parameter."""
    from harness.toolkit import DEFAULT_PRESET, ParamError, build_params

    methods = registered_methods()
    if name not in methods:
        raise ValueError(unknown_name_message("method", name, sorted(methods)))
    method_class = methods[name]
    if name == SelfTrain.name:
        raise ValueError(f"the {role} cannot be self_train itself")
    if not callable(getattr(method_class, "predict_scores", None)):
        raise ValueError(f"method {name!r} gives no scores (predict_scores), which self_train ranks the pool by")
    if preset != DEFAULT_PRESET and preset not in method_class.presets:
        known = sorted({DEFAULT_PRESET, *method_class.presets})
        raise ValueError(f"method {name!r} has no preset {preset!r} (known: {', '.join(known)})")
    try:
        return method_class, build_params(method_class, preset, dict(overrides))
    except ParamError as exc:  # the field's name comes first in the message: keep the base's problems only
        raise ValueError(str(exc).removeprefix("invalid parameters: ")) from None


class SelfTrainParams(MethodParams):
    base: str = DEFAULT_BASE  # a registered method with predict_scores; it labels the pool in round 0
    base_preset: str = "default"  # the base's preset; base_params override it
    base_params: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    # the method refitted on slice + pseudo-labels (and labelling the pool after round 0);
    # None: the base itself. Needed when the base learns nothing from labels (zeroshot).
    student: str | None = Field(None, validate_default=True)
    student_params: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    rounds: int = Field(3, ge=0)  # refits at most; fewer when valid F1 stops improving
    max_per_tag: int = Field(20, ge=1)  # pseudo-labelled texts per tag added each round (quota grows by this)
    select_by: Literal["micro", "macro"] = "micro"  # valid F1 that picks the best round
    pool_size: int | None = Field(None, ge=1)  # score a seeded sample of this many pool texts (None: all)

    @field_validator("base")
    @classmethod
    def _known_base(cls, value: str, info: ValidationInfo) -> str:
        resolve_method("base", value, "default", {})
        return value

    @field_validator("base_params")
    @classmethod
    def _valid_base_params(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "base" in info.data and "base_preset" in info.data:  # else the base itself is wrong, already said
            resolve_method("base", info.data["base"], info.data["base_preset"], value)
        return value

    @field_validator("student")
    @classmethod
    def _known_student(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            student_class, _ = resolve_method("student", value, info.data.get("base_preset", "default"), {})
            if not student_class.uses_labels:
                raise ValueError(f"method {value!r} learns nothing from labels, so pseudo-labels cannot teach it")
        elif "base" in info.data and not registered_methods()[info.data["base"]].uses_labels:
            raise ValueError(
                f"base {info.data['base']!r} learns nothing from labels: name a student that does, e.g. self_train.student=nb"
            )
        return value

    @field_validator("student_params")
    @classmethod
    def _valid_student_params(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        student = info.data.get("student")
        if student is None and value and "student" in info.data:
            raise ValueError("student_params without a student: set self_train.student, or use base_params")
        if student is not None and "base_preset" in info.data:
            resolve_method("student", student, info.data["base_preset"], value)
        return value


class SelfTrain(Method):
    """Self-training of ``base`` on the unlabeled pool; see the module docstring."""

    name = "self_train"
    version = "1"
    Params = SelfTrainParams
    presets = {
        "default": {},
        # UST's base is BERT: the book's fine-tuning setting, refitted on pseudo-labels (GPU)
        "book": {"base": "finetune", "base_preset": "book"},
    }
    params: SelfTrainParams

    @classmethod
    def key_dependencies(cls, params: SelfTrainParams) -> dict[str, Any]:  # type: ignore[override]
        """The base's (and student's) version and parameters in full, its preset applied: a new
        version of either, or a change of its preset, runs self_train's cells again."""
        dependencies = {"base": dependency_key(*resolve_method("base", params.base, params.base_preset, params.base_params))}
        if params.student is not None:
            dependencies["student"] = dependency_key(
                *resolve_method("student", params.student, params.base_preset, params.student_params))
        return dependencies

    def fit(self, train: LabeledTexts, valid: LabeledTexts, unlabeled: list[str], context: FitContext) -> None:
        from harness_self_train.loop import SelfTraining

        self.task = context.task
        if len(valid) == 0:
            raise ValueError("self_train chooses thresholds and its best round on the valid split, which is empty")
        p = self.params
        base = resolve_method("base", p.base, p.base_preset, p.base_params)
        student = base if p.student is None else resolve_method("student", p.student, p.base_preset, p.student_params)
        self.loop = SelfTraining(p, base, student, context)
        self.model, self.rules = self.loop.run(train, valid, unlabeled)

    def save(self, folder: Path) -> None:
        """The best round's model, saved by its own method under ``model/``, with its name and
        parameters, and the rules chosen on valid; ValueError when that method cannot be saved."""
        from harness.toolkit import has_save, save_json

        if not has_save(self.model):
            raise ValueError(f"self_train's best round is a {self.model.name} model, and method {self.model.name!r} "
                             "defines no save and load")
        (folder / "model").mkdir()
        self.model.save(folder / "model")
        save_json(folder / "best_round.json", {"method": self.model.name, "params": self.model.params.model_dump(mode="json"),
                                               "task": self.task, "rules": self.rules.as_record(), "tags": self.rules.tags})

    @classmethod
    def load(cls, folder: Path, params: MethodParams, context: FitContext) -> SelfTrain:
        from harness.toolkit import ChosenRules, load_json

        method = cls(params)
        saved = load_json(folder / "best_round.json")
        if saved["method"] not in registered_methods():
            raise ValueError(f"{folder}: self_train's best round is a {saved['method']!r} model, a method this process does not have")
        model_class = registered_methods()[saved["method"]]
        method.model = model_class.load(folder / "model", model_class.Params.model_validate(saved["params"]), context)
        method.task, method.rules = saved["task"], ChosenRules.from_record(saved["rules"], saved["tags"])
        return method

    def predict(self, texts: list[str]) -> np.ndarray:
        """The best round's model's own prediction (when the model gives scores only: its
        ``threshold`` rule chosen on valid, or argmax for a multiclass task)."""
        from harness.toolkit import argmax_predictions, has_own_predict

        if has_own_predict(self.model):
            return self.model.predict(texts)
        if self.task == "multiclass":
            return argmax_predictions(self.predict_scores(texts))
        return self.rules.apply("threshold", self.predict_scores(texts))

    def predict_scores(self, texts: list[str]) -> np.ndarray:
        return self.model.predict_scores(texts)

    def details(self) -> dict[str, Any]:
        return self.loop.details()
