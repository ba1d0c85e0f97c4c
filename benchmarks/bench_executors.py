"""Executors: the same cells with `harness run` serial, `--jobs 2` and Dask with 2 workers.

Run:  HF_HUB_OFFLINE=1 python benchmarks/bench_executors.py --data-dir /work/shared/data
      HF_HUB_OFFLINE=1 python benchmarks/bench_executors.py --data-dir /work/shared/data --workload nb --ceiling

Workloads (every slice of --seeds seeds on the real mirror):
- ``cpu`` (default): the synthetic method ``cpu_bound`` below, a fixed amount of pure-Python
  arithmetic per cell (no memory traffic, no BLAS): what the executors themselves cost.
- ``nb``: the book's Naive Bayes with --set nb.ngram_max=2, a real method; its bag-of-words work
  is memory-bound, so two cells at once run slower each than one alone (--ceiling measures how
  much: the same cells in a pre-started pool of 2 processes, no executor involved).

Each way is a fresh `harness run` process into its own results folder, timed from launch to exit
(start-up, worker processes or the Dask cluster included). The prepared dataset is cached first so
that no way pays for it. Prints the wall times, the speed-ups over serial, the machine's own
two-process ceiling on pure-Python work and the load average (other processes slow the parallel
runs most); exits 1 when a parallel way is less than --min-speedup times faster than serial or
any cell's record (key, slice, metrics, details) differs from the serial one.

This module is also the plugin that registers ``cpu_bound`` (HARNESS_PLUGINS=bench_executors).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness import hookimpl
from harness.methods import Method, MethodParams

HARNESS = [sys.executable, "-c", "from harness.cli import main; main()"]
WAYS = {"serial": [], "--jobs 2": ["--jobs", "2"], "dask, 2 workers": ["--executor", "dask", "--jobs", "2"]}
DATASET = "github-issues-datasets"


class CpuBoundParams(MethodParams):
    iterations: int = 24_000_000  # about a second of pure-Python arithmetic


class CpuBound(Method):
    """Synthetic: a fixed amount of arithmetic, then the tags most valid issues carry."""

    name = "cpu_bound"
    Params = CpuBoundParams

    def fit(self, train, valid, unlabeled, context):
        checksum = context.seed
        for i in range(self.params.iterations):
            checksum = (checksum * 31 + i) % 1_000_003
        self.checksum = checksum
        self.row = (valid.labels.mean(axis=0) >= 0.5).astype(np.uint8)

    def predict(self, texts):
        return np.tile(self.row, (len(texts), 1))

    def details(self):
        return {"checksum": self.checksum}


@hookimpl
def register_methods(register):
    register(CpuBound)


# ---------------------------------------------------------------- measuring

def cell_results(results_dir: Path) -> dict[str, tuple]:
    """What must not depend on the executor: each cell's key, slice, metrics and details."""
    out = {}
    for path in sorted((results_dir / "cells").glob("*/*/*.json")):
        record = json.loads(path.read_text())
        assert record["status"] == "ok", f"{path}: {record.get('error')}"
        out[str(path.relative_to(results_dir))] = (record["key_hash"], record["slice"], record["metrics"], record["details"])
    return out


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def machine_ceiling(n: int = 20_000_000) -> float:
    """Speed-up of two processes over one on pure-Python work with no harness at all: what
    this machine's cores allow (shared virtual cores give less than 2x)."""
    start = time.perf_counter()
    _burn(n), _burn(n)
    serial = time.perf_counter() - start
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_burn, [1000, 1000])  # start-up not counted
        start = time.perf_counter()
        pool.map(_burn, [n, n])
        parallel = time.perf_counter() - start
    return serial / parallel


def _one_thread() -> None:
    from harness.executors import limit_threads

    limit_threads(1)


def _cell_seconds(spec) -> float:
    from harness.cell import run_cell

    return run_cell(spec).record.timings["total_s"]


