"""One training engine for the torch methods (finetune, adapt_finetune, setfit).

Where the time of a small encoder goes decides its shape (see DESIGN.md, "Training: one engine"):
on a GPU a step is a few milliseconds of arithmetic, so everything around it counts; on a CPU the
arithmetic counts, so the engine does less of it.

- Texts are tokenised once per (tokenizer, max_length, texts) and kept as padded tensors
  (``tokenize``); a batch is a slice of rows cut to its longest text, on the device already.
- Training batches group texts of similar length (``length_grouped_batches``), so they pad little.
- ``train`` is a plain loop: autocast where the precision says, fused AdamW, gradient
  clipping, and no host synchronisation per step (losses stay on the device until the end).
- Evaluation is batched on the device; the weights of the best evaluation are kept in memory.
- Pretrained weights are read from disk once per process (``fresh_model``); each cell builds its
  model from memory, with newly initialised parts drawn from the cell's seed.
- ``choose_precision``: bf16 autocast only where it measures faster than fp32 on this machine
  (CPUs with bf16 kernels differ: with AMX bf16 wins, with AVX512-BF16 alone it loses).

Imported only from inside a method's ``fit`` (it imports torch at module level).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import platform
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np
import torch

from harness.store import write_json_atomic

Precision = Literal["fp32", "bf16"]
Batch = dict[str, torch.Tensor]


# -- precision ---------------------------------------------------------------------------------

_probed: dict[str, Precision] = {}


def choose_precision(requested: str, device: str, cache_dir: Path | None = None) -> Precision:
    """'fp32' or 'bf16' for ``requested`` ('auto', 'fp32' or 'bf16') on ``device``.

    'auto' on CUDA: bf16 where the GPU has it. On a CPU: bf16 only where oneDNN has bf16 kernels
    and a short probe (training steps and an inference batch of a feed-forward block) runs at
    least 10% faster with them. The
    probe's answer is kept per CPU model, torch version and thread count, in ``cache_dir`` when
    given, so that one machine keeps one answer (scores depend on the precision).
    """
    if requested != "auto":
        return requested  # type: ignore[return-value]
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device != "cpu" or not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return "fp32"
    key = f"{cpu_model()}|torch {torch.__version__}|{torch.get_num_threads()} threads"
    path = cache_dir / "precision_probe" / (hashlib.sha256(key.encode()).hexdigest()[:16] + ".json") if cache_dir else None
    if key not in _probed:
        if path is not None and path.exists():
            _probed[key] = json.loads(path.read_text(encoding="utf-8"))["precision"]
        else:
            timings = _probe_cpu_precisions()
            _probed[key] = "bf16" if timings["bf16"] < 0.9 * timings["fp32"] else "fp32"
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(path, {"machine": key, "seconds": timings, "precision": _probed[key]})
    return _probed[key]


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), for benchmarks and the precision probe's key."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _probe_cpu_precisions() -> dict[str, float]:
    """Seconds of a MiniLM-sized feed-forward block (the matrix products that dominate an
    encoder) for three training steps of 4 x 64 tokens plus one inference batch of 32 x 64, in
    fp32 and under bf16 autocast: the best of five rounds each, the two precisions alternating
    so that load from other processes falls on both."""
    generator = torch.Generator().manual_seed(0)
    block = torch.nn.Sequential(torch.nn.Linear(384, 1536), torch.nn.GELU(), torch.nn.Linear(1536, 384))
    train_inputs = torch.randn(4 * 64, 384, generator=generator)
    eval_inputs = torch.randn(32 * 64, 384, generator=generator)
    rounds: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(6):
        for precision in rounds:
            tick = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                for _ in range(3):
                    block(train_inputs).float().pow(2).mean().backward()
                with torch.inference_mode():
                    block(eval_inputs)
            rounds[precision].append(time.perf_counter() - tick)
    return {precision: round(min(times[1:]), 5) for precision, times in rounds.items()}  # the first warms up


def autocast(device: str, precision: Precision) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``precision`` is bf16, else nothing."""
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")


