"""Training steps per second and evaluation time: transformers' Trainer (the path finetune took
before the training engine) against the engine (``harness.training``), side by side in one run.

Two models: MiniLM-L6 (the default preset's) and a tiny 2-layer BERT built here (hidden size
32), whose arithmetic is almost nothing, so that its step rate shows the per-step overhead: on a
GPU that overhead, not the arithmetic, bounds a small encoder. Both train on mirror issues (batch
4, 64 tokens, finetune's default learning rate and constant schedule); the Trainer runs with the
arguments finetune gave it (length-grouped batches, padding per batch by the collator, bf16 where
chosen). Steps are timed after warm-up steps; the best of ``--rounds`` rounds is printed.

The evaluation row times one evaluation on the valid split (410 issues): the Trainer's
``evaluate`` with finetune's old ``compute_metrics`` (one scikit-learn F1 call per grid
threshold), against the engine's batched prediction and one-pass grid search.

    python benchmarks/bench_training_engine.py --data-dir ../shared/data
    python benchmarks/bench_training_engine.py --data-dir ../shared/data --device cuda
    python benchmarks/bench_training_engine.py --data-dir ../shared/data --compile   # and torch.compile

``--phases`` adds the tiny model's step time by phase, with dropout on and off.
``--compile`` adds the engine with the model's forward compiled (``torch.compile``, dynamic
shapes), and a ceiling: the word embeddings frozen, the forward compiled and dropout off at once
(dropout off changes what is trained, so no method does that). The engine itself does not
compile, because on this project's CPU that measured no faster on MiniLM (docs/training.md).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertModel,
    DataCollatorWithPadding,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from harness.cores import fit_threads
from harness.datasets import Settings, load_dataset
from harness.devices import resolve_device
from harness.metrics import f1
from harness.models import quiet_transformers, resolve_model
from harness.plugins import make_plugin_manager
from harness.rules import THRESHOLD_GRID, best_grid_threshold
from harness.testing import save_tiny_bert_tokenizer
from harness.training import (
    OptimizerSettings,
    cpu_model,
    choose_precision,
    epoch_groups,
    fresh_model,
    predict,
    tokenize,
    train,
)

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
BATCH, EVAL_BATCH, MAX_LENGTH = 4, 32, 64


class _Timer(TrainerCallback):
    """Seconds of the Trainer's steps after ``warmup`` steps."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.started, self.seconds = warmup, 0.0, 0.0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.started = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        self.seconds = time.perf_counter() - self.started


class _Texts(torch.utils.data.Dataset):
    def __init__(self, features):
        self.features = features

    def __len__(self):
        return len(self.features)

    def __getitem__(self, i):
        return self.features[i]


def _features(tokenizer, texts, labels):
    encoded = tokenizer(list(texts), truncation=True, max_length=MAX_LENGTH)
    return [{"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
             "labels": labels[i].astype(np.float32).tolist()} for i in range(len(texts))]


def _old_compute_metrics(prediction):
    """finetune's compute_metrics before the engine: one scikit-learn F1 per grid threshold."""
    probabilities = 1.0 / (1.0 + np.exp(-np.asarray(prediction.predictions, dtype=np.float64)))
    labels = np.asarray(prediction.label_ids)
    best = (THRESHOLD_GRID[0], -1.0)
    for candidate in THRESHOLD_GRID:
        micro = f1(labels, (probabilities > candidate).astype(np.uint8), "micro")
        if micro > best[1]:
            best = (candidate, micro)
    predicted = (probabilities > best[0]).astype(np.uint8)
    return {"micro_f1": best[1], "macro_f1": f1(labels, predicted, "macro")}


