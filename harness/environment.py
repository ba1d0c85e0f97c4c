"""What the cell ran on: versions of the harness, Python and the packages that shape scores, the
thread count of a fit (torch's scores depend on it, see harness/cores.py) and how its threads
wait (its speed depends on that)."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.cores import fit_threads, openmp_waiting_setting

KEY_PACKAGES = (
    "numpy", "pandas", "scikit-learn", "scikit-multilearn", "torch", "transformers",
    "sentence-transformers", "faiss-cpu", "nlpaug", "pluggy",
)


def _git_sha() -> str | None:
    source_root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source_root, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    from harness import __version__

    packages = {}
    for name in KEY_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "harness_version": __version__,
        "git_sha": _git_sha(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
        "fit_threads": fit_threads(),
        "openmp_waiting": openmp_waiting_setting(),
    }