# -- tokenised texts ---------------------------------------------------------------------------

@dataclass
class Encoded:
    """Texts tokenised once: right-padded id and mask tensors, and each text's length."""

    input_ids: torch.Tensor  # (n, width)
    attention_mask: torch.Tensor  # (n, width)
    lengths: np.ndarray  # (n,) tokens per text
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. special_tokens_mask

    def __len__(self) -> int:
        return len(self.lengths)

    def to(self, device: str) -> Encoded:
        return Encoded(self.input_ids.to(device), self.attention_mask.to(device), self.lengths,
                       {key: value.to(device) for key, value in self.extra.items()})

    def batches(self, groups: list[np.ndarray], aligned: dict[str, list[np.ndarray]] | None = None) -> Iterator[Batch]:
        """One batch per group of row positions, cut to its longest text (right padding makes that
        a column slice). ``aligned`` adds per-batch values (labels, targets), one array per group.

        Every index and value goes to the device in one copy: a copy per batch would make the
        host wait for the GPU at every step.
        """
        if not groups:
            return
        device = self.input_ids.device
        flat = torch.as_tensor(np.concatenate(groups), device=device)
        values = {name: torch.as_tensor(np.concatenate(arrays), device=device) for name, arrays in (aligned or {}).items()}
        rows_at = values_at = 0
        for k, rows in enumerate(groups):
            index = flat[rows_at:rows_at + len(rows)]
            width = max(int(self.lengths[rows].max()), 1) if len(rows) else 1
            batch = {"input_ids": self.input_ids[index, :width], "attention_mask": self.attention_mask[index, :width]}
            batch.update({key: value[index, :width] for key, value in self.extra.items()})
            size = len(next(iter(aligned.values()))[k]) if aligned else 0
            batch.update({name: value[values_at:values_at + size] for name, value in values.items()})
            rows_at, values_at = rows_at + len(rows), values_at + size
            yield batch


_encoded: OrderedDict[tuple[Any, ...], Encoded] = OrderedDict()
_ENCODED_KEPT = 16  # valid, test, the pool and a few slices: enough for every cell of a run