def cells_ceiling(specs: list) -> tuple[float, float, float]:
    """The cells' own two-process speed-up: serial in this process versus a pre-started pool of 2
    (one BLAS thread each), no executor. Returns (speed-up, cell seconds alone, cell seconds in pairs)."""
    _cell_seconds(specs[0])  # imports and dataset loaded before timing
    start = time.perf_counter()
    alone = sum(_cell_seconds(spec) for spec in specs)
    serial = time.perf_counter() - start
    with multiprocessing.get_context("spawn").Pool(2, initializer=_one_thread) as pool:
        pool.map(_cell_seconds, specs[:2])
        start = time.perf_counter()
        paired = sum(pool.map(_cell_seconds, specs, chunksize=1))
        parallel = time.perf_counter() - start
    return serial / parallel, alone, paired


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, type=Path, help="folder holding github-issues-datasets.jsonl.gz")
    parser.add_argument("--workload", choices=["cpu", "nb"], default="cpu")
    parser.add_argument("--seeds", type=int, default=24, help="slice seeds 0..N-1 (6 cells each)")
    parser.add_argument("--ceiling", action="store_true", help="also time the cells in a bare pool of 2 processes")
    parser.add_argument("--min-speedup", type=float, default=1.7)
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_executors_"))
    cache = work / "cache"
    method, overrides = ("cpu_bound", []) if args.workload == "cpu" else ("nb", ["nb.ngram_max=2"])
    here = str(Path(__file__).resolve().parent)
    os.environ["HARNESS_PLUGINS"] = ",".join(filter(None, [os.environ.get("HARNESS_PLUGINS"), Path(__file__).stem]))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    os.environ["HF_HUB_OFFLINE"] = "1"

    from harness.plugins import make_plugin_manager
    from harness.datasets import Settings
    from harness.plan import plan_run

    settings = Settings(results_dir=str(work / "ceiling"), cache_dir=str(cache), data_dirs=(str(args.data_dir),))
    seeds = list(range(args.seeds))
    plan = plan_run(make_plugin_manager(), settings, method, [DATASET], seeds, overrides=overrides)  # prepares the data
    common = ["run", "--methods", method, "--datasets", DATASET, "--seeds", ",".join(map(str, seeds)), "--data-dir",
              str(args.data_dir), "--cache-dir", str(cache), "--no-report", "--quiet"]
    for override in overrides:
        common += ["--set", override]

    print(f"{len(plan.cells)} {method} cells ({', '.join(overrides) or 'default parameters'}), {os.cpu_count()} cores")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"machine ceiling: 2 bare processes on pure-Python work run x{machine_ceiling():.2f} faster than 1")
    if args.ceiling:
        speedup, alone, paired = cells_ceiling(plan.cells)
        print(f"cells ceiling: the same cells in a bare pool of 2 run x{speedup:.2f} faster than in one process "
              f"(cell time {alone:.1f} s alone, {paired:.1f} s two at a time)")
    seconds, results = {}, {}
    for way, extra in WAYS.items():
        folder = work / way.replace(" ", "_").replace(",", "")
        tick = time.perf_counter()
        subprocess.run(HARNESS + common + ["--results", str(folder)] + extra, check=True)
        seconds[way] = time.perf_counter() - tick
        results[way] = cell_results(folder)
        print(f"{way:<16} {seconds[way]:7.1f} s  x{seconds['serial'] / seconds[way]:.2f}  "
              f"({len(results[way])} cells, load average now {os.getloadavg()[0]:.2f})")
    identical = all(results[way] == results["serial"] for way in WAYS)
    print(f"identical records (key, slice, metrics, details) across the three ways: {identical}")
    slow = [way for way in WAYS if way != "serial" and seconds["serial"] / seconds[way] < args.min_speedup]
    if slow:
        print(f"below the {args.min_speedup}x target: {', '.join(slow)}")
    return 0 if identical and not slow else 1


if __name__ == "__main__":
    sys.exit(main())
