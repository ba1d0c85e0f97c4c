"""A fitted method's parts on disk, without pickles: scikit-learn objects through skops, arrays
as ``.npz`` read with ``allow_pickle=False``, everything else as JSON.

A pickle runs code when it is read, so a model folder handed on by a colleague could do
anything; skops reads only the types it is told to trust. The harness trusts the types of the
libraries its methods are built on (``TRUSTED_MODULES``) and refuses a file holding any other.
Torch weights are written by their own libraries as safetensors (``save_pretrained``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessError
from harness.store import write_atomic, write_json_atomic

# the packages whose types a saved scikit-learn object may hold
TRUSTED_MODULES = ("sklearn", "skmultilearn", "numpy", "scipy", "builtins", "collections")


class SavedStateError(HarnessError):
    """A saved part is missing, unreadable or holds a type the harness does not load."""


def save_estimators(path: Path, estimators: Any) -> None:
    """Write scikit-learn objects (one, or a dict or list of them) to ``path`` with skops."""
    import skops.io

    write_atomic(path, lambda handle: handle.write(skops.io.dumps(estimators)))


def load_estimators(path: Path) -> Any:
    """What ``save_estimators`` wrote; SavedStateError naming a type from outside ``TRUSTED_MODULES``."""
    import skops.io

    data = _read_bytes(path)
    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception as exc:  # skops raises several kinds on a file that is not its own
        raise SavedStateError(f"{path}: not a skops file ({type(exc).__name__}: {exc})") from None
    foreign = [name for name in untrusted if name.split(".")[0] not in TRUSTED_MODULES]
    if foreign:
        raise SavedStateError(f"{path}: holds type {foreign[0]!r}, which is not from {', '.join(TRUSTED_MODULES)}; "
                              "the harness does not load it")
    return skops.io.loads(data, trusted=untrusted)


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    """Numeric or string arrays in one ``.npz`` file."""
    write_atomic(path, lambda handle: np.savez(handle, **arrays))


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    _read_bytes(path)  # a missing file gets the same one line as the other parts
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError) as exc:
        raise SavedStateError(f"{path}: not a readable .npz file ({exc})") from None


def save_json(path: Path, data: Any) -> None:
    write_json_atomic(path, data)


def load_json(path: Path) -> Any:
    try:
        return json.loads(_read_bytes(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SavedStateError(f"{path}: not a JSON file ({exc})") from None


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise SavedStateError(f"{path}: missing; the model folder is incomplete") from None
    except OSError as exc:
        raise SavedStateError(f"{path}: cannot be read ({exc.strerror})") from None
