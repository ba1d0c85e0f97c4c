"""How many threads a fit uses, and how its OpenMP threads wait.

A fit uses the cores this process may run on, capped by ``OMP_NUM_THREADS`` (the process and
Dask executors set it per worker, so that ``--jobs N`` does not oversubscribe the cores). The
count does not follow the machine's load: torch's results depend on its thread count (other
reduction orders), and the same command must give the same scores however busy the machine is.
Beside another busy process, a torch thread that spins while it waits for the others takes the
core from the thread still working; so threads sleep as soon as they wait
(``OMP_WAIT_POLICY=PASSIVE``). benchmarks/bench_thread_waiting.py measures the waiting policies
and thread counts alone and beside a busy-looping process.
"""

from __future__ import annotations

import os


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


def prefer_passive_waiting() -> None:
    """OpenMP threads sleep as soon as they wait, unless the user chose a policy or spin count.

    libgomp reads this once, when torch loads; a plugin calls it when it is imported, before any
    fit imports torch (in the driver and in each worker). It applies to every torch user in the process.
    """
    if "GOMP_SPINCOUNT" not in os.environ:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
