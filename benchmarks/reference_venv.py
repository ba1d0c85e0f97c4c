"""The virtual environment a reference library runs in, beside the harness's (compare_*.py).

``python -m venv --system-site-packages`` lets the venv reuse this environment's torch,
scikit-learn and the rest, so only the library itself (and whatever it adds) lands there, out of
the project's environment.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


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
