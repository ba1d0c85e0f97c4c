"""llm_icl scoring throughput: the prefix-cached scorer (all tags of a batch of issues from one
pass over the cached instruction + demonstrations) versus one forward pass over the whole
prompt per (issue, tag), on the same issues, with the scores compared.

Run:  HF_HUB_OFFLINE=1 python benchmarks/bench_llm_icl.py --data-dir /work/shared/data

Uses the real mirror (seed-0 slice of --slice issues, fixed demonstrations as the method draws
them, every tag of the dataset), SmolLM2-135M-Instruct unless --model says otherwise, and the
default preset's k and token budget. Exits 1 when the scores differ by more than --atol.
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
from harness.splits import nested_slices
from harness_llm_icl.method import LlmIclParams, load_causal_lm
from harness_llm_icl.prompt import PromptBuilder, fixed_demonstrations
from harness_llm_icl.scoring import TagScorer, naive_tag_log_probs


def timed(fn):
    tick = time.perf_counter()
    result = fn()
    return time.perf_counter() - tick, result


def main() -> int:
    defaults = LlmIclParams()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("HARNESS_DATA_DIR", "/work/shared/data")))
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "harness-bench-cache")
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--slice", type=int, default=32, help="training slice the demonstrations come from")
    parser.add_argument("--k", type=int, default=defaults.k)
    parser.add_argument("--max-text-tokens", type=int, default=defaults.max_text_tokens)
    parser.add_argument("--issues", type=int, default=8, help="test issues scored by every way (the naive way is slow)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--atol", type=float, default=1e-4)
    args = parser.parse_args()

    import torch

    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    dataset = prepare(load_config("github-issues-datasets"), [args.data_dir], args.cache_dir)
    train, test = dataset.labeled("train"), dataset.labeled("test")
    (train_slice,) = nested_slices(train.labels, [args.slice], seed=0)
    rows = train_slice.positions
    load_s, (tokenizer, model) = timed(lambda: load_causal_lm(args.model, args.device))
    print(f"model {args.model}: loaded in {load_s:.1f} s")

    builder = PromptBuilder(tokenizer, list(dataset.tags), dict(dataset.config.labels.descriptions), args.max_text_tokens)
    demos = fixed_demonstrations(train.labels[rows], args.k, np.random.default_rng(0))
    prefix = builder.instruction_ids() + builder.demonstrations_ids(
        [train.texts[rows[i]] for i in demos], train.labels[rows][demos])
    segments = [builder.issue_ids(t) for t in test.texts[: args.issues]]
    tag_tokens = sum(len(c) for c in builder.continuations)
    print(f"prompt: {len(prefix)} prefix tokens (instruction + {len(demos)} demonstrations), "
          f"{np.mean([len(s) for s in segments]):.1f} tokens per issue on average, {len(builder.tags)} tags "
          f"({tag_tokens} answer tokens)")

    results = {}
    for label, batch_size in ((f"prefix cache, batch {args.batch_size}", args.batch_size), ("prefix cache, batch 1", 1)):
        scorer = TagScorer(model, builder.continuations, batch_size)
        prefix_s, _ = timed(lambda: scorer.score(prefix, segments[:1]))  # the prefix pass, paid once per slice
        results[label] = timed(lambda: scorer.score(prefix, segments))
        print(f"{label}: prefix pass {prefix_s:.2f} s (once per slice), then {results[label][0]:.2f} s "
              f"for {len(segments)} issues")
    results["one pass per (issue, tag)"] = timed(lambda: naive_tag_log_probs(model, prefix, segments, builder.continuations))

    naive_s, naive = results["one pass per (issue, tag)"]
    print(f"\n{'way':<28} {'seconds':>8} {'issues/s':>9} {'speedup':>8} {'max |diff|':>11}")
    worst = 0.0
    for label, (seconds, scores) in results.items():
        diff = float(np.abs(scores - naive).max())
        worst = max(worst, diff)
        print(f"{label:<28} {seconds:>8.2f} {len(segments) / seconds:>9.2f} {naive_s / seconds:>7.1f}x {diff:>11.2e}")
    print(f"\nscores {'agree' if worst <= args.atol else 'DIFFER'} (max |diff| {worst:.2e}, atol {args.atol})")
    return 0 if worst <= args.atol else 1


if __name__ == "__main__":
    sys.exit(main())
