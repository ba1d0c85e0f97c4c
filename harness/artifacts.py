"""Cached artifacts shared between cells and processes: check, lock, check again, build.

An artifact (an embedding matrix, a zero-shot score matrix, an adapted model folder, augmented
texts) is built once and then read by every slice, seed and run. ``cached_artifact`` looks for
it without a lock (the common case: it is there); when it is missing, it takes the artifact's
lock, looks again (another process may have built it while this one waited), and only then
builds it. ``build`` must write atomically, so that a reader never sees half an artifact:
``harness.store.write_atomic`` for a file, ``build_folder`` for a folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

from harness.locks import artifact_lock

T = TypeVar("T")


def cached_artifact(path: Path, load: Callable[[], T | None], build: Callable[[], T]) -> tuple[T, bool]:
    """``(artifact, built_now)``: ``load()`` it, else build it under the lock of ``path``.

    ``load`` returns None while the artifact is missing (or lacks what the caller needs).
    """
    found = load()
    if found is not None:
        return found, False
    with artifact_lock(path):
        found = load()
        if found is not None:
            return found, False
        return build(), True


def build_folder(target: Path, fill: Callable[[Path], T]) -> T:
    """Fill a staging folder beside ``target`` and rename it into place (atomic on one file
    system); returns what ``fill(staging)`` returned. The staging folder is removed on failure."""
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        result = fill(staging)
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is shared like its other folders
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result
