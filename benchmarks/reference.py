"""What the scripts that hold the harness to a reference library (compare_*.py) share: the
reference's own virtual environment, the hand-over to its worker, and the table's mean ± sd.

``python -m venv --system-site-packages`` lets the venv reuse this environment's torch,
scikit-learn and the rest, so only the library itself (and whatever it adds) lands there, out of
the project's environment. The script runs itself there with ``--library-worker IN OUT``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np

WORKER_FLAG = "--library-worker"


def ensure_venv(venv: Path, distribution: str, version: str) -> Path:
    """The Python of ``venv`` with ``distribution==version`` installed, made and filled on first use."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"making {venv} (python -m venv --system-site-packages)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    check = (f"import importlib.metadata as m, sys; sys.exit(m.version({distribution!r}) != {version!r})")
    if subprocess.run([str(python), "-c", check], capture_output=True).returncode:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"{distribution}=={version}"], check=True)
    return python


def ran_as_worker(worker: Callable[[Path, Path], None]) -> bool:
    """Run ``worker(IN, OUT)`` when this process was started as ``script --library-worker IN OUT``."""
    if len(sys.argv) == 4 and sys.argv[1] == WORKER_FLAG:
        worker(Path(sys.argv[2]), Path(sys.argv[3]))
        return True
    return False


def mean_sd(values: list[float]) -> str:
    """``mean ± sd`` (sample sd) of ``values``, the mean alone for one value."""
    return f"{np.mean(values):.3f}" if len(values) < 2 else f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"