def trainer_path(folder, train, valid, steps, warmup, precision, device):
    """(seconds per step, seconds per evaluation) of the Trainer as finetune configured it."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    with quiet_transformers():
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, num_labels=len(train.tags), problem_type="multi_label_classification")
    timer = _Timer(warmup)
    with tempfile.TemporaryDirectory() as scratch, quiet_transformers():
        args = TrainingArguments(
            output_dir=scratch, max_steps=warmup + steps, learning_rate=1e-4, lr_scheduler_type="constant",
            per_device_train_batch_size=BATCH, per_device_eval_batch_size=EVAL_BATCH, save_strategy="no",
            eval_strategy="no", logging_strategy="no", train_sampling_strategy="group_by_length",
            bf16=precision == "bf16", use_cpu=device == "cpu", seed=0, data_seed=0, report_to="none",
            disable_tqdm=True, dataloader_num_workers=0, dataloader_pin_memory=False,
        )
        trainer = Trainer(model=model, args=args, train_dataset=_Texts(_features(tokenizer, train.texts, train.labels)),
                          eval_dataset=_Texts(sorted(_features(tokenizer, valid.texts, valid.labels), key=lambda f: len(f["input_ids"]))),
                          processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                          compute_metrics=_old_compute_metrics, callbacks=[timer])
        trainer.remove_callback(PrinterCallback)  # as finetune did: its logs are not the benchmark's
        trainer.train()
        trainer.evaluate()  # warm-up
        tick = time.perf_counter()
        trainer.evaluate()
        evaluation = time.perf_counter() - tick
    return timer.seconds / steps, evaluation


def engine_path(folder, train_split, valid, steps, warmup, precision, device, freeze, compiled=False, dropout=True):
    """(seconds per step, seconds per evaluation) of harness.training; ``compiled``: the model's
    forward through ``torch.compile`` (dynamic shapes, as batch widths vary), compiled during the
    warm-up steps; ``dropout=False``: the model's dropout off (it changes what is trained)."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    no_dropout = {} if dropout else {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    with quiet_transformers():
        model = fresh_model(AutoModelForSequenceClassification, folder, device, num_labels=len(train_split.tags),
                            problem_type="multi_label_classification", **no_dropout)
    if freeze:
        model.get_input_embeddings().weight.requires_grad_(False)
    encoded = tokenize(tokenizer, train_split.texts, MAX_LENGTH, device)
    valid_encoded = tokenize(tokenizer, valid.texts, MAX_LENGTH, device)
    targets = train_split.labels.astype(np.float32)

    forward = torch.compile(model, dynamic=True) if compiled else model

    def logits(m, batch):
        return forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    def loss(m, batch):
        return torch.nn.functional.binary_cross_entropy_with_logits(logits(m, batch).float(), batch["labels"])

    def evaluate():
        scores = torch.sigmoid(predict(model, valid_encoded, EVAL_BATCH, precision, logits)).double().cpu().numpy()
        threshold, micro = best_grid_threshold(scores, valid.labels)
        return {"score": micro, "macro": f1(valid.labels, (scores > threshold).astype(np.uint8), "macro")}

    seconds = 0.0
    for n in (warmup, steps):  # a warm-up run, then the timed one
        groups = epoch_groups(encoded.lengths, BATCH, n, 0)
        batches = encoded.batches(groups, {"labels": [targets[g] for g in groups]})
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        tick = time.perf_counter()
        train(model, batches, loss, OptimizerSettings(learning_rate=1e-4), n, len(groups), precision)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - tick
    evaluate()  # warm-up
    tick = time.perf_counter()
    evaluate()
    return seconds / steps, time.perf_counter() - tick


