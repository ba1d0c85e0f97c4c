"""llm_icl on one GGUF model two ways, side by side on the same slice, valid and test issues:
in-process transformers (the model dequantised to fp32, prefix-cached scoring) against the
llama.cpp server of the xllamacpp wheel (quantised kernels, ``scoring=forced``) at concurrency
1, 2 and 4. Prints seconds per cell, micro and macro F1 on the scored test issues, and how far
the two ways' scores are apart. ``--choice`` adds the server's two ``choice`` prompt forms
(letters, yes/no) at the highest concurrency, for the F1 each gives.

Run:  HF_HUB_OFFLINE=1 python benchmarks/bench_llm_endpoint.py --data-dir ../shared/data

A cell here is the method's fit (its valid issues scored to choose the threshold) and the
scores of ``--test-issues`` test issues; ``--test-issues 0`` scores the whole test split as a
real cell does. Every way starts with an empty request cache, so every request is sent.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.config import load_config
from harness.data import prepare
from harness.methods import FitContext, LabeledTexts
from harness.metrics import f1
from harness.splits import nested_slices
from harness_llm_icl.local_server import start_server
from harness_llm_icl.method import LlmIcl, LlmIclParams


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run_cell(params: LlmIclParams, train: LabeledTexts, valid: LabeledTexts, test: LabeledTexts, tags: list[str],
             cache_dir: Path) -> tuple[float, np.ndarray, np.ndarray, dict]:
    """(seconds, test scores, test predictions, usage) of one fit + predict."""
    method = LlmIcl(params)
    context = FitContext(seed=0, tags=tags, dataset="bench", fingerprint="bench", cache_dir=cache_dir, device="cpu")
    tick = time.perf_counter()
    method.fit(train, valid, [], context)
    scores = method.predict_scores(test.texts)
    predictions = (scores >= method.threshold).astype(np.uint8)
    return time.perf_counter() - tick, scores, predictions, method.usage()


def main() -> int:
    defaults = LlmIclParams()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("HARNESS_DATA_DIR", "../shared/data")))
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument("--slice", type=int, default=32)
    parser.add_argument("--valid-size", type=int, default=defaults.valid_size)
    parser.add_argument("--test-issues", type=int, default=128, help="test issues scored (0: all)")
    parser.add_argument("--concurrency", default="1,2,4")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--choice", action="store_true", help="also scoring=choice, both forms")
    args = parser.parse_args()

    load = os.getloadavg()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    work = Path(tempfile.mkdtemp(prefix="bench-llm-endpoint-"))
    dataset = prepare(load_config("github-issues-datasets"), [args.data_dir], work / "data-cache")
    tags = list(dataset.tags)
    train_all, valid, test = dataset.labeled("train"), dataset.labeled("valid"), dataset.labeled("test")
    (train_slice,) = nested_slices(train_all.labels, [args.slice], seed=0)
    train = dataset.labeled("train", train_slice.positions)
    if args.test_issues:
        test = LabeledTexts(test.texts[: args.test_issues], test.labels[: args.test_issues], tags)
    print(f"slice {args.slice} (seed 0, {len(train)} issues), {args.valid_size} valid issues, {len(test)} test issues, "
          f"{len(tags)} tags, model {args.model}\n")

    base = dict(model=args.model, valid_size=args.valid_size)
    print(f"{'way':<34} {'seconds':>8} {'micro F1':>9} {'macro F1':>9} {'requests':>9} {'max |diff|':>11} {'corr':>6}")
    reference: list[np.ndarray] = []  # the first way's test scores

    def measure(label: str, params: LlmIclParams, cache: str) -> None:
        seconds, scores, predictions, usage = run_cell(params, train, valid, test, tags, work / cache)
        reference.append(scores)
        diff = float(np.abs(scores - reference[0]).max())
        corr = float(np.corrcoef(scores.ravel(), reference[0].ravel())[0, 1])
        print(f"{label:<34} {seconds:>8.1f} {f1(test.labels, predictions, 'micro'):>9.3f} "
              f"{f1(test.labels, predictions, 'macro'):>9.3f} {usage.get('requests', 0):>9} {diff:>11.3f} {corr:>6.3f}",
              flush=True)

    if not args.skip_in_process:
        run_cell(LlmIclParams(**base), train, valid, LabeledTexts(test.texts[:1], test.labels[:1], tags), tags,
                 work / "warm")  # loads the model once, as a worker process keeps it for every cell
        measure("in-process transformers", LlmIclParams(**base), "in-process")
    levels = [int(c) for c in args.concurrency.split(",")]
    server = start_server(args.model, parallel=max(levels))
    for concurrency in levels:
        measure(f"llama.cpp server, concurrency {concurrency}",
                LlmIclParams(**base, endpoint=server.base_url, scoring="forced", concurrency=concurrency), f"server-{concurrency}")
    for form in ("letters", "yesno") if args.choice else ():
        measure(f"server, choice {form}, conc. {max(levels)}", LlmIclParams(
            **base, endpoint=server.base_url, scoring="choice", choice_form=form, concurrency=max(levels)), form)
    print("\nmax |diff| and corr compare each way's test scores with the first row's (summed log-probabilities; "
          "choice rows score otherwise)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
