"""fewlabels-harness: benchmark text classifiers when labels are few or missing."""

from importlib.metadata import PackageNotFoundError, version

import pluggy

hookimpl = pluggy.HookimplMarker("harness")
"""Decorator for plugin hook implementations: ``from harness import hookimpl``."""

try:
    __version__ = version("fewlabels-harness")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["hookimpl", "__version__"]
