"""What both fine-tuning stages share: threads, seeds, model loading with clear errors,
out-of-memory errors that say what to lower, quiet transformers logging, progress with ETA.

Imported only from inside ``fit`` (it imports torch and transformers at module level).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator

import torch
import transformers
from transformers import TrainerCallback

from harness.cores import fit_threads
from harness.models import quiet_transformers, resolve_model


class FineTuneMemoryError(MemoryError):
    """Training or inference ran out of memory; the message names the parameters to lower."""


class ModelLoadError(RuntimeError):
    """A resolved model folder could not be loaded as the transformers model class needed."""


def prepare_torch(seed: int) -> None:
    """Use the cores this fit may take (harness.cores.fit_threads), and seed Python, NumPy and torch
    as transformers does."""
    torch.set_num_threads(fit_threads())
    transformers.set_seed(seed)


def resolve_precision(precision: str) -> str:
    """'fp32' or 'bf16'; 'auto' is bf16 where the hardware computes it natively (a CUDA GPU with
    bf16, or a CPU whose oneDNN has bf16 kernels, i.e. AVX-512 or Arm bf16), else fp32."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return "bf16" if native else "fp32"


def local_model_folder(name_or_path: str) -> str:
    """The model's local folder, or harness.models.ModelResolutionError naming the ``model`` parameter."""
    return resolve_model(name_or_path, parameter="model")


def load_pretrained(loader: Any, folder: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained(folder)`` with transformers' load report silenced and a one-line error."""
    with quiet_transformers():
        try:
            return loader.from_pretrained(folder, **kwargs)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(
                f"cannot load {folder!r} (parameter 'model') with {loader.__name__}: {exc}".splitlines()[0]
            ) from exc


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


class ProgressReporter(TrainerCallback):
    """Reports training progress with an ETA through ``report`` (the cell's progress callback).

    A line every tenth of the steps, and one per evaluation with the valid micro F1.
    """

    def __init__(self, report: Callable[[str], None], label: str) -> None:
        self.report = report
        self.label = label
        self.started = time.perf_counter()
        self.next_report = 0

    def _eta(self, state: Any) -> str:
        if not state.global_step:
            return "ETA ?"
        elapsed = time.perf_counter() - self.started
        remaining = elapsed / state.global_step * (state.max_steps - state.global_step)
        return f"ETA {remaining:.0f}s"

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started = time.perf_counter()
        self.next_report = max(1, state.max_steps // 10)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= self.next_report and state.global_step < state.max_steps:
            self.next_report += max(1, state.max_steps // 10)
            self.report(
                f"{self.label}: step {state.global_step}/{state.max_steps} "
                f"(epoch {state.epoch:.1f}/{args.num_train_epochs:g}), {self._eta(state)}"
            )

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        f1 = (metrics or {}).get("eval_micro_f1")
        shown = f", valid micro F1 {f1:.4f}" if f1 is not None else ""
        self.report(
            f"{self.label}: epoch {round(state.epoch or 0)}/{args.num_train_epochs:g}{shown}, {self._eta(state)}"
        )
