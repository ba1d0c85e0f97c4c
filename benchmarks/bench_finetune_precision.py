"""finetune's default precision: bf16 autocast against plain fp32, MiniLM-L6 on mirror issues.

The default preset's ``precision: auto`` picks bf16 where the hardware has native kernels; this
measures what that buys on the machine at hand: training steps (batch 4) and inference (batch 32)
on valid-split issues cut to 64 tokens, the default preset's max_length. Best of 3 rounds.

    HF_HUB_OFFLINE=1 python benchmarks/bench_finetune_precision.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from harness.models import resolve_model
from harness.datasets import Settings, load_dataset
from harness.plugins import make_plugin_manager
from harness.cores import machine_cores
from harness.models import quiet_transformers
from harness.training import choose_precision

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MAX_LENGTH, TRAIN_BATCH, EVAL_BATCH, TRAIN_STEPS, ROUNDS = 64, 4, 32, 8, 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    args = parser.parse_args()
    torch.set_num_threads(machine_cores())
    settings = Settings(results_dir=tempfile.mkdtemp(), cache_dir=tempfile.mkdtemp(), data_dirs=(args.data_dir,))
    valid = load_dataset("github-issues-datasets", settings, make_plugin_manager(autoload=False).registry.readers).labeled("valid")
    folder = resolve_model(MODEL)
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, num_labels=len(valid.tags), problem_type="multi_label_classification"
        )
    collate = DataCollatorWithPadding(tokenizer)
    encoded = tokenizer(valid.texts[:EVAL_BATCH], truncation=True, max_length=MAX_LENGTH)
    features = [{k: encoded[k][i] for k in encoded.keys()} for i in range(EVAL_BATCH)]
    eval_batch = collate(features)
    train_batch = {**collate(features[:TRAIN_BATCH]),
                   "labels": torch.tensor(valid.labels[:TRAIN_BATCH], dtype=torch.float32)}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    modes = {
        "fp32": contextlib.nullcontext,
        "bf16": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
    }
    best = {name: [0.0, 0.0] for name in modes}
    for _ in range(ROUNDS):
        for name, autocast in modes.items():
            model.eval()
            with torch.inference_mode(), autocast():
                model(**eval_batch)  # warm-up
                tick = time.perf_counter()
                model(**eval_batch)
                inference = EVAL_BATCH / (time.perf_counter() - tick)
            model.train()
            tick = time.perf_counter()
            for _ in range(TRAIN_STEPS):
                with autocast():
                    loss = model(**train_batch).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
            training = TRAIN_STEPS * TRAIN_BATCH / (time.perf_counter() - tick)
            best[name] = [max(best[name][0], inference), max(best[name][1], training)]
    print(f"{machine_cores()} threads; precision 'auto' resolves to {choose_precision('auto', 'cpu')} here")
    for name, (inference, training) in best.items():
        print(f"{name}: inference {inference:6.0f} texts/s   training {training:5.1f} texts/s")
    (fp32_inf, fp32_train), (bf16_inf, bf16_train) = best["fp32"], best["bf16"]
    print(f"bf16 / fp32: inference x{bf16_inf / fp32_inf:.2f}, training x{bf16_train / fp32_train:.2f}")


if __name__ == "__main__":
    main()
