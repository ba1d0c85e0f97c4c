"""fewlabels-harness: benchmark text classifiers when labels are few or missing.

The public API a plugin is written against: ``hookimpl`` and the method contract here, what
plugins share in ``harness.toolkit``, and ``harness.testing`` for a plugin's tests. Every other
module is internal (docs/development.md draws the line, and tests/test_layout.py holds it).
"""

from importlib.metadata import PackageNotFoundError, version

from harness.hookspecs import hookimpl
from harness.methods import FitContext, LabeledTexts, Method, MethodParams
from harness.strategies import QueryContext, Selection, Strategy

try:
    __version__ = version("fewlabels-harness")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["FitContext", "LabeledTexts", "Method", "MethodParams", "QueryContext", "Selection", "Strategy", "hookimpl",
           "__version__"]
