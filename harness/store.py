"""Cell records on disk: one JSON file per cell, written atomically."""

from __future__ import annotations

import json
import os
import secrets
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np

SCHEMA_VERSION = 1
CELLS_DIR = "cells"


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


def write_json_atomic(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False)
    write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def write_npy_atomic(path: Path, array: np.ndarray) -> None:
    write_atomic(path, lambda handle: np.save(handle, array))


def safe_name(part: str) -> str:
    """A file-name-safe version of a dataset, method or slice name: never empty, no separator,
    no leading dot, so no name ('..' included) can make a path leave the results folder."""
    safe = "".join(c if c.isalnum() or c in "-_.@+" else "_" for c in part)
    return "_" + safe[1:] if safe.startswith(".") else safe or "_"


def record_path(results_dir: Path, dataset: str, method_label: str, slice_name: str, seed: int) -> Path:
    return results_dir / CELLS_DIR / safe_name(dataset) / safe_name(method_label) / f"slice-{safe_name(slice_name)}_seed-{seed}.json"


def read_record(path: Path) -> dict[str, Any] | None:
    """The record at ``path``, or None when there is none or it is unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        warnings.warn(f"{path}: unreadable cell record; it will be recomputed", stacklevel=2)
        return None


def record_files(results_dir: Path) -> list[Path]:
    """The cell record files under ``results_dir``, in a stable order."""
    return sorted((results_dir / CELLS_DIR).glob("*/*/*.json"))


def iter_records(results_dir: Path) -> Iterator[dict[str, Any]]:
    for path in record_files(results_dir):
        record = read_record(path)
        if record is not None:
            yield record
