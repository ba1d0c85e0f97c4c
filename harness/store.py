"""Atomic file writes: readers see the old file or the whole new one, never a part."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np


def write_atomic(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Write a file through ``write(handle)`` so that readers see either the old file or the
    whole new one, never a part (temporary file in the same folder, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new file beside ``path``, created as any other file is (mode 0666 less the umask),
    unlike mkstemp's 0600: a results folder shared with a team stays readable."""
    while True:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:  # a name another writer just took: draw again
            continue


def json_bytes(obj: Any) -> bytes:
    """``obj`` as the harness writes JSON: sorted keys, one space of indent, UTF-8."""
    return json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8")


def write_json_atomic(path: Path, obj: Any) -> None:
    data = json_bytes(obj)
    write_atomic(path, lambda handle: handle.write(data))


def write_npy_atomic(path: Path, array: np.ndarray) -> None:
    write_atomic(path, lambda handle: np.save(handle, array))
