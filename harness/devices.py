"""Where torch work runs: one device policy for the whole run.

``harness run --device`` sets it for every method (``auto``: the first CUDA GPU where one is
available, else the CPU, as sentence-transformers does); ``--device METHOD=DEVICE`` overrides
it for one method. Every torch method and the embedding cache take their device from here
(``FitContext.device``), and the cell record names the device used and the GPU model.

The device is not part of a cell's key, like the thread count: it changes floating-point
rounding, not what is computed.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from harness.errors import HarnessError

AUTO = "auto"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")
EXPECTED = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"


def check_device(value: str, what: str = "--device") -> str:
    """``value`` if it names a device, else HarnessError in one line naming ``what``."""
    if not _DEVICE.match(value):
        raise HarnessError(f"{what} {value!r}: expected {EXPECTED}")
    return value


def parse_device_option(values: tuple[str, ...] | list[str]) -> tuple[str, dict[str, str]]:
    """(run device, {method: device}) from repeated ``--device`` values: ``DEVICE`` sets the
    run's device, ``METHOD=DEVICE`` one method's. The last run-wide value wins; default ``auto``."""
    run_device, per_method = AUTO, {}
    for value in values:
        method, sep, device = value.partition("=")
        if sep:
            if not method.strip():
                raise HarnessError(f"--device {value!r}: expected DEVICE or METHOD=DEVICE")
            per_method[method.strip()] = check_device(device.strip(), f"--device {method.strip()}=")
        else:
            run_device = check_device(value.strip())
    return run_device, per_method


def resolve_device(requested: str = AUTO) -> str:
    """The torch device string for ``requested``: ``auto`` becomes ``cuda`` where CUDA is
    available, else ``cpu``; anything else is returned as given (checked)."""
    import torch

    check_device(requested, "device")
    if requested == AUTO:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def describe_device(requested: str) -> dict[str, Any]:
    """What the cell record keeps: the device its torch work ran on and, on CUDA, the GPU model.

    A method that never imported torch ran on the CPU; resolving would import torch for nothing.
    """
    if "torch" not in sys.modules:
        return {"device": "cpu"}
    import torch

    device = resolve_device(requested)
    described: dict[str, Any] = {"device": device}
    if device.startswith("cuda"):
        try:
            described["gpu"] = torch.cuda.get_device_name(torch.device(device))
        except (AssertionError, RuntimeError) as exc:  # no such GPU: the record says so, the run goes on
            described["gpu"] = f"unavailable ({str(exc).splitlines()[0]})"
    return described