def step_phases(folder, train_split, device, steps=300, warmup=50):
    """Milliseconds per training step of the tiny model by phase (forward with the loss, backward,
    clipping, fused AdamW, zeroing; the device synchronised after each), with the model's dropout
    on (0.1, as configured) and off: where the per-step overhead goes."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rows = {}
    for dropout in (0.1, 0.0):
        torch.manual_seed(0)
        with quiet_transformers():
            model = fresh_model(AutoModelForSequenceClassification, folder, device, num_labels=len(train_split.tags),
                                problem_type="multi_label_classification", hidden_dropout_prob=dropout,
                                attention_probs_dropout_prob=dropout)
        encoded = tokenize(AutoTokenizer.from_pretrained(folder), train_split.texts, MAX_LENGTH, device)
        groups = epoch_groups(encoded.lengths, BATCH, warmup + steps, 0)
        batches = encoded.batches(groups, {"labels": [train_split.labels.astype(np.float32)[g] for g in groups]})
        parameters = list(model.parameters())
        optimizer = torch.optim.AdamW(parameters, lr=1e-4, fused=True)
        seconds = dict.fromkeys(("forward", "backward", "clip", "optimizer", "zero"), 0.0)
        model.train()
        for k, batch in enumerate(batches):
            ticks = [time.perf_counter()]
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), batch["labels"])
            for work in (lambda: None, loss.backward, lambda: torch.nn.utils.clip_grad_norm_(parameters, 1.0),
                         optimizer.step, lambda: optimizer.zero_grad(set_to_none=True)):
                work()  # the first closes the forward phase
                sync()
                ticks.append(time.perf_counter())
            if k >= warmup:
                for name, start, end in zip(seconds, ticks, ticks[1:]):
                    seconds[name] += end - start
        rows[dropout] = {name: 1000 * value / steps for name, value in seconds.items()}
    return rows


def build_tiny(folder: Path, texts: list[str]) -> str:
    vocab = save_tiny_bert_tokenizer(folder, texts)
    config = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--minilm-steps", type=int, default=40)
    parser.add_argument("--tiny-steps", type=int, default=300)
    parser.add_argument("--phases", action="store_true", help="also the tiny model's step time by phase")
    parser.add_argument("--compile", action="store_true",
                        help="also the engine with torch.compile (it compiles during the warm-up steps)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.set_num_threads(fit_threads())
    settings = Settings(results_dir=tempfile.mkdtemp(), cache_dir=tempfile.mkdtemp(), data_dirs=(args.data_dir,))
    dataset = load_dataset("github-issues-datasets", settings, make_plugin_manager(autoload=False).registry.readers)
    train_split, valid = dataset.labeled("train"), dataset.labeled("valid")
    minilm = resolve_model(MINILM)
    tiny = build_tiny(Path(tempfile.mkdtemp()), train_split.texts + valid.texts)
    chosen = choose_precision("auto", device, Path(settings.cache_dir))
    gpu = f", {torch.cuda.get_device_name(device)}" if device.startswith("cuda") else ""
    print(f"device {device}{gpu}; CPU {cpu_model()} ({platform.machine()}), {torch.get_num_threads()} torch "
          f"threads; torch {torch.__version__}; engine precision on auto: {chosen}")
    rows = [
        ("tiny 2-layer", tiny, "fp32", args.tiny_steps, 20),
        ("MiniLM-L6", minilm, "fp32", args.minilm_steps, 5),
        ("MiniLM-L6", minilm, "bf16", args.minilm_steps, 5),
    ]
    print(f"\n{'model':13} {'precision':9} {'path':32} {'steps/s':>8} {'x Trainer':>9} {'eval s':>7} {'x Trainer':>9}")
    for name, folder, precision, steps, warmup in rows:
        if precision == "bf16" and device == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            continue
        best = {}
        paths = [
            ("Trainer (finetune before)", lambda: trainer_path(folder, train_split, valid, steps, warmup, precision, device)),
            ("engine", lambda: engine_path(folder, train_split, valid, steps, warmup, precision, device, False)),
            ("engine, word embeddings frozen", lambda: engine_path(folder, train_split, valid, steps, warmup, precision, device, True)),
        ]
        if args.compile:
            paths.append(("engine, torch.compile", lambda: engine_path(folder, train_split, valid, steps, warmup,
                                                                       precision, device, False, compiled=True)))
            # everything that makes a step cheaper at once, dropout off included: how far a step can go
            paths.append(("frozen, compiled, no dropout", lambda: engine_path(
                folder, train_split, valid, steps, warmup, precision, device, True, compiled=True, dropout=False)))
        for _ in range(args.rounds):
            for label, run in paths:
                step_s, eval_s = run()
                old = best.get(label, (np.inf, np.inf))
                best[label] = (min(old[0], step_s), min(old[1], eval_s))
        base_step, base_eval = best["Trainer (finetune before)"]
        for label, (step_s, eval_s) in best.items():
            print(f"{name:13} {precision:9} {label:32} {1 / step_s:8.1f} {base_step / step_s:9.2f} {eval_s:7.2f} "
                  f"{base_eval / eval_s:9.2f}")
    if args.phases:
        print("\ntiny 2-layer, engine step by phase, ms (fused AdamW, clipping at 1.0, fp32)")
        for dropout, phases in step_phases(tiny, train_split, device).items():
            print(f"dropout {dropout}: " + ", ".join(f"{name} {ms:.2f}" for name, ms in phases.items())
                  + f"; step {sum(phases.values()):.2f}")


if __name__ == "__main__":
    main()
