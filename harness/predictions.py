"""A cell's stored predictions: NumPy arrays in one compressed ``.npz`` beside its record.

The file is written atomically, like the record, and the record names it with its sha256; a
reader checks the checksum and loads without pickle, so a file changed or cut short after the
run is an error that names it, never numbers silently taken from it.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
import numpy as np

from harness.errors import HarnessError
from harness.store import write_atomic


class PredictionsError(HarnessError):
    """Stored predictions are missing, corrupted, or do not match their record."""


def predictions_path(record_path: Path) -> Path:
    """Where the arrays of the cell whose record is at ``record_path`` go."""
    return record_path.with_suffix(".npz")


def encode_predictions(arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of the ``.npz`` file holding ``arrays``: what a worker sends back to the driver."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def predictions_entry(path: Path, blob: bytes) -> dict[str, str]:
    """The record's entry for the arrays file ``blob`` to be written at ``path``: its name and sha256."""
    return {"file": path.name, "sha256": hashlib.sha256(blob).hexdigest()}


def write_predictions_file(path: Path, blob: bytes) -> None:
    """Write the bytes of an arrays file (``encode_predictions``) to ``path`` atomically."""
    write_atomic(path, lambda handle: handle.write(blob))


def write_predictions(path: Path, arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """Write ``arrays`` to ``path`` atomically; returns the record's entry: file name and sha256."""
    blob = encode_predictions(arrays)
    write_predictions_file(path, blob)
    return predictions_entry(path, blob)


def checked_bytes(path: Path, sha256: str) -> bytes:
    """The bytes of the arrays file at ``path``, after checking that their sha256 is the record's."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise PredictionsError(f"{path}: stored predictions cannot be read ({exc.strerror or exc})") from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != sha256:
        raise PredictionsError(
            f"{path}: sha256 {digest[:12]}... does not match {sha256[:12]}... in its record; "
            "the file was changed or cut short after the run (rerun the cell to rewrite it)"
        )
    return blob


def decode_predictions(blob: bytes, where: Path | str) -> dict[str, np.ndarray]:
    """The arrays in the bytes of an arrays file (without pickle); ``where`` names it in errors."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise PredictionsError(f"{where}: not a readable .npz of arrays ({exc})") from None


def read_predictions(path: Path, sha256: str) -> dict[str, np.ndarray]:
    """The arrays stored at ``path``, after checking that their sha256 is the record's."""
    return decode_predictions(checked_bytes(path, sha256), path)