def tokenize(tokenizer: Any, texts: list[str], max_length: int, device: str = "cpu",
             special_tokens_mask: bool = False) -> Encoded:
    """``texts`` tokenised (truncated to ``max_length``) as tensors on ``device``.

    Kept in memory per (tokenizer, max_length, texts, device): valid and test are tokenised once
    per process, not once per cell.
    """
    digest = hashlib.sha256("\0".join(texts).encode("utf-8", "surrogatepass")).hexdigest()
    key = (getattr(tokenizer, "name_or_path", id(tokenizer)), type(tokenizer).__name__, max_length,
           special_tokens_mask, digest, len(texts), device)
    if key in _encoded:
        _encoded.move_to_end(key)
        return _encoded[key]
    tokens = tokenizer(list(texts), truncation=True, max_length=max_length, padding="longest",
                       return_special_tokens_mask=special_tokens_mask, return_tensors="pt")
    mask = tokens["attention_mask"]
    extra = {"special_tokens_mask": tokens["special_tokens_mask"]} if special_tokens_mask else {}
    encoded = Encoded(tokens["input_ids"], mask, mask.sum(dim=1).numpy(), extra).to(device)
    _encoded[key] = encoded
    while len(_encoded) > _ENCODED_KEPT:
        _encoded.popitem(last=False)
    return encoded


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's batches of row positions: random, but texts of similar length together.

    As transformers' length-grouped sampler: shuffle, sort chunks of 50 batches by length, cut
    them into batches, and visit the batches in random order.
    """
    order = rng.permutation(len(lengths))
    chunk = batch_size * 50
    batches: list[np.ndarray] = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def by_length_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Inference batches: rows sorted by length, so each batch pads little."""
    order = np.argsort(lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


# -- models ------------------------------------------------------------------------------------

_pretrained: dict[tuple[str, str], tuple[Any, dict[str, torch.Tensor]]] = {}


def fresh_model(loader: Any, folder: str, device: str, **config_changes: Any) -> Any:
    """A new ``loader`` model (e.g. AutoModelForSequenceClassification) on ``device`` with
    ``folder``'s pretrained weights; parts the checkpoint lacks (a classifier head) are drawn
    from torch's generator, so the cell's seed decides them.

    The checkpoint is read once per process; later calls build the model from memory.
    """
    key = (loader.__name__, folder)
    if key not in _pretrained:
        # the first load must not draw from the generator, or the first cell's head would differ
        with torch.random.fork_rng(devices=[]):
            model, info = loader.from_pretrained(folder, output_loading_info=True)
        missing = set(info.get("missing_keys", ()))
        weights = {name: tensor.detach().clone() for name, tensor in model.state_dict().items() if name not in missing}
        _pretrained[key] = (model.config, weights)
    config, weights = _pretrained[key]
    config = copy.deepcopy(config)
    for name, value in config_changes.items():
        setattr(config, name, value)
    with torch.device(device):
        model = loader.from_config(config)
    model.load_state_dict(weights, strict=False)
    return model


def freeze_word_embeddings(model: Any) -> int:
    """Stop training the input word embeddings (about half of a small encoder's parameters):
    their update is a large share of a CPU step. Returns the parameters frozen."""
    weight = model.get_input_embeddings().weight
    weight.requires_grad_(False)
    return weight.numel()


# -- training ----------------------------------------------------------------------------------

Schedule = Literal["constant", "linear", "cosine"]


@dataclass(frozen=True)
class OptimizerSettings:
    learning_rate: float
    weight_decay: float = 0.0
    schedule: Schedule = "constant"
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0  # as transformers' Trainer clips by default


def _lr_factor(schedule: Schedule, warmup: int, total: int) -> Callable[[int], float]:
    """transformers' schedules: linear warm-up, then constant, linear or cosine decay to 0."""
    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        if schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 1.0 - progress) if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


@dataclass
class Trained:
    """What a training run did: loss per epoch, every evaluation, and the best one's step."""

    steps: int
    seconds: float
    loss_per_epoch: list[float]
    evaluations: list[dict[str, Any]] = field(default_factory=list)  # each: step, epoch, score, and the evaluator's fields
    best: dict[str, Any] | None = None


