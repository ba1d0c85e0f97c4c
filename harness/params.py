"""Method parameters: presets, ``--set METHOD.PARAM=VALUE`` overrides, and variant labels."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from harness.errors import HarnessError, unknown_name_message, validation_problems
from harness.hashing import stable_hash
from harness.methods import Method, MethodParams

DEFAULT_PRESET = "default"


class ParamError(HarnessError):
    """A parameter override names an unknown method or parameter, or has a wrong value."""


def parse_overrides(items: list[str], known_methods: list[str]) -> dict[str, dict[str, Any]]:
    """``["nb.alpha=0.5"]`` -> ``{"nb": {"alpha": 0.5}}``; values are parsed as YAML scalars."""
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, raw_value = item.partition("=")
        method, dot, param = target.partition(".")
        if not sep or not dot or not method or not param:
            raise ParamError(f"--set {item!r}: expected METHOD.PARAM=VALUE, e.g. knn_embed.k_max=8")
        if method not in known_methods:
            raise ParamError(f"--set {item!r}: " + unknown_name_message("method", method, known_methods))
        try:
            value = yaml.safe_load(raw_value) if raw_value.strip() else ""
        except yaml.YAMLError:
            value = raw_value
        overrides.setdefault(method, {})[param] = value
    return overrides


def build_params(method_class: type[Method], preset: str, overrides: dict[str, Any]) -> MethodParams:
    """Params = class defaults, then the preset's values, then the user's overrides."""
    values = {**method_class.presets.get(preset, {}), **overrides}
    try:
        return method_class.Params.model_validate(values)
    except ValidationError as exc:
        problems = validation_problems(exc, prefix=f"{method_class.name}.", suffix="")
        raise ParamError(f"invalid parameters: {problems}") from None


def variant_label(method_class: type[Method], params: MethodParams, preset: str, label: str | None, overridden: bool) -> str:
    """The name a variant is reported under: the method name for its default parameters,
    else ``name@LABEL`` (the ``--label``, the preset name, or a short parameter hash)."""
    defaults = method_class.Params.model_validate(method_class.presets.get(DEFAULT_PRESET, {}))
    if params == defaults:
        return method_class.name
    if label:
        return f"{method_class.name}@{label}"
    if not overridden:
        return f"{method_class.name}@{preset}"
    return f"{method_class.name}@{stable_hash(params.model_dump(mode='json'), length=6)}"
