"""Advisory file locks that serialise work between processes, threads and runs.

``fcntl.flock`` locks an open file: the kernel releases it when its holder closes the file or
dies, even by SIGKILL, so a crash never leaves a stale lock behind. Each ``FileLock`` opens its
own file descriptor, so two threads of one process exclude each other as two processes do.
Lock files are never deleted: removing one while another process waits on it would let two
processes hold "the same" lock on two different files.

Why not the ``filelock`` package (tox-dev)? It was considered. On Linux it uses the same
``flock``, but its locks are re-entrant per object and, by default, per thread, and its
``is_locked`` says whether *this object* holds the lock, not whether another process does, which
is what ``harness status`` needs to show running cells. What the harness needs (a non-blocking
try, an exclusive lock per descriptor, a probe of someone else's lock) is the 60 lines below,
with no dependency and no semantics to configure away.

Shared cached artifacts use ``harness.artifacts.cached_artifact``, which takes ``artifact_lock``
and looks for the artifact again once the lock is held.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType


class FileLock:
    """An exclusive lock on ``path`` (created if missing). Not re-entrant."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False`` return False at once when someone else holds it."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: lock already held by this object")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def artifact_lock(artifact: Path | str) -> FileLock:
    """The lock guarding the computation of a cached artifact (a file or a folder): ``<artifact>.lock``."""
    artifact = Path(artifact)
    return FileLock(artifact.with_name(artifact.name + ".lock"))


def is_locked(path: Path | str) -> bool:
    """Whether another holder has the lock at ``path`` right now (a snapshot, for status displays)."""
    if not Path(path).exists():
        return False
    probe = FileLock(path)
    if probe.acquire(blocking=False):
        probe.release()
        return False
    return True