def train(
    model: Any,
    batches: Iterator[Batch],
    loss_of: Callable[[Any, Batch], torch.Tensor],
    settings: OptimizerSettings,
    total_steps: int,
    steps_per_epoch: int,
    precision: Precision,
    evaluate: Callable[[], dict[str, Any]] | None = None,
    evaluate_every: int = 0,
    progress: Callable[[str], None] = lambda message: None,
    label: str = "training",
) -> Trained:
    """Train ``model`` in place for ``total_steps`` batches from ``batches``.

    ``loss_of(model, batch)`` is the mean loss of a batch. With ``evaluate``, every
    ``evaluate_every`` steps and at the last step ``evaluate()`` returns a dict with a ``score``
    (higher is better); the weights of the first best score are kept and put back at the end.
    """
    device = next(model.parameters()).device
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim >= 2]  # no weight decay on biases and norms
    rest = [p for p in trainable if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        # fused: one pass over each weight per step instead of several (transformers' default
        # optimizer, adamw_torch_fused, does the same); torch offers it on CUDA and CPU
        lr=settings.learning_rate, fused=device.type in ("cuda", "cpu"),
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(settings.schedule, settings.warmup_steps, total_steps))
    kept = KeptWeights(model)
    result = Trained(steps=total_steps, seconds=0.0, loss_per_epoch=[])
    epoch_losses: list[torch.Tensor] = []
    running = torch.zeros((), device=device)
    started = time.perf_counter()
    next_report = max(1, total_steps // 10)
    epochs = math.ceil(total_steps / steps_per_epoch)
    model.train()
    for step in range(1, total_steps + 1):
        batch = next(batches)
        with autocast(device.type, precision):
            loss = loss_of(model, batch)
        loss.backward()
        if settings.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(trainable, settings.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        running += loss.detach().float()  # stays on the device: no synchronisation per step
        if step % steps_per_epoch == 0 or step == total_steps:
            epoch_losses.append(running / (step - steps_per_epoch * len(epoch_losses)))
            running = torch.zeros((), device=device)
        if evaluate is not None and (step == total_steps or (evaluate_every and step % evaluate_every == 0)):
            model.eval()
            with torch.inference_mode():
                row = {"step": step, "epoch": math.ceil(step / steps_per_epoch), **evaluate()}
            model.train()
            result.evaluations.append(row)
            if result.best is None or row["score"] > result.best["score"]:
                result.best = row
                kept.keep()
            progress(f"{label}: epoch {row['epoch']}/{epochs}, valid score {row['score']:.4f}, "
                     f"{_eta(started, step, total_steps)}")
        elif step >= next_report and step < total_steps:
            progress(f"{label}: step {step}/{total_steps} (epoch {math.ceil(step / steps_per_epoch)}/{epochs}), "
                     f"{_eta(started, step, total_steps)}")
        if step >= next_report:
            next_report += max(1, total_steps // 10)
    model.eval()
    if result.best is not None:
        kept.restore()
    result.loss_per_epoch = [round(float(x), 5) for x in torch.stack(epoch_losses).tolist()] if epoch_losses else []
    result.seconds = round(time.perf_counter() - started, 2)
    return result


def _eta(started: float, step: int, total: int) -> str:
    elapsed = time.perf_counter() - started
    return f"ETA {elapsed / step * (total - step):.0f}s"


class KeptWeights:
    """A copy, in memory on the model's device, of the trainable weights at the best evaluation."""

    def __init__(self, model: Any) -> None:
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.copies: list[torch.Tensor] | None = None

    def keep(self) -> None:
        with torch.no_grad():
            if self.copies is None:
                self.copies = [p.detach().clone() for p in self.parameters]
            else:
                torch._foreach_copy_(self.copies, [p.detach() for p in self.parameters])

    def restore(self) -> None:
        if self.copies is None:
            raise RuntimeError("no weights were kept: there is nothing to restore")
        with torch.no_grad():
            torch._foreach_copy_(self.parameters, self.copies)
        self.copies = None


def epoch_groups(lengths: np.ndarray, batch_size: int, total_steps: int, seed: int) -> list[np.ndarray]:
    """Row positions of ``total_steps`` training batches: epoch after epoch, each in a fresh
    length-grouped order drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    groups: list[np.ndarray] = []
    while len(groups) < total_steps:
        groups.extend(length_grouped_batches(lengths, batch_size, rng))
    return groups[:total_steps]


def predict(model: Any, encoded: Encoded, batch_size: int, precision: Precision,
            forward: Callable[[Any, Batch], torch.Tensor]) -> torch.Tensor:
    """``forward(model, batch)`` over every row of ``encoded`` in batches sorted by length; the
    outputs (float32, on the model's device) in the rows' own order."""
    device = next(model.parameters()).device
    groups = by_length_batches(encoded.lengths, batch_size)
    if not groups:
        raise ValueError("predict: no texts")
    model.eval()
    with torch.inference_mode(), autocast(device.type, precision):
        parts = [forward(model, batch).float() for batch in encoded.batches(groups)]
        outputs = torch.empty((len(encoded), *parts[0].shape[1:]), dtype=torch.float32, device=device)
        outputs[torch.as_tensor(np.concatenate(groups), device=device)] = torch.cat(parts)
    return outputs
