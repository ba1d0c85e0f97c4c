"""How many threads a fit uses, and how its OpenMP threads wait.

A fit uses the cores this process may run on, capped by ``OMP_NUM_THREADS`` (the process and
Dask executors set it per worker, so that ``--jobs N`` does not oversubscribe the cores). The
count does not follow the machine's load: torch's results depend on its thread count (other
reduction orders), and the same command must give the same scores however busy the machine is.

How the threads wait does follow the load, because it changes speed only. A torch thread that
finishes its share spins for a while before it sleeps (libgomp's default). On idle cores that
makes a finetune cell 1.5x faster than sleeping at once; beside a busy process the spinning
thread takes the core from the thread still working, and the cell ran more than 8x longer than
with threads that sleep (docs/training.md, benchmarks/bench_thread_waiting.py). So before torch
loads, the cores are sampled: threads sleep as soon as they wait (``OMP_WAIT_POLICY=PASSIVE``)
when other processes keep half a core or more busy, and keep libgomp's default otherwise.
"""

from __future__ import annotations

import os
import sys


def machine_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def fit_threads() -> int:
    """Threads for a fit: this process's cores, capped by ``OMP_NUM_THREADS`` when set."""
    cores = machine_cores()
    try:
        cap = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return cores
    return max(1, min(cores, cap))


BUSY_CORES_FOR_PASSIVE = 0.5  # other processes' load, in cores, from which threads sleep at once
_chosen = False  # sampled once per process, even when it left libgomp's default


def busy_cores(seconds: float = 0.1) -> float:
    """Cores of this process's affinity that other processes kept busy over ``seconds`` (this
    process sleeps meanwhile): the sum of each core's busy share."""
    import psutil

    shares = psutil.cpu_percent(interval=seconds, percpu=True)
    mine = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(len(shares))
    return sum(shares[core] for core in mine if core < len(shares)) / 100


def openmp_wait_policy(busy: float) -> str | None:
    """'PASSIVE' when other processes keep ``busy`` cores busy (half a core or more), else None:
    libgomp's default, a short spin."""
    return "PASSIVE" if busy >= BUSY_CORES_FOR_PASSIVE else None


def choose_openmp_waiting() -> None:
    """Set how torch's OpenMP threads wait, from how busy the cores are now, unless the user chose
    (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``) or torch is loaded already.

    libgomp reads its settings once, when torch loads; ``harness.cell.run_cell`` calls this before
    a cell's fit, in whichever process runs it (a worker started after the driver chose inherits
    that choice). It applies to every torch user in the process, and costs a tenth of a second once.
    """
    global _chosen
    if _chosen or "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return
    _chosen = True
    policy = openmp_wait_policy(busy_cores())
    if policy is not None:
        os.environ["OMP_WAIT_POLICY"] = policy


def openmp_waiting_setting() -> str:
    """How this process's OpenMP threads wait, as libgomp read it, for the record."""
    if "OMP_WAIT_POLICY" in os.environ:
        return f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}"
    if "GOMP_SPINCOUNT" in os.environ:
        return f"GOMP_SPINCOUNT={os.environ['GOMP_SPINCOUNT']}"
    return "libgomp default (spin)"
