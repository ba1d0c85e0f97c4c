"""What both fine-tuning stages share: threads, seeds, model and tokenizer loading with clear
errors, out-of-memory errors that say what to lower.

Imported only from inside ``fit`` (it imports torch and transformers at module level).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator

import torch
import transformers

from harness.toolkit import fit_threads, fresh_model, quiet_transformers, resolve_model


class FineTuneMemoryError(MemoryError):
    """Training or inference ran out of memory; the message names the parameters to lower."""


class ModelLoadError(RuntimeError):
    """A resolved model folder could not be loaded as the transformers model class needed."""


def prepare_torch(seed: int) -> None:
    """Use the cores this fit may take (harness.cores.fit_threads), and seed Python, NumPy and torch
    as transformers does."""
    torch.set_num_threads(fit_threads())
    transformers.set_seed(seed)


def local_model_folder(name_or_path: str) -> str:
    """The model's local folder, or harness.models.ModelResolutionError naming the ``model`` parameter."""
    return resolve_model(name_or_path, parameter="model")


@contextlib.contextmanager
def _explain_load_error(loader: Any, folder: str) -> Iterator[None]:
    """transformers' load report silenced, and a failed load turned into one ModelLoadError line."""
    with quiet_transformers():
        try:
            yield
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(
                f"cannot load {folder!r} (parameter 'model') with {loader.__name__}: {exc}".splitlines()[0]
            ) from exc


@functools.lru_cache(maxsize=4)
def tokenizer_for(folder: str) -> Any:
    """The folder's tokenizer, read once per process (tokenising does not change it)."""
    from transformers import AutoTokenizer

    with _explain_load_error(AutoTokenizer, folder):
        return AutoTokenizer.from_pretrained(folder)


def fresh_pretrained_model(loader: Any, folder: str, device: str, **config_changes: Any) -> Any:
    """A new model with the folder's weights, on ``device`` (``harness.training.fresh_model``)."""
    with _explain_load_error(loader, folder):
        return fresh_model(loader, folder, device, **config_changes)


def saved_model(loader: Any, folder: str, device: str) -> Any:
    """A fine-tuned model as ``save_pretrained`` wrote it in ``folder``, on ``device``, in eval mode."""
    with _explain_load_error(loader, folder):
        return loader.from_pretrained(folder).to(device).eval()


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


@contextlib.contextmanager
def explain_out_of_memory(stage: str, hint: str) -> Iterator[None]:
    """Turn an out-of-memory error into FineTuneMemoryError saying which stage and what to lower."""
    try:
        yield
    except FineTuneMemoryError:
        raise
    except BaseException as exc:
        if not _is_out_of_memory(exc):
            raise
        raise FineTuneMemoryError(f"out of memory while {stage}; {hint}") from exc
