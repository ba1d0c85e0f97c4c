"""setfit speed: pair-training throughput (pairs/s) of MiniLM and all-mpnet-base-v2 side by side.

Run:  HF_HUB_OFFLINE=1 python benchmarks/bench_setfit.py --data-dir /work/shared/data

Pairs are drawn from the seed-0 training split of the real mirror exactly as the method draws
them, and trained with the method's own loop (``harness_setfit.body.train_body``). The models
take turns, round after round, so that a busy machine slows both alike; the ratio is the
figure to trust on a shared machine. A model that cannot be resolved offline (mpnet without its
part wheels) is reported and skipped.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.config import load_config
from harness.data import prepare
from harness.models import ModelResolutionError
from harness_setfit.body import BodySettings, train_body
from harness_setfit.method import DEFAULT_MODEL, MPNET, _fresh_body
from harness_setfit.pairs import contrastive_pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--models", default=f"{DEFAULT_MODEL},{MPNET}")
    parser.add_argument("--max-length", type=int, default=64, help="tokens per text (the default preset's 64)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps timed per model and round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        dataset = prepare(load_config("github-issues-datasets"), [args.data_dir], Path(tmp))
    train = dataset.labeled("train")
    n_pairs = args.steps * args.batch_size
    settings = BodySettings(epochs=1, batch_size=args.batch_size, learning_rate=2e-5, warmup_proportion=0.1, seed=0)
    models = {}
    for name in args.models.split(","):
        try:
            models[name] = _fresh_body(name, "cpu", args.max_length)
        except ModelResolutionError as exc:
            print(f"skipped {name}: {exc}")
    if not models:
        return 1
    rates: dict[str, list[float]] = {name: [] for name in models}
    for round_ in range(args.rounds + 1):  # round 0 (one step) warms up allocator and kernels, not counted
        count = n_pairs if round_ else args.batch_size
        pairs = contrastive_pairs(train.labels, count, seed=round_)
        for name, model in models.items():
            tick = time.perf_counter()
            train_body(model, train.texts, pairs, settings, lambda message: None, name)
            if round_:
                rates[name].append(len(pairs) / (time.perf_counter() - tick))
    print(f"pair training, {args.steps} steps x {args.batch_size} pairs, max_length {args.max_length}, "
          f"{args.rounds} rounds, models in turn")
    for name, values in rates.items():
        print(f"  {name:45s} {statistics.median(values):7.2f} pairs/s (rounds: {', '.join(f'{v:.2f}' for v in values)})")
    if len(rates) == 2:
        first, second = (statistics.median(v) for v in rates.values())
        print(f"  ratio {list(rates)[0]} / {list(rates)[1]}: {first / second:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
