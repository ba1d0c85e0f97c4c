"""Executors: the same CPU-bound cells with `harness run` serial, `--jobs 2` and Dask with 2 workers.

Run:  HF_HUB_OFFLINE=1 python benchmarks/bench_executors.py --data-dir /work/shared/data

The cells are the book's Naive Bayes on the real mirror, every slice of --seeds seeds (CPU-bound:
bag of words, one MultinomialNB per tag, scoring), with --set nb.ngram_max=2 unless told
otherwise. Each way is a fresh `harness run` process into its own results folder, timed from
launch to exit (start-up, worker processes or the Dask cluster included). The prepared dataset
is cached first so that no way pays for it. Prints the wall times, the speed-ups over serial
and the load average (other processes on the machine slow the parallel runs most); exits 1
when a parallel way is less than --min-speedup times faster than serial or any cell's record
(metrics, slice, key) differs from the serial one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HARNESS = [sys.executable, "-c", "from harness.cli import main; main()"]
WAYS = {"serial": [], "--jobs 2": ["--jobs", "2"], "dask, 2 workers": ["--executor", "dask", "--jobs", "2"]}


def cell_results(results_dir: Path) -> dict[str, tuple]:
    """What must not depend on the executor: each cell's key, slice and metrics."""
    out = {}
    for path in sorted((results_dir / "cells").glob("*/*/*.json")):
        record = json.loads(path.read_text())
        assert record["status"] == "ok", f"{path}: {record.get('error')}"
        out[str(path.relative_to(results_dir))] = (record["key_hash"], record["slice"], record["metrics"])
    return out


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def machine_ceiling(n: int = 20_000_000) -> float:
    """Speed-up of two processes over one on pure-Python work with no harness at all: what
    this machine's cores allow (shared virtual cores give less than 2x)."""
    import multiprocessing

    start = time.perf_counter()
    _burn(n), _burn(n)
    serial = time.perf_counter() - start
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_burn, [1000, 1000])  # start-up not counted
        start = time.perf_counter()
        pool.map(_burn, [n, n])
        parallel = time.perf_counter() - start
    return serial / parallel


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, type=Path, help="folder holding github-issues-datasets.jsonl.gz")
    parser.add_argument("--seeds", type=int, default=20, help="slice seeds 0..N-1 (6 cells each)")
    parser.add_argument("--set", dest="overrides", action="append", default=None, help="nb parameter override")
    parser.add_argument("--min-speedup", type=float, default=1.7)
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args()
    overrides = args.overrides if args.overrides is not None else ["nb.ngram_max=2"]
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_executors_"))
    cache = work / "cache"

    from harness.runner import Settings, load_dataset

    load_dataset("github-issues-datasets", Settings(results_dir=str(work), cache_dir=str(cache), data_dirs=(str(args.data_dir),)))
    seeds = ",".join(str(s) for s in range(args.seeds))
    common = ["run", "--methods", "nb", "--datasets", "github-issues-datasets", "--seeds", seeds, "--data-dir",
              str(args.data_dir), "--cache-dir", str(cache), "--no-report", "--quiet"]
    for override in overrides:
        common += ["--set", override]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    print(f"{args.seeds * 6} nb cells ({', '.join(overrides) or 'default parameters'}), {os.cpu_count()} cores")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"machine ceiling: 2 bare processes on pure-Python work run x{machine_ceiling():.2f} faster than 1")
    seconds, results = {}, {}
    for way, extra in WAYS.items():
        folder = work / way.replace(" ", "_").replace(",", "")
        tick = time.perf_counter()
        subprocess.run(HARNESS + common + ["--results", str(folder)] + extra, check=True, env=env)
        seconds[way] = time.perf_counter() - tick
        results[way] = cell_results(folder)
        print(f"{way:<16} {seconds[way]:7.1f} s  x{seconds['serial'] / seconds[way]:.2f}  "
              f"({len(results[way])} cells, load average now {os.getloadavg()[0]:.2f})")
    identical = all(results[way] == results["serial"] for way in WAYS)
    print(f"identical records (key, slice, metrics) across the three ways: {identical}")
    slow = [way for way in WAYS if way != "serial" and seconds["serial"] / seconds[way] < args.min_speedup]
    if slow:
        print(f"below the {args.min_speedup}x target: {', '.join(slow)}")
    return 0 if identical and not slow else 1


if __name__ == "__main__":
    sys.exit(main())
