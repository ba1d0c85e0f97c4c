"""A query strategy for tests/test_strategies.py, loaded through ``HARNESS_PLUGINS=strategy_plugins``
(with this folder on PYTHONPATH) in the ``harness`` processes those tests start.

``counted`` picks as ``uncertainty`` does and appends a line to ``$COUNTED_LOG`` each time it
selects; when ``$COUNTED_KILL_AT`` is N, its N-th selection in the process kills the process
(SIGKILL: no handler, no clean-up), as a machine that dies in the middle of a trajectory.
"""

from __future__ import annotations

import os
import signal

from harness import hookimpl
from harness_strategies import Uncertainty

_calls = 0


class Counted(Uncertainty):
    name = "counted"

    def select(self, n, context):
        global _calls
        _calls += 1
        if os.environ.get("COUNTED_KILL_AT") == str(_calls):
            os.kill(os.getpid(), signal.SIGKILL)
        with open(os.environ["COUNTED_LOG"], "a", encoding="utf-8") as log:
            log.write(f"{context.pool_size}\n")
        return super().select(n, context)


@hookimpl
def register_strategies(register):
    register(Counted)
